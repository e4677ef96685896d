"""``python -m napari_hemd.cli``."""

import sys

from napari_hemd.cli import main

sys.exit(main())
