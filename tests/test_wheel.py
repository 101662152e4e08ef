"""What users install: the sdist and the wheel hold exactly the packages and data they need,
the wheel installs into a fresh virtual environment, and the README's quick start runs from
that installation (not from the checkout). Also: one version everywhere.

The build (the ``dist`` fixture of ``tests/conftest.py``, shared with ``tests/test_guide.py``)
uses ``python -m build`` (the ``docs`` extra) with its usual isolated environment; packages
come from pip's configured indexes and its cache, so a warm run takes well under two minutes.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import mlx_schedules
import trainers

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlx_schedules", "trainers")


def readme_quick_start(readme: Path) -> str:
    """The first ``python`` block under the README's "Quick start" heading."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^## Quick start\n.*?^```python\n(.*?)^```", text, re.M | re.S)
    assert match, f"{readme}: no ```python block under a '## Quick start' heading"
    return match.group(1)


#: data files the packages read at run time (declared as package data in pyproject.toml)
PACKAGE_DATA = ("trainers/experiments/source_table.md",)


def package_files() -> set[str]:
    """Every file the wheel must hold: the packages' modules, their py.typed markers and the
    data files they read."""
    files = set(PACKAGE_DATA)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and \
                    (path.suffix == ".py" or path.name == "py.typed"):
                files.add(path.relative_to(ROOT).as_posix())
    return files


#: what the docs show users (pages, the README, the example programs the site includes)
DOC_FILES = sorted([*(ROOT / "docs").rglob("*.md"), *(ROOT / "docs").rglob("*.rst"),
                    *(ROOT / "docs" / "examples").glob("*.py"), ROOT / "README.md"])
_IMPORT = re.compile(r"^\s*(?:>>>\s*)?(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)


def module_file(module: str) -> set[str]:
    """The files that may hold ``module`` in the wheel (``a/b.py`` or ``a/b/__init__.py``)."""
    base = module.replace(".", "/")
    return {f"{base}.py", f"{base}/__init__.py"}


def test_the_wheel_holds_every_module_the_docs_import():
    shipped = package_files()
    imported = {}
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text, f"{path.relative_to(ROOT)} edits or mentions sys.path"
        for match in _IMPORT.finditer(text):
            module = match.group(1) or match.group(2)
            top = module.split(".")[0]
            assert top not in ("scripts", "experiments"), \
                f"{path.relative_to(ROOT)} imports {module} (not installed)"
            if top in PACKAGES:
                imported.setdefault(module, path.relative_to(ROOT).as_posix())
    assert "trainers" in imported and "mlx_schedules" in imported  # the scan finds imports
    missing = {m: page for m, page in imported.items() if not module_file(m) & shipped}
    assert missing == {}, f"modules the docs import that the wheel does not hold: {missing}"


def test_one_version_everywhere():
    version = mlx_schedules.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", version), version
    assert trainers.__version__ == version
    assert metadata.version("mlx-schedules") == version
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(rf'^version = "{re.escape(version)}"$', pyproject, re.M)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), \
        f"CHANGELOG.md has no '## {version}' section"


def test_quick_start_is_found_in_the_readme():
    code = readme_quick_start(ROOT / "README.md")
    compile(code, "README.md quick start", "exec")  # a whole program, not a fragment
    assert "import mlx_schedules" in code or "from mlx_schedules import" in code


def one_cycle_reference(t: int, max_lr: float, total: int) -> tuple[float, float]:
    """PyTorch OneCycleLR's rate and momentum at step t (cosine, pct_start 0.3), float64."""
    up = 0.3 * total - 1

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

    assert t <= up
    return anneal(max_lr / 25, max_lr, t / up), anneal(0.95, 0.85, t / up)


@pytest.mark.slow
def test_wheel_holds_exactly_the_packages(dist: Path):
    (wheel,) = dist.glob("mlx_schedules-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    info = [n for n in names if n.split("/")[0].endswith(".dist-info")]
    assert set(names) - set(info) == package_files()
    assert {n.split("/")[0] for n in info} == {f"mlx_schedules-{mlx_schedules.__version__}"
                                              ".dist-info"}
    entry_points = zipfile.ZipFile(wheel).read(
        f"mlx_schedules-{mlx_schedules.__version__}.dist-info/entry_points.txt").decode()
    assert "mlx-fastblas = trainers.blas:main" in entry_points
    assert "mlx-schedules = trainers.cli:main" in entry_points


@pytest.mark.slow
def test_sdist_holds_the_sources_and_no_build_output(dist: Path):
    (sdist,) = dist.glob("mlx_schedules-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert package_files() <= names
    assert {"pyproject.toml", "README.md", "LICENSE"} <= names
    leaked = sorted(n for n in names if n.split("/")[0] in (".venv", "docs", "runs", "dist",
                                                             "build") or "__pycache__" in n)
    assert leaked == []


@pytest.mark.slow
def test_readme_quick_start_runs_from_the_installed_wheel(dist: Path, tmp_path: Path):
    (wheel,) = dist.glob("mlx_schedules-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600, env=env)
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]
    assert (venv / "bin" / "mlx-fastblas").exists()

    work = tmp_path / "elsewhere"  # not the checkout: nothing can be imported from it
    work.mkdir()
    code = readme_quick_start(ROOT / "README.md")
    script = work / "quick_start.py"
    script.write_text(code + "\nimport mlx_schedules, trainers\n"
                      "print('FROM', mlx_schedules.__file__, trainers.__file__)\n")
    run = subprocess.run([str(python), str(script)], cwd=work, capture_output=True,
                         text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    origin = run.stdout.split("FROM", 1)[1].split()
    assert all(Path(p).is_relative_to(venv) for p in origin), origin

    # The installed command, from a folder that is not the checkout: the overview, and a
    # subcommand that needs only the base install (a schedule drawn in the terminal).
    command = venv / "bin" / "mlx-schedules"
    overview = subprocess.run([str(command), "--help"], cwd=work, capture_output=True,
                              text=True, timeout=120, env=env)
    assert overview.returncode == 0 and "train-lm" in overview.stdout, overview.stderr
    chart = subprocess.run([str(command), "plot", "--schedule", "one_cycle", "--param",
                            "max_lr=0.1", "--param", "total_steps=100", "--text"], cwd=work,
                           capture_output=True, text=True, timeout=300, env=env)
    assert chart.returncode == 0, chart.stdout[-2000:] + chart.stderr[-2000:]
    assert "one_cycle" in chart.stdout

    if "one_cycle(0.1, total_steps)" in code and "total_steps = 1000" in code \
            and "range(3)" in code:
        # After three updates (0, 1, 2) the optimizer holds what update 2 used.
        values = [float(v) for v in re.findall(r"array\(([-+0-9.e]+)", run.stdout)]
        rate, momentum = one_cycle_reference(2, 0.1, 1000)
        assert values[:2] == [pytest.approx(rate, rel=1e-5),
                              pytest.approx(momentum, rel=1e-6)]
