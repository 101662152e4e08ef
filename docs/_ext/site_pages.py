"""Pages written from the code when the site is built.

- The schedule gallery: every example config of ``scripts/plot_schedules.py``'s ``gallery()``
  evaluated and drawn by that script's own plotting code, one PNG per schedule plus the
  combined figure. A registered schedule with no gallery example is a build warning (an error
  under ``-W``), so a new shape cannot be left out.
- The API listings: one ``autofunction``/``autoclass`` per name in ``mlx_schedules.__all__``
  and ``trainers.__all__``, grouped by the module that defines it. A name added to
  ``__all__`` is documented without editing a page.
- The README's quick start, as ``_generated/quickstart.py``: the page shows the code the
  wheel test runs.
- The Results page's summary tables, from the committed ``results.json`` of the main job and of
  the language-model comparison (``_generated/results_main.md``, ``_generated/results_lm.md``):
  the numbers appear on two pages (the summary and the full report) but are written by hand on
  none.
- ``.. include-if-exists:: PATH``: includes a file when it exists at build time, else renders
  the directive's own content (the language-model guide before it is written).

Everything is written under ``docs/_generated/`` (ignored by git, excluded from the page
list), and a file is rewritten only when its content changes, so incremental builds stay
incremental.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tempfile
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.directives.other import Include
from sphinx.util import logging

logger = logging.getLogger(__name__)

GALLERY_STEPS = 1000

# Section titles of the modules that define public names; a module not listed here (a new
# one) is titled by the first line of its docstring.
SCHEDULE_SECTIONS = {
    "mlx_schedules.decay": "Decays",
    "mlx_schedules.cyclic": "Cyclical schedules and restarts",
    "mlx_schedules.one_cycle": "The 1-cycle policy",
    "mlx_schedules.compose": "Composition: join, warmup, warmup-stable-decay",
    "mlx_schedules.sweep": "The range-test sweep",
    "mlx_schedules.hyperparams": "Beyond the learning rate",
    "mlx_schedules.config": "Schedules as data",
    "mlx_schedules.base": "The Schedule type",
}
TRAINER_SECTIONS = {
    "trainers.trainer": "The loop",
    "trainers.data": "Data",
    "trainers.sequences": "Token sequences",
    "trainers.losses": "Language-model losses and metrics",
    "trainers.metrics": "Classification metrics",
    "trainers.callbacks": "Callbacks and trackers",
    "trainers.trackers": "Callbacks and trackers",
    "trainers.optimizers": "Parameter groups",
    "trainers.lr_finder": "Learning-rate range test",
    "trainers.checkpoint": "Checkpoint access",
    "trainers.errors": "Errors",
    "trainers.run_dir": "Errors",
    "trainers.blas": "Fast BLAS on Linux",
}


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _heading(title: str, char: str) -> str:
    return f"{title}\n{char * len(title)}\n"


def _name(config: Any) -> str:
    """A gallery item's schedule name: a config's, or a ``(title, schedule)`` pair's (a
    schedule that is not data, such as ``cyclic_lr`` with a custom ``scale_fn``)."""
    return config[1].name if isinstance(config, tuple) else config["name"]


def _slug(index: int, name: str) -> str:
    return f"{index:02d}-{name}"


def write_gallery(root: Path, out: Path) -> dict[str, str]:
    """Draw every gallery config; return {schedule name: image path of its first panel}."""
    import mlx_schedules as ms
    from trainers.cli import plot as script
    from trainers.experiments.plotting import plot_schedules

    configs = script.gallery(GALLERY_STEPS)
    entries = script.build_entries(configs, GALLERY_STEPS, True)
    names = [_name(c) for c in configs]
    covered = set(names)
    covered |= {m["name"] for c in configs if isinstance(c, dict)
                and (m := script.momentum_for(c)) is not None}
    missing = sorted(set(ms.schedule_names()) - covered)
    if missing:
        logger.warning("schedule gallery: no example config in scripts/plot_schedules.py's "
                       "gallery() for %s", ", ".join(missing), type="gallery")

    images = out / "gallery"
    first: dict[str, str] = {}
    lines = [
        ".. Written by docs/_ext/site_pages.py at build time; do not edit.\n",
        f"Drawn at build time by the code of ``mlx-schedules plot`` over {GALLERY_STEPS} "
        "steps: the rate in solid blue, and for one-cycle and cyclical rates the momentum "
        "that goes with them in dashed orange. Each title holds the schedule's config "
        "(``from_config`` rebuilds it).\n",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (config, entry, name) in enumerate(zip(configs, entries, names)):
            slug = _slug(i, name)
            scratch = Path(tmp) / f"{slug}.png"
            plot_schedules([entry], str(scratch))
            _write_if_changed(images / f"{slug}.png", scratch.read_bytes())
            first.setdefault(name, f"/_generated/gallery/{slug}.png")
            title = f"``{name}``"
            if i and names[i - 1] == name:
                title += " (another setting)"
            api = f"API: :func:`mlx_schedules.{name}`"
            momentum = script.momentum_for(config) if isinstance(config, dict) else None
            if entry.get("momentum") is not None and momentum is not None:
                api += f", with its momentum :func:`mlx_schedules.{momentum['name']}`"
            lines += [
                f".. _gallery-{slug}:\n",
                _heading(title, "-"),
                api + "\n",
                f".. image:: /_generated/gallery/{slug}.png\n"
                f"   :alt: {name} over {GALLERY_STEPS} steps\n"
                f"   :class: schedule-plot\n",
            ]
        scratch = Path(tmp) / "all.png"
        plot_schedules(entries, str(scratch),
                       title="mlx_schedules: every family (rate solid blue, momentum dashed "
                             "orange)")
        _write_if_changed(images / "all.png", scratch.read_bytes())
    lines += [
        _heading("All in one figure", "-"),
        ".. image:: /_generated/gallery/all.png\n   :alt: every schedule family in one figure\n",
    ]
    _write_if_changed(out / "gallery.rst", "\n".join(lines).encode())
    return first


def _section_title(module_name: str, sections: dict[str, str]) -> str:
    if module_name in sections:
        return sections[module_name]
    doc = inspect.getdoc(importlib.import_module(module_name)) or module_name
    return doc.splitlines()[0].rstrip(".")


def constant_doc(package: str, name: str) -> str | None:
    """The ``#:`` doc comment of a public constant, read in the module that defines it.

    autodoc looks for the comment only in the module it documents (the package, where the
    name is merely imported), and otherwise shows the value's own type docstring (``str``'s
    for ``trainers.STOP``), so the listing writes the comment out itself.
    """
    from sphinx.pycode import ModuleAnalyzer

    module = importlib.import_module(package)
    for path in sorted(Path(module.__file__).parent.glob("*.py")):
        modname = package if path.stem == "__init__" else f"{package}.{path.stem}"
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # a module that cannot be analysed holds no doc comment for us
            continue
        comment = docs.get(("", name))
        if comment and getattr(importlib.import_module(modname), name, None) is \
                getattr(module, name):
            return "\n".join(comment).strip()
    return None


def _data_entry(package: str, name: str, obj: Any) -> str:
    doc = constant_doc(package, name)
    if doc is None:
        logger.warning("%s.%s: a public constant without a '#:' doc comment where it is "
                       "defined (the site would show its type's docstring)", package, name,
                       type="api")
        doc = ""
    body = "\n".join(f"   {line}" if line else "" for line in doc.splitlines())
    return f".. data:: {name}\n   :value: {obj!r}\n\n{body}\n"


def api_listing(package: str, sections: dict[str, str], images: dict[str, str]) -> str:
    """autodoc directives for every name in ``package.__all__``, grouped by defining module."""
    module = importlib.import_module(package)
    groups: dict[str, list[str]] = {}
    for name in module.__all__:
        obj = getattr(module, name)
        home = getattr(obj, "__module__", None) if (inspect.isclass(obj) or callable(obj)) \
            else None
        if not home or not home.startswith(package):
            home = package
        groups.setdefault(_section_title(home, sections), []).append(name)
    lines = [".. Written by docs/_ext/site_pages.py at build time; do not edit.\n",
             f".. currentmodule:: {package}\n"]
    for title, names in groups.items():
        lines.append(_heading(title, "-"))
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                lines.append(f".. autoclass:: {name}\n   :members:\n")
            elif callable(obj):
                lines.append(f".. autofunction:: {name}\n")
            else:
                lines.append(_data_entry(package, name, obj))
            if name in images:
                lines.append(f"   .. image:: {images[name]}\n      :alt: {name}\n"
                             f"      :class: schedule-plot\n")
    lines += [_heading("Modules", "-"),
              f"What each module of ``{package}`` holds (its docstring); the names above are "
              "imported from the package itself.\n"]
    for path in sorted(Path(module.__file__).parent.glob("*.py")):
        # A module named like one of its functions (one_cycle) would share its target.
        if path.stem.startswith("_") or path.stem in module.__all__:
            continue
        # Aliases of renamed modules say so first; they are not part of the documented API.
        if path.read_text(encoding="utf-8").lstrip('\'"r').startswith("Deprecated"):
            continue
        lines.append(f".. automodule:: {package}.{path.stem}\n   :no-members:\n")
    lines.append(f".. currentmodule:: {package}\n")
    return "\n".join(lines)


def _find(path: str) -> Any:
    """The object a dotted path names (importing its module), or None."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def resolve_own_names(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """References into this project's code that autodoc's own lookup misses.

    The site documents public names where users import them (``trainers.Trainer``, not
    ``trainers.trainer.Trainer``), while docstrings name them relative to their module. A
    reference that names an existing object is linked to its documented public name, or, for
    an internal helper the site does not document, shown as code without a link. A reference
    to a name that does not exist stays missing: a warning, an error under ``-W``.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    # Scopes to look the name up in: where the docstring is documented (the page's module
    # and class), and where it is defined (its source names the object it belongs to).
    scopes = []
    if node.get("py:module"):
        module = node["py:module"]
        if node.get("py:class"):
            scopes.append(f"{module}.{node['py:class']}")
        scopes.append(module)
    owner = re.search(r"docstring of ([\w.]+)", node.source or "")
    if owner:
        parts = owner.group(1).split(".")
        scopes += [".".join(parts[:cut]) for cut in range(len(parts), 0, -1)]
    paths = [target] + [f"{scope}.{target}" for scope in scopes]
    domain = env.get_domain("py")
    own = [p for p in paths if p.split(".")[0] in ("mlx_schedules", "trainers")]
    for path in own:  # documented under its public name (attributes exist only there)
        parts = path.split(".")
        for cut in range(1, len(parts)):
            candidate = f"{parts[0]}.{'.'.join(parts[cut:])}"
            if candidate in domain.objects:
                return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                           candidate, node, contnode)
    if any(_find(path) is not None for path in own):
        return contnode  # an internal helper: shown as code
    return None


