"""``python -m roost``: the ``roost`` command."""

import sys

from roost.cli import main

if __name__ == "__main__":  # not when a worker process (roost.workers, spawned) imports it
    sys.exit(main())
