"""Labels, help and display text may use task data (`Operation {{ operation.name }}`).

They are rendered in Jinja's sandbox with autoescaping, so task data that holds markup is shown
as text and a template cannot reach Python internals. Missing data renders as nothing rather
than failing: a label must never stop an operator from working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

ENV = ImmutableSandboxedEnvironment(autoescape=True, undefined=jinja2.ChainableUndefined)


def render_text(text: str | None, data: Mapping[str, Any]) -> Markup:
    """`text` with task data filled in, escaped for HTML."""
    if not text:
        return Markup("")
    if "{{" not in text and "{%" not in text:
        return Markup.escape(text)
    try:
        return Markup(ENV.from_string(text).render(dict(data)))
    except Exception:  # noqa: BLE001 - a sandbox refusal or bad data shows the raw text
        return Markup.escape(text)


def plain_text(text: str | None, data: Mapping[str, Any]) -> str:
    """The same, as plain text (for the API): the escaping undone."""
    return render_text(text, data).unescape()


def lookup_path(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path in task data (`order.quantity`), or None."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
