"""What the manufacturing actions share: turning service results into workflow data."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def jsonable(view: Any) -> Any:
    """Decimals as exact text, for workflow data (JSON): 0.1 + 0.2 stays 0.3."""
    if isinstance(view, dict):
        return {k: jsonable(v) for k, v in view.items()}
    if isinstance(view, list | tuple):
        return [jsonable(v) for v in view]
    if isinstance(view, Decimal):
        return str(view)
    return view
