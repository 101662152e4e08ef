"""The fast BLAS path on Linux: preload Debian's OpenBLAS under MLX's CPU backend.

The ``mlx[cpu]`` wheel for Linux links a reference BLAS: a 128x784 @ 784x512 matmul takes about
17 ms, against about 0.5 ms when ``libopenblas.so.0`` (Debian package ``libopenblas0-pthread``)
is named in ``LD_PRELOAD``. The ``mlx-fastblas`` console script runs a command that way::

    mlx-fastblas python -m pytest
    mlx-fastblas python scripts/bench_trainer.py

Set ``MLX_FASTBLAS_LIB=/path/to/libopenblas.so.0`` to choose the library, or
``MLX_FASTBLAS_LIB=`` (empty) to run without it. When no library is found, or not on Linux, the
command still runs, after a warning on stderr.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence

__all__ = ["ENV_VAR", "SEARCH_PATHS", "fast_blas_env", "find_openblas", "main"]

ENV_VAR = "MLX_FASTBLAS_LIB"

# Debian/Ubuntu multiarch locations (pthread build first), then other common layouts.
SEARCH_PATHS = tuple(
    f"/usr/lib/{arch}-linux-gnu/{sub}libopenblas.so.0"
    for arch in ("x86_64", "aarch64")
    for sub in ("openblas-pthread/", "openblas-openmp/", "openblas-serial/", "")
) + ("/usr/lib64/libopenblas.so.0", "/usr/lib/libopenblas.so.0", "/usr/local/lib/libopenblas.so.0")


def find_openblas(environ: Mapping[str, str] | None = None) -> str | None:
    """Path of ``libopenblas.so.0`` to preload, or ``None`` (not Linux, or not installed).

    ``MLX_FASTBLAS_LIB`` overrides the search: a path is used if it exists (``None`` if not);
    an empty value disables the fast path.

    Example:
        >>> find_openblas({"MLX_FASTBLAS_LIB": ""}) is None
        True
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if ENV_VAR in env:
        path = env[ENV_VAR]
        return path if path and os.path.isfile(path) else None
    if platform.system() != "Linux":
        return None
    for path in SEARCH_PATHS:
        if os.path.isfile(path):
            return path
    return None


def fast_blas_env(environ: dict[str, str] | None = None) -> tuple[dict[str, str], str | None]:
    """A copy of the environment with OpenBLAS prepended to ``LD_PRELOAD``, and the library
    path (``None`` and an unchanged copy when there is none).

    Example:
        >>> env, lib = fast_blas_env({"MLX_FASTBLAS_LIB": "", "LD_PRELOAD": "x.so"})
        >>> env["LD_PRELOAD"], lib
        ('x.so', None)
    """
    env = dict(os.environ if environ is None else environ)
    lib = find_openblas(env)
    if lib is not None:
        preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and p != lib]
        env["LD_PRELOAD"] = ":".join([lib, *preload])
    return env, lib


def main(argv: Sequence[str] | None = None) -> int:
    """``mlx-fastblas COMMAND [ARGS...]``: run COMMAND with OpenBLAS preloaded (Linux)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print("usage: mlx-fastblas COMMAND [ARGS...]   (e.g. mlx-fastblas python -m pytest)")
        return 0 if args else 2
    env, lib = fast_blas_env()
    if lib is None:
        reason = (
            f"not on Linux ({platform.system()})" if platform.system() != "Linux"
            else "libopenblas.so.0 not found (apt-get install libopenblas0-pthread, or set "
            f"{ENV_VAR})"
        )
        print(f"mlx-fastblas: warning: {reason}; running without the fast BLAS path",
              file=sys.stderr)
    try:
        os.execvpe(args[0], args, env)
    except OSError as e:
        print(f"mlx-fastblas: cannot run {args[0]!r}: {e}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