def readme_quick_start(readme: Path) -> str:
    """The first ``python`` code block under the README's "Quick start" heading."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^## Quick start\n.*?^```python\n(.*?)^```", text, re.M | re.S)
    if match is None:
        raise ValueError(f"{readme}: no ```python block under a '## Quick start' heading")
    return match.group(1)


def _bold_best(cells: list[float], text: list[str], best) -> list[str]:
    top = best(cells)
    return [f"**{t}**" if c == top else t for c, t in zip(cells, text)]


def results_main(results: dict[str, Any]) -> str:
    """The main job's final test accuracy per schedule and budget (mean of its seeds), the best
    of each budget in bold, and the command and wall time the run recorded."""
    from trainers.experiments.families import FAMILY_LABELS

    budgets = results["budgets"]
    columns = {b: [100 * results["measured"][f][str(b)]["final_accuracy"]
                   for f in results["families"]] for b in budgets}
    shown = {b: _bold_best([round(v, 1) for v in columns[b]],
                           [f"{v:.1f}" for v in columns[b]], max) for b in budgets}
    lines = ["| schedule | " + " | ".join(map(str, budgets[:-1])) + f" | {budgets[-1]} steps |",
             "|---|" + "---|" * len(budgets)]
    for k, family in enumerate(results["families"]):
        lines.append(f"| {FAMILY_LABELS.get(family, family)} | "
                     + " | ".join(shown[b][k] for b in budgets) + " |")
    runs = results["runs"] if isinstance(results["runs"], int) else len(results["runs"])
    return ("\n".join(lines) + "\n\n"
            f"Command: `{_as_command(results['command'])}`; {results['machine']}; the whole run "
            f"took {results['wall_time_s']:.0f} s ({runs} training runs).\n")


def results_lm(results: dict[str, Any]) -> str:
    """The language-model comparison's test bits per byte (mean ± std over seeds), the best
    of each budget in bold, and the command and wall time the run recorded."""
    from trainers.experiments.comparison_lm import LM_LABELS

    budgets = results["budgets"]
    means = {b: [results["measured"][f][str(b)]["test_bpb"] for f in results["families"]]
             for b in budgets}
    texts = {b: [f"{results['measured'][f][str(b)]['test_bpb']:.3f} ± "
                 f"{results['measured'][f][str(b)]['test_bpb_std']:.3f}"
                 for f in results["families"]] for b in budgets}
    shown = {b: _bold_best([round(v, 3) for v in means[b]], texts[b], min) for b in budgets}
    lines = ["| schedule | " + " | ".join(map(str, budgets[:-1])) + f" | {budgets[-1]} steps |",
             "|---|" + "---|" * len(budgets)]
    for k, family in enumerate(results["families"]):
        lines.append(f"| {LM_LABELS.get(family, family)} | "
                     + " | ".join(shown[b][k] for b in budgets) + " |")
    runs = results["runs"] if isinstance(results["runs"], int) else len(results["runs"])
    return ("\n".join(lines) + "\n\n"
            f"Command: `{_as_command(results['command'])}`; {results['machine']}; the whole run "
            f"took {results['wall_time_s']:.0f} s of wall time ({runs} training runs).\n")


def _as_command(recorded: str) -> str:
    """A recorded command line as a reader runs it today: ``python scripts/X.py`` was the
    checkout's wrapper of ``mlx-schedules SUB``."""
    names = {"compare_schedules": "compare", "compare_lm": "compare-lm"}
    return re.sub(r"python scripts/(\w+)\.py",
                  lambda m: f"mlx-schedules {names.get(m.group(1), m.group(1))}", recorded)


