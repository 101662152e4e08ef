"""train_lm.py's input and output: flags beside --resume, data and model files that are not
what they should be, chat roles, the LoRA rank, and how its outputs are written.

One finished tiny run (8 steps) is made once per module; each test works on a copy. Expected
values are computed here: the extended run's rates from the schedule's closed form in
float64, the layers' widths from the model's own weights, file modes from the umask.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlx_lm")

from helpers_scripts import load_script  # noqa: E402

from trainers.errors import UnsafePathError  # noqa: E402
from trainers.lm import (  # noqa: E402
    DataFileError,
    apply_lora,
    build_model,
    load_jsonl_dir,
    make_local_model_dir,
    model_config,
    read_jsonl,
    save_model_dir,
)

TINY = ["--preset", "tiny", "--quiet", "--no-plots"]
# the finished run: 8 updates of 2 x 16 bytes, warmup_cosine peak 1e-3 (floor 1e-4), warmup 1
RUN = ["--preset", "tiny", "--quiet", "--steps", "8", "--seq-len", "16", "--batch-size", "2",
       "--valid-windows", "4", "--eval-every", "8", "--checkpoint-every", "8", "--log-every", "4"]


@pytest.fixture(scope="module")
def train_lm():
    return load_script("train_lm")


@pytest.fixture(scope="module")
def finished(train_lm, tmp_path_factory):
    """A finished 8-step run (with its plot), written under umask 002."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    old = os.umask(0o002)
    try:
        assert train_lm.main([*RUN, "--run-dir", str(run_dir)]) == 0
    finally:
        os.umask(old)
    return run_dir


