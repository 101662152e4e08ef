"""The message roles a chat template knows, so that a misspelled role (``usr``, ``asistant``)
is refused before training instead of being rendered as a role the model never saw.

mlx-lm's chat data (``{"messages": [...]}``) uses the roles ``system``, ``user``,
``assistant`` and ``tool``; every chat template is taken to accept those. A template may know
more (``developer``, ``ipython``, ``function``...): those are the string constants it compares
a role with (``message['role'] == 'developer'``, ``role in ['system', 'developer']``), found
by parsing the template with Jinja (the language of Hugging Face chat templates) rather than
by searching its text, so that a role named in a comment or an output string does not count.
A template that renders any role it is given (``<|{{ m['role'] }}|>``) names no extra role:
then the four standard roles are the ones accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["STANDARD_ROLES", "chat_roles", "template_roles"]

#: the roles of mlx-lm's chat data format
STANDARD_ROLES = frozenset({"system", "user", "assistant", "tool"})


def _templates(chat_template: Any) -> list[str]:
    """The template texts of a tokenizer's ``chat_template``: one string, a dict of named
    templates, or a list of ``{"name", "template"}`` entries (Hugging Face's forms)."""
    if isinstance(chat_template, str):
        return [chat_template]
    if isinstance(chat_template, dict):
        return [t for t in chat_template.values() if isinstance(t, str)]
    if isinstance(chat_template, list | tuple):
        return [e["template"] for e in chat_template
                if isinstance(e, dict) and isinstance(e.get("template"), str)]
    return []


def _names_role(node: Any, nodes: Any) -> bool:
    """Whether a template expression is a message's role (``m['role']``, ``m.role``, a
    variable called ``role``...)."""
    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const) and node.arg.value == "role"
    if isinstance(node, nodes.Getattr):
        return node.attr == "role"
    if isinstance(node, nodes.Name):
        return "role" in node.name
    if isinstance(node, nodes.Filter):  # message['role'] | lower
        return node.node is not None and _names_role(node.node, nodes)
    return False


def _constants(node: Any, nodes: Any) -> Iterable[str]:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, nodes.List | nodes.Tuple):
        for item in node.items:
            yield from _constants(item, nodes)


def template_roles(template: str) -> frozenset[str]:
    """The roles a Jinja chat template compares a message's role with.

    Raises:
        ValueError: the template is not valid Jinja.

    Example:
        >>> sorted(template_roles("{% for m in messages %}{% if m['role'] == 'developer' %}D"
        ...                       "{% elif m.role in ['user', 'ipython'] %}U{% endif %}"
        ...                       "{% endfor %}"))
        ['developer', 'ipython', 'user']
        >>> template_roles("{% for m in messages %}<|{{ m['role'] }}|>{% endfor %}")
        frozenset()
    """
    import jinja2
    from jinja2 import nodes

    try:
        tree = jinja2.Environment().parse(template)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"the chat template is not valid Jinja (line {e.lineno}: "
                         f"{e.message})") from None
    found: set[str] = set()
    for compare in tree.find_all(nodes.Compare):
        sides = [compare.expr, *(op.expr for op in compare.ops)]
        if not any(_names_role(side, nodes) for side in sides):
            continue
        for side in sides:
            found.update(_constants(side, nodes))
    return frozenset(found)


def chat_roles(tokenizer: Any) -> frozenset[str]:
    """The roles a tokenizer's chat template accepts: :data:`STANDARD_ROLES` and every role
    its template names (:func:`template_roles`).

    Example:
        >>> class Tokenizer:
        ...     chat_template = "{% if message['role'] == 'developer' %}{% endif %}"
        >>> sorted(chat_roles(Tokenizer()))
        ['assistant', 'developer', 'system', 'tool', 'user']
    """
    roles = set(STANDARD_ROLES)
    texts = _templates(getattr(tokenizer, "chat_template", None))
    if texts:
        try:
            import jinja2  # noqa: F401  (Hugging Face's tokenizers render templates with it)
        except ImportError:
            return frozenset(roles)
        for text in texts:
            roles |= template_roles(text)
    return frozenset(roles)
