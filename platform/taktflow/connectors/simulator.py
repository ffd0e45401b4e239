"""A simulated factory: presses served as Modbus TCP PLCs, test stations that publish over MQTT.

``SimulatedPress`` and ``SimulatedTestStation`` are the behaviour models: pure, driven by the
time they are given and by a seeded random generator, so tests replay exactly. ``SimulatedPlc``
serves a press's register image over Modbus TCP with the layout of a connector file's points,
so the connector runtime polls it exactly as it would poll the real PLC; ``StationPublisher``
sends a station's results to the broker and topic its connector file subscribes to.
``load_simulation`` reads seed_data/simulation.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from taktflow.config import DEFAULT_MQTT_URL
from taktflow.connectors.definition import ConnectorDefinition, parse_connector
from taktflow.connectors.modbus_points import (
    BIT_TABLES,
    Point,
    Value,
    encode,
    register_count,
)
from taktflow.connectors.paho_support import stop_loop
from taktflow.errors import DefinitionError, DefinitionProblem, TaktflowError
from taktflow.yamlflow.loader import Map, Pos, Seq, YamlProblem, load

IDLE, RUNNING, ALARM, SETUP = 0, 1, 2, 3
#: Alarm codes a press raises (door open, die jam, low oil pressure, light curtain, overload).
ALARM_CODES = (101, 102, 103, 104, 105)
#: A coil point of this name resets the counters when a client writes true to it.
RESET_POINT = "reset"
_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


class SimulationError(TaktflowError):
    """A simulated PLC could not be served (typically: its port is taken)."""

    code = "simulation_failed"


class SimulatedPress:
    """A press that makes parts while running, scraps some, stops for alarms and setups.

    Time is whatever ``step(now)`` is given (monotonic seconds); ``speed`` multiplies it, so
    a demo can show an hour of production in a minute. Events are processed in simulated-time
    order, so one long step gives the same result as many short ones with the same seed.
    """

    def __init__(
        self,
        *,
        cycle_s: float = 6.0,
        cycle_noise: float = 0.1,
        reject_rate: float = 0.02,
        alarms_per_hour: float = 2.0,
        alarm_s: tuple[float, float] = (30.0, 180.0),
        setup_s: float = 120.0,
        speed: float = 1.0,
        seed: int | None = None,
        start: float = 0.0,
        oil_ambient_c: float = 25.0,
        oil_running_c: float = 68.0,
        oil_tau_s: float = 1200.0,
    ) -> None:
        if cycle_s <= 0 or speed <= 0:
            raise ValueError("cycle_s and speed must be positive")
        self.cycle_s = cycle_s
        self.cycle_noise = cycle_noise
        self.reject_rate = reject_rate
        self.alarms_per_hour = alarms_per_hour
        self.alarm_s = alarm_s
        self.setup_s = setup_s
        self.speed = speed
        self.oil_ambient_c = oil_ambient_c
        self.oil_running_c = oil_running_c
        self.oil_tau_s = oil_tau_s
        self.rng = random.Random(seed)
        self.parts = 0
        self.rejects = 0
        self.state = RUNNING
        self.alarm_code = 0
        self.oil_temp = oil_ambient_c
        #: Simulated seconds since the start.
        self.sim_time = 0.0
        self._clock = start
        self._until = math.inf  # end of the current alarm or setup
        self._enter_running()

    # ------------------------------------------------------------------ model
    def _cycle(self) -> float:
        # Never shorter than a tenth of the nominal cycle: noise must not make parts for free.
        drawn = self.rng.gauss(self.cycle_s, self.cycle_noise * self.cycle_s)
        return max(0.1 * self.cycle_s, drawn)

    def _enter_running(self) -> None:
        self.state = RUNNING
        self.alarm_code = 0
        self._until = math.inf
        self._next_part = self.sim_time + self._cycle()
        rate = self.alarms_per_hour / 3600.0
        # Exponential waiting time: alarms arrive at a constant rate while running.
        self._next_alarm = self.sim_time + self.rng.expovariate(rate) if rate > 0 else math.inf

    def _advance_oil(self, dt: float) -> None:
        target = self.oil_running_c if self.state == RUNNING else self.oil_ambient_c
        self.oil_temp = target + (self.oil_temp - target) * math.exp(-dt / self.oil_tau_s)

    def _advance_to(self, target: float) -> None:
        while self.sim_time < target:
            if self.state == RUNNING:
                event = min(self._next_part, self._next_alarm, target)
            else:
                event = min(self._until, target)
            self._advance_oil(event - self.sim_time)
            self.sim_time = event
            if self.state == RUNNING and event == self._next_alarm:
                self.state = ALARM
                self.alarm_code = self.rng.choice(ALARM_CODES)
                low, high = self.alarm_s
                self._until = event + self.rng.uniform(low, high)
            elif self.state == RUNNING and event == self._next_part:
                self.parts += 1
                if self.rng.random() < self.reject_rate:
                    self.rejects += 1
                self._next_part = event + self._cycle()
            elif self.state in (ALARM, SETUP) and event == self._until:
                self._enter_running()

    def next_change(self) -> float:
        """Simulated time of the next change of a counter or of the state (inf while idle):
        a simulation that steps from change to change reads every part and every stop."""
        if self.state == RUNNING:
            return min(self._next_part, self._next_alarm)
        return self._until

    def step(self, now: float) -> None:
        """Advance the model to monotonic time ``now`` (seconds; earlier times are ignored)."""
        if now <= self._clock:
            return
        self._advance_to(self.sim_time + (now - self._clock) * self.speed)
        self._clock = now

    def reset(self, now: float | None = None) -> None:
        """Order change: counters to 0, then setup for ``setup_s`` before running again."""
        if now is not None:
            self.step(now)
        self.parts = 0
        self.rejects = 0
        self.alarm_code = 0
        self.state = SETUP
        self._until = self.sim_time + self.setup_s

    def fault(self, code: int, seconds: float, now: float | None = None) -> None:
        """An alarm `code` now (a scripted breakdown): stopped `seconds`, then running again."""
        if now is not None:
            self.step(now)
        self.state, self.alarm_code = ALARM, code
        self._until = self.sim_time + seconds

    def stop(self, now: float | None = None) -> None:
        """The operator stops the press: idle until ``start``."""
        if now is not None:
            self.step(now)
        self.state = IDLE
        self.alarm_code = 0
        self._until = math.inf

    def start(self, now: float | None = None) -> None:
        if now is not None:
            self.step(now)
        if self.state == IDLE:
            self._enter_running()

    # ------------------------------------------------------------------ register image
    def registers(self) -> dict[str, Value]:
        """Current values by the point names a press's connector file uses."""
        return {
            # uint32 counters wrap like the PLC's would, instead of failing to encode.
            "part_counter": self.parts % 2**32,
            "reject_counter": self.rejects % 2**32,
            "state_code": self.state,
            "alarm_code": self.alarm_code,
            "oil_temp": round(self.oil_temp, 2),
        }

    def image(self, points: dict[str, Point]) -> list[tuple[str, int, list[int] | list[bool]]]:
        """(table, address, values) writes that put ``registers()`` into a PLC's memory."""
        writes: list[tuple[str, int, list[int] | list[bool]]] = []
        for name, value in self.registers().items():
            point = points.get(name)
            if point is None:
                continue
            writes.append((point.table, point.address, encode_any(point, value)))
        return writes