def generate(app: Sphinx) -> None:
    docs = Path(app.srcdir)
    root = docs.parent
    out = docs / "_generated"
    _write_if_changed(out / "quickstart.py", readme_quick_start(root / "README.md").encode())
    import json

    for name, source, write in (("results_main.md", "comparison", results_main),
                                ("results_lm.md", "comparison_lm", results_lm)):
        results = json.loads((docs / source / "results.json").read_text(encoding="utf-8"))
        _write_if_changed(out / name, write(results).encode())
    images = write_gallery(root, out)
    _write_if_changed(out / "schedules_api.rst",
                      api_listing("mlx_schedules", SCHEDULE_SECTIONS, images).encode())
    _write_if_changed(out / "trainers_api.rst",
                      api_listing("trainers", TRAINER_SECTIONS, {}).encode())


class IncludeIfExists(Include):
    """``include`` when the file exists at build time; otherwise the directive's content."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        rel, path = env.relfn2path(self.arguments[0])
        env.note_dependency(rel)  # so the page is rebuilt when the file appears
        if Path(path).exists():
            self.content = []  # type: ignore[assignment]
            return super().run()
        # Read as if written in the page at this point, so the content may hold its title.
        self.state_machine.insert_input(list(self.content), self.content.source(0))
        return []


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    app.connect("missing-reference", resolve_own_names)
    app.add_directive("include-if-exists", IncludeIfExists)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
