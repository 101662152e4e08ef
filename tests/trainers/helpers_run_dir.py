"""Shared pieces of the run-directory tests: a tiny run, whole-directory snapshots, and
deliberate edits of checkpoint files that keep the manifest agreeing."""

from __future__ import annotations

import hashlib
import json
import os

import mlx.core as mx
import mlx.optimizers as optim
from helpers_trainer import MLP, classification_data, xent

from trainers import ArrayBatches, Trainer


def tiny(run_dir, *, steps=8, every=4, seed=0, model_seed=0, batch=16, data_seed=0,
         callbacks=(), **kw):
    """A small classification run: a checkpoint and an evaluation every ``every`` updates."""
    mx.random.seed(model_seed)
    model = MLP(hidden=4)
    x, y = classification_data(64, seed=data_seed)
    opt = optim.SGD(learning_rate=optim.cosine_decay(0.1, steps), momentum=0.9)
    kw = {"eval_data": [(x, y)], "eval_every": every, "checkpoint_every": every,
          "keep_checkpoints": 3, "log_every": 2, "report_every": 0, "compile": False, **kw}
    trainer = Trainer(model, xent, opt, ArrayBatches((x, y), batch, seed=1), run_dir=run_dir,
                      max_steps=steps, seed=seed, callbacks=list(callbacks), **kw)
    return trainer, model


def snapshot(run_dir) -> dict[str, bytes | None]:
    """Every entry under ``run_dir``: files with their bytes (``system.jsonl``, the lock and the
    record included), directories and links as ``None``-valued markers."""
    out: dict[str, bytes | None] = {}
    for root, dirs, names in os.walk(run_dir):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), run_dir) + "/"] = None
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, run_dir)
            if os.path.islink(path):
                out[rel + "@"] = None
            else:
                with open(path, "rb") as f:
                    out[rel] = f.read()
    return out


def rewrite_manifest_entry(checkpoint, name) -> None:
    """Record ``name``'s current size and SHA-256 in the manifest (a deliberate edit)."""
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    data = (checkpoint / name).read_bytes()
    manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))


def edit_meta(checkpoint, **changes) -> None:
    """Change fields of a checkpoint's meta.json, keeping the manifest in agreement."""
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta.update(changes)
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    rewrite_manifest_entry(checkpoint, "meta.json")


def poison(checkpoint, name, key_part) -> str:
    """Put a NaN into the first array of ``name`` whose key contains ``key_part``; keep the
    manifest in agreement. Returns the key."""
    path = checkpoint / name
    arrays = dict(mx.load(str(path)))
    key = next(k for k in sorted(arrays) if key_part in k and arrays[k].size > 1)
    flat = arrays[key].reshape(-1)
    flat[0] = float("nan")
    arrays[key] = flat.reshape(arrays[key].shape)
    os.remove(path)
    mx.save_safetensors(str(path), arrays)
    rewrite_manifest_entry(checkpoint, name)
    return key
