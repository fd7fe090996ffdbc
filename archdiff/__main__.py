"""``python -m archdiff``: the same command line as the ``archdiff`` script."""

import sys

from archdiff.cli import main

sys.exit(main())
