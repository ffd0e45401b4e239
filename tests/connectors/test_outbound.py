"""Workflows reach machines: mqtt.publish and modbus.write go through the outbox (committed
with the step, sent by the connector runtime, in order, retried, dead-lettered, replayable);
machine.set_context feeds `machine` in rules; rules with `start:` start a process once."""

from __future__ import annotations

import re
import struct
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from connector_support import Running, wait_for
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from taktflow.connectors.actions import register_connector_actions
from taktflow.connectors.definition import parse_connector
from taktflow.connectors.paho_support import stop_loop
from taktflow.connectors.runtime import ConnectorRuntime
from taktflow.engine.actions import ActionRegistry, builtin_actions
from taktflow.engine.clock import ManualClock
from taktflow.engine.outbox import MAX_SEND_ATTEMPTS
from taktflow.engine.runtime import WorkflowEngine, retry_delay
from taktflow.yamlflow import COMPILERS


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "connectors"
    path.mkdir()
    return path


@pytest.fixture
def actions(folder: Path) -> ActionRegistry:
    registry = ActionRegistry()
    builtin_actions(registry)
    register_connector_actions(registry, folder)
    return registry


def press(port: int, extra_rules: str = "") -> str:
    return f"""\
connector: press_o
type: modbus
machine: press_o
modbus: {{host: 127.0.0.1, port: {port}, poll_ms: 20, timeout_s: 0.3,
          reconnect: {{min_s: 0.05, max_s: 0.2}}}}
points:
  setpoint: {{table: holding, address: 10, type: float32}}
  enable: {{table: coil, address: 3}}
  parts: {{table: holding, address: 0, type: uint32}}
  alarm: {{table: discrete, address: 0}}
rules:
{extra_rules or "  []"}
"""


def write_file(folder: Path, text: str) -> Any:
    (folder / "press_o.yaml").write_text(text)
    return parse_connector(text, str(folder / "press_o.yaml"))


SETPOINT = """\
process: download_setpoint
steps:
  - service: Download setpoint
    action: modbus.write
    params: {connector: "'press_o'", point: point, value: value}
    result: written
"""

PUBLISH = """\
process: andon
steps:
  - service: Light
    action: mqtt.publish
    params: {topic: "'plant/andon/' + line", payload: "{'color': color}", connector: "'bus'"}
"""


def test_modbus_write_is_sent_after_the_step_commits(
    engine: WorkflowEngine, plc: Any, folder: Path
) -> None:
    definition = write_file(folder, press(plc.port))
    engine.deploy_text("download_setpoint.yaml", SETPOINT)

    started = engine.start("download_setpoint", {"point": "setpoint", "value": 62.5})
    assert started["status"] == "completed"
    [row] = engine.outbox()
    assert (row["status"], row["target"], row["body"]["value"]) == ("pending", "modbus:press_o",
                                                                    62.5)  # fmt: skip
    assert plc.get("holding", 10, 2) == [0, 0], "nothing is written before the runtime sends"

    engine.start("download_setpoint", {"point": "enable", "value": True})
    with Running(ConnectorRuntime([definition], engine)):
        wait_for(lambda: all(r["status"] == "sent" for r in engine.outbox()))
    assert plc.get("holding", 10, 2) == list(struct.unpack(">HH", struct.pack(">f", 62.5)))
    assert plc.get("coil", 3) == [True]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"point": "spindle", "value": 1}, "has no point 'spindle'"),
        ({"point": "alarm", "value": True}, "read-only discrete table"),
        ({"point": "setpoint", "value": "fast"}, "setpoint"),
    ],
)
def test_a_wrong_write_fails_the_step_with_the_reason(
    engine: WorkflowEngine, folder: Path, data: dict, message: str
) -> None:
    write_file(folder, press(1502))
    engine.deploy_text("download_setpoint.yaml", SETPOINT)
    started = engine.start("download_setpoint", data)
    assert started["status"] == "error"
    error = engine.instance(started["instance_id"])["error"]["message"]
    assert message in error and "press_o" in error
    assert engine.outbox() == [], "a failed step sends nothing"


