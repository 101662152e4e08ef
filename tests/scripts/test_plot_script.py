"""scripts/plot_schedules.py end to end, and the text chart it uses without matplotlib."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from helpers_scripts import assert_png, load_script

import mlx_schedules as ms

plot = load_script("plot_schedules")


def _name(item):
    return item["name"] if isinstance(item, dict) else item[1].name


def test_gallery_covers_every_registered_schedule():
    drawn = {_name(item) for item in plot.gallery(100)} | set(plot._SHOWN_WITH)
    assert set(ms.schedule_names()) <= drawn


def test_gallery_follows_the_registry(monkeypatch):
    # the panels come in the registry's order, and a new factory without an example fails
    names = [_name(item) for item in plot.gallery(100)]
    assert names == sorted(names)
    monkeypatch.setattr(ms, "schedule_names", lambda: ["constant", "brand_new"])
    with pytest.raises(ValueError, match=r"no gallery example for \['brand_new'\]"):
        plot.gallery(100)


def test_gallery_configs_build_at_short_and_long_runs():
    for steps in (20, 100, 10**6):
        for item in plot.gallery(steps):
            schedule = ms.from_config(item) if isinstance(item, dict) else item[1]
            assert np.all(np.isfinite(schedule.values([0, steps // 2, steps - 1])))


def test_titles_name_nested_schedules_and_mappings():
    title = plot._title({"name": "warmup", "steps": 10, "shape": "log",
                         "schedule": {"name": "cosine_decay", "init": 0.1, "decay_steps": 5}})
    assert title == "warmup(steps=10, shape=log, schedule=cosine_decay(..))"
    title = plot._title({"name": "piecewise_interpolate", "init": 0.1,
                         "boundaries_and_scales": {5: 0.5, 9: 2.0}})
    assert "boundaries_and_scales={5: 0.5, 9: 2}" in title.replace("\n", " ")


def test_momentum_matches_the_cycle_it_goes_with():
    rate = {"name": "cyclic_lr", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 5,
            "mode": "triangular2"}
    momentum = plot.momentum_for(rate)
    assert momentum["step_size_up"] == 5 and momentum["mode"] == "triangular2"
    assert plot.momentum_for({"name": "cosine_decay", "init": 0.1, "decay_steps": 5}) is None


@pytest.mark.slow
def test_default_figure_draws_every_family(tmp_path, capsys):
    out = tmp_path / "all.png"
    assert plot.main(["--steps", "200", "--out", str(out)]) == 0
    assert_png(str(out), min_bytes=50_000)
    assert f"{len(plot.gallery(200))} schedule(s)" in capsys.readouterr().out


def test_one_schedule_by_name_and_params(tmp_path):
    out = tmp_path / "oc.png"
    assert plot.main(["--schedule", "one_cycle", "--param", "max_lr=0.1",
                      "--param", "total_steps=1000", "--out", str(out)]) == 0
    assert_png(str(out))


def test_schedule_from_a_train_config(tmp_path):
    config = {"optimizer": {"name": "SGD",
                            "learning_rate": {"name": "cosine_decay", "init": 0.1,
                                              "decay_steps": 50},
                            "momentum": 0.9}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "c.png"
    assert plot.main(["--config", str(path), "--out", str(out)]) == 0
    assert_png(str(out))


def test_text_preview_needs_no_matplotlib(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert plot.main(["--schedule", "one_cycle", "--param", "max_lr=0.1",
                      "--param", "total_steps=100", "--text"]) == 0
    out = capsys.readouterr().out
    assert "one_cycle(max_lr=0.1, total_steps=100)" in out
    assert "its momentum" in out and "0.95" in out


def test_png_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot.main(["--schedule", "constant", "--param", "value=0.1",
                      "--out", str(tmp_path / "x.png")]) == 2
    assert "need matplotlib" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--schedule", "one_cycel"], ["unknown schedule 'one_cycel'", "one_cycle"]),
    (["--schedule", "one_cycle", "--param", "max_lr=-1", "--param", "total_steps=10"],
     ["max_lr"]),
    (["--schedule", "constant", "--param", "value=1e39"], ["value"]),
    (["--param", "max_lr=0.1"], ["--param needs --schedule"]),
    (["--steps", "1"], ["--steps must be >= 2"]),
])
def test_bad_arguments_are_reported(capsys, argv, words):
    assert plot.main([*argv, "--text"]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_text_chart_draws_each_series():
    from trainers.experiments.text_chart import text_chart

    chart = text_chart({"a": np.linspace(0, 1, 50), "b": np.linspace(1, 0, 50)}, width=20,
                       height=5)
    assert "* a" in chart and "o b" in chart
    with pytest.raises(ValueError, match="no finite value"):
        text_chart({"a": [float("nan")]})
