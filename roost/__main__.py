"""``python -m roost``: the ``roost`` command."""

import sys

from roost.cli import main

sys.exit(main())