def test_a_write_to_a_dead_plc_is_retried_in_order_then_dead_lettered_and_replayed(
    engine: WorkflowEngine, plc: Any, folder: Path, clock: ManualClock
) -> None:
    definition = write_file(folder, press(plc.port))
    engine.deploy_text("download_setpoint.yaml", SETPOINT)
    engine.start("download_setpoint", {"point": "setpoint", "value": 10.0})
    engine.start("download_setpoint", {"point": "setpoint", "value": 20.0})
    plc.stop()

    def rows() -> list[dict]:
        return sorted(engine.outbox(), key=lambda r: r["id"])

    with Running(ConnectorRuntime([definition], engine)):
        wait_for(lambda: rows()[0]["attempts"] == 1)
        first, second = rows()
        assert "press_o" in first["error"] and first["status"] == "pending"
        assert second["attempts"] == 0, "the later write to the same PLC waits for the first"
        for attempt in range(1, MAX_SEND_ATTEMPTS):
            clock.advance(retry_delay(attempt) + timedelta(seconds=1))
            wait_for(lambda n=attempt: rows()[0]["attempts"] == n + 1)
        # Given up: the next write of that PLC gets its turn.
        wait_for(lambda: rows()[1]["attempts"] == 1)
    first, second = rows()
    assert first["status"] == "failed" and second["status"] == "pending"
    replayed = engine.replay_outbox(first["id"], actor="eng")
    assert replayed["status"] == "pending" and replayed["attempts"] == 0


@pytest.fixture
def subscriber(broker: int) -> Any:
    received: list[mqtt.MQTTMessage] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = lambda c, u, msg: received.append(msg)
    client.connect("127.0.0.1", broker)
    client.loop_start()
    client.subscribe("plant/andon/#", qos=1)
    try:
        yield received
    finally:
        client.disconnect()
        stop_loop(client)


def test_mqtt_publish_reaches_the_broker_with_its_outbox_id(
    engine: WorkflowEngine, broker: int, folder: Path, subscriber: list
) -> None:
    text = f"""\
connector: bus
type: mqtt
mqtt: {{url: "mqtt://127.0.0.1:{broker}", client_id: taktflow-bus-test}}
subscriptions: [{{topic: "bus/none", qos: 1}}]
"""
    (folder / "bus.yaml").write_text(text)
    definition = parse_connector(text, "bus.yaml")
    engine.deploy_text("andon.yaml", PUBLISH)
    engine.start("andon", {"line": "L1", "color": "red"})
    engine.start("andon", {"line": "L1", "color": "green"})

    with Running(ConnectorRuntime([definition], engine)):
        wait_for(lambda: len(subscriber) == 2)
    assert [m.payload for m in subscriber] == [b'{"color": "red"}', b'{"color": "green"}']
    assert {m.topic for m in subscriber} == {"plant/andon/L1"}
    ids = [dict(m.properties.UserProperty)["taktflow-outbox-id"] for m in subscriber]
    rows = sorted(engine.outbox(), key=lambda r: r["id"])
    assert ids == [str(r["id"]) for r in rows]
    assert all(r["status"] == "sent" for r in rows)


