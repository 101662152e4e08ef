"""``python -m trainers.cli SUBCOMMAND ...`` is the ``mlx-schedules`` command (useful where the
console script is not on ``PATH``, and with ``mlx.launch``)."""

import sys

from . import main

sys.exit(main())
