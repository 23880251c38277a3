"""``python -m fraudapp.cli``: the same as the ``fraudapp`` command."""

import sys

from fraudapp.cli.main import main

sys.exit(main())
