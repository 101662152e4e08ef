"""The installed ``mlx-schedules`` command: its overview, its subcommands (the binding names),
and the errors of a wrong subcommand or an abbreviated flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainers.cli import SUBCOMMANDS, main

# The binding subcommand names (the contract's "Command line (installed)" section) that this
# build provides, each with the module that implements it.
CONTRACT = ("compare", "train", "train-lm", "lora", "compare-lm", "range-test", "audit", "plot")


def test_overview_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in CONTRACT:
        assert name in SUBCOMMANDS
        assert f"\n  {name} " in out


def test_no_subcommand_shows_the_overview_and_fails(capsys):
    assert main([]) == 2
    assert "usage: mlx-schedules SUBCOMMAND" in capsys.readouterr().out


def test_unknown_subcommand_is_named(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'trian'" in err and "train-lm" in err


@pytest.mark.parametrize("argv, flag", [(["train", "--step", "20"], "--step"),
                                        (["train-lm", "--step", "20"], "--step"),
                                        (["lora", "--iter", "20"], "--iter"),
                                        (["audit", "runs/x", "--js"], "--js")])
def test_abbreviated_flags_are_refused(argv, flag, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {' '.join(argv[argv.index(flag):])}" in err
    assert f"mlx-schedules {argv[0]}" in err  # the program as the user typed it


def test_python_dash_m_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "trainers.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    import trainers

    assert out.strip() == f"mlx-schedules {trainers.__version__}"
