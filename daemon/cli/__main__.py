"""``python -m daemon.cli``: the same as ``chestaid-daemon``."""

import sys

from daemon.cli import main

sys.exit(main())
