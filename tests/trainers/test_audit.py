"""The rate audit (trainers.audit): passes on honest runs, names the first wrong row."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import shutil

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import linear_model, mse, one_cycle_reference, read_jsonl, regression_data

import mlx_schedules as ms
from trainers import PAUSE, ArrayBatches, ReduceLROnPlateau, Trainer
from trainers.audit import AuditInputError, audit_run


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


def test_a_compiled_run_of_several_schedule_families_passes_bit_for_bit(tmp_path):
    """The rates a compiled step used (the schedule fused into the step) equal the audit's
    eager evaluation bit for bit, for composed, cyclic and exponential schedules."""
    x, y = regression_data(32, 4, 2)
    warm = ms.warmup(ms.cosine_decay(0.1, 20), 4)
    parts = [optim.SGD(learning_rate=warm, momentum=0.9),
             optim.Adam(learning_rate=ms.exponential_decay(3e-3, 0.9, end=1e-4))]
    ms.schedule_hyperparameters(parts[0], momentum=ms.cyclic_momentum(0.85, 0.95, 5))
    opt = optim.MultiOptimizer(parts, [lambda path, _: path == "bias"])
    Trainer(linear_model(4, 2), mse, opt, ArrayBatches((x, y), 8), run_dir=tmp_path,
            max_steps=24, report_every=0, log_every=8, compile=True).fit()
    np.testing.assert_allclose(logged(tmp_path, "learning_rate/1"),
                               [max(3e-3 * 0.9**t, 1e-4) for t in range(24)], rtol=1e-6)
    report = audit_run(tmp_path)
    assert report.ok, report.summary()
    assert [(c.column, c.exact) for c in report.columns] == [
        ("learning_rate/0", 24), ("momentum/0", 24), ("learning_rate/1", 24)]


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


# ---------------------------------------------------------------- tampered logs
# Baseline runs, built once with the real Trainer and copied for each test: a one-cycle rate
# and momentum with evaluations every 6 steps and checkpoints every 8 (run A), a float16 run
# whose overflowing batches are skipped (run B) and parameter groups, one of them a constant
# rate (run C). Every tampered value is computed here from the logged float32 with NumPy.
STEPS, EVAL_EVERY = 24, 6
FP16_STEPS, OVERFLOW_AT = 16, (1, 2, 3, 9)  # the updates tried at these steps overflow
FINAL_DIV = 1e5  # the last one-cycle rate is 4e-8: +4% of it is within the old 2-ulp margin


def build_one_cycle(run):
    x, y = regression_data(32, 4, 2)
    opt = optim.SGD(learning_rate=ms.one_cycle(0.1, STEPS, final_div_factor=FINAL_DIV),
                    momentum=0.9)
    ms.schedule_hyperparameters(opt, momentum=ms.one_cycle_momentum(STEPS))
    train(run, opt, STEPS, eval_data=[(x, y)], eval_every=EVAL_EVERY,
          metrics={"const": constant_metric}, checkpoint_every=8)


def build_float16(run):
    x, y = regression_data(32, 4, 2)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)] * (FP16_STEPS // 4)
    for t in OVERFLOW_AT:  # 1e5 overflows float16 (max 65504): the gradients are not finite
        batches[t] = (np.full_like(batches[t][0], 1e5), batches[t][1])
    opt = optim.SGD(learning_rate=ms.cosine_decay(0.1, FP16_STEPS), momentum=0.9)
    Trainer(linear_model(4, 2), mse, opt, batches, run_dir=run, max_steps=FP16_STEPS,
            report_every=0, log_every=4, compile=False, precision="float16",
            checkpoint_every=5).fit()
    return int(opt.state["step"].item())


def build_groups(run):
    parts = [optim.SGD(learning_rate=ms.cosine_decay(0.1, 16)), optim.Adam(2e-3)]
    opt = optim.MultiOptimizer(parts, [lambda path, _: path == "bias"])
    train(run, opt, 16, checkpoint_every=8)


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    build_one_cycle(root / "one_cycle")
    applied = build_float16(root / "float16")
    build_groups(root / "groups")
    return root, applied


@pytest.fixture
def runs(baselines, tmp_path):
    """Fresh copies of the baseline runs: ``runs(name)`` is a directory to tamper with."""
    root, _ = baselines

    def copy(name):
        target = tmp_path / name
        shutil.copytree(root / name, target)
        return target
    return copy


def line_of(step: int) -> int:
    """The line of log.jsonl holding run A's training row of ``step`` (an evaluation row
    follows every sixth step)."""
    return step + 1 + step // EVAL_EVERY


def write_logs(run, rows, *, csv_rows=None):
    """Rewrite log.jsonl (and log.csv, from ``csv_rows`` or the same rows) as the trainer
    writes them: one JSON object a line; CSV cells repr() for floats, empty when absent."""
    columns = json.loads((run / "config.json").read_text())["columns"]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(run / "log.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows if csv_rows is None else csv_rows:
            writer.writerow(["" if row.get(c) is None else
                             repr(row[c]) if isinstance(row[c], float) else row[c]
                             for c in columns])


def ulp(value: float, direction: float) -> float:
    """The float32 next to ``value`` towards ``direction``, independently of the audit."""
    return float(np.nextafter(np.float32(value), np.float32(direction)))


def train_index(rows, step):
    return next(i for i, r in enumerate(rows) if r["kind"] == "train" and r["step"] == step)


def test_the_baselines_are_what_the_tests_think(baselines, runs):
    _, applied = baselines
    run = runs("one_cycle")
    rows = read_jsonl(run / "log.jsonl")
    assert [line_of(t) for t in range(STEPS)] == [
        i + 1 for i, r in enumerate(rows) if r["kind"] == "train"]
    reference = [one_cycle_reference(t, 0.1, STEPS, final_div=FINAL_DIV) for t in range(STEPS)]
    np.testing.assert_allclose(logged(run), [r[0] for r in reference], rtol=1e-6)
    np.testing.assert_allclose(logged(run, "momentum"), [r[1] for r in reference], rtol=1e-6)
    assert logged(run)[-1] * 0.04 < 2 * np.spacing(np.float32(0.1))  # the old margin hid it
    assert audit_run(run).ok
    # float16: the skipped rows are the overflowing ones; the optimizer applied the others
    fp16 = runs("float16")
    skipped = [t for t, r in enumerate(read_jsonl(fp16 / "log.jsonl")) if r["skipped"]]
    assert skipped == list(OVERFLOW_AT) and applied == FP16_STEPS - len(OVERFLOW_AT)


def test_an_untampered_float16_run_with_overflow_skips_passes(runs):
    run = runs("float16")
    rows = read_jsonl(run / "log.jsonl")
    # row t shows the rate at t minus the skips before it; a skipped row repeats the last
    # applied rate (step 0's before any): computed here in float64 from the cosine formula
    want, skips = [], 0
    for t, row in enumerate(rows):
        applied = t - skips
        want.append(cosine(max(applied - 1, 0) if row["skipped"] else applied, 0.1,
                           FP16_STEPS))
        skips += bool(row["skipped"])
    np.testing.assert_allclose(logged(run), want, rtol=1e-6)
    report = audit_run(run)
    assert report.ok, report.summary()
    assert [(c.column, c.status, c.exact) for c in report.columns] == [
        ("learning_rate", "ok", FP16_STEPS)]


def test_a_float16_run_resumed_between_its_skips_passes(tmp_path):
    """Skips before and after a resume: the count of skips runs on through the resumed log."""
    x, y = regression_data(32, 4, 2)

    def session(run, resume, callbacks=()):
        batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)] * 4
        for t in (1, 2, 9):
            batches[t] = (np.full_like(batches[t][0], 1e5), batches[t][1])
        opt = optim.SGD(learning_rate=ms.cosine_decay(0.1, 16), momentum=0.9)
        Trainer(linear_model(4, 2), mse, opt, batches, run_dir=run, max_steps=16,
                report_every=0, log_every=2, compile=False, precision="float16",
                checkpoint_every=4, callbacks=list(callbacks)).fit(resume=resume)

    def stop(event):
        return PAUSE if event["event"] == "train" and event["step"] == 5 else None

    session(tmp_path / "split", False, [stop])
    session(tmp_path / "split", True)
    session(tmp_path / "whole", False)
    rows = read_jsonl(tmp_path / "split" / "log.jsonl")
    assert rows == read_jsonl(tmp_path / "whole" / "log.jsonl")
    assert [t for t, r in enumerate(rows) if r["skipped"]] == [1, 2, 9]
    report = audit_run(tmp_path / "split")
    assert report.ok and report.columns[0].exact == 16, report.summary()


def test_the_float16_loss_scale_column_follows_the_scaling_rule(runs):
    """2^15 at step 0, halved after each skipped update (never below 1): replayed here from
    the logged skips, in float64; then a change of one row's scale is caught at that row."""
    run = runs("float16")
    rows = read_jsonl(run / "log.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    want, scale = [], 2.0 ** 15
    for row in train:  # fewer than 2000 updates: the scale never grows here
        want.append(scale)
        scale = max(scale / 2, 1.0) if row["skipped"] else scale
    assert [r["loss_scale"] for r in train] == want
    assert len(set(want)) > 1  # the run did skip (and halve)
    assert audit_run(run).ok
    for step, value in ((0, 2.0 ** 14), (len(train) - 1, want[-1] * 2)):
        changed = [dict(r) for r in rows]
        changed[train_index(changed, step)]["loss_scale"] = value
        write_logs(run, changed)
        first = audit_run(run).first_mismatch
        assert (first.step, first.column, first.logged, first.expected) == (
            step, "loss_scale", value, want[step])
        assert first.row == train_index(changed, step) + 1
    write_logs(run, rows)


def tamper_rate(rows, step, column, change):
    row = rows[train_index(rows, step)]
    old = row[column]
    row[column] = change(old)
    return old, row[column]


def one_up(rows):
    old, new = tamper_rate(rows, 10, "learning_rate", lambda v: ulp(v, math.inf))
    return line_of(10), "learning_rate", new, old


def momentum_one_down(rows):
    old, new = tamper_rate(rows, 3, "momentum", lambda v: ulp(v, -math.inf))
    return line_of(3), "momentum", new, old


def last_rate_plus_4_percent(rows):
    old, new = tamper_rate(rows, STEPS - 1, "learning_rate",
                           lambda v: float(np.float32(v * 1.04)))
    return line_of(STEPS - 1), "learning_rate", new, old


def row_deleted(rows):
    del rows[train_index(rows, 9)]
    return line_of(9), "step", 10, 9


def first_row_deleted(rows):
    del rows[0]
    return 1, "step", 1, 0


def row_duplicated(rows):
    i = train_index(rows, 14)
    rows.insert(i, dict(rows[i]))
    return line_of(14) + 1, "step", 14, 15


def rows_swapped(rows):
    i = train_index(rows, 15)
    rows[i], rows[i + 1] = rows[i + 1], rows[i]
    return line_of(15), "step", 16, 15


def halved_at_an_evaluation(rows):
    """Halved from step 12, right after an evaluation, as a plateau callback would, but the
    run had none."""
    first = None
    for row in rows[train_index(rows, 12):]:
        if row["kind"] == "train":
            old = row["learning_rate"]
            row["learning_rate"] = float(np.float32(old) * np.float32(0.5))
            first = first or (row["learning_rate"], old)
    return line_of(12), "learning_rate", first[0], first[1]


TAMPERED = [one_up, momentum_one_down, last_rate_plus_4_percent, row_deleted,
            first_row_deleted, row_duplicated, rows_swapped, halved_at_an_evaluation]


@pytest.mark.parametrize("edit", TAMPERED, ids=[f.__name__ for f in TAMPERED])
def test_a_tampered_log_fails_at_its_first_wrong_row(runs, edit):
    run = runs("one_cycle")
    rows = read_jsonl(run / "log.jsonl")
    line, column, bad, good = edit(rows)
    write_logs(run, rows)  # both files agree: the rows themselves must give it away
    report = audit_run(run)
    first = report.first_mismatch
    assert not report.ok
    assert (first.row, first.column, first.logged, first.expected) == (line, column, bad, good)


def test_an_evaluation_row_out_of_place_or_repeated_fails(runs):
    run = runs("one_cycle")
    rows = read_jsonl(run / "log.jsonl")
    i = next(i for i, r in enumerate(rows) if r["kind"] == "eval")  # the evaluation at 6
    moved = rows[:i - 1] + [rows[i], rows[i - 1]] + rows[i + 1:]
    write_logs(run, moved)
    first = audit_run(run).first_mismatch
    assert (first.row, first.column, first.logged, first.expected) == (i, "step", 6, 5)
    write_logs(run, rows[:i + 1] + [rows[i]] + rows[i + 1:])
    first = audit_run(run).first_mismatch
    assert (first.row, first.column, first.logged) == (i + 2, "step", 6)
    assert "second evaluation" in first.detail


def test_a_rate_that_is_not_a_float32_number_fails(runs):
    run = runs("groups")
    rows = read_jsonl(run / "log.jsonl")
    good = rows[3]["learning_rate/0"]
    for bad in ("0.05", None, good + 1e-12):  # a string, a missing cell, a float64 in between
        rows[3]["learning_rate/0"] = bad
        write_logs(run, rows)
        first = audit_run(run).first_mismatch
        assert (first.row, first.column, first.logged, first.expected) == (
            4, "learning_rate/0", bad, good), bad


def test_rows_cut_from_the_end_fail_against_the_last_checkpoint(runs):
    run = runs("one_cycle")
    rows = read_jsonl(run / "log.jsonl")
    write_logs(run, rows[:-2])  # the last training row and the last evaluation
    first = audit_run(run).first_mismatch
    assert (first.column, first.source) == ("log_position", "checkpoints/step_00000024/meta.json")
    assert "shorter" in first.detail


def test_an_edited_log_csv_fails_at_the_edited_cell(runs):
    run = runs("one_cycle")
    rows = read_jsonl(run / "log.jsonl")
    edited = [dict(r) for r in rows]
    old, new = tamper_rate(edited, 20, "learning_rate", lambda v: ulp(v, math.inf))
    write_logs(run, rows, csv_rows=edited)
    first = audit_run(run).first_mismatch
    assert (first.file, first.row, first.column) == ("log.csv", line_of(20), "learning_rate")
    assert (first.logged, first.expected) == (repr(new), old)


def test_a_row_missing_from_log_csv_fails_there(runs):
    run = runs("one_cycle")
    rows = read_jsonl(run / "log.jsonl")
    write_logs(run, rows, csv_rows=[r for r in rows if not (r["kind"] == "train"
                                                             and r["step"] == 7)])
    first = audit_run(run).first_mismatch
    assert (first.file, first.row, first.column, first.logged, first.expected) == (
        "log.csv", line_of(7), "step", "8", 7)


def test_a_cleared_float16_skip_fails_at_that_row(runs):
    run = runs("float16")
    rows = read_jsonl(run / "log.jsonl")
    rows[1]["skipped"] = 0.0  # claims update 1 was applied: it would have used step 1's rate
    write_logs(run, rows)
    first = audit_run(run).first_mismatch
    # the first applied row after the skips (step 4) holds the rate of optimizer step 1
    assert (first.row, first.column, first.logged, first.expected) == (
        2, "learning_rate", rows[0]["learning_rate"], rows[4]["learning_rate"])


def test_a_one_ulp_change_of_any_rate_of_any_row_is_caught(runs):
    """Every row, every rate column, one float32 step up and down: each fails, at that row,
    naming the column, the changed value and the logged one."""
    for name in ("one_cycle", "float16", "groups"):
        run = runs(name)
        rows = read_jsonl(run / "log.jsonl")
        columns = [c for c in json.loads((run / "config.json").read_text())["columns"]
                   if c.split("/")[0] in ("learning_rate", "momentum")]
        assert columns  # learning_rate and momentum; learning_rate/0 and learning_rate/1
        tried = 0
        for i, row in enumerate(rows):
            if row["kind"] != "train":
                continue
            for column in columns:
                for direction in (math.inf, -math.inf):
                    changed = [dict(r) for r in rows]
                    changed[i][column] = ulp(row[column], direction)
                    write_logs(run, changed)
                    first = audit_run(run).first_mismatch
                    assert first is not None, (name, i, column, direction)
                    assert (first.row, first.column, first.logged, first.expected) == (
                        i + 1, column, changed[i][column], row[column]), (name, i, column)
                    tried += 1
        assert tried == 2 * len(columns) * sum(r["kind"] == "train" for r in rows)


# ---------------------------------------------------------------- unusable input
def test_a_config_without_columns_is_refused(runs):
    run = runs("groups")
    config = json.loads((run / "config.json").read_text())
    del config["columns"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(AuditInputError, match="lists no log columns"):
        audit_run(run)


def test_a_log_without_training_rows_is_refused(runs):
    run = runs("groups")
    write_logs(run, [])
    with pytest.raises(AuditInputError, match="no training rows"):
        audit_run(run)


@pytest.mark.parametrize("where", ["config", "schedules"])
def test_a_list_valued_config_is_refused(runs, where):
    run = runs("one_cycle")
    config = json.loads((run / "config.json").read_text())
    if where == "config":
        config = [config]
    else:
        config["schedules"] = list(config["schedules"].values())
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(AuditInputError, match="JSON list|must be an object"):
        audit_run(run)


@pytest.mark.parametrize("depth", [100, 2000])
def test_a_deeply_nested_schedule_is_refused(runs, depth):
    """100 levels of warmup: past what a schedule config may nest (from_config's limit);
    2000: past what Python's JSON reader walks."""
    run = runs("groups")
    config = json.loads((run / "config.json").read_text())
    nested = ('{"name": "warmup", "steps": 1, "init": 0.0, "schedule": ' * depth
              + '{"name": "constant", "value": 0.1}' + "}" * depth)  # text: dumps would recurse
    config["schedules"] = {"learning_rate/0": {"config": "NESTED"}}
    (run / "config.json").write_text(json.dumps(config).replace('"NESTED"', nested))
    with pytest.raises(AuditInputError, match="'learning_rate/0' does not rebuild|too deeply"):
        audit_run(run)


def test_a_stated_tolerance_admits_that_many_ulps(runs):
    run = runs("groups")
    rows = read_jsonl(run / "log.jsonl")
    rows[5]["learning_rate/0"] = ulp(rows[5]["learning_rate/0"], math.inf)
    write_logs(run, rows)
    assert audit_run(run).columns[0].status == "mismatch"
    assert audit_run(run, ulps=1).columns[0].status == "ok"
    with pytest.raises(ValueError, match="ulps"):
        audit_run(run, ulps=-1)


def test_a_config_nested_beyond_what_json_can_read_is_refused(runs):
    run = runs("groups")
    depth = 100_000  # written as text: json.dumps itself would recurse
    (run / "config.json").write_text('{"columns": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(AuditInputError, match="nests too deeply"):
        audit_run(run)


def test_malformed_json_in_the_log_is_named_by_line(runs):
    run = runs("groups")
    lines = (run / "log.jsonl").read_text().splitlines(keepends=True)
    lines[3] = lines[3][:20] + "\n"
    (run / "log.jsonl").write_text("".join(lines))
    with pytest.raises(AuditInputError, match="line 4"):
        audit_run(run)


ODD_VALUES = ["x", None, [], {}, [1, [2]], {"a": 1}, True, -1, 10**400, 1e308, math.nan,
              math.inf, -0.0, 3.5, "NaN"]


def test_odd_values_anywhere_give_a_report_or_a_named_refusal(runs):
    """Seeded random edits of the log, the config and a checkpoint record, then every
    top-level config key set to every odd value: the audit returns a report or raises
    AuditInputError / FileNotFoundError, never another exception (and both happen; the sweep
    keeps that true whatever keys a config gains, which reshuffle the random edits)."""
    rng = random.Random(7)
    run = runs("one_cycle")
    originals = {name: (run / name).read_text() for name in ("log.jsonl", "config.json")}
    meta = sorted((run / "checkpoints").iterdir())[-1] / "meta.json"
    originals[str(meta.relative_to(run))] = meta.read_text()
    outcomes: dict[str, int] = {}
    for _ in range(60):
        for name, text in originals.items():
            (run / name).write_text(text)
        name = rng.choice(list(originals))
        if name == "log.jsonl":
            rows = read_jsonl(run / name)
            row = rng.choice(rows)
            row[rng.choice([*row, "new"])] = rng.choice(ODD_VALUES)
            (run / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            data = json.loads(originals[name])
            key = rng.choice(list(data))
            if isinstance(data[key], dict) and data[key] and rng.random() < 0.5:
                inner = rng.choice(list(data[key]))
                data[key][inner] = rng.choice(ODD_VALUES)
            else:
                data[key] = rng.choice(ODD_VALUES)
            (run / name).write_text(json.dumps(data))
        try:
            report = audit_run(run)
            json.dumps(dataclasses.asdict(report))  # what the script's --json prints
            outcomes["report"] = outcomes.get("report", 0) + 1
            report.summary()
        except (AuditInputError, FileNotFoundError) as e:
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            assert str(e)
    # and every top-level key of config.json set to every odd value, in turn
    config = json.loads(originals["config.json"])
    for key in config:
        for value in ODD_VALUES:
            (run / "config.json").write_text(json.dumps({**config, key: value}))
            try:
                json.dumps(dataclasses.asdict(audit_run(run)))
                outcomes["report"] = outcomes.get("report", 0) + 1
            except (AuditInputError, FileNotFoundError) as e:
                outcomes["refused"] = outcomes.get("refused", 0) + 1
                assert str(e)
    for name, text in originals.items():
        (run / name).write_text(text)
    assert set(outcomes) == {"report", "refused"}, outcomes
