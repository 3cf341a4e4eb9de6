"""``python -m syncworker``: the same as the ``syncworker`` command."""

import sys

from syncworker.cli import main

sys.exit(main())
