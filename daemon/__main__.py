"""``python -m daemon``: the same as ``modeltuid``."""

import sys

from daemon.cli import main

sys.exit(main())
