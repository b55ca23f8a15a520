"""``python -m chestaid.cli``: the same as the ``chestaid`` command."""

import sys

from chestaid.cli import main

sys.exit(main())
