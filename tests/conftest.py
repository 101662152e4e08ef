"""Shared pytest settings for the suite.

The tests live in folders mirroring the packages: ``schedules/`` (mlx_schedules),
``trainers/`` (trainers) and ``scripts/`` (the scripts). Each folder keeps its own helper
module (``schedule_reference``, ``helpers_trainer``, ``helpers_scripts``), imported by its
basename: pytest puts a test's folder on ``sys.path`` (the default "prepend" import mode), so
basenames must stay unique across folders.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:
    import matplotlib
except ImportError:  # the schedule and trainer tests run without the plotting extra
    matplotlib = None
else:
    matplotlib.use("Agg")  # no display on CI machines; every figure is written to a file


def _launcher() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "mlx.launch")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("mlx.launch")
    return [found] if found else [sys.executable, "-m", "mlx.launch"]


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (the ring backend listens on one port per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.fixture
def mlx_launch():
    """``mlx_launch(n)``: the command prefix that runs a program on ``n`` local ranks (ring
    backend, a fresh pair of ports each call); skips when MLX has no distributed support."""
    import mlx.core as mx

    if not mx.distributed.is_available():
        pytest.skip("mlx built without distributed support")
    return lambda n: [*_launcher(), "-n", str(n), "--backend", "ring", "-p",
                      str(_free_port_pair())]


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the sdist and the wheel, built once per session from this checkout
    (``python -m build``: the ``docs`` extra; skipped without it, except under CI)."""
    if os.environ.get("CI") is None:
        pytest.importorskip("build", reason="needs the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel",
                             "--outdir", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out
