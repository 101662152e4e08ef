#!/usr/bin/env bash
# One entry point for a fresh machine: set up .venv from the project's own files, then
#   bash scripts/dev.sh main   run the main job (compare schedules on the embedded data)
#   bash scripts/dev.sh test   run the test suite (what CI runs)
#   bash scripts/dev.sh docs   build the documentation site into docs/_build/html, warnings as
#                              errors (open docs/_build/html/index.html)
# Extra arguments are passed on (to compare_schedules.py, to pytest or to sphinx-build).
set -euo pipefail
cd "$(dirname "$0")/.."

task="${1:-}"
[ $# -gt 0 ] && shift
case "$task" in
  main) extra="scripts" ;;
  # The docs extra holds the tools of the checks of what users get (browser, mypy, wheel).
  test) extra="dev,docs" ;;
  docs) extra="docs" ;;
  *) echo "usage: bash scripts/dev.sh {main|test|docs} [args...]" >&2; exit 2 ;;
esac

# Linux: MLX's CPU wheel links a slow reference BLAS; Debian's OpenBLAS makes matmuls
# ~17x faster when preloaded (see README, "Fast BLAS on Linux"). Install it when we can.
if [ "$(uname -s)" = "Linux" ] && ! ldconfig -p 2>/dev/null | grep -q 'libopenblas.so.0'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing libopenblas0-pthread (fast BLAS for MLX on Linux)"
    (apt-get update -qq && apt-get install -y -qq libopenblas0-pthread >/dev/null) \
      || echo "== could not install libopenblas0-pthread; continuing with the slow BLAS"
  else
    echo "== tip: 'sudo apt-get install libopenblas0-pthread' makes MLX on Linux much faster"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing mlx-schedules[$extra] into .venv"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[$extra]"

# mlx-fastblas re-runs the command with OpenBLAS preloaded where it exists (a no-op elsewhere).
case "$task" in
  main) exec .venv/bin/mlx-fastblas .venv/bin/python scripts/compare_schedules.py "$@" ;;
  test) exec .venv/bin/mlx-fastblas .venv/bin/python -m pytest "$@" ;;
  # -E -a: every page read and written again, so every warning shows (and fails) every time.
  docs) exec .venv/bin/mlx-fastblas .venv/bin/python -m sphinx -W --keep-going -E -a -q \
          -b html docs docs/_build/html "$@" ;;
esac
