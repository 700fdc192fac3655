"""``python -m edge.cli``: the ``linli`` command without its console script."""

import sys

from edge.cli.main import main

sys.exit(main())
