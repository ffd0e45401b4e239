"""In-process caches: parsed specs per deployed version, and recently used workflows.

A cached workflow is only reused when the instance row's lock version still equals the version
the workflow was saved at, so a write by another process (or a rolled-back step) can never be
hidden by the cache. A workflow is taken out of the cache while a unit of work uses it and put
back only after that unit commits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get_or_create(self, key: K, create: Callable[[], V]) -> V:
        value = self.get(key)
        if value is None:
            value = create()
            self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class WorkflowCache:
    """instance id -> (lock version, workflow)."""

    def __init__(self, size: int) -> None:
        self._lru: LRU[int, tuple[int, Any]] = LRU(size)
        self.hits = 0
        self.misses = 0

    def take(self, instance_id: int, lock_version: int) -> Any | None:
        """The workflow saved at `lock_version`, removed from the cache; None if not there."""
        entry = self._lru.pop(instance_id)
        if entry is not None and entry[0] == lock_version:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, instance_id: int, lock_version: int, workflow: Any) -> None:
        self._lru.put(instance_id, (lock_version, workflow))

    def discard(self, instance_id: int) -> None:
        self._lru.pop(instance_id)

    def clear(self) -> None:
        self._lru.clear()
