"""The engine's clock, injectable so that tests fast-forward instead of sleeping.

SpiffWorkflow 3.2 reads `datetime.now(timezone.utc)` inside its timer event definitions when it
fixes a timer's due time and when it checks whether the timer has fired. It offers no hook for
a clock, so the engine swaps that module's `datetime` name for a subclass whose `now()` asks
the clock of the current context. Outside an engine step the subclass behaves like datetime.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by `delta` (or timedelta(**kwargs)) and return the new time."""
        with self._lock:
            self._now += delta if delta is not None else timedelta(**kwargs)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


_current: ContextVar[Clock | None] = ContextVar("taktflow_clock", default=None)


class _ClockDatetime(datetime):
    """datetime whose now() follows the engine clock of the current context."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        clock = _current.get()
        if clock is None:
            return datetime.now(tz)
        value = clock.now()
        return value.astimezone(tz) if tz is not None else value.astimezone().replace(tzinfo=None)


_spiff_timer.datetime = _ClockDatetime  # type: ignore[misc]


@contextmanager
def using_clock(clock: Clock) -> Iterator[None]:
    """Run engine steps with `clock` as SpiffWorkflow's notion of now."""
    token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)