def encode_any(point: Point, value: Value) -> list[int] | list[bool]:
    """``encode`` for every table: the PLC side also fills the read-only ones."""
    writable = "coil" if point.table in BIT_TABLES else "holding"
    encoded = encode(dataclasses.replace(point, table=writable), value)
    return [encoded] if isinstance(encoded, bool) else encoded


# ---------------------------------------------------------------------- Modbus server
def _device(device_id: int, points: dict[str, Point]) -> SimDevice:
    registers, bits = 100, 32
    for point in points.values():
        end = point.address + register_count(point)
        if point.table in BIT_TABLES:
            bits = max(bits, end)
        else:
            registers = max(registers, end)
    # One SimData per table: a shared list would make coils alias holding-register bits.
    return SimDevice(
        id=device_id,
        simdata=(
            [SimData(0, count=bits, values=False, datatype=DataType.BITS)],
            [SimData(0, count=bits, values=False, datatype=DataType.BITS)],
            [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)],
        ),
    )


class SimulatedPlc:
    """Serves one press over Modbus TCP and refreshes its registers every ``tick_s``."""

    def __init__(
        self,
        press: SimulatedPress,
        points: dict[str, Point],
        *,
        host: str = "127.0.0.1",
        port: int = 502,
        device_id: int = 1,
        tick_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.press = press
        self.points = points
        self.host = host
        self.port = port
        self.device_id = device_id
        self.tick_s = tick_s
        self.clock = clock
        self.server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen (port 0 picks a free port; ``self.port`` is then the real one) and tick."""
        self.server = ModbusTcpServer(
            [_device(self.device_id, self.points)], address=(self.host, self.port)
        )
        try:
            await self.server.serve_forever(background=True)
        except (OSError, RuntimeError):
            self.server = None
            # pymodbus only says "check address"; the usual cause is another simulator.
            raise SimulationError(
                f"cannot listen on {self.host}:{self.port}: the address is in use or not "
                "on this machine (is another `taktflow simulate` running?)"
            ) from None
        self.port = self.server.transport.sockets[0].getsockname()[1]
        await self.tick()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.tick()

    async def tick(self) -> None:
        """Advance the press to now and copy its register image into the server."""
        assert self.server is not None
        reset = self.points.get(RESET_POINT)
        if reset is not None and reset.table == "coil":
            got = await self.server.async_getValues(self.device_id, 1, reset.address, 1)
            if got and got[0]:
                self.press.reset(self.clock())
                await self.server.async_setValues(self.device_id, 1, reset.address, [False])
        self.press.step(self.clock())
        for table, address, values in self.press.image(self.points):
            await self.server.async_setValues(self.device_id, _FC[table], address, values)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


# ---------------------------------------------------------------------- test station
PASS, FAIL = "PASS", "FAIL"
#: What a test station measures on each part: name -> default limits [min, max] (torque in Nm,
#: angle in degrees) and how often a failed part fails on it.
MEASUREMENTS: dict[str, tuple[tuple[float, float], float]] = {
    "torque": ((11.0, 13.0), 0.7),
    "angle": ((30.0, 60.0), 0.3),
}


class SimulatedTestStation:
    """An end-of-line test station: tests one part per cycle, measures it, passes or fails it.

    A passing part's values are normal around the middle of their limits (a standard deviation
    of an eighth of the span, drawn again in the rare case they fall outside); a failing part
    (probability ``fail_rate``) has one value beyond a limit, torque more often than angle.
    Time works as for ``SimulatedPress``: ``step(now)`` returns the results of the parts
    finished up to monotonic time ``now``, ``speed`` times faster than real time, the same for
    one long step as for many short ones with the same seed. Serial numbers count up from
    ``serial_start`` in every run; run ids carry a token of their own per run, so they never
    repeat (a repeated run id would be taken for a redelivery and dropped).
    """

    def __init__(
        self,
        *,
        cycle_s: float = 20.0,
        cycle_noise: float = 0.1,
        fail_rate: float = 0.05,
        limits: dict[str, tuple[float, float]] | None = None,
        serial_prefix: str = "SN",
        serial_start: int = 1,
        speed: float = 1.0,
        seed: int | None = None,
        start: float = 0.0,
        epoch: float | None = None,
        run_prefix: str | None = None,
    ) -> None:
        if cycle_s <= 0 or speed <= 0:
            raise ValueError("cycle_s and speed must be positive")
        self.cycle_s = cycle_s
        self.cycle_noise = cycle_noise
        self.fail_rate = fail_rate
        self.limits = {name: (limits or {}).get(name, default)
                       for name, (default, _) in MEASUREMENTS.items()}  # fmt: skip
        for low, high in self.limits.values():
            if not low < high:
                raise ValueError("limits are (min, max) with min < max")
        self.serial_prefix = serial_prefix
        self.speed = speed
        self.rng = random.Random(seed)
        #: Wall-clock time (epoch seconds) of monotonic ``start``: results carry real times.
        self.epoch = time.time() if epoch is None else epoch
        self.run_prefix = run_prefix or uuid.uuid4().hex[:8]
        self.tested = 0
        self.failed = 0
        self._next_serial = serial_start
        self.sim_time = 0.0
        self._clock = start
        self._next_part = self._cycle()

    def _cycle(self) -> float:
        drawn = self.rng.gauss(self.cycle_s, self.cycle_noise * self.cycle_s)
        return max(0.1 * self.cycle_s, drawn)

    def step(self, now: float) -> list[dict[str, Any]]:
        """Results of the parts finished between the last step and monotonic time ``now``."""
        if now <= self._clock:
            return []
        target = self.sim_time + (now - self._clock) * self.speed
        self._clock = now
        results = []
        while self._next_part <= target:
            self.sim_time = self._next_part
            results.append(self.test_part())
            self._next_part = self.sim_time + self._cycle()
        self.sim_time = target
        return results

    def test_part(self) -> dict[str, Any]:
        """One part tested at the current simulated time: the JSON object the station sends."""
        self.tested += 1
        serial = f"{self.serial_prefix}{self._next_serial:06d}"
        self._next_serial += 1
        defects: list[str] = []
        failing = None
        if self.rng.random() < self.fail_rate:
            names = list(MEASUREMENTS)
            failing = self.rng.choices(names, weights=[MEASUREMENTS[n][1] for n in names])[0]
            side = self.rng.choice(("low", "high"))
            defects.append(f"{failing}_{side}")
            self.failed += 1
        values = {name: self._measure(name, defects[0] if name == failing else None)
                  for name in MEASUREMENTS}  # fmt: skip
        at = datetime.fromtimestamp(self.epoch + self.sim_time / self.speed, UTC)
        return {
            "serial": serial,
            "run_id": f"{self.run_prefix}-{self.tested:06d}",
            "result": FAIL if defects else PASS,
            **values,
            "defects": defects,
            "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def _measure(self, name: str, defect: str | None) -> float:
        low, high = self.limits[name]
        span = high - low
        sd = span / 8
        # Two significant decimals of the span: 0.01 Nm for a 2 Nm window, 0.1° for 30°.
        digits = max(0, 2 - math.floor(math.log10(span)))
        if defect is not None:
            # Clearly beyond the limit, also after rounding.
            beyond = 0.01 * span + abs(self.rng.gauss(0, sd))
            return round(low - beyond if defect.endswith("_low") else high + beyond, digits)
        middle = (low + high) / 2
        for _ in range(100):
            value = round(self.rng.gauss(middle, sd), digits)
            if low <= value <= high:
                return value
        return round(middle, digits)


class StationPublisher:
    """Publishes a test station's results to an MQTT broker, one JSON message per part, QoS 1.

    paho's network thread connects in the background and reconnects with a growing delay, so
    a broker that is not up yet, or goes away, is waited for: the station keeps testing and
    paho keeps the results (up to ``max_queued``) until the broker takes them. MQTT 3.1.1,
    which Mosquitto and the embedded broker both speak.
    """

    def __init__(
        self,
        name: str,
        station: SimulatedTestStation,
        *,
        url: str,
        topic: str,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tick_s: float = 0.1,
        max_queued: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        announce: Callable[[str], None] = print,
    ) -> None:
        self.name = name
        self.station = station
        self.url = url
        self.topic = topic
        self.tick_s = tick_s
        self.clock = clock
        self.announce = announce
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"taktflow-sim-{name}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )  # fmt: skip
        if username is not None or password is not None:
            self.client.username_pw_set(username or "", password)
        if parts.scheme == "mqtts":
            self.client.tls_set()
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        #: Results handed to paho, acknowledged by the broker, and dropped (queue full).
        self.published = self.acknowledged = self.dropped = 0
        self.connected = False
        self._said_waiting = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()

    def tick(self) -> None:
        for result in self.station.step(self.clock()):
            info = self.client.publish(self.topic, json.dumps(result), qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self.dropped += 1
            else:
                self.published += 1

    async def stop(self, linger_s: float = 1.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # A moment for the results in flight, then a clean disconnect.
        deadline = time.monotonic() + linger_s
        while self.connected and self.acknowledged < self.published:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        await asyncio.to_thread(self._halt)

    def _halt(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)

    # paho callbacks run in its network thread; an exception would silently end that thread.
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:  # fmt: skip
        try:
            if reason.is_failure:
                self.announce(f"{self.name}: the broker {self.url} refused the connection: "
                              f"{reason}; retrying")  # fmt: skip
                return
            self.connected = True
            self._said_waiting = False
            self.announce(f"{self.name}: connected to {self.url}")
        except Exception:  # noqa: BLE001 - keep paho's thread alive
            logging.getLogger("taktflow.simulator").exception("%s: on_connect", self.name)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        try:
            if not self._said_waiting:
                self._said_waiting = True
                self.announce(f"{self.name}: broker {self.url} not reachable (yet); retrying, "
                              "results are kept until it is")  # fmt: skip
        except Exception:  # noqa: BLE001 - keep paho's thread alive
            logging.getLogger("taktflow.simulator").exception("%s: on_connect_fail", self.name)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:  # fmt: skip
        try:
            was, self.connected = self.connected, False
            if was and reason.is_failure:
                self._said_waiting = True
                self.announce(f"{self.name}: lost the broker {self.url} ({reason}); "
                              "reconnecting, results are kept until it is back")  # fmt: skip
        except Exception:  # noqa: BLE001 - keep paho's thread alive
            logging.getLogger("taktflow.simulator").exception("%s: on_disconnect", self.name)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:  # fmt: skip
        self.acknowledged += 1


# ---------------------------------------------------------------------- settings
COMMON_KEYS = {"id", "connector", "cycle_s", "cycle_noise", "speed", "seed"}
MACHINE_KEYS = COMMON_KEYS | {"reject_rate", "alarms_per_hour", "alarm_s", "setup_s"}
STATION_KEYS = COMMON_KEYS | {"url", "topic", "fail_rate", "serial_prefix", "serial_start",
                              *MEASUREMENTS}  # fmt: skip


@dataclass
class MachineSettings:
    id: str
    connector: ConnectorDefinition
    cycle_s: float = 6.0
    cycle_noise: float = 0.1
    reject_rate: float = 0.02
    alarms_per_hour: float = 2.0
    alarm_s: tuple[float, float] = (30.0, 180.0)
    setup_s: float = 120.0
    speed: float = 1.0
    seed: int | None = None

    def press(self, start: float = 0.0) -> SimulatedPress:
        return SimulatedPress(
            cycle_s=self.cycle_s, cycle_noise=self.cycle_noise, reject_rate=self.reject_rate,
            alarms_per_hour=self.alarms_per_hour, alarm_s=self.alarm_s, setup_s=self.setup_s,
            speed=self.speed, seed=self.seed, start=start,
        )  # fmt: skip

    def plc(self, clock: Callable[[], float] = time.monotonic) -> SimulatedPlc:
        link = self.connector.modbus
        assert link is not None
        return SimulatedPlc(
            self.press(clock()), self.connector.points, host=link.host, port=link.port,
            device_id=link.device_id, clock=clock,
        )  # fmt: skip


@dataclass
class StationSettings:
    """A test station: publishes to `url` (default: its connector's broker) on `topic`."""

    id: str
    connector: ConnectorDefinition
    url: str
    topic: str
    cycle_s: float = 20.0
    cycle_noise: float = 0.1
    fail_rate: float = 0.05
    limits: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {name: limits for name, (limits, _) in MEASUREMENTS.items()}
    )
    serial_prefix: str = "SN"
    serial_start: int = 1
    speed: float = 1.0
    seed: int | None = None

    def station(self, start: float = 0.0) -> SimulatedTestStation:
        return SimulatedTestStation(
            cycle_s=self.cycle_s, cycle_noise=self.cycle_noise, fail_rate=self.fail_rate,
            limits=self.limits, serial_prefix=self.serial_prefix, serial_start=self.serial_start,
            speed=self.speed, seed=self.seed, start=start,
            run_prefix=f"{self.id}-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip

    def publisher(
        self,
        clock: Callable[[], float] = time.monotonic,
        announce: Callable[[str], None] = print,
    ) -> StationPublisher:
        link = self.connector.mqtt
        assert link is not None
        # The connector's credentials, when its variables are set: the same broker account.
        username = os.environ.get(link.username_env) if link.username_env else None
        password = os.environ.get(link.password_env) if link.password_env else None
        return StationPublisher(
            self.id, self.station(clock()), url=self.url, topic=self.topic, username=username,
            password=password, clock=clock, announce=announce,
        )  # fmt: skip


@dataclass
class SimulationSettings:
    #: The presses (Modbus TCP).
    machines: list[MachineSettings]
    file: str = ""
    #: The test stations (MQTT).
    stations: list[StationSettings] = field(default_factory=list)


_NUMBERS: dict[str, tuple[float, float]] = {
    "cycle_s": (0.01, 86400),
    "cycle_noise": (0, 1),
    "reject_rate": (0, 1),
    "alarms_per_hour": (0, 3600),
    "setup_s": (0, 86400),
    "speed": (0.001, 10000),
    "fail_rate": (0, 1),
}

Problem = Callable[[str, Pos | None], None]


def load_simulation(
    path: str | Path,
    connectors_path: str | Path = "connectors",
    mqtt_url: str = DEFAULT_MQTT_URL,
) -> SimulationSettings:
    """The machines of a simulation file; DefinitionError listing every problem with its line.

    ``connector:`` names a file in ``connectors_path`` (``press_1`` or ``press_1.yaml``) or a
    path of its own. A modbus connector makes the machine a press, served at the file's host,
    port and device with its points; an mqtt connector makes it a test station, which publishes
    to the file's broker (``mqtt_url``, the configured one, when the file names none).
    """
    file = str(path)
    problems: list[DefinitionProblem] = []

    def problem(reason: str, pos: Pos | None) -> None:
        problems.append(DefinitionProblem(file, reason, line=pos.line if pos else None,
                                          column=pos.column if pos else None))  # fmt: skip

    try:
        doc = load(Path(path).read_text(encoding="utf-8"), kind="simulation")
    except OSError as exc:
        problem(f"cannot read: {exc.strerror or exc}", None)
        raise DefinitionError(problems) from None
    except YamlProblem as exc:
        problem(exc.message, exc.pos)
        raise DefinitionError(problems) from None
    if not isinstance(doc, Map) or not isinstance(doc.get("machines"), Seq):
        problem("a simulation file is `machines:` with a list of machines", Pos(1, 1))
        raise DefinitionError(problems)
    for key in doc:
        if key != "machines":
            problem(f"unknown key {key!r} (allowed: machines)", doc.key_pos.get(key))
    settings = SimulationSettings([], file)
    seen_ids: dict[str, int] = {}
    for index, item in enumerate(doc["machines"]):
        if not isinstance(item, Map):
            problem("a machine is a mapping with id and connector", doc["machines"].item_pos[index])
            continue
        ident = item.get("id")
        if isinstance(ident, str) and ident in seen_ids:
            problem(f"machine id {ident!r} is used twice (first on line {seen_ids[ident]})",
                    item.at("id"))  # fmt: skip
            continue
        if isinstance(ident, str):
            seen_ids[ident] = item.pos.line
        made = _machine(item, Path(connectors_path), mqtt_url, problem)
        if isinstance(made, MachineSettings):
            settings.machines.append(made)
        elif isinstance(made, StationSettings):
            settings.stations.append(made)
    seen: set[tuple[str, int]] = set()
    for machine in settings.machines:
        assert machine.connector.modbus is not None
        where = (machine.connector.modbus.host, machine.connector.modbus.port)
        if where in seen:
            problem(f"machine {machine.id!r}: another machine already serves {where[0]}:"
                    f"{where[1]}", None)  # fmt: skip
        seen.add(where)
    if problems:
        raise DefinitionError(problems)
    return settings


def _machine(
    item: Map, connectors: Path, mqtt_url: str, problem: Problem
) -> MachineSettings | StationSettings | None:
    ident = item.get("id")
    where = f"machine {ident!r}"

    def unknown(allowed: set[str], what: str) -> None:
        for key in item:
            if key not in allowed:
                problem(f"{where}: unknown key {key!r} (allowed for {what}: "
                        f"{', '.join(sorted(allowed))})", item.key_pos.get(key))  # fmt: skip

    if not isinstance(ident, str) or not ident:
        problem(f"machine: `id` must be a name, not {ident!r}", item.at("id"))
        return None
    connector = _connector(item, where, connectors, mqtt_url, problem)
    if connector is None:
        unknown(MACHINE_KEYS | STATION_KEYS, "a press or a test station")
        return None
    if connector.mqtt is not None:
        unknown(STATION_KEYS, "a test station (mqtt connector)")
        return _station(item, ident, connector, problem)
    unknown(MACHINE_KEYS, "a press (modbus connector)")
    served = set(SimulatedPress().registers())
    if not served & set(connector.points):
        problem(f"{where}: connector {connector.id!r} has none of the points the simulator "
                f"writes ({', '.join(sorted(served))})", item.at("connector"))  # fmt: skip
        return None
    made = MachineSettings(id=ident, connector=connector)
    _numbers(item, made, where, problem)
    span = _span(item, "alarm_s", where, "seconds", problem, low_bound=0)
    if span is not None:
        made.alarm_s = span
    made.seed = _seed(item, where, problem)
    return made


def _connector(
    item: Map, where: str, connectors: Path, mqtt_url: str, problem: Problem
) -> ConnectorDefinition | None:
    name = item.get("connector")
    if not isinstance(name, str) or not name:
        problem(f"{where}: `connector` names a connector file", item.at("connector"))
        return None
    source = connectors / name
    if source.suffix not in (".yaml", ".yml"):
        source = source.with_name(source.name + ".yaml")
    try:
        return parse_connector(source.read_text(encoding="utf-8"), str(source),
                               mqtt_url=mqtt_url)  # fmt: skip
    except OSError as exc:
        problem(f"{where}: cannot read connector {str(source)!r}: {exc.strerror or exc}",
                item.at("connector"))  # fmt: skip
    except DefinitionError as exc:
        for found in exc.problems:
            problem(f"{where}: connector {found}", item.at("connector"))
    return None


def _station(
    item: Map, ident: str, connector: ConnectorDefinition, problem: Problem
) -> StationSettings | None:
    where = f"machine {ident!r}"
    assert connector.mqtt is not None
    url = connector.mqtt.url
    if "url" in item:
        raw = item["url"]
        if isinstance(raw, str) and _valid_url(raw):
            url = raw
        else:
            problem(f"{where}: url must look like mqtt://host:1883 (mqtts:// for TLS), not "
                    f"{raw!r}", item.at("url"))  # fmt: skip
    topic = item.get("topic")
    subscribed = [s.topic for s in connector.subscriptions]
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
        problem(f"{where}: `topic` is the topic the station publishes to, without wildcards "
                f"(one that {connector.id!r} subscribes to: {', '.join(subscribed)}), not "
                f"{topic!r}", item.at("topic"))  # fmt: skip
        return None
    if not any(mqtt.topic_matches_sub(s, topic) for s in subscribed):
        problem(f"{where}: connector {connector.id!r} does not subscribe to topic {topic!r} "
                f"(it subscribes to {', '.join(subscribed)})", item.at("topic"))  # fmt: skip
    made = StationSettings(id=ident, connector=connector, url=url, topic=topic)
    _numbers(item, made, where, problem)
    for name in MEASUREMENTS:
        span = _span(item, name, where, "limits", problem)
        if span is not None:
            made.limits[name] = span
    if "serial_prefix" in item:
        prefix = item["serial_prefix"]
        if isinstance(prefix, str) and re.fullmatch(r"[A-Za-z0-9_.-]{0,32}", prefix):
            made.serial_prefix = prefix
        else:
            problem(f"{where}: serial_prefix is up to 32 letters, digits, '_', '.', '-' (in "
                    f"quotes if it looks like a number), not {prefix!r}",
                    item.at("serial_prefix"))  # fmt: skip
    if "serial_start" in item:
        start = item["serial_start"]
        if isinstance(start, int) and not isinstance(start, bool) and 0 <= start <= 10**9:
            made.serial_start = start
        else:
            problem(f"{where}: serial_start must be a whole number from 0 to 1000000000, not "
                    f"{start!r}", item.at("serial_start"))  # fmt: skip
    made.seed = _seed(item, where, problem)
    return made


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("mqtt", "mqtts") and bool(parts.hostname)


def _numbers(item: Map, made: Any, where: str, problem: Problem) -> None:
    for key, (low, high) in _NUMBERS.items():
        if key not in item or not hasattr(made, key):
            continue
        value = item[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            problem(f"{where}: {key} must be a number in {low:g}..{high:g}, not {value!r}",
                    item.at(key))  # fmt: skip
            continue
        setattr(made, key, float(value))


def _span(
    item: Map, key: str, where: str, what: str, problem: Problem, *, low_bound: float | None = None
) -> tuple[float, float] | None:
    """`key: [min, max]`, or None (absent, or reported)."""
    if key not in item:
        return None
    span = item[key]
    if (
        isinstance(span, Seq)
        and len(span) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in span)
        and (low_bound is None or span[0] >= low_bound)
        and (span[0] <= span[1] if low_bound is not None else span[0] < span[1])
    ):
        return (float(span[0]), float(span[1]))
    if low_bound is not None:
        rule = f"{low_bound:g} <= min <= max"
    else:
        rule = "min < max"
    problem(f"{where}: {key} is [min, max] {what} with {rule}, not {span!r}", item.at(key))
    return None


def _seed(item: Map, where: str, problem: Problem) -> int | None:
    if "seed" not in item:
        return None
    seed = item["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        problem(f"{where}: seed must be a whole number, not {seed!r}", item.at("seed"))
        return None
    return seed


# ---------------------------------------------------------------------- running
async def run_simulation(
    settings: SimulationSettings,
    duration: float | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve every machine until ``duration`` seconds passed (forever when None)."""
    # pymodbus logs a traceback-like line per failed bind or dropped client; errors that
    # matter are raised as SimulationError instead.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    plcs: list[tuple[MachineSettings, SimulatedPlc]] = []
    publishers: list[StationPublisher] = []
    try:
        for machine in settings.machines:
            plc = machine.plc()
            try:
                await plc.start()
            except SimulationError as exc:
                raise SimulationError(f"{machine.id}: {exc.message}") from None
            plcs.append((machine, plc))
            announce(
                f"{machine.id}: simulated PLC on {plc.host}:{plc.port} "
                f"(Modbus TCP, device {plc.device_id})"
            )
        for station in settings.stations:
            publisher = station.publisher(announce=announce)
            announce(
                f"{station.id}: simulated test station publishing to {station.url} topic "
                f"{station.topic} (MQTT 3.1.1, QoS 1, a part every {station.cycle_s:g} s "
                f"simulated, speed {station.speed:g})"
            )
            await publisher.start()
            publishers.append(publisher)
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        for publisher in publishers:
            await publisher.stop()
        for _, plc in plcs:
            await plc.stop()
