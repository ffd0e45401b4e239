"""Service-task actions that reach machines: mqtt.publish, modbus.write, machine.set_context.

Each checks its parameters against the connector files when the step runs (a wrong point
name fails the step with the file and the names it has) and then only adds an outbox row in
the step's transaction; the connector runtime sends it (taktflow/engine/outbox.py says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taktflow.connectors.definition import ConnectorDefinition, read_folder
from taktflow.connectors.modbus_points import WRITABLE, encode
from taktflow.engine.actions import ActionContext, ActionRegistry, Param
from taktflow.engine.outbox import add_outbox, set_machine_context
from taktflow.errors import ValidationFailed

#: Outbox targets: "mqtt" (the platform's broker), "mqtt:<connector>", "modbus:<connector>".
MQTT_TARGET = "mqtt"
MAX_TOPIC_BYTES = 65535


def outbox_key(ctx: ActionContext, kind: str) -> str:
    """One row per executed task: a retried step finds its row instead of adding another."""
    return f"{kind}:{ctx.instance_id}:{ctx.task_id}"


class ConnectorFiles:
    """The connector folder, re-read when a file in it changes (engineers edit it live)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._seen: tuple[Any, ...] | None = None
        self._found: dict[str, ConnectorDefinition] = {}

    def _signature(self) -> tuple[Any, ...]:
        if not self.folder.is_dir():
            return ()
        return tuple(
            sorted((p.name, p.stat().st_mtime_ns) for p in self.folder.iterdir()
                   if p.suffix in (".yaml", ".yml"))
        )  # fmt: skip

    def get(self, connector: str, what: str) -> ConnectorDefinition:
        signature = self._signature()
        if signature != self._seen:
            found, _problems = read_folder(self.folder)
            self._found = {d.id: d for d in found}
            self._seen = signature
        definition = self._found.get(connector)
        if definition is None:
            known = ", ".join(sorted(self._found)) or "none"
            raise ValidationFailed(
                f"{what}: no connector {connector!r} in {self.folder}/ (connectors: {known})",
                details={"connector": "unknown connector"},
            )
        return definition


def register_connector_actions(registry: ActionRegistry, connectors_path: str | Path) -> None:
    files = ConnectorFiles(connectors_path)

    def mqtt_publish(
        ctx: ActionContext,
        topic: str,
        payload: Any = None,
        qos: int = 1,
        retain: bool = False,
        connector: str | None = None,
    ) -> dict[str, Any]:
        """Publish to an MQTT topic once the step commits (e.g. release an order to a
        machine, set an andon light). `payload`: a dict or list is sent as JSON, text as it is.
        Without `connector` it goes to the platform's broker (TAKTFLOW_MQTT_URL); with it, to
        that MQTT connector's broker."""
        problems = {}
        if not topic or "+" in topic or "#" in topic or "\x00" in topic:
            problems["topic"] = f"{topic!r} is not a topic to publish to (no wildcards, not empty)"
        elif len(topic.encode()) > MAX_TOPIC_BYTES:
            problems["topic"] = "longer than MQTT allows (65,535 bytes)"
        if qos not in (0, 1, 2):
            problems["qos"] = f"{qos!r}: QoS is 0, 1 or 2"
        if problems:
            raise ValidationFailed(
                "mqtt.publish: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
                details=problems,
            )
        target = MQTT_TARGET
        if connector is not None:
            definition = files.get(connector, "mqtt.publish")
            if definition.type != "mqtt":
                raise ValidationFailed(
                    f"mqtt.publish: connector {connector!r} ({definition.file}) is a "
                    f"{definition.type} connector, not mqtt",
                    details={"connector": "not an MQTT connector"},
                )
            target = f"mqtt:{connector}"
        body = {"topic": topic, "payload": payload, "qos": qos, "retain": retain}
        outbox_id = add_outbox(
            ctx.session, kind="mqtt.publish", target=target, body=body,
            idempotency_key=outbox_key(ctx, "mqtt.publish"), instance_id=ctx.instance_id,
            task_id=ctx.task_id, now=ctx.now,
        )  # fmt: skip
        return {"outbox_id": outbox_id, "target": target}

    def modbus_write(ctx: ActionContext, connector: str, point: str, value: Any) -> dict[str, Any]:
        """Write a value to a PLC point (coil or holding register) of a Modbus connector once
        the step commits (e.g. download a setpoint, enable a machine)."""
        definition = files.get(connector, "modbus.write")
        where = f"modbus.write: connector {connector!r} ({definition.file})"
        if definition.type != "modbus":
            raise ValidationFailed(f"{where} is a {definition.type} connector, not modbus",
                                   details={"connector": "not a Modbus connector"})  # fmt: skip
        found = definition.points.get(point)
        if found is None:
            raise ValidationFailed(
                f"{where} has no point {point!r} (points: {', '.join(definition.points)})",
                details={"point": "unknown point"},
            )
        if found.table not in WRITABLE:
            raise ValidationFailed(
                f"{where}: point {point!r} is in the read-only {found.table} table",
                details={"point": "read-only point"},
            )
        try:
            encode(found, value)
        except ValueError as exc:
            raise ValidationFailed(f"{where}: {exc}", details={"value": str(exc)}) from None
        target = f"modbus:{connector}"
        outbox_id = add_outbox(
            ctx.session, kind="modbus.write", target=target,
            body={"connector": connector, "point": point, "value": value},
            idempotency_key=outbox_key(ctx, "modbus.write"), instance_id=ctx.instance_id,
            task_id=ctx.task_id, now=ctx.now,
        )  # fmt: skip
        return {"outbox_id": outbox_id, "target": target}

    def machine_set_context(ctx: ActionContext, machine: str, **values: Any) -> dict[str, Any]:
        """Record what `machine` works on now (e.g. work_order, operation); connector rules
        read it as `machine.work_order`. Replaces the previous context; no values clears it."""
        if not machine or len(machine) > 200:
            raise ValidationFailed("machine.set_context: `machine` must be 1 to 200 characters",
                                   details={"machine": "invalid machine id"})  # fmt: skip
        set_machine_context(ctx.session, machine, values, actor=ctx.actor, now=ctx.now)
        return {"machine": machine, **values}

    registry.register(
        "mqtt.publish", mqtt_publish,
        [Param("topic", "str", description="topic to publish to (no wildcards)"),
         Param("payload", "any", required=False, description="dict/list -> JSON; text as is"),
         Param("qos", "int", required=False, description="0, 1 or 2 (default 1)"),
         Param("retain", "bool", required=False, description="keep as the topic's last value"),
         Param("connector", "str", required=False,
               description="MQTT connector whose broker to use (default: TAKTFLOW_MQTT_URL)")],
    )  # fmt: skip
    registry.register(
        "modbus.write", modbus_write,
        [Param("connector", "str", description="Modbus connector (connectors/<id>.yaml)"),
         Param("point", "str", description="a coil or holding-register point of it"),
         Param("value", "any", description="value the point's type can hold")],
    )  # fmt: skip
    registry.register(
        "machine.set_context", machine_set_context,
        [Param("machine", "str", description="machine id (a connector file's `machine:`)")],
        extra_params=True,
    )  # fmt: skip
