"""``python -m mlops_logging.wrap [options] [--] CMD [ARGS...]``."""

import sys

from . import main

sys.exit(main())
