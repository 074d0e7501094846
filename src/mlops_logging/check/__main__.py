"""``python -m mlops_logging.check [options]``: logcheck."""

import sys

from . import main

sys.exit(main())
