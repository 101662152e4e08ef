"""The public API is typed: ``py.typed`` ships, every public signature is annotated, and
mypy finds no error in ``mlx_schedules`` and ``trainers``.

mypy needs the ``docs`` extra; without it the mypy test is skipped, except under CI.
"""

from __future__ import annotations

import collections
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import mlx_schedules
import trainers

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (mlx_schedules, trainers)

# Third-party libraries without annotations (tensorboardX's protobuf modules) are taken as
# Any; everything in the two packages is checked. The cache outlives the test, like MLX's
# compile cache, so a second run takes seconds instead of a minute.
MYPY_ARGS = ["--ignore-missing-imports", "--show-error-codes", "--no-color-output",
             "--no-pretty", "--cache-dir", str(Path(tempfile.gettempdir()) /
                                                   "mlx-schedules-mypy-cache")]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_py_typed_marker_ships(package):
    marker = Path(package.__file__).with_name("py.typed")
    assert marker.is_file(), f"{marker} is missing: type checkers would ignore the annotations"


def unannotated(obj, qualname: str) -> list[str]:
    """Parameters and returns of a public callable that carry no annotation."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    missing = [f"{qualname}({p.name})" for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    if signature.return_annotation is inspect.Signature.empty and \
            not qualname.endswith(".__init__"):
        missing.append(f"{qualname} -> ?")
    return missing


def public_callables(package):
    for name in package.__all__:
        obj = getattr(package, name)
        if inspect.isclass(obj):
            if "__init__" in vars(obj):
                yield f"{package.__name__}.{name}.__init__", obj.__init__
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not inspect.isfunction(member):
                    continue
                yield f"{package.__name__}.{name}.{attr}", member
        elif inspect.isfunction(obj):
            yield f"{package.__name__}.{name}", obj


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_public_signature_is_annotated(package):
    missing = [m for qualname, obj in public_callables(package)
               for m in unannotated(obj, qualname)]
    assert missing == [], f"{len(missing)} annotations missing: {missing}"


def mypy_errors(output: str) -> collections.Counter:
    """Errors per file in mypy's output (``path:line: error: ...``)."""
    return collections.Counter(m.group(1) for m in
                               re.finditer(r"^([^\s:]+\.py):\d+: error:", output, re.M))


def test_mypy_error_counter_reads_mypy_output():
    output = ("trainers/a.py:3: error: X  [arg-type]\ntrainers/a.py:9: note: see\n"
              "mlx_schedules/b.py:1: error: Y  [misc]\ntrainers/a.py:12: error: Z  [misc]\n"
              "Found 3 errors in 2 files (checked 35 source files)\n")
    assert mypy_errors(output) == {"trainers/a.py": 2, "mlx_schedules/b.py": 1}


@pytest.mark.slow
def test_mypy_is_clean():
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("CI"):
            pytest.fail("mypy is not installed: pip install -e '.[docs]'")
        pytest.skip("needs the docs extra: pip install -e '.[docs]'")
    result = subprocess.run([sys.executable, "-m", "mypy", *MYPY_ARGS, "mlx_schedules",
                             "trainers"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    errors = mypy_errors(result.stdout)
    per_file = "\n".join(f"  {n:3d}  {path}" for path, n in errors.most_common())
    assert result.returncode == 0 and not errors, (
        f"mypy: {sum(errors.values())} errors\n{per_file}\n\n{result.stdout[-6000:]}"
        f"{result.stderr[-2000:]}")
