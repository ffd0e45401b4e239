"""The connector runtime: poll each PLC, run its rules, store state and events together.

One asyncio task per connector, so a slow or dead PLC never stalls the others. A poll's
events and the state that produced them (point values, rule states) are committed in one
transaction through the engine (`record_connector_events`); only then does the connector
move on, so a crash repeats at most the last poll, whose events are duplicates by key.
The database work runs in a worker thread to keep the event loop free for the other PLCs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taktflow.connectors.definition import ConnectorDefinition
from taktflow.connectors.modbus_points import ModbusError, plan_reads, read_points, write_point
from taktflow.connectors.rules import Event, RuleError, Sample, evaluate

log = logging.getLogger("taktflow.connectors")

#: Seconds between two status reports of the runtime (see engine.RUNTIME_STALE_S).
STATUS_EVERY_S = 3.0


@dataclass
class Status:
    """What an engineer wants to know about a connector right now."""

    connector: str
    # starting, connected, unreachable (Modbus), disconnected (MQTT), error, stopped, unsupported
    state: str = "starting"
    last_values: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    polls: int = 0
    events_out: int = 0
    duplicates: int = 0
    events_in: int = 0  # MQTT messages received, redeliveries included
    malformed: int = 0  # MQTT payloads that could not be decoded (acknowledged, not retried)
    rule_errors: int = 0  # MQTT messages a rule failed on (acknowledged, not retried)
    rebirths: int = 0  # Sparkplug B rebirth requests sent (sequence gaps, unknown nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector, "state": self.state, "last_values": self.last_values,
            "last_error": self.last_error, "polls": self.polls, "events_out": self.events_out,
            "duplicates": self.duplicates, "events_in": self.events_in,
            "malformed": self.malformed, "rule_errors": self.rule_errors,
            "rebirths": self.rebirths,
        }  # fmt: skip


class ModbusConnector:
    def __init__(self, definition: ConnectorDefinition, engine: Any) -> None:
        assert definition.modbus is not None
        self.definition = definition
        self.link = definition.modbus
        self.engine = engine
        self.blocks = plan_reads(list(definition.points.values()))
        self.status = Status(definition.id)
        self.rule_states: dict[str, dict[str, Any]] = {}
        self.client: Any = None
        # Polls and outbox writes share the client: one request at a time.
        self._io = asyncio.Lock()
        #: Called after each commit that stored events (the runtime wakes its dispatcher).
        self.wake: Callable[[], None] = lambda: None

    async def run(self, stop: asyncio.Event) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        stored = await asyncio.to_thread(self.engine.connector_state, self.definition.id)
        self.rule_states = {
            key.removeprefix("rule:"): value for key, value in stored.items()
            if key.startswith("rule:") and isinstance(value, dict)
        }  # fmt: skip
        client = self.client = AsyncModbusTcpClient(
            self.link.host, port=self.link.port, timeout=self.link.timeout_s, retries=0
        )
        backoff = self.link.reconnect_min_s
        try:
            while not stop.is_set():
                try:
                    await self.poll(client)
                    backoff = self.link.reconnect_min_s
                    delay = self.link.poll_ms / 1000
                except ModbusError as exc:
                    self._failed(str(exc), "unreachable" if exc.unreachable else "error")
                    delay = backoff if exc.unreachable else self.link.poll_ms / 1000
                    # Back off while the PLC is away instead of logging every poll.
                    backoff = min(backoff * 2, self.link.reconnect_max_s)
                    if exc.unreachable:
                        client.close()
                except RuleError as exc:
                    self._failed(str(exc), "error")
                    delay = self.link.poll_ms / 1000
                except Exception as exc:  # noqa: BLE001 - the engine failed: wait, then redo
                    # Nothing was taken: the next poll compares against the last committed
                    # state, so the events of this one are produced again, in order.
                    self._failed(f"{self.definition.id}: storing events failed, retrying in "
                                 f"{backoff:.0f} s: {type(exc).__name__}: {exc}",
                                 "engine_unavailable")  # fmt: skip
                    delay = backoff
                    backoff = min(backoff * 2, self.link.reconnect_max_s)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            client.close()
            self.status.state = "stopped"

    async def poll(self, client: Any) -> None:
        connector = self.definition.id
        async with self._io:
            if not client.connected:
                await client.connect()
            values = await read_points(client, self.link.device_id, self.blocks, connector)
        events, states, ids = await asyncio.to_thread(
            record_sample, self.engine, self.definition, self.rule_states, values,
            datetime.now(UTC))  # fmt: skip
        # Committed: only now does the connector take the new state as its own.
        self.rule_states = states
        self.status.state = "connected"
        self.status.last_values = dict(values)
        self.status.last_error = None
        self.status.polls += 1
        self.status.events_out += sum(1 for i in ids if i is not None)
        self.status.duplicates += sum(1 for i in ids if i is None)
        if events:
            self.wake()

    async def write(self, point_name: str, value: Any) -> None:
        """Write one point (an outbox row's modbus.write); ModbusError if the PLC is away."""
        point = self.definition.points.get(point_name)
        if point is None:
            raise ValueError(f"{self.definition.id} ({self.definition.file}) has no point "
                             f"{point_name!r} any more")  # fmt: skip
        async with self._io:
            if self.client is None:
                raise ModbusError(f"{self.definition.id}: not started", unreachable=True)
            if not self.client.connected:
                await self.client.connect()
            await write_point(self.client, self.link.device_id, point, value,
                              self.definition.id)  # fmt: skip

    def _failed(self, message: str, state: str) -> None:
        if message != self.status.last_error:
            log.warning("%s", message)
        self.status.state, self.status.last_error = state, message


def record_sample(
    engine: Any,
    definition: ConnectorDefinition,
    rule_states: dict[str, dict[str, Any]],
    values: dict[str, Any],
    now: datetime,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[int | None]]:
    """Run a connector's rules on one reading of its points and store the events, the point
    values and the rules' new states in one transaction: (events, new rule states, inbox ids,
    None for a duplicate). The caller takes the new states as its own only after this
    returns (a failure stores nothing, so the next reading produces the events again)."""
    machine = machine_context(engine, definition)
    sample = Sample(now=now, values=values)
    events, states = [], {}
    for rule in definition.rules:
        fired, state = evaluate(rule, rule_states.get(rule.id, {}), sample,
                                connector=definition.id, machine=machine)  # fmt: skip
        states[rule.id] = state
        events.extend(event_dict(event) for event in fired)
    stored = {f"point:{name}": value for name, value in values.items()}
    stored |= {f"rule:{rule_id}": state for rule_id, state in states.items()}
    ids = engine.record_connector_events(definition.id, stored, events, deliver=False)
    return events, states, ids


def event_dict(event: Event) -> dict[str, Any]:
    """A rule's event as record_connector_events takes it. A process start has no one to
    correlate with: its correlation values join its variables as start data."""
    if event.kind == "start":
        return {"kind": "start", "name": event.name, "correlation": {},
                "variables": {**event.correlation, **event.variables},
                "idempotency_key": event.idempotency_key}  # fmt: skip
    return {"kind": event.kind, "name": event.name, "correlation": event.correlation,
            "variables": event.variables, "idempotency_key": event.idempotency_key}  # fmt: skip


def machine_context(engine: Any, definition: ConnectorDefinition) -> dict[str, Any]:
    """`machine` in rule expressions: the machine's id and what workflows last set for it."""
    if definition.machine is None:
        return {}
    return {"id": definition.machine, **engine.machine_context(definition.machine)}


#: Inbox rows one dispatcher pass reads.
DISPATCH_LIMIT = 500


def _dispatch_due(engine: Any) -> bool:
    """One pass over what is due; True when it may have left rows for another pass. (Rows
    committed meanwhile wake the dispatcher again: no query just to find nothing.)"""
    return engine.dispatch(limit=DISPATCH_LIMIT) >= DISPATCH_LIMIT


class Dispatcher:
    """Delivers the events the connectors committed, right after the commit.

    Connectors only store (so a slow workflow step never holds up reading machines); this
    thread delivers, in order per connector, as soon as it is woken. The engine's worker
    would deliver them too, a worker interval later.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        pause = 1.0
        while not stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                while not stop.is_set() and _dispatch_due(self.engine):
                    pass
                pause = 1.0
            except Exception:  # noqa: BLE001 - the database is away: back off as a whole
                log.exception("delivering connector events failed; retrying in %.0f s", pause)
                stop.wait(pause)
                pause = min(pause * 2, 30.0)


class ProcessDispatcher:
    """The dispatcher as a child process (`taktflow connectors dispatch`), woken through its
    standard input.

    Delivery runs workflow steps; in a process of its own they use the machine's other core
    instead of competing with the connectors for one interpreter. A wake-up is only a hint
    (the child also looks every second), so a full pipe or a child that is restarting loses
    nothing. When this process ends, even by SIGKILL, the child reads end-of-file and stops.
    """

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.command = command
        self.env = env
        self._process: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None

    def wake(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            os.write(fd, b"\n")
        except (BlockingIOError, BrokenPipeError, OSError):
            pass  # full (a wake-up is pending anyway) or the child is gone (it is restarted)

    def run(self, stop: threading.Event) -> None:
        pause = 1.0
        while not stop.is_set():
            self._process = subprocess.Popen(self.command, stdin=subprocess.PIPE, env=self.env)
            assert self._process.stdin is not None
            fd = self._process.stdin.fileno()
            os.set_blocking(fd, False)
            self._fd = fd
            while not stop.is_set() and self._process.poll() is None:
                stop.wait(0.5)
            self._fd = None
            if stop.is_set():
                break
            self._process.stdin.close()
            log.error("the dispatcher process ended (status %s); starting it again in %.0f s",
                      self._process.returncode, pause)  # fmt: skip
            stop.wait(pause)
            pause = min(pause * 2, 30.0)
        self._stop_child()

    def _stop_child(self) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # end-of-file: the child finishes its batch and exits
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def dispatch_until_closed(engine: Any, wake_fd: int) -> None:
    """The loop of `taktflow connectors dispatch`: deliver whatever is due, then wait for a
    line on `wake_fd` or a second; stop at end-of-file (the connector runtime is gone)."""
    selector = selectors.DefaultSelector()
    selector.register(wake_fd, selectors.EVENT_READ)
    pause = 1.0
    while True:
        if selector.select(timeout=1.0) and not os.read(wake_fd, 65536):
            return
        try:
            while _dispatch_due(engine):
                pass
            pause = 1.0
        except Exception:  # noqa: BLE001 - the database is away: back off as a whole
            log.exception("delivering connector events failed; retrying in %.0f s", pause)
            time.sleep(pause)
            pause = min(pause * 2, 30.0)


class ConnectorRuntime:
    """Every enabled connector, each in its own task of one event loop, plus the dispatcher
    that delivers their events and the sender that empties the outbox.

    `mqtt_url` is the platform's broker, where mqtt.publish without a connector goes, spoken
    to in `mqtt_protocol` ("3.1.1" for the embedded demo broker). `dispatcher` delivers what
    the connectors store: a thread of this process by default, or a ProcessDispatcher.
    """

    def __init__(self, definitions: list[ConnectorDefinition], engine: Any,
                 *, mqtt_url: str | None = None, mqtt_protocol: str = "5",
                 dispatcher: Dispatcher | ProcessDispatcher | None = None) -> None:  # fmt: skip
        # Imported here: mqtt_runtime imports Status from this module.
        from taktflow.connectors.mqtt_runtime import MqttConnector
        from taktflow.connectors.outbox_sender import OutboxSender

        self.engine = engine
        self.dispatcher = dispatcher or Dispatcher(engine)
        self.connectors: list[ModbusConnector | MqttConnector] = []
        self.unsupported: list[Status] = []
        for d in definitions:
            if not d.enabled:
                continue
            if d.type == "modbus":
                self.connectors.append(ModbusConnector(d, engine))
            elif d.type == "mqtt":
                self.connectors.append(MqttConnector(d, engine))
            else:
                self.unsupported.append(
                    Status(d.id, state="unsupported", last_error=f"{d.type} connectors are not run")
                )
        for connector in self.connectors:
            connector.wake = self.dispatcher.wake
        self.outbox = OutboxSender(engine, self.connectors, mqtt_url, mqtt_protocol)

    def statuses(self) -> list[dict[str, Any]]:
        return [c.status.to_dict() for c in self.connectors] + [
            s.to_dict() for s in self.unsupported
        ]

    async def run(self, stop: asyncio.Event) -> None:
        halt = threading.Event()
        # Its own thread: delivery runs workflow steps, which must not block the PLC polls.
        dispatching = threading.Thread(target=self.dispatcher.run, args=(halt,),
                                       name="taktflow-dispatch", daemon=True)  # fmt: skip
        dispatching.start()
        try:
            await asyncio.gather(self.outbox.run(stop), self._report(stop),
                                 *(c.run(stop) for c in self.connectors))  # fmt: skip
        finally:
            halt.set()
            self.dispatcher.wake()
            await asyncio.to_thread(dispatching.join, 10)
            await self._store_statuses()

    async def _report(self, stop: asyncio.Event) -> None:
        """Store every connector's status every few seconds (other processes show it)."""
        while not stop.is_set():
            await self._store_statuses()
            try:
                await asyncio.wait_for(stop.wait(), timeout=STATUS_EVERY_S)
            except TimeoutError:
                pass

    async def _store_statuses(self) -> None:
        statuses = {c.definition.id: c.status.to_dict() for c in self.connectors}
        statuses |= {s.connector: s.to_dict() for s in self.unsupported}
        try:
            await asyncio.to_thread(self.engine.record_connector_status, statuses)
        except Exception:  # noqa: BLE001 - the database is away; the next report may work
            log.warning("storing the connectors' status failed", exc_info=True)
