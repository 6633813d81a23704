"""``python -m labpgt`` is the ``labpgt`` command."""

import sys

from labpgt.cli import main

sys.exit(main())
