"""Every public name documents itself: its docstring (or, for a constant, its ``#:`` doc
comment) is its own, never one inherited from Python's builtins.

autodoc shows an object's type's docstring when the object has none of its own: before this
test, ``trainers.STOP`` appeared on the site with ``str``'s docstring. The site's listing
(``docs/_ext/site_pages.py``) reads a constant's ``#:`` comment where the constant is defined;
``tests/test_docs_site.py`` checks the built pages as well.
"""

from __future__ import annotations

import builtins
import inspect
import re
from pathlib import Path

import pytest

import mlx_schedules
import trainers

PACKAGES = (mlx_schedules, trainers)


def builtin_docstrings() -> set[str]:
    """The docstring of every builtin and of every attribute of a builtin type."""
    docs: set[str] = set()
    for value in vars(builtins).values():
        docs.add(inspect.getdoc(value) or "")
        if inspect.isclass(value):
            docs |= {inspect.getdoc(attr) or "" for attr in vars(value).values()}
    docs.discard("")
    return docs


BUILTIN = builtin_docstrings()


def public_names() -> list[tuple[str, str]]:
    return [(p.__name__, n) for p in PACKAGES for n in p.__all__]


def doc_comment(package, name: str) -> str | None:
    """The ``#:`` lines right above ``NAME = ...`` at the top level of a package module."""
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        match = re.search(rf"((?:^#:.*\n)+)^{name}\s*(?::[^=\n]*)?=", path.read_text("utf-8"),
                          re.M)
        if match:
            return " ".join(line[2:].strip() for line in match.group(1).splitlines())
    return None


def test_builtin_docstrings_are_recognised():
    # The check below is only as good as this set: it must hold str's docstring (what
    # trainers.STOP showed) and those of common methods.
    assert inspect.getdoc(str) in BUILTIN
    assert inspect.getdoc(dict.get) in BUILTIN
    assert inspect.getdoc(Exception) in BUILTIN
    assert inspect.getdoc(lambda: None) is None  # a function without a docstring has none


@pytest.mark.parametrize(("package", "name"), public_names())
def test_public_name_has_its_own_docstring(package: str, name: str):
    module = mlx_schedules if package == "mlx_schedules" else trainers
    obj = getattr(module, name)
    qualified = f"{package}.{name}"
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj) or \
            callable(obj) and hasattr(obj, "__wrapped__"):
        own = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
        assert own and own.strip(), f"{qualified} has no docstring of its own"
        assert inspect.getdoc(obj) not in BUILTIN, f"{qualified}: a builtin's docstring"
    elif callable(obj):  # a callable instance (a Schedule object, say): its class documents it
        assert inspect.getdoc(obj) not in BUILTIN, f"{qualified}: a builtin's docstring"
    else:  # a constant: documented by a '#:' comment where it is defined
        comment = doc_comment(module, name)
        assert comment, f"{qualified}: a constant needs a '#:' doc comment where it is defined"
        assert len(comment.split()) >= 5, f"{qualified}: {comment!r} says too little"
    if inspect.isclass(obj):
        # The methods and properties the site lists (autodoc's :members:): their own words.
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if callable(member) or isinstance(member, property):
                doc = inspect.getdoc(getattr(obj, attr))
                assert doc not in BUILTIN, f"{qualified}.{attr}: a builtin's docstring"
