"""`python -m pyzdb`: the REPL, as the `pyzdb` console script."""

import sys

from .repl import main

sys.exit(main())
