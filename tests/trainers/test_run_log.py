"""Log files, truncation to a checkpoint's position, the console report and progress bar."""

from __future__ import annotations

import io
import json

import pytest

from trainers.runlog import ConsoleReport, ProgressBar, RunLog


def test_runlog_truncates_to_a_position_and_checks_the_header(tmp_path):
    log = RunLog(str(tmp_path), ["kind", "step", "loss"])
    log.open()
    log.write([{"kind": "train", "step": 0, "loss": 0.5}])
    position = log.position()
    log.write([{"kind": "train", "step": 1, "loss": 0.25}, {"kind": "eval", "step": 2}])
    log.close()
    log.open(position)
    log.write([{"kind": "train", "step": 1, "loss": 0.125}])
    log.close()
    rows = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert rows == [{"kind": "train", "step": 0, "loss": 0.5},
                    {"kind": "train", "step": 1, "loss": 0.125}]
    assert open(tmp_path / "log.csv").read() == "kind,step,loss\ntrain,0,0.5\ntrain,1,0.125\n"
    other = RunLog(str(tmp_path), ["kind", "step", "loss", "momentum"])
    with pytest.raises(ValueError, match="columns"):
        other.open(position)
    with pytest.raises(ValueError, match="expects at least"):
        log.open({"jsonl": 10**6, "csv": 0})


def test_float_cells_round_trip_exactly(tmp_path):
    value = 0.1 + 2**-40
    log = RunLog(str(tmp_path), ["kind", "step", "loss"])
    log.open()
    log.write([{"kind": "train", "step": 0, "loss": value}])
    log.close()
    assert float(open(tmp_path / "log.csv").read().splitlines()[1].split(",")[2]) == value
    assert json.loads(open(tmp_path / "log.jsonl").read())["loss"] == value


def test_console_report_rate_and_memory():
    out = io.StringIO()
    report = ConsoleReport(None, stream=out, progress=False)
    report({"step": 5, "loss": 1.0, "learning_rate": 0.5, "peak_memory": 3 * 2**20})
    line = out.getvalue()
    assert line.startswith("step 5 | loss 1.0000 | lr 5.000e-01 |")
    assert line.rstrip().endswith("peak mem 3.0 MB")


def test_progress_bar_redraws_in_place():
    out = io.StringIO()
    bar = ProgressBar(4, width=4, stream=out)
    bar.update(1)
    bar.update(4, "done")
    bar.close()
    assert out.getvalue() == "\r[#...] 1/4\r[####] 4/4 done\n"
    report = ConsoleReport(100, stream=out, progress=True)
    report({"step": 50, "loss": 1.0, "learning_rate": 0.1, "peak_memory": 0})
    assert "[###############...............]  50/100 step 50/100" in out.getvalue()


@pytest.mark.parametrize("finite", [True, False])
def test_a_block_written_from_a_table_is_byte_identical_to_rows(tmp_path, finite):
    import csv
    import math

    import numpy as np

    names = ["loss", "learning_rate/0", "odd%name"]
    columns = ["kind", "step", "epoch", *names, "eval_loss"]
    table = np.array([[2.5, 1e-05, 0.1 + 2**-40], [1e30, 3.0, -0.0],
                      [float("nan") if not finite else 7.0, float("inf") if not finite else 0.5,
                       123456789.0]], dtype=np.float64)
    where = [(10, 0), (11, 0), (12, 1)]
    log = RunLog(str(tmp_path), columns)
    log.open()
    log.write_train(names, where, table)
    log.close()
    # the expected bytes, from json.dumps and the csv module directly
    jsonl, buffer = "", io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for (step, epoch), values in zip(where, table.tolist()):
        row = {"kind": "train", "step": step, "epoch": epoch, **dict(zip(names, values))}
        jsonl += json.dumps(row) + "\n"
        writer.writerow(["train", step, epoch, *(repr(v) for v in values), ""])
    assert open(tmp_path / "log.jsonl").read() == jsonl
    assert open(tmp_path / "log.csv").read() == buffer.getvalue()
    assert finite or "NaN" in jsonl and "Infinity" in jsonl and not math.isfinite(table[2, 0])


def test_waiting_per_update_and_pipelining_write_the_same_logs(tmp_path, monkeypatch):
    """The CPU backend waits for each update, a GPU pipelines; both must log the same rows
    (compared byte for byte, with a block boundary that is not a multiple of the data)."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import numpy as np

    import trainers.trainer as trainer_module
    from trainers import ArrayBatches, Trainer

    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(40, 3)).astype(np.float32),
            "y": rng.normal(size=(40, 1)).astype(np.float32)}
    logs = {}
    for pipelined in (False, True):
        monkeypatch.setattr(trainer_module, "_pipelined", lambda p=pipelined: p)
        mx.random.seed(0)
        model = nn.Linear(3, 1)
        run_dir = tmp_path / f"pipelined_{pipelined}"
        Trainer(model, lambda m, x, y: nn.losses.mse_loss(m(x), y),
                optim.SGD(learning_rate=optim.cosine_decay(0.1, 13)),
                ArrayBatches(data, 8, seed=1), run_dir=run_dir, max_steps=13, log_every=3,
                report_every=0, checkpoint_every=5).fit()
        logs[pipelined] = [(run_dir / name).read_bytes() for name in ("log.jsonl", "log.csv")]
    assert logs[False] == logs[True]
    rows = [json.loads(line) for line in logs[False][0].decode().splitlines()]
    assert [r["step"] for r in rows] == list(range(13))
