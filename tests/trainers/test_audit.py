"""The rate audit (trainers.audit): passes on honest runs, names the first wrong row."""

from __future__ import annotations

import json
import math

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import linear_model, mse, read_jsonl, regression_data

import mlx_schedules as ms
from trainers import PAUSE, ArrayBatches, ReduceLROnPlateau, Trainer
from trainers.audit import audit_run


def constant_metric(model, x, y):
    return mx.mean(y * 0.0) + 1.0


def cosine(t: int, peak: float, steps: int) -> float:
    return 0.5 * peak * (1 + math.cos(math.pi * min(t, steps) / steps))


def train(run_dir, optimizer, steps, *, callbacks=(), resume=False, allow=(), **kwargs):
    x, y = regression_data(32, 4, 2)
    return Trainer(linear_model(4, 2), mse, optimizer, ArrayBatches((x, y), 8), run_dir=run_dir,
                   max_steps=steps, report_every=0, log_every=4, compile=False,
                   callbacks=list(callbacks),
                   **kwargs).fit(resume=resume, allow_changes=allow)


def logged(run_dir, column="learning_rate"):
    return [r[column] for r in read_jsonl(run_dir / "log.jsonl") if r["kind"] == "train"]


def test_an_honest_run_passes_bit_for_bit(tmp_path):
    opt = optim.SGD(learning_rate=ms.cosine_decay(0.1, 20), momentum=0.9)
    ms.schedule_hyperparameters(opt, momentum=ms.linear_schedule(0.8, 0.9, 10))
    train(tmp_path, opt, 20)
    np.testing.assert_allclose(logged(tmp_path), [cosine(t, 0.1, 20) for t in range(20)],
                               rtol=1e-6, atol=1e-8)  # the run is what the test thinks
    report = audit_run(tmp_path)
    assert report.ok and report.first_mismatch is None
    assert [(c.column, c.status, c.exact) for c in report.columns] == [
        ("learning_rate", "ok", 20), ("momentum", "ok", 20)]


def test_a_constant_rate_is_audited(tmp_path):
    train(tmp_path, optim.Adam(learning_rate=3e-3), 8)
    report = audit_run(tmp_path)
    assert report.ok and report.columns[0].exact == 8


def test_a_resume_that_restarted_the_schedule_fails_at_the_resume_step(tmp_path):
    total, cut = 24, 12

    def stop(event):
        return PAUSE if event["event"] == "train" and event["step"] == cut - 1 else None

    train(tmp_path, optim.SGD(learning_rate=ms.cosine_decay(0.1, total)), total,
          callbacks=[stop], checkpoint_every=cut)
    # the resumed optimizer's schedule starts over (the bug peers have had): t -> cos(t - 12)
    restarted = ms.join_schedules([ms.cosine_decay(0.1, total)] * 2, [cut])
    train(tmp_path, optim.SGD(learning_rate=restarted), total, resume=True,
          allow=("schedules",), checkpoint_every=cut)
    report = audit_run(tmp_path)
    first = report.first_mismatch
    assert not report.ok and first.step == cut and first.column == "learning_rate"
    assert first.expected == pytest.approx(cosine(cut, 0.1, total), rel=1e-6)  # 0.05
    assert first.logged == pytest.approx(0.1, rel=1e-6)  # the schedule's start again
    assert "allow_changes" in report.summary()  # the note on the changed schedules


def test_a_schedule_sized_for_another_length_fails_at_its_first_differing_step(tmp_path):
    train(tmp_path, optim.SGD(learning_rate=ms.cosine_decay(0.1, 30)), 20)
    config = json.loads((tmp_path / "config.json").read_text())
    config["schedules"]["learning_rate"]["config"]["decay_steps"] = 20  # what it claims
    (tmp_path / "config.json").write_text(json.dumps(config))
    first = audit_run(tmp_path).first_mismatch
    # cos(pi/20) and cos(pi/30) differ from step 1 on (step 0 is 0.1 for both)
    assert (first.step, first.column) == (1, "learning_rate")
    assert first.expected == pytest.approx(cosine(1, 0.1, 20), rel=1e-6)
    assert first.logged == pytest.approx(cosine(1, 0.1, 30), rel=1e-6)


