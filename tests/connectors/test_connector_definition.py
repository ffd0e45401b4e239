"""Connector files: the demo ones read, broken ones give one clear problem with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from taktflow.connectors.definition import parse_connector
from taktflow.errors import DefinitionError

ROOT = Path(__file__).parents[2]
MODBUS = """\
connector: press_9
type: modbus
machine: press_9
modbus:
  host: 10.0.0.9
  port: 5020
  device_id: 3
  poll_ms: 250
  reconnect: {min_s: 1, max_s: 20}
points:
  parts: {table: holding, address: 10, type: uint32, word_order: little}
  running: {table: coil, address: 3}
  temp: {table: input, address: 0, type: int16, scale: 0.1, unit: "°C"}
rules:
  - id: produced
    point: parts
    trigger: increase
    message: parts_produced
    correlation: {machine_id: "'press_9'"}
    variables: {good: delta}
  - id: hot
    point: temp
    trigger: threshold
    above: 80
    hysteresis: 5
    start: overheat
"""
MQTT = """\
connector: station
type: mqtt
mqtt:
  url: mqtts://broker.plant:8883
  username_env: PLANT_MQTT_USER
subscriptions:
  - {topic: "plant/+/result", qos: 1}
  - {topic: "spBv1.0/line1/#", format: sparkplug, qos: 0}
rules:
  - id: result
    trigger: condition
    condition: payload.ok
    message: test_result
    message_id: payload.run_id
    correlation: {serial: payload.serial}