@pytest.fixture
def run_copy(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    texts = ["def square(x):\n    return x * x\n"] * 20
    return make_local_model_dir(tmp_path_factory.mktemp("model"), texts, vocab_size=300,
                                num_key_value_heads=1)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every path and file content under ``folder``, but the lock (it names its holder)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*")) if p.name != ".lock"}


def _rows(run_dir: Path, kind: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


# ---------------------------------------------------------------------------------- --resume
@pytest.mark.parametrize("flags, named", [
    (["--bf16"], ["--bf16 on (the run has off)"]),
    (["--max-lr", "2e-3"], ["--max-lr 0.002 (the run has 0.001)"]),
    (["--preset", "medium"], ["--preset medium (the run has tiny)"]),
    (["--bf16", "--max-lr", "2e-3", "--preset", "medium", "--seed", "3", "--batch-size", "4",
      "--schedule", "wsd", "--ema", "0.9", "--seq-len", "32", "--valid-windows", "8",
      "--grad-checkpoint", "--weight-decay", "0.1", "--clip-norm", "1", "--arch", "qwen2",
      "--warmup-steps", "2", "--restore-best"],
     ["--bf16", "--max-lr", "--preset", "--seed", "--batch-size", "--schedule", "--ema",
      "--seq-len", "--valid-windows", "--grad-checkpoint", "--weight-decay", "--clip-norm",
      "--arch", "--warmup-steps", "--restore-best"]),
    (["--model-path", "m", "--data-path", "d", "--lora-rank", "4", "--lora-layers", "1",
      "--lora-scale", "10", "--mask-prompt"],
     ["--model-path", "--data-path", "--lora-rank 4 (the run has none)", "--lora-layers",
      "--lora-scale 10 (the run has 20)", "--mask-prompt on (the run has off)"]),
    (["--steps", "6"], ["--steps 6 with --resume", "set for 8 updates", "only extend"]),
    (["--overwrite"], ["--overwrite with --resume"]),
    (["--run-dir", "elsewhere"], ["--run-dir elsewhere with --resume"]),
])
def test_resume_refuses_flags_that_cannot_change_naming_them_and_writes_nothing(
        train_lm, run_copy, capsys, flags, named):
    before = _snapshot(run_copy)
    assert train_lm.main(["--resume", str(run_copy), *flags]) == 2
    err = capsys.readouterr().err
    for text in named:
        assert text in err
    assert _snapshot(run_copy) == before


def test_resume_accepts_flags_that_repeat_the_runs_settings_and_session_flags(
        train_lm, run_copy, capsys):
    before = _snapshot(run_copy)
    assert train_lm.main(["--resume", str(run_copy), "--preset", "tiny", "--max-lr", "1e-3",
                          "--batch-size", "2", "--steps", "8", "--quiet", "--sample", "6",
                          "--sample-prompt", "import", "--temperature", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "is finished (8 steps): nothing to do" in out
    assert "sample (6 tokens, temperature 0.5):\nimport" in out  # a session flag applies
    assert _snapshot(run_copy) == before  # a finished run changes no file


def _warmup_cosine(step: int, total: int, warmup: int, peak: float = 1e-3) -> float:
    floor = 0.1 * peak
    if step < warmup:
        return peak * step / warmup
    t = step - warmup
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(t, total - warmup)
                                                      / (total - warmup)))


def test_resume_with_more_steps_extends_the_run_and_the_new_intervals_apply(train_lm, run_copy,
                                                                             finished):
    old_rows = _rows(finished)
    assert train_lm.main(["--resume", str(run_copy), "--steps", "12", "--eval-every", "2",
                          "--quiet", "--no-plots"]) == 0
    rows = _rows(run_copy)
    assert [r["step"] for r in rows] == list(range(12))
    assert rows[:8] == old_rows  # what was trained stays as it was
    # from the resumed step on, the rate is a 12-step warmup_cosine's, with the first warmup
    for r in rows[8:]:
        assert r["learning_rate"] == pytest.approx(_warmup_cosine(r["step"], 12, 1), rel=1e-6)
    assert [r["step"] for r in _rows(run_copy, "eval")] == [8, 10, 12]
    saved = json.loads((run_copy / "experiment.json").read_text())
    assert saved["steps"] == 12 and saved["eval_every"] == 2 and saved["warmup_steps"] == 1
    summary = json.loads((run_copy / "summary.json").read_text())
    assert summary["steps"] == 12
    # a plain resume of the extended run is accepted and changes nothing
    before = _snapshot(run_copy)
    assert train_lm.main(["--resume", str(run_copy), "--quiet"]) == 0
    assert _snapshot(run_copy) == before


# ---------------------------------------------------------------------------------- data files
def test_a_row_that_is_not_utf8_is_named_with_its_file_and_line(train_lm, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_bytes(b'{"text": "abc"}\n\n{"text": "caf\xe9"}\n')
    (data / "valid.jsonl").write_bytes(b'{"text": "abc"}\n')
    with pytest.raises(DataFileError, match=r"train.jsonl line 3: not UTF-8 text \(byte 0xe9 "
                                            r"at column 14\)"):
        read_jsonl(data / "train.jsonl")
    assert train_lm.main(["--data-path", str(data), "--run-dir", str(tmp_path / "r"),
                          *TINY]) == 2
    assert f"{data / 'train.jsonl'} line 3: not UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_validation_file_of_too_short_rows_is_named_with_the_length_needed(train_lm,
                                                                            tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": f"x = {i}"}) + "\n"
                                              for i in range(8)))
    (data / "valid.jsonl").write_text('{"text": "a"}\n{"text": ""}\n')  # 1 and 0 bytes
    assert train_lm.main(["--data-path", str(data), "--run-dir", str(tmp_path / "r"),
                          "--seq-len", "16", *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'valid.jsonl'}: every row is shorter than 2 tokens (the longest holds 1)" \
        in err
    assert not (tmp_path / "r").exists()


def test_a_model_config_that_is_not_json_is_named_with_its_line(train_lm, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama",\n "hidden_size": ,\n}')
    assert train_lm.main(["--model-path", str(model), "--run-dir", str(tmp_path / "r"),
                          *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{model / 'config.json'} line 2 column 17: not valid JSON" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_a_settings_file_that_is_not_json_is_named(train_lm, run_copy, capsys):
    (run_copy / "experiment.json").write_text("{\n")
    assert train_lm.main(["--resume", str(run_copy)]) == 2
    assert f"{run_copy / 'experiment.json'} line 2 column 1: not valid JSON" in \
        capsys.readouterr().err


# ---------------------------------------------------------------------------------- chat roles
@pytest.mark.parametrize("role, near", [("usr", "user"), ("asistant", "assistant"),
                                        ("System", "system"), ("bot", None)])
def test_a_misspelled_chat_role_is_refused_with_its_file_and_line(model_dir, tmp_path, role,
                                                                   near):
    import mlx_lm

    tokenizer = mlx_lm.load(model_dir)[1]
    good = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                         {"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"}]}
    bad = {"messages": [{"role": "user", "content": "q"}, {"role": role, "content": "a"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "valid.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataFileError) as err:
        load_jsonl_dir(tmp_path, tokenizer)
    message = str(err.value)
    assert f"valid.jsonl line 2: messages[1] has role {role!r}" in message
    assert "assistant, system, tool, user" in message
    assert (f"did you mean {near!r}?" in message) == (near is not None)


def test_a_row_the_chat_template_refuses_is_named_with_its_file_and_line(model_dir, tmp_path):
    import mlx_lm

    tokenizer = mlx_lm.load(model_dir)[1]
    # a template that raises, as many real ones do when user and assistant do not alternate
    tokenizer.chat_template = (
        "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}")
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad = {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(good) + "\n")
    (tmp_path / "valid.jsonl").write_text(f"{json.dumps(good)}\n\n{json.dumps(bad)}\n")
    with pytest.raises(DataFileError, match=r"valid.jsonl line 3: the tokenizer or its chat "
                                            r"template refused the row \(TemplateError: roles "
                                            r"must alternate user/assistant\)"):
        load_jsonl_dir(tmp_path, tokenizer)


def test_roles_a_chat_template_names_are_accepted_beside_the_standard_ones(tmp_path):
    from trainers.lm.chat_roles import template_roles

    template = ("{% for message in messages %}{% if message['role'] == 'ipython' %}I"
                "{% elif message.role in ('developer', 'user') %}D{% else %}"
                "{{ message['role'] }}{% endif %}{% endfor %}{# 'comment' #}")
    assert template_roles(template) == {"ipython", "developer", "user"}

    class Tokenizer:  # a token per message: enough to see the rows pass
        chat_template = template

        def apply_chat_template(self, messages, **_):
            return list(range(len(messages)))

    row = {"messages": [{"role": "developer", "content": "d"}, {"role": "ipython",
                                                                "content": "i"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "valid.jsonl").write_text(json.dumps(row) + "\n")
    corpus = load_jsonl_dir(tmp_path, Tokenizer())
    assert corpus.train[0].tolist() == [0, 1] and corpus.valid[0].tolist() == [0, 1]
    with pytest.raises(DataFileError, match="train.jsonl line 1: messages.0. has role "
                                            "'developer'"):
        read_jsonl(tmp_path / "train.jsonl")  # the standard roles only


# ---------------------------------------------------------------------------------- LoRA rank
def test_a_lora_rank_above_a_layers_width_is_refused_naming_the_layer():
    model = build_model(model_config("llama", "tiny", num_key_value_heads=1))
    before = len(dict(_flat(model.trainable_parameters())))
    with pytest.raises(ValueError) as err:
        apply_lora(model, 17)
    found = re.search(r"layer model\.layers\.(\d+)\.(\S+) allows: it maps (\d+) inputs to (\d+) "
                      r"outputs, so its update has rank at most 16", str(err.value))
    assert found, str(err.value)
    layer = model.layers[int(found[1])]
    for part in found[2].split("."):
        layer = getattr(layer, part)
    out_width, in_width = layer.weight.shape
    assert (int(found[3]), int(found[4])) == (in_width, out_width) and min(out_width,
                                                                             in_width) == 16
    assert len(dict(_flat(model.trainable_parameters()))) == before  # the model is unchanged
    assert apply_lora(model, 16)["lora_parameters"]["rank"] == 16


def _flat(tree):
    from mlx.utils import tree_flatten

    return tree_flatten(tree)


def test_train_lm_refuses_a_lora_rank_above_the_models_widths(train_lm, model_dir, tmp_path,
                                                              capsys):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid"):
        (data / f"{split}.jsonl").write_text(json.dumps({"text": "x = 1"}) + "\n")
    assert train_lm.main(["--model-path", model_dir, "--data-path", str(data), "--lora-rank",
                          "17", "--run-dir", str(tmp_path / "r"), "--quiet", "--no-plots"]) == 2
    assert "lora rank 17 is larger than layer model.layers." in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("name", ["model", "summary.json"])
def test_an_output_that_is_a_symbolic_link_is_refused_before_training(train_lm, run_copy,
                                                                      tmp_path, capsys, name):
    outside = tmp_path / "outside"
    if name == "model":
        outside.mkdir()
        shutil.rmtree(run_copy / "model")
    else:
        outside.write_text("the user's file")
        (run_copy / name).unlink()
    (run_copy / name).symlink_to(outside)
    log = (run_copy / "log.jsonl").read_bytes()
    assert train_lm.main(["--resume", str(run_copy), "--steps", "12", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"refusing to write {run_copy / name}: it is a symbolic link" in err
    assert (run_copy / "log.jsonl").read_bytes() == log  # refused before training
    assert (sorted(os.listdir(outside)) == [] if name == "model"
            else outside.read_text() == "the user's file")


def test_train_lm_refuses_an_adapters_folder_that_is_a_link(train_lm, model_dir, tmp_path,
                                                            capsys):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid"):
        (data / f"{split}.jsonl").write_text(json.dumps({"text": "x = 1"}) + "\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "adapters").symlink_to(outside)
    assert train_lm.main(["--model-path", model_dir, "--data-path", str(data), "--lora-rank",
                          "4", "--run-dir", str(run_dir), "--quiet", "--no-plots"]) == 2
    assert str(run_dir / "adapters") in capsys.readouterr().err
    assert os.listdir(outside) == [] and os.listdir(run_dir) == ["adapters"]


def test_model_files_are_never_written_through_a_link(model_dir, tmp_path):
    import mlx_lm

    model, tokenizer = mlx_lm.load(model_dir)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    target = tmp_path / "model"
    target.mkdir()
    outside = tmp_path / "outside.json"
    outside.write_text("the user's file")
    (target / "tokenizer.json").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="tokenizer.json: it is a symbolic link"):
        save_model_dir(model, config, target, tokenizer)
    assert outside.read_text() == "the user's file"
    run = tmp_path / "run"
    run.mkdir()
    (run / "model").symlink_to(target)
    with pytest.raises(UnsafePathError, match="model: it is a symbolic link"):
        save_model_dir(model, config, run / "model", root=run)


def test_outputs_are_created_with_the_users_umask(finished):
    expected_file, expected_dir = 0o666 & ~0o002, 0o777 & ~0o002
    for name in ("summary.json", "curves.png", "experiment.json", "model/model.safetensors",
                 "model/config.json"):
        assert stat.S_IMODE((finished / name).stat().st_mode) == expected_file, name
    assert stat.S_IMODE((finished / "model").stat().st_mode) == expected_dir
    assert np.all([p.is_file() or p.is_dir() for p in finished.rglob("*")])  # no links
