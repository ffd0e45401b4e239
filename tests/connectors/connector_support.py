"""Helpers shared by the connector tests: the runtime in a thread, polling, and a Mosquitto
of the test's own on a free loopback port (it can be restarted with its data kept)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
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


MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A Mosquitto broker in `folder`, persistent, with queues large enough for the tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(exist_ok=True)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        # A restart keeps the port, so clients reconnect to the same address.
        ports = [self.port] * 20 if self.port else [free_port() for _ in range(5)]
        for port in ports:
            # Another xdist worker may take the port between choosing and binding it: retry.
            conf = self.folder / "mosquitto.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                f"persistence_location {self.data}/\n"
                # Started as root, mosquitto drops to its own user, which cannot even reach a
                # test's private temporary folder, and then silently persists nothing: a
                # restart would lose every queued message.
                + ("user root\n" if os.geteuid() == 0 else "")
                +
                # The default of 1000 silently drops QoS 1 messages for an offline session.
                "max_queued_messages 1000000\n"
            )
            process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
            deadline = time.monotonic() + 5
            while process.poll() is None and time.monotonic() < deadline and not listening(port):
                time.sleep(0.05)
            if process.poll() is None and listening(port):
                self.port, self.process = port, process
                return self
            process.kill()
            process.wait()
            time.sleep(0.25)  # a restart may find the old socket in TIME_WAIT for a moment
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is None:
            return
        # SIGTERM: mosquitto writes its persistence file (queued messages) before exiting.
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
