"""``python -m nasprune.cli``: the ``nasprune`` command."""

import sys

from nasprune.cli import main

sys.exit(main())
