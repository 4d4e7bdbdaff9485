"""`python -m shammie ...`: see shammie.runner."""

import sys

from .runner import main

sys.exit(main())
