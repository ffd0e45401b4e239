"""Reading the plant's YAML seed files: one list under a top-level key, with the positions the
loader keeps, so that a bad entry can be named by its line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taktflow.errors import ValidationFailed
from taktflow.yamlflow.loader import YamlProblem, load


def read_list(path: Path, kind: str, key: str, holding: str = "a list") -> list[Any]:
    """The list under `key` of the YAML file at `path` (a positioned Seq of Maps);
    ValidationFailed naming the file (and line) when it cannot be read or has no such list."""
    try:
        doc = load(path.read_text(encoding="utf-8"), kind=kind)
    except YamlProblem as exc:
        where = f"{path}:{exc.pos.line}" if exc.pos else str(path)
        raise ValidationFailed(f"{where}: {exc.message}") from None
    entries = doc.get(key) if isinstance(doc, Mapping) else None
    if not isinstance(entries, list):
        raise ValidationFailed(f"{path}: expected `{key}:` with {holding}")
    return entries
