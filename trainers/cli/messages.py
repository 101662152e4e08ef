"""What the training subcommands print about a run directory, in the command line's words.

The trainer's errors speak its Python API (``resume=True``, ``overwrite=True``,
``fit(..., allow_changes=...)``); a user of ``mlx-schedules`` types flags, so the subcommands
pass every such message through :func:`in_flag_words`. After Ctrl-C they print the exact
command that continues the run (:func:`report_interrupt`).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Sequence

from trainers.errors import TrainingInterrupted
from trainers.run_dir import RunDirectory

__all__ = ["INTERRUPTED", "fresh_start_refused", "in_flag_words", "occupied",
           "report_interrupt", "resume_command"]

#: the exit status after Ctrl-C (128 + SIGINT, as a shell reports it)
INTERRUPTED = 130

# Phrases of the trainer's messages and what the command line says instead (no DIR: filled in)
_API_WORDS = (
    (re.compile(r"Pass fit\(\.\.\., allow_changes=\(\.\.\.\)\) naming what you changed on "
                r"purpose\."),
     "The command line continues a run only with the settings it started with: start a new "
     "run instead (--overwrite, or another --run-dir)."),
    (re.compile(r"[Mm]ove them away, or pass overwrite='all' to delete everything in it"),
     "move them away, or choose another --run-dir"),
    (re.compile(r"\bresume=True\b"), "--resume {run_dir}"),
    (re.compile(r"\boverwrite=True\b"), "--overwrite"),
)


def resume_command(subcommand: str, run_dir: str, extra: Sequence[str] = ()) -> str:
    """The command that continues the run in ``run_dir``, quoted for a POSIX shell.

    Example:
        >>> resume_command("train", "runs/my run", ["--stop-after", "300"])
        "mlx-schedules train --resume 'runs/my run' --stop-after 300"
    """
    return shlex.join(["mlx-schedules", subcommand, "--resume", run_dir, *extra])


def in_flag_words(message: str, run_dir: str) -> str:
    """A trainer message with its Python keywords replaced by the flags that do the same.

    Example:
        >>> in_flag_words("run directory 'runs/x' already holds a run; pass resume=True to "
        ...               "continue it or overwrite=True to replace it", "runs/x")
        "run directory 'runs/x' already holds a run; pass --resume runs/x to continue it or \
--overwrite to replace it"
    """
    for pattern, words in _API_WORDS:
        message = pattern.sub(words.replace("{run_dir}", shlex.quote(run_dir)), message)
    return message


def occupied(run_dir: str) -> str:
    """The refusal of a fresh start in a run directory that holds a run.

    Example:
        >>> occupied("runs/x")
        'run directory runs/x already holds a run; pass --overwrite to replace it, or \
--resume runs/x to continue it'
    """
    return (f"run directory {run_dir} already holds a run; pass --overwrite to replace it, "
            f"or --resume {shlex.quote(run_dir)} to continue it")


def fresh_start_refused(run_dir: str) -> str | None:
    """Why a fresh start (no ``--resume``, no ``--overwrite``) may not use ``run_dir``, in flag
    words, or ``None`` when it may. Asked before anything is loaded or printed, with the
    trainer's own rule (:meth:`trainers.run_dir.RunDirectory.refuse_if_occupied`), which
    changes nothing; the trainer asks again when it starts.

    Example:
        >>> import tempfile
        >>> fresh_start_refused(tempfile.mkdtemp()) is None
        True
    """
    try:
        RunDirectory(run_dir).refuse_if_occupied(resume=False, overwrite=False)
    except (ValueError, RuntimeError) as e:
        message = str(e)
        return occupied(run_dir) if "already holds a run" in message \
            else in_flag_words(message, run_dir)
    return None


def report_interrupt(error: KeyboardInterrupt, subcommand: str, run_dir: str,
                     extra: Sequence[str] = ()) -> int:
    """Print what Ctrl-C left behind and how to continue; return the exit status (130).

    ``error`` is the trainer's :class:`~trainers.errors.TrainingInterrupted` (a clean stop
    with a checkpoint) or a plain ``KeyboardInterrupt`` (a second Ctrl-C: the newest complete
    checkpoint, if any, is still a resume point).

    Example:
        >>> import contextlib, io
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     report_interrupt(TrainingInterrupted(7, "runs/x/checkpoints/step_00000007", 7),
        ...                      "train", "runs/x")
        130
        >>> print(err.getvalue(), end="")
        interrupted after 7 steps: checkpoint saved. Continue the run with:
          mlx-schedules train --resume runs/x
    """
    command = resume_command(subcommand, run_dir, extra)
    if isinstance(error, TrainingInterrupted):
        if error.checkpoint is None:
            print(f"interrupted after {error.step} steps: no checkpoint was saved (this run "
                  "saves none), so it cannot be continued; start it again with --overwrite",
                  file=sys.stderr)
        else:
            print(f"interrupted after {error.step} steps: checkpoint saved. Continue the run "
                  f"with:\n  {command}", file=sys.stderr)
    else:
        print(f"aborted (Ctrl-C twice): the run continues from its newest complete checkpoint "
              f"with:\n  {command}", file=sys.stderr)
    return INTERRUPTED
