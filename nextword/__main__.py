"""``python -m nextword`` runs the command line."""

import sys

from nextword.cli import main

sys.exit(main())
