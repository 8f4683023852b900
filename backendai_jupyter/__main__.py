"""``python -m backendai_jupyter`` → the ``backendai-jupyter`` command line."""

import sys

from .cli import main

sys.exit(main())
