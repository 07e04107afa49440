"""``python -m napari_sam_keras`` is the ``napari-sam-keras`` command."""

import sys

from .cli import main

sys.exit(main())
