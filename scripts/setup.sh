#!/usr/bin/env bash
# Set up napari-hemd on a fresh machine (Linux, Python >= 3.10, run as root or inside a venv).
#   bash scripts/setup.sh          runtime + CPU torch
#   bash scripts/setup.sh --napari also napari and Qt (the plugin)
#   bash scripts/setup.sh --test   also test dependencies, napari/Qt and a virtual display (Xvfb)
# torch is pinned to the CPU build that this project's machines keep on disk; any torch >= 2.1 works.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
extras="torch"
if [[ "${1:-}" == "--napari" ]]; then
  extras="torch,napari,distributed"
fi
if [[ "${1:-}" == "--test" ]]; then
  extras="torch,napari,distributed,test,dev"
  if command -v apt-get >/dev/null && ! command -v Xvfb >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 \
      libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxkbcommon-x11-0 \
      libxcb-cursor0 libegl1 libgl1 libfontconfig1 libdbus-1-3 >/dev/null) \
      || echo "warning: could not install Xvfb; widget tests will be skipped" >&2
  fi
fi
echo "napari-hemd setup: installing into $(python -c 'import sys; print(sys.prefix)') ($(python --version 2>&1))" >&2
python -m pip install -q --disable-pip-version-check "$TORCH_SPEC" -e ".[${extras}]"
