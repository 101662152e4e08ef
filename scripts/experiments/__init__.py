"""Helpers shared by the scripts: datasets, models, run configs, plots and text charts.

One idea per module:

- :mod:`experiments.datasets` — the embedded digits, MNIST / Fashion-MNIST / CIFAR-10 through
  ``mlx.data.datasets`` (cached copies only), and ``.npz`` files;
- :mod:`experiments.models` — an MLP and a small CNN with optional dropout and normalisation;
- :mod:`experiments.config` — the run config: defaults, validation of every field up front,
  and building the optimizer with its schedules;
- :mod:`experiments.run` — one training run through :class:`trainers.Trainer`;
- :mod:`experiments.plotting` — matplotlib figures (optional dependency);
- :mod:`experiments.text_chart` — terminal charts without matplotlib.
"""
