"""An MQTT connector with a Sparkplug B subscription against a real Mosquitto: DDATA sent by
alias reaches a waiting workflow with metric names, a sequence gap makes the connector ask
the edge node for a rebirth, and a node that drops off turns its devices offline."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from connector_support import Running, wait_for
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sparkplug_support import EdgeNode

from taktflow.connectors.definition import parse_connector
from taktflow.connectors.paho_support import stop_loop
from taktflow.connectors.runtime import ConnectorRuntime
from taktflow.connectors.sparkplug import DataType, Metric
from taktflow.engine.runtime import WorkflowEngine

DEVICES = {
    "Press7": [Metric("PartCount", 100, DataType.UInt32), Metric("State", "RUN", DataType.String)],
    "Press8": [Metric("PartCount", 0, DataType.UInt32)],
}

WATCH = """\
process: watch_press
steps:
  - wait: Parts
    message: parts_counted
    correlate: [device]
    into: counted
  - wait: Offline
    message: machine_offline
    correlate: [device]
    into: offline
"""


def connector(port: int, group: str) -> Any:
    return parse_connector(f"""\
connector: spb_{group.lower()}
type: mqtt
mqtt: {{url: "mqtt://127.0.0.1:{port}", client_id: "taktflow-spb-{group}"}}
subscriptions:
  - {{topic: "spBv1.0/{group}/#", qos: 1, format: sparkplug}}
rules:
  - id: parts
    trigger: condition
    condition: "payload.type == 'DDATA' and 'PartCount' in payload.metrics"
    message: parts_counted
    correlation: {{device: payload.device}}
    variables: {{count: "payload.metrics['PartCount']", seq: payload.seq}}
  - id: offline
    trigger: condition
    condition: "not payload.online and payload.device"
    message: machine_offline
    correlation: {{device: payload.device}}
    variables: {{why: payload.type}}
""", f"spb_{group}.yaml")  # fmt: skip


@pytest.fixture
def state_watcher(broker: int) -> Any:
    seen: list[tuple[str, bytes]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = lambda c, u, msg: seen.append((msg.topic, msg.payload))
    client.connect("127.0.0.1", broker)
    client.loop_start()
    client.subscribe("spBv1.0/STATE/#", qos=1)
    try:
        yield seen
    finally:
        client.disconnect()
        stop_loop(client)


def test_sparkplug_metrics_rebirth_and_death_reach_workflows(
    engine: WorkflowEngine, broker: int, state_watcher: list
) -> None:
    engine.deploy_text("watch_press.yaml", WATCH)
    press7 = engine.start("watch_press", {"device": "Press7"})["instance_id"]
    press8 = engine.start("watch_press", {"device": "Press8"})["instance_id"]
    definition = connector(broker, "G1")
    edge = EdgeNode(broker, "G1", "Line3", DEVICES, bd_seq=1)
    try:
        with Running(ConnectorRuntime([definition], engine), until_connected=True) as running:
            # The host announced itself online (Sparkplug 3.0 STATE, retained).
            wait_for(lambda: any(b'"online": true' in p for _, p in state_watcher))
            edge.start()
            wait_for(lambda: "Line3/Press8/PartCount" in running.status()["last_values"])
            edge.publish_ddata("Press7", {"PartCount": 105})
            wait_for(lambda: engine.instance(press7)["data"].get("counted"))
            assert engine.instance(press7)["data"]["counted"]["count"] == 105

            edge.skip_seq(3)  # three messages lost on the way
            edge.publish_ddata("Press8", {"PartCount": 4})
            wait_for(lambda: edge.rebirths >= 1)
            assert running.status()["rebirths"] == 1
            assert "gap" in running.status()["last_error"]
            edge.publish_ddata("Press8", {"PartCount": 5})
            wait_for(lambda: engine.instance(press8)["data"].get("counted"))

            edge.kill()  # the broker publishes its NDEATH will: every device goes offline
            wait_for(lambda: engine.instance(press7)["status"] == "completed")
            wait_for(lambda: engine.instance(press8)["status"] == "completed")
            assert running.status()["last_values"]["Line3/Press7/online"] is False
    finally:
        edge.close()
    assert engine.instance(press7)["data"]["offline"]["why"] == "NDEATH"
    stored = engine.connector_state("spb_g1")
    assert stored["point:Line3/Press7/online"] is False
    assert stored["point:Line3/Press7/PartCount"] == 105
    # Stopping cleanly, the host said it is offline.
    wait_for(lambda: b'"online": false' in state_watcher[-1][1])
