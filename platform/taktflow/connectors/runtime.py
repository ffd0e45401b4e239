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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taktflow.connectors.definition import ConnectorDefinition
from taktflow.connectors.modbus_points import ModbusError, plan_reads, read_points
from taktflow.connectors.rules import RuleError, Sample, evaluate

log = logging.getLogger("taktflow.connectors")


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector, "state": self.state, "last_values": self.last_values,
            "last_error": self.last_error, "polls": self.polls, "events_out": self.events_out,
            "duplicates": self.duplicates, "events_in": self.events_in,
            "malformed": self.malformed, "rule_errors": self.rule_errors,
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

    async def run(self, stop: asyncio.Event) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        stored = await asyncio.to_thread(self.engine.connector_state, self.definition.id)
        self.rule_states = {
            key.removeprefix("rule:"): value for key, value in stored.items()
            if key.startswith("rule:") and isinstance(value, dict)
        }  # fmt: skip
        client = AsyncModbusTcpClient(
            self.link.host, port=self.link.port, timeout=self.link.timeout_s, retries=0
        )
        backoff = self.link.reconnect_min_s
        try:
            while not stop.is_set():
                try:
                    if not client.connected:
                        await client.connect()
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
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            client.close()
            self.status.state = "stopped"

    async def poll(self, client: Any) -> None:
        connector = self.definition.id
        values = await read_points(client, self.link.device_id, self.blocks, connector)
        sample = Sample(now=datetime.now(UTC), values=values)
        events, states = [], {}
        for rule in self.definition.rules:
            fired, state = evaluate(rule, self.rule_states.get(rule.id, {}), sample,
                                    connector=connector)  # fmt: skip
            states[rule.id] = state
            for event in fired:
                if event.kind != "message":
                    # Starting processes from machine events needs an idempotent start;
                    # until then such rules are reported, not silently dropped.
                    raise RuleError(f"rule {event.rule!r}: `start:` is not delivered yet; use "
                                    "`message:` with a message start event")  # fmt: skip
                events.append(
                    {"name": event.name, "correlation": event.correlation,
                     "variables": event.variables, "idempotency_key": event.idempotency_key}
                )  # fmt: skip
        stored = {f"point:{name}": value for name, value in values.items()}
        stored |= {f"rule:{rule_id}": state for rule_id, state in states.items()}
        ids = await asyncio.to_thread(
            self.engine.record_connector_events, connector, stored, events
        )
        # Committed: only now does the connector take the new state as its own.
        self.rule_states = states
        self.status.state = "connected"
        self.status.last_values = dict(values)
        self.status.last_error = None
        self.status.polls += 1
        self.status.events_out += sum(1 for i in ids if i is not None)
        self.status.duplicates += sum(1 for i in ids if i is None)

    def _failed(self, message: str, state: str) -> None:
        if message != self.status.last_error:
            log.warning("%s", message)
        self.status.state, self.status.last_error = state, message


class ConnectorRuntime:
    """Every enabled connector, each in its own task of one event loop."""

    def __init__(self, definitions: list[ConnectorDefinition], engine: Any) -> None:
        # Imported here: mqtt_runtime imports Status from this module.
        from taktflow.connectors.mqtt_runtime import MqttConnector

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

    def statuses(self) -> list[dict[str, Any]]:
        return [c.status.to_dict() for c in self.connectors] + [
            s.to_dict() for s in self.unsupported
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(c.run(stop) for c in self.connectors))