def test_rules_read_the_machine_context_and_start_processes_once(
    engine: WorkflowEngine, plc: Any, folder: Path
) -> None:
    rules = """\
  - id: produced
    point: parts
    trigger: increase
    message: parts_produced
    correlation: {work_order: machine.work_order}
    variables: {good: delta}
  - id: stopped
    point: alarm
    trigger: rising_edge
    start: downtime
    correlation: {machine: machine.id}
    variables: {order: machine.work_order}
"""
    definition = write_file(folder, press(plc.port, rules))
    engine.deploy_text("op.yaml", """\
process: op
steps:
  - service: Machine works on the order
    action: machine.set_context
    params: {machine: "'press_o'", work_order: order}
  - wait: Parts
    message: parts_produced
    correlate: [work_order]
    into: parts
""")  # fmt: skip
    engine.deploy_text("downtime.yaml", "process: downtime\nsteps:\n  - manual: Give a reason\n")
    order = engine.start("op", {"order": "WO-7", "work_order": "WO-7"})["instance_id"]
    assert engine.machine_context("press_o") == {"work_order": "WO-7"}

    with Running(ConnectorRuntime([definition], engine)) as running:
        wait_for(lambda: running.status()["polls"] >= 2)
        plc.set("holding", 0, [0, 4])
        plc.set("discrete", 0, [True])
        wait_for(lambda: engine.instance(order)["status"] == "completed")
        wait_for(lambda: any(i["process_id"] == "downtime" for i in engine.instances()))
    assert engine.instance(order)["data"]["parts"]["good"] == 4
    [downtime] = [i for i in engine.instances() if i["process_id"] == "downtime"]
    data = engine.instance(downtime["instance_id"])["data"]
    assert (data["machine"], data["order"]) == ("press_o", "WO-7")
    # A restart does not start it again: the edge was stored with its event.
    with Running(ConnectorRuntime([definition], engine)) as running:
        wait_for(lambda: running.status()["polls"] >= 3)
    assert sum(i["process_id"] == "downtime" for i in engine.instances()) == 1


def test_an_engine_failure_holds_the_poll_and_loses_nothing(
    engine: WorkflowEngine, plc: Any, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = """\
  - id: produced
    point: parts
    trigger: increase
    message: parts_produced
    correlation: {machine: "'press_o'"}
    variables: {good: delta}
"""
    definition = write_file(folder, press(plc.port, rules))
    real = engine.record_connector_events
    broken = {"on": True}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if broken["on"]:
            raise OSError("database is away")
        return real(*args, **kwargs)

    plc.set("holding", 0, [0, 10])
    monkeypatch.setattr(engine, "record_connector_events", flaky)
    with Running(ConnectorRuntime([definition], engine)) as running:
        status = wait_for(lambda: running.status()["state"] == "engine_unavailable"
                          and running.status())  # fmt: skip
        assert "database is away" in status["last_error"]
        plc.set("holding", 0, [0, 15])
        broken["on"] = False
        wait_for(lambda: engine.connector_state("press_o").get("point:parts") == 15)
        plc.set("holding", 0, [0, 17])
        wait_for(lambda: engine.connector_state("press_o").get("point:parts") == 17)
    # The baseline was taken once the engine came back (15), then one rise of 2: no event was
    # made from the rise 10 -> 15 that happened before anything had been stored.
    assert sum(engine.connector_overview("press_o")["messages"].values()) == 1


def test_the_guide_example_deploys_and_fills_the_outbox(sa_engine: Any, clock: ManualClock) -> None:
    root = Path(__file__).parents[2]
    text = (root / "docs" / "connectors.md").read_text()
    example = re.search(r"```yaml\n(process: release_to_press\n.*?)```", text, re.S)
    assert example, "docs/connectors.md lost its release_to_press example"
    registry = ActionRegistry()
    builtin_actions(registry)
    register_connector_actions(registry, root / "connectors")  # the demo plant's files
    engine = WorkflowEngine(sa_engine, clock=clock, actions=registry, compilers=COMPILERS)
    engine.deploy_text("release_to_press.yaml", example.group(1))

    done = engine.start("release_to_press", {"order_id": "PO-1", "quantity": 40, "speed": 30})

    assert done["status"] == "completed"
    kinds = sorted((r["kind"], r["target"]) for r in engine.outbox())
    assert kinds == [("modbus.write", "modbus:press_1"), ("mqtt.publish", "mqtt")]
    assert engine.machine_context("press_1") == {"work_order": "PO-1", "operation": 10}
