"""Named option lists for select fields (`lookup: users`), filled by the platform at run time.

A form names a lookup instead of copying a list that changes (who may sign, which machines
exist). Services register the lookups they own; the linter checks that a form's lookup exists.
"""

from __future__ import annotations

from collections.abc import Callable

from taktflow.forms.definition import Option

#: A lookup returns its options, optionally narrowed to one role (`lookup_role:`).
Lookup = Callable[[str | None], list[Option]]


class LookupRegistry:
    def __init__(self) -> None:
        self._lookups: dict[str, Lookup] = {}

    def register(self, name: str, lookup: Lookup) -> None:
        self._lookups[name] = lookup

    def names(self) -> list[str]:
        return sorted(self._lookups)

    def options(self, name: str, role: str | None = None) -> list[Option]:
        lookup = self._lookups.get(name)
        return lookup(role) if lookup is not None else []


#: Lookups every installation has; their options come from services the app builds.
BUILTIN_LOOKUPS = ("users",)