def test_a_plateau_scaled_rate_is_reported_as_such(tmp_path):
    total = 18
    x, y = regression_data(32, 4, 2)
    opt = optim.SGD(learning_rate=ms.cosine_decay(0.1, total))
    plateau = ReduceLROnPlateau(opt, "eval_const", patience=1, factor=0.5)
    train(tmp_path, opt, total, callbacks=[plateau], eval_data=[(x, y)], eval_every=3,
          metrics={"const": constant_metric}, checkpoint_every=3)
    # evals at 3 (best), 6, 9 (x0.5), 12, 15 (x0.5)
    factor = [1.0 if t < 9 else 0.5 if t < 15 else 0.25 for t in range(total)]
    np.testing.assert_allclose(logged(tmp_path), [cosine(t, 0.1, total) * f for t, f in
                                                  enumerate(factor)], rtol=1e-6, atol=1e-8)
    report = audit_run(tmp_path)
    column = report.columns[0]
    assert report.ok and column.status == "plateau" and column.floor is None
    assert column.factors == [(0, 1.0), (9, 0.5), (15, 0.25)]
    assert "reduce-on-plateau" in report.summary()


def test_a_plateau_floor_and_parameter_groups(tmp_path):
    total, floor = 24, 0.004
    x, y = regression_data(32, 4, 2)
    parts = [optim.SGD(learning_rate=ms.cosine_decay(0.1, total)), optim.SGD(0.05)]
    opt = optim.MultiOptimizer(parts, [lambda path, _: path == "bias"])
    plateau = ReduceLROnPlateau(opt, "eval_const", patience=0, factor=0.1, min_lr=floor)
    train(tmp_path, opt, total, callbacks=[plateau], eval_data=[(x, y)], eval_every=3,
          metrics={"const": constant_metric}, checkpoint_every=6)
    report = audit_run(tmp_path)
    assert report.ok, report.summary()
    first, second = report.columns
    assert (first.column, first.status, first.floor) == ("learning_rate/0", "plateau",
                                                         pytest.approx(floor))
    # group 0: reductions at 6 and 9, then its rate sits at the floor (test_features has the
    # float64 sequence); group 1, a constant 0.05: x0.1 at 6, then 0.005 -> 0.004 at 9
    # from 9 on the rate sits at the floor: the factor is known where a checkpoint saved it
    # (steps 12 and 18; keep_checkpoints=3 left 12, 18, 24)
    assert first.factors == [(0, 1.0), (6, pytest.approx(0.1)), (9, pytest.approx(0.01))]
    assert second.status == "plateau" and second.floor == pytest.approx(floor)
    assert second.factors == [(0, 1.0), (6, pytest.approx(0.1)), (9, pytest.approx(0.01))]
    assert logged(tmp_path, "learning_rate/1")[-1] == pytest.approx(floor)


def test_a_wrong_factor_is_not_passed_as_a_plateau(tmp_path):
    train(tmp_path, optim.SGD(learning_rate=ms.cosine_decay(0.1, 12)), 12)
    rows = read_jsonl(tmp_path / "log.jsonl")
    for row in rows[7:]:
        row["learning_rate"] *= 0.5  # halved at step 7, where no evaluation happened
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = audit_run(tmp_path)
    assert report.first_mismatch.step == 7 and report.columns[0].status == "mismatch"


def test_a_probe_described_schedule_is_not_audited(tmp_path):
    train(tmp_path, optim.SGD(learning_rate=optim.cosine_decay(0.1, 12)), 12)  # MLX's own
    report = audit_run(tmp_path)
    assert not report.ok and report.first_mismatch is None
    assert report.columns[0].status == "not audited"
    assert "probe values" in report.columns[0].reason


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        audit_run(tmp_path)
