"""Language models on top of the trainer: mlx-lm's models, LoRA adapters, token data, samples.

Installed with the package; mlx-lm itself is the optional ``lm`` extra
(``pip install "mlx-schedules[lm]"``) and is imported only by the functions that need it.
One idea per module:

- :mod:`trainers.lm.models` — a config from an architecture and a size preset, the
  random-weight model, and local mlx-lm model directories (load, save);
- :mod:`trainers.lm.local_model` — a tiny model directory with a tokenizer trained here;
- :mod:`trainers.lm.example_data` — example fine-tuning data from the interpreter's docstrings;
- :mod:`trainers.lm.adapters` — mlx-lm's LoRA layers and adapters in mlx-lm's layout;
- :mod:`trainers.lm.data` — the embedded corpus and mlx-lm's jsonl data (text, chat,
  completions);
- :mod:`trainers.lm.batches` — token batches (windows, a validation set, length buckets);
- :mod:`trainers.lm.generate` — validation metrics and samples from a trained model;
- :mod:`trainers.lm.mlx_lm_config` — an ``mlx_lm.lora`` command line or YAML config read into
  settings (``mlx-schedules lora``);
- :mod:`trainers.lm.turns` — training on every assistant turn of a chat.

The core of :mod:`trainers` never imports this package.
"""

from .adapters import (
    adapter_weights,
    apply_lora,
    read_adapter_config,
    save_adapter_file,
    save_adapters,
)
from .batches import corpus_batches, example_batches, validation_batches
from .data import (
    FORMS,
    Corpus,
    DataFileError,
    encode_rows,
    load_jsonl_dir,
    read_jsonl,
    row_form,
    stdlib_corpus,
    stdlib_files,
    unigram_entropy,
)
from .example_data import docstring_examples, write_example_data
from .generate import generate_tokens, validation_metrics
from .local_model import CHAT_TEMPLATE, SPECIAL_TOKENS, make_local_model_dir, write_tiny_model
from .models import (
    ARCHITECTURES,
    PRESETS,
    build_model,
    load_model_dir,
    mlx_lm_module,
    model_config,
    read_config,
    save_model_dir,
)

__all__ = [
    "ARCHITECTURES", "CHAT_TEMPLATE", "FORMS", "PRESETS", "SPECIAL_TOKENS", "Corpus",
    "DataFileError", "adapter_weights", "apply_lora", "build_model", "corpus_batches",
    "docstring_examples", "encode_rows", "example_batches", "generate_tokens", "load_jsonl_dir",
    "load_model_dir", "make_local_model_dir", "mlx_lm_module", "model_config",
    "read_adapter_config", "read_config", "read_jsonl", "row_form", "save_adapter_file",
    "save_adapters",
    "save_model_dir", "stdlib_corpus", "stdlib_files", "unigram_entropy", "validation_batches",
    "validation_metrics", "write_example_data", "write_tiny_model",
]
