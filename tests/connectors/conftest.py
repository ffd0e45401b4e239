"""Connector test fixtures: a simulated PLC (pymodbus SimDevice server) on a free loopback port
per test, and a Mosquitto per test module."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from connector_support import MOSQUITTO, Mosquitto
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# pymodbus logs its last frames on every error; the error tests would drown the output.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

ROOT_CONFTEST = Path(__file__).parents[1] / "conftest.py"

# Function codes that select a table in the server's get/set helpers.
FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
REGISTERS = 200
BITS = 64


def sim_device(device_id: int = 1) -> SimDevice:
    # One SimData per table: a shared list would make coils alias holding-register bits.
    return SimDevice(
        id=device_id,
        simdata=(
            [SimData(0, count=BITS, values=False, datatype=DataType.BITS)],
            [SimData(0, count=BITS, values=False, datatype=DataType.BITS)],
            [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)],
        ),
    )


class SimulatedPLC:
    """ModbusTcpServer on its own event loop in a daemon thread, so tests stay synchronous."""

    def __init__(self, devices: list[SimDevice] | None = None) -> None:
        self.devices = devices or [sim_device(1)]
        self.loop = asyncio.new_event_loop()
        self.server: ModbusTcpServer | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)

    def start(self) -> SimulatedPLC:
        self._thread.start()

        async def listen() -> None:
            # Port 0: the OS picks a free port, so parallel xdist workers never collide.
            self.server = ModbusTcpServer(self.devices, address=(self.host, 0))
            await self.server.serve_forever(background=True)
            self.port = self.server.transport.sockets[0].getsockname()[1]

        self._run(listen())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self._run(self.server.shutdown())
            self.server = None
        if self._thread.is_alive():
            # Tasks left pending would be garbage-collected during a later test and reported
            # there ("Task was destroyed but it is pending"), failing an unrelated test.
            self._run(_cancel_others())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()

    def set(self, table: str, address: int, values: list[int] | list[bool], dev: int = 1) -> None:
        assert self.server is not None
        self._run(self.server.async_setValues(dev, FC[table], address, values))

    def get(self, table: str, address: int, count: int = 1, dev: int = 1) -> list[Any]:
        assert self.server is not None
        return self._run(self.server.async_getValues(dev, FC[table], address, count))


@pytest.fixture
def plc() -> Iterator[SimulatedPLC]:
    server = SimulatedPLC().start()
    try:
        yield server
    finally:
        server.stop()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@pytest.fixture(scope="module")
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """A Mosquitto of this module's own on a free loopback port; yields the port.

    No mosquitto binary: skipped locally, a failure under TAKTFLOW_STRICT=1 (CI installs it).
    """
    mosquitto = mosquitto_for(request, tmp_path_factory)
    try:
        yield mosquitto.port
    finally:
        mosquitto.stop()


@pytest.fixture
def restartable_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mosquitto]:
    """A Mosquitto of this test's own, which the test may stop, restart and kill."""
    mosquitto = mosquitto_for(request, tmp_path_factory)
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


def mosquitto_for(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Mosquitto:
    """A started Mosquitto (the caller stops it), or a skip/failure if it is not installed."""
    if not os.path.exists(MOSQUITTO):
        root = request.config.pluginmanager.get_plugin(str(ROOT_CONFTEST))
        assert root is not None, f"{ROOT_CONFTEST} is not loaded"
        root.missing_service(f"{MOSQUITTO} is not installed (Debian: apt-get install mosquitto)")
    return Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
