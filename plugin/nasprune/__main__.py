"""``python -m nasprune``: the ``nasprune`` command, for environments without its script on the PATH."""

import sys

from nasprune.cli import main

sys.exit(main())
