"""A simulated factory: presses that behave like real ones, served as Modbus TCP PLCs.

``SimulatedPress`` is the behaviour model: pure, driven by the time it is given and by a seeded
random generator, so tests replay exactly. ``SimulatedPlc`` serves a press's register image
over Modbus TCP with the layout of a connector file's points, so the connector runtime polls
it exactly as it would poll the real PLC. ``load_simulation`` reads seed_data/simulation.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from taktflow.connectors.definition import ConnectorDefinition, parse_connector
from taktflow.connectors.modbus_points import (
    BIT_TABLES,
    Point,
    Value,
    encode,
    register_count,
)
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


# ---------------------------------------------------------------------- settings
MACHINE_KEYS = {"id", "connector", "cycle_s", "cycle_noise", "reject_rate", "alarms_per_hour",
                "alarm_s", "setup_s", "speed", "seed"}  # fmt: skip


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
class SimulationSettings:
    machines: list[MachineSettings]
    file: str = ""


_NUMBERS: dict[str, tuple[float, float]] = {
    "cycle_s": (0.01, 86400),
    "cycle_noise": (0, 1),
    "reject_rate": (0, 1),
    "alarms_per_hour": (0, 3600),
    "setup_s": (0, 86400),
    "speed": (0.001, 10000),
}


def load_simulation(
    path: str | Path, connectors_path: str | Path = "connectors"
) -> SimulationSettings:
    """The machines of a simulation file; DefinitionError listing every problem with its line.

    ``connector:`` names a file in ``connectors_path`` (``press_1`` or ``press_1.yaml``) or a
    path of its own; its modbus host, port, device and points are what the simulator serves.
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
    machines: list[MachineSettings] = []
    for index, item in enumerate(doc["machines"]):
        if not isinstance(item, Map):
            problem("a machine is a mapping with id and connector", doc["machines"].item_pos[index])
            continue
        made = _machine(item, Path(connectors_path), problem)
        if made is not None:
            machines.append(made)
    seen: set[tuple[str, int]] = set()
    for machine in machines:
        assert machine.connector.modbus is not None
        where = (machine.connector.modbus.host, machine.connector.modbus.port)
        if where in seen:
            problem(f"machine {machine.id!r}: another machine already serves {where[0]}:"
                    f"{where[1]}", None)  # fmt: skip
        seen.add(where)
    if problems:
        raise DefinitionError(problems)
    return SimulationSettings(machines, file)


def _machine(
    item: Map, connectors: Path, problem: Callable[[str, Pos | None], None]
) -> MachineSettings | None:
    ident = item.get("id")
    where = f"machine {ident!r}"
    for key in item:
        if key not in MACHINE_KEYS:
            problem(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(MACHINE_KEYS))})",
                    item.key_pos.get(key))  # fmt: skip
    if not isinstance(ident, str) or not ident:
        problem(f"machine: `id` must be a name, not {ident!r}", item.at("id"))
        return None
    name = item.get("connector")
    if not isinstance(name, str) or not name:
        problem(f"{where}: `connector` names a connector file", item.at("connector"))
        return None
    source = connectors / name
    if source.suffix not in (".yaml", ".yml"):
        source = source.with_name(source.name + ".yaml")
    try:
        connector = parse_connector(source.read_text(encoding="utf-8"), str(source))
    except OSError as exc:
        problem(f"{where}: cannot read connector {str(source)!r}: {exc.strerror or exc}",
                item.at("connector"))  # fmt: skip
        return None
    except DefinitionError as exc:
        for found in exc.problems:
            problem(f"{where}: connector {found}", item.at("connector"))
        return None
    if connector.modbus is None:
        problem(f"{where}: connector {connector.id!r} is not a modbus connector",
                item.at("connector"))  # fmt: skip
        return None
    served = set(SimulatedPress().registers())
    if not served & set(connector.points):
        problem(f"{where}: connector {connector.id!r} has none of the points the simulator "
                f"writes ({', '.join(sorted(served))})", item.at("connector"))  # fmt: skip
        return None
    made = MachineSettings(id=ident, connector=connector)
    for key, (low, high) in _NUMBERS.items():
        if key not in item:
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
    if "alarm_s" in item:
        span = item["alarm_s"]
        if (
            isinstance(span, Seq)
            and len(span) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in span)
            and 0 <= span[0] <= span[1]
        ):
            made.alarm_s = (float(span[0]), float(span[1]))
        else:
            problem(f"{where}: alarm_s is [min, max] seconds with 0 <= min <= max, not {span!r}",
                    item.at("alarm_s"))  # fmt: skip
    if "seed" in item:
        seed = item["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            problem(f"{where}: seed must be a whole number, not {seed!r}", item.at("seed"))
        else:
            made.seed = seed
    return made


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
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        for _, plc in plcs:
            await plc.stop()
