"""`python -m tui.bench`: the same as `execdesk bench`."""

import sys

from .runner import main

sys.exit(main())
