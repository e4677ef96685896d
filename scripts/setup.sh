#!/usr/bin/env bash
# Set up napari-hemd on a fresh machine (Linux, Python >= 3.11, run as root or inside a venv).
#   bash scripts/setup.sh          runtime + CPU torch + Dask's distributed scheduler (--workers)
#   bash scripts/setup.sh --napari also napari and Qt (the plugin)
#   bash scripts/setup.sh --test   also test dependencies, napari/Qt and a virtual display (Xvfb)
# torch is pinned (TORCH_SPEC) to the version this project's machines keep on disk as a CPU build;
# elsewhere PyPI's Linux wheel is CUDA's (GBs): TORCH_INDEX=https://download.pytorch.org/whl/cpu
# takes the CPU one. Any torch >= 2.3 works.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
extras="torch,distributed"
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
if ! python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "napari-hemd setup: needs Python >= 3.11 (zarr 3); 'python' is $(python --version 2>&1)" >&2
  exit 1
fi
echo "napari-hemd setup: installing into $(python -c 'import sys; print(sys.prefix)') ($(python --version 2>&1))" >&2
# TORCH_INDEX=https://download.pytorch.org/whl/cpu: torch's CPU build where PyPI's would be CUDA's
index=()
if [[ -n "${TORCH_INDEX:-}" ]]; then
  index=(--extra-index-url "$TORCH_INDEX")
fi
python -m pip install -q --disable-pip-version-check ${index[@]+"${index[@]}"} "$TORCH_SPEC" -e ".[${extras}]"
