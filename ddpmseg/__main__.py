"""``python -m ddpmseg``: the ``ddpmseg`` command (:mod:`ddpmseg.cli`)."""

import sys

from .cli import main

sys.exit(main())
