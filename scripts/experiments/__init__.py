"""Helpers shared by the scripts: datasets, models, run configs, runs, the comparison, plots.

The scripts import them as ``experiments.<module>``: ``python scripts/<name>.py`` puts
``scripts/`` first on ``sys.path``, so no path set-up is needed (the tests do the same in
``tests/scripts/conftest.py``). One idea per module:

- :mod:`experiments.cli` — the scripts' argument parser and the flags describing a run config;
- :mod:`experiments.config` — the run config: defaults, validation of every field up front
  (through ``mlx_schedules._checks``), and building the optimizer with its schedules;
- :mod:`experiments.datasets` — the embedded digits, MNIST / Fashion-MNIST / CIFAR-10 from
  their original archives (MD5-checked, never unpickled), ``.npz`` files, and the one check of
  loaded arrays and labels;
- :mod:`experiments.models` — an MLP and a small CNN, and their memory estimate before
  allocation;
- :mod:`experiments.run` — one training run through :class:`trainers.Trainer`;
- :mod:`experiments.branch` — the config of a cooldown branched off a checkpoint
  (``train.py --branch``);
- :mod:`experiments.comparison` — the schedule comparison's protocol and report (with the seed
  article's table, kept in ``seed_table.md``);
- :mod:`experiments.families` — the compared schedule families;
- :mod:`experiments.files` — atomic writes of the scripts' own files;
- :mod:`experiments.plotting` — matplotlib figures (optional dependency);
- :mod:`experiments.text_chart` — terminal charts without matplotlib.
"""
