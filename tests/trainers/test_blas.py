"""The fast BLAS path: library lookup, the mlx-fastblas launcher, and unchanged results."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trainers.blas import ENV_VAR, fast_blas_env, find_openblas, main

# A matmul and one compiled training step; prints the results as JSON.
PROBE = r"""
import json, numpy as np, mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
from trainers.step import make_train_step
rng = np.random.default_rng(0)
a = rng.normal(size=(128, 784)).astype(np.float32)
b = rng.normal(size=(784, 512)).astype(np.float32)
prod = np.array(mx.array(a) @ mx.array(b))
mx.random.seed(0)
model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
opt = optim.SGD(learning_rate=0.1, momentum=0.9)
opt.init(model.trainable_parameters())
loss_fn = lambda m, x, y: nn.losses.cross_entropy(m(x), y, reduction="mean")
step = make_train_step(model, loss_fn, opt)
y = mx.array(rng.integers(0, 10, 128))
losses = [step((mx.array(a), y))[0].item() for _ in range(3)]
print(json.dumps({"prod": prod.ravel()[::997].tolist(), "norm": float(np.abs(prod).sum()),
                  "losses": losses, "w": np.array(model.layers[0].weight).ravel()[::101].tolist()}))
"""


def _probe(env):
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_fast_blas_gives_the_same_results():
    lib = find_openblas({k: v for k, v in os.environ.items() if k != ENV_VAR})
    if lib is None:
        pytest.skip("libopenblas.so.0 not installed")
    plain = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ENV_VAR)}
    fast, used = fast_blas_env({**plain, ENV_VAR: lib})
    assert used == lib and fast["LD_PRELOAD"].split(":")[0] == lib
    a, b = _probe(plain), _probe(fast)
    np.testing.assert_allclose(a["prod"], b["prod"], rtol=1e-4, atol=1e-3)
    assert a["norm"] == pytest.approx(b["norm"], rel=1e-5)
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-4)
    np.testing.assert_allclose(a["w"], b["w"], rtol=1e-4, atol=1e-6)


def test_env_override_and_missing_library(tmp_path):
    fake = tmp_path / "libopenblas.so.0"
    fake.write_bytes(b"")
    assert find_openblas({ENV_VAR: str(fake)}) == str(fake)
    assert find_openblas({ENV_VAR: str(tmp_path / "absent.so")}) is None
    assert find_openblas({ENV_VAR: ""}) is None
    env, lib = fast_blas_env({ENV_VAR: str(fake), "LD_PRELOAD": "other.so"})
    assert lib == str(fake) and env["LD_PRELOAD"] == f"{fake}:other.so"


def test_launcher_warns_and_still_runs_without_the_library(tmp_path):
    env = {**os.environ, ENV_VAR: str(tmp_path / "absent.so")}
    env.pop("LD_PRELOAD", None)
    out = subprocess.run(
        [sys.executable, "-m", "trainers.blas", sys.executable, "-c",
         "import os; print(os.environ.get('LD_PRELOAD', 'none'))"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout.strip() == "none"
    assert "warning" in out.stderr and "running without the fast BLAS path" in out.stderr


def test_launcher_sets_ld_preload(tmp_path):
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"")
    out = subprocess.run(
        [sys.executable, "-m", "trainers.blas", "sh", "-c", "echo $LD_PRELOAD"],
        env={**os.environ, ENV_VAR: str(fake), "LD_PRELOAD": ""}, capture_output=True,
        text=True, timeout=60,
    )
    assert out.stdout.strip() == str(fake)


def test_launcher_usage(capsys):
    assert main([]) == 2
    assert "usage: mlx-fastblas" in capsys.readouterr().out
