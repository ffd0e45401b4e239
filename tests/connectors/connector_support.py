"""Helpers shared by the connector runtime tests: the runtime in a thread, and polling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from taktflow.connectors.runtime import ConnectorRuntime


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """The first truthy value of `check()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


class Running:
    """The runtime in its own thread and event loop, as `taktflow connectors run` has it.

    With `until_connected`, entering waits until the first connector reports "connected"
    (for MQTT: subscribed), so a test publishes only once something listens.
    """

    def __init__(self, runtime: ConnectorRuntime, *, until_connected: bool = False) -> None:
        self.runtime = runtime
        self.until_connected = until_connected
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await self.runtime.run(self.stop_event)

        self.loop.run_until_complete(main())
        self.loop.close()

    def status(self) -> dict[str, Any]:
        return self.runtime.statuses()[0]

    def __enter__(self) -> Running:
        self.thread.start()
        if self.until_connected:
            wait_for(lambda: self.status()["state"] == "connected")
        return self

    def __exit__(self, *exc: object) -> None:
        while self.stop_event is None:
            time.sleep(0.01)
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(5)
        assert not self.thread.is_alive()
