"""Experiments on top of the trainer: run configs, data sets, models, studies and reports.

What the ``mlx-schedules`` subcommands (:mod:`trainers.cli`) share. Installed with the package;
the core of :mod:`trainers` never imports it. One idea per module:

- :mod:`trainers.experiments.config` — the run config: defaults, validation of every field up
  front (through :mod:`mlx_schedules.checks`), and building the optimizer with its schedules;
- :mod:`trainers.experiments.datasets` — the embedded digits, MNIST / Fashion-MNIST / CIFAR-10
  from their original archives (MD5-checked, never unpickled), ``.npz`` files, and the one
  check of loaded arrays and labels;
- :mod:`trainers.experiments.models` — an MLP and a small CNN, and their memory estimate
  before allocation;
- :mod:`trainers.experiments.run` — one training run through :class:`trainers.Trainer`;
- :mod:`trainers.experiments.branch` — the config of a cooldown branched off a checkpoint
  (``mlx-schedules train --branch``);
- :mod:`trainers.experiments.families` — the compared schedule families;
  :mod:`trainers.experiments.lm_schedules` — the same families sized for language models;
- :mod:`trainers.experiments.comparison` and :mod:`trainers.experiments.comparison_lm` — the
  schedule comparisons' protocols and reports (with the source article's table, kept in
  ``source_table.md``);
- :mod:`trainers.experiments.paths` — leaving nothing behind when a run is refused;
- :mod:`trainers.experiments.plotting` — matplotlib figures (optional dependency);
- :mod:`trainers.experiments.text_chart` — terminal charts without matplotlib.
"""
