"""`python -m pyzdb`: the REPL, as the `pyzdb` console script."""

import sys

from pyzdb.cli.repl import main

sys.exit(main())
