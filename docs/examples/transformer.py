"""A byte-level transformer language model trained with every feature of ``trainers``.

    python docs/examples/transformer.py [--steps 300] [--run-dir runs/transformer]

bf16 compute on float32 masters, EMA weights, the best checkpoint restored at the end,
gradient checkpointing, no weight decay on biases/norms/embeddings, a warmup-cosine rate with a
cycled beta1, documents in length buckets with padding masks, and TensorBoard scalars. The data
is this Python's own standard library (no download). Kill it and rerun with --resume: it
continues exactly where it stopped.
"""

import argparse
import glob
import os
import sysconfig

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from mlx_schedules import cosine_decay, schedule_hyperparameters, warmup
from trainers import (
    SequenceBatches,
    Trainer,
    bits_per_byte,
    causal_lm_loss,
    read_byte_documents,
    tokens_in,
    weight_decay_groups,
)
from trainers.callbacks import TensorBoard


class ByteLM(nn.Module):
    def __init__(self, dims=128, blocks=2, heads=4):
        super().__init__()
        self.embed = nn.Embedding(256, dims)
        self.layers = nn.TransformerEncoder(blocks, dims, heads).layers  # found by grad_checkpoint
        self.norm = nn.RMSNorm(dims)

    def __call__(self, tokens):
        h = self.embed(tokens)
        mask = nn.MultiHeadAttention.create_additive_causal_mask(tokens.shape[1]).astype(h.dtype)
        for layer in self.layers:
            h = layer(h, mask)
        return self.embed.as_linear(self.norm(h))


args = argparse.ArgumentParser()
args.add_argument("--steps", type=int, default=300)
args.add_argument("--run-dir", default="runs/transformer")
args.add_argument("--resume", action="store_true")
args = args.parse_args()

files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
documents = read_byte_documents(files)
train = SequenceBatches(documents[:-8], 16, buckets=64, max_length=128, seed=0)
valid = SequenceBatches(documents[-8:], 16, buckets=64, max_length=128, shuffle=False)

model = ByteLM()
warm = max(1, args.steps // 10)
schedule = warmup(cosine_decay(3e-3, args.steps - warm, 3e-4), warm)
decayed = optim.AdamW(learning_rate=schedule, weight_decay=0.1)
schedule_hyperparameters(decayed, beta1=cosine_decay(0.95, args.steps, 0.85))
optimizer = weight_decay_groups(model, decayed, optim.AdamW(schedule, weight_decay=0.0))

trainer = Trainer(
    model, causal_lm_loss, optimizer, train, run_dir=args.run_dir, max_steps=args.steps,
    eval_data=valid, metrics={"bits_per_byte": bits_per_byte}, eval_every=100,
    checkpoint_every=100, precision="bfloat16", ema=0.99, grad_checkpoint=True,
    keep_best=("ema_eval_loss", "min"), restore_best=True, tokens=tokens_in,
    callbacks=[TensorBoard()], report_every=25,
)
result = trainer.fit(resume=args.resume)
print(f"best EMA validation loss {result['best_value']:.3f} at step {result['best_step']}; "
      f"final {result['eval_bits_per_byte']:.2f} bits/byte")
mx.eval(model.parameters())