"""


def test_the_demo_connectors_read() -> None:
    for path in sorted((ROOT / "connectors").glob("*.yaml")):
        made = parse_connector(path.read_text(), str(path))
        assert made.id == path.stem and made.rules


def test_a_modbus_connector_reads_into_its_parts() -> None:
    made = parse_connector(MODBUS, "press_9.yaml")
    assert (made.id, made.type, made.machine, made.enabled) == (
        "press_9",
        "modbus",
        "press_9",
        True,
    )
    link = made.modbus
    assert (link.host, link.port, link.device_id, link.poll_ms) == ("10.0.0.9", 5020, 3, 250)
    assert (link.reconnect_min_s, link.reconnect_max_s, link.timeout_s) == (1, 20, 1.0)
    parts, running, temp = made.points["parts"], made.points["running"], made.points["temp"]
    assert (parts.table, parts.address, parts.type, parts.word_order) == (
        "holding", 10, "uint32", "little",
    )  # fmt: skip
    assert (running.type, temp.scale, temp.unit, temp.line) == ("bool", 0.1, "°C", 13)
    produced, hot = made.rules
    assert (produced.trigger, produced.point, produced.emit.message) == (
        "increase", "parts", "parts_produced",
    )  # fmt: skip
    assert produced.emit.correlation == {"machine_id": "'press_9'"}
    assert (hot.above, hot.hysteresis, hot.emit.start_process) == (80, 5, "overheat")
    assert made.messages == {"parts_produced"} and made.processes == {"overheat"}


def test_an_mqtt_connector_reads_into_its_parts() -> None:
    made = parse_connector(MQTT, "station.yaml")
    link = made.mqtt
    assert (link.host, link.port, link.tls, link.client_id) == (
        "broker.plant", 8883, True, "taktflow-station",
    )  # fmt: skip
    assert link.username_env == "PLANT_MQTT_USER"
    assert [(s.topic, s.qos, s.format) for s in made.subscriptions] == [
        ("plant/+/result", 1, "json"), ("spBv1.0/line1/#", 0, "sparkplug"),
    ]  # fmt: skip
    assert made.rules[0].emit.message_id == "payload.run_id"
    assert link.protocol == "5"


@pytest.mark.parametrize("written", ["5", '"5"', "3.1.1", '"3.1.1"'])
def test_an_mqtt_connector_speaks_the_protocol_it_names(written: str) -> None:
    text = MQTT.replace("  username_env", f"  protocol: {written}\n  username_env")
    assert parse_connector(text, "station.yaml").mqtt.protocol == written.strip('"')


def test_an_mqtt_connector_without_url_uses_the_configured_broker() -> None:
    text = MQTT.replace("  url: mqtts://broker.plant:8883\n", "")
    assert parse_connector(text, "s.yaml").mqtt.url == "mqtt://127.0.0.1:1883"
    link = parse_connector(text, "s.yaml", mqtt_url="mqtts://hub.plant:8884").mqtt
    assert (link.url, link.host, link.port, link.tls) == (
        "mqtts://hub.plant:8884", "hub.plant", 8884, True,
    )  # fmt: skip
    # A url in the file goes first.
    assert parse_connector(MQTT, "s.yaml", mqtt_url="mqtt://other:1").mqtt.host == "broker.plant"


BROKEN = [
    # (name, text, line, column, fragment)
    ("empty", "", 1, 1, "file is empty"),
    ("not a mapping", "- a\n", 1, 1, "starts with `connector: <id>`"),
    ("bad id", MODBUS.replace("press_9\ntype", "Press 9\ntype"), 1, 12, "the id must be"),
    ("bad type", MODBUS.replace("type: modbus", "type: opcua"), 2, 7, "modbus or mqtt"),
    ("unknown key", MODBUS.replace("machine: press_9", "machin: press_9"), 3, 1,
     "unknown key 'machin'"),
    ("no link", MODBUS.split("modbus:")[0] + MODBUS.split("reconnect: {min_s: 1, max_s: 20}\n")[1],
     1, 1, "`modbus:` (the connection settings) is missing"),
    ("port range", MODBUS.replace("port: 5020", "port: 70000"), 6, 9, "port must be a whole"),
    ("bad table", MODBUS.replace("table: coil", "table: coils"), 12, 20, "table must be one of"),
    ("bad point type", MODBUS.replace("type: uint32", "type: u32"), 11, 46, "type must be one"),
    ("bool in register", MODBUS.replace("type: int16", "type: bool"), 13, 42,
     "registers hold numbers"),
    ("word order", MODBUS.replace("word_order: little", "word_order: swapped"), 11, 66,
     "word_order must be big or little"),
    ("unknown point", MODBUS.replace("point: parts", "point: part"), 16, 12,
     "unknown point 'part' (points: parts, running, temp)"),
    ("unknown trigger", MODBUS.replace("trigger: increase", "trigger: rise"), 17, 14,
     "trigger must be one of"),
    ("bad expression", MODBUS.replace("good: delta}", "good: delta +}"), 20, 23,
     "variables 'good'"),
    ("both emits", MODBUS.replace("    start: overheat", "    start: x\n    message: y"), 21, 5,
     "one of them"),
    ("threshold without limit", MODBUS.replace("    above: 80\n", ""), 21, 5,
     "`above:` or `below:`"),
    ("duplicate rule", MODBUS.replace("id: hot", "id: produced"), 21, 9, "used twice"),
    ("secret in file", MQTT.replace("PLANT_MQTT_USER", "anna"), 5, 17,
     "names an environment variable"),
    ("bad topic", MQTT.replace("plant/+/result", "plant/x+/result"), 7, 13,
     "not a valid MQTT topic filter"),
    ("bad format", MQTT.replace("format: sparkplug", "format: xml"), 8, 40, "format must be"),
    ("points on mqtt", MQTT + "points: {a: {table: coil, address: 1}}\n", 16, 1,
     "has subscriptions, not points"),
    ("unknown protocol", MQTT.replace("  username_env", "  protocol: 4\n  username_env"), 5, 13,
     'protocol must be "5" or "3.1.1", not 4'),
    ("protocol 3.1 (a number)", MQTT.replace("  username_env", "  protocol: 3.1\n  username_env"),
     5, 13, 'protocol must be "5" or "3.1.1", not 3.1'),
    ("session expiry on 3.1.1", MQTT.replace("  username_env", "  protocol: 3.1.1\n"
     "  session_expiry_s: 60\n  username_env"), 6, 3, "session_expiry_s is MQTT 5 only"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "line", "column", "fragment"), BROKEN,
                         ids=[case[0] for case in BROKEN])  # fmt: skip
def test_a_broken_connector_file_names_the_line(
    name: str, text: str, line: int, column: int, fragment: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_connector(text, "c.yaml")
    problems = caught.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    assert (problems[0].line, problems[0].column) == (line, column), str(problems[0])
    assert fragment in problems[0].reason, str(problems[0])
