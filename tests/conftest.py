"""Shared pytest settings for the suite.

The tests live in folders mirroring the packages: ``schedules/`` (mlx_schedules),
``trainers/`` (trainers) and ``scripts/`` (the scripts). Each folder keeps its own helper
module (``schedule_reference``, ``helpers_trainer``, ``helpers_scripts``), imported by its
basename: pytest puts a test's folder on ``sys.path`` (the default "prepend" import mode), so
basenames must stay unique across folders.
"""

from __future__ import annotations

try:
    import matplotlib
except ImportError:  # the schedule and trainer tests run without the plotting extra
    matplotlib = None
else:
    matplotlib.use("Agg")  # no display on CI machines; every figure is written to a file
