"""The embedded MQTT broker of `make run` (amqtt, MQTT 3.1.1): connectors speaking 3.1.1 receive
through it and complete waiting workflows, the simulated test station reaches them, messages
wait while a connector is briefly away, and it refuses what it cannot serve."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from connector_support import Running, free_port, wait_for
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from taktflow.cli import cli
from taktflow.config import EMBEDDED_MQTT_PORT, EMBEDDED_MQTT_URL
from taktflow.connectors.broker import EmbeddedBroker, EmbeddedBrokerError
from taktflow.connectors.definition import parse_connector
from taktflow.connectors.runtime import ConnectorRuntime
from taktflow.connectors.simulator import SimulatedTestStation, StationPublisher
from taktflow.engine.runtime import WorkflowEngine

ROOT = Path(__file__).resolve().parents[2]
WAITER = """\
process: test_log
steps:
  - wait: Result
    message: test_result
    correlate: [serial]
    into: result
"""


class BrokerThread:
    """An EmbeddedBroker in an event loop of its own thread, as `connectors run` hosts it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.broker = EmbeddedBroker(self.url)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def __enter__(self) -> BrokerThread:
        self.thread.start()
        try:
            self.run(self.broker.start())
        except BaseException:
            self._end_loop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.broker.stop())
        self._end_loop()

    def _end_loop(self) -> None:
        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def connector(url: str | None, ident: str, *, protocol: str | None = '"3.1.1"') -> Any:
    lines = [f"connector: {ident}", "type: mqtt", "mqtt:", f"  client_id: taktflow-{ident}"]
    if url:
        lines.append(f"  url: {url}")
    if protocol:
        lines.append(f"  protocol: {protocol}")
    return parse_connector("\n".join(lines) + """
subscriptions:
  - {topic: "plant/+/station/10/result", qos: 1}
rules:
  - id: result
    trigger: condition
    condition: payload.serial is defined
    message: test_result
    message_id: payload.run_id
    correlation: {serial: payload.serial}
    variables: {passed: "payload.result == 'PASS'", torque_nm: payload.torque}
""", f"{ident}.yaml", mqtt_url="mqtt://127.0.0.1:1")  # fmt: skip


def publish(port: int, *payloads: dict[str, Any]) -> None:
    """Publish at QoS 1; return when the broker has acknowledged every message, or raise
    OSError when it went away first. The network loop runs in this thread (no loop thread,
    no wake-up socket pair left for the garbage collector) and does not reconnect."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311,
                         reconnect_on_failure=False)  # fmt: skip
    pending: set[int] = set()

    def acknowledged(c: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        pending.discard(mid)
        if not pending:
            c.disconnect()

    client.on_publish = acknowledged
    client.connect("127.0.0.1", port)
    for payload in payloads:
        pending.add(client.publish("plant/p1/station/10/result", json.dumps(payload), qos=1).mid)
    client.loop_forever()  # until the last acknowledgement disconnects, or the broker goes
    if pending:
        raise OSError(f"the broker went away with {len(pending)} message(s) unacknowledged")


def test_a_311_connector_completes_a_waiting_workflow_through_the_embedded_broker(
    engine: WorkflowEngine,
) -> None:
    engine.deploy_text("test_log.yaml", WAITER)
    waiting = engine.start("test_log", {"serial": "SN-1"})["instance_id"]
    with BrokerThread() as broker:
        definition = connector(broker.url, "eb-a")
        assert definition.mqtt is not None and definition.mqtt.protocol == "3.1.1"
        with Running(ConnectorRuntime([definition], engine), until_connected=True) as running:
            publish(broker.port, {"serial": "SN-1", "run_id": "r-1", "result": "PASS",
                                  "torque": 12.1})  # fmt: skip
            wait_for(lambda: engine.instance(waiting)["status"] == "completed")
            wait_for(lambda: running.status()["events_out"] == 1)
    assert engine.instance(waiting)["data"]["result"] == {
        "passed": True, "torque_nm": 12.1, "serial": "SN-1",
    }  # fmt: skip


def test_messages_wait_at_the_embedded_broker_while_a_connector_is_away(
    engine: WorkflowEngine,
) -> None:
    engine.deploy_text("test_log.yaml", WAITER)
    definition = connector(None, "eb-b")
    with BrokerThread() as broker:
        definition.mqtt.url = broker.url  # type: ignore[union-attr]
        with Running(ConnectorRuntime([definition], engine), until_connected=True):
            pass  # the persistent session and its subscription
        # amqtt looks for sessions to drop every second; an anonymous one would be gone now.
        time.sleep(1.5)
        waiting = [engine.start("test_log", {"serial": f"SN-2-{i}"})["instance_id"]
                   for i in range(3)]  # fmt: skip
        publish(broker.port, *({"serial": f"SN-2-{i}", "run_id": f"r-2-{i}", "result": "FAIL",
                                "torque": 10.5} for i in range(3)))  # fmt: skip
        with Running(ConnectorRuntime([definition], engine), until_connected=True) as running:
            wait_for(lambda: all(engine.instance(i)["status"] == "completed" for i in waiting))
            wait_for(lambda: running.status()["events_out"] == 3)


def test_the_simulated_station_reaches_a_connector_as_in_make_run(engine: WorkflowEngine) -> None:
    engine.deploy_text("test_log.yaml", WAITER)
    waiting = engine.start("test_log", {"serial": "SN000002"})["instance_id"]
    with BrokerThread() as broker:
        # As connectors/test_station.yaml: no url (the configured broker), MQTT 5 by default;
        # the embedded mode switches it to 3.1.1.
        [definition] = broker.broker.adapt([connector(None, "eb-c", protocol=None)])
        assert definition.mqtt is not None and definition.mqtt.protocol == "5"
        definition.mqtt.url = broker.url
        [definition] = broker.broker.adapt([definition])
        assert definition.mqtt is not None and definition.mqtt.protocol == "3.1.1"
        station = SimulatedTestStation(cycle_s=1.0, speed=20, seed=5, start=time.monotonic())
        publisher = StationPublisher("ts", station, url=broker.url,
                                     topic="plant/p1/station/10/result")  # fmt: skip
        with Running(ConnectorRuntime([definition], engine), until_connected=True) as running:
            broker.run(publisher.start())
            try:
                wait_for(lambda: running.status()["events_out"] >= 5)
                wait_for(lambda: engine.instance(waiting)["status"] == "completed")
            finally:
                broker.run(publisher.stop())
    result = engine.instance(waiting)["data"]["result"]
    assert result["serial"] == "SN000002" and isinstance(result["torque_nm"], float)


def test_only_connectors_at_the_embedded_broker_switch_to_311() -> None:
    broker = EmbeddedBroker("mqtt://127.0.0.1:1884")
    here = connector("mqtt://localhost:1884", "here", protocol=None)
    there = connector("mqtt://broker.plant:1884", "there", protocol=None)
    tls = connector("mqtts://127.0.0.1:1884", "tls", protocol=None)
    adapted = broker.adapt([here, there, tls])
    assert [d.mqtt.protocol for d in adapted] == ["3.1.1", "5", "5"]  # type: ignore[union-attr]
    assert here.mqtt is not None and here.mqtt.protocol == "5"  # the definition is not changed


@pytest.mark.parametrize(
    "url", ["mqtt://10.0.0.5:1884", "mqtts://127.0.0.1:8883", "mqtt://127.0.0.1", "mqtt://plant"]
)
def test_the_embedded_broker_serves_this_machine_only(url: str) -> None:
    with pytest.raises(
        EmbeddedBrokerError, match="serves this machine only.*mqtt://127.0.0.1:1884"
    ):
        EmbeddedBroker(url)


def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedBrokerError) as caught, BrokerThread(port):
            pass
    message = caught.value.message
    assert f"cannot listen on 127.0.0.1:{port}" in message and "in use" in message
    assert "\n" not in message


def test_make_run_serves_the_embedded_broker_where_config_says() -> None:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^EMBEDDED_MQTT_URL := (\S+)$", makefile, re.M)
    assert match and match.group(1) == EMBEDDED_MQTT_URL
    assert EMBEDDED_MQTT_URL.endswith(f":{EMBEDDED_MQTT_PORT}") and EMBEDDED_MQTT_PORT != 1883
    assert "connectors run $(EMBEDDED_BROKER)" in makefile


def test_cli_connectors_run_with_the_embedded_broker(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "connectors"
    folder.mkdir()
    # No url: the connector uses TAKTFLOW_MQTT_URL, where the embedded broker listens.
    (folder / "station.yaml").write_text(
        "connector: station\ntype: mqtt\nmqtt: {client_id: taktflow-cli-station}\n"
        'subscriptions:\n  - {topic: "plant/+/station/10/result", qos: 1}\n'
        "rules:\n  - id: result\n    trigger: condition\n    condition: payload.serial is defined\n"
        "    message: test_result\n    message_id: payload.run_id\n"
        "    correlation: {serial: payload.serial}\n"
    )
    port = free_port()
    env = {"TAKTFLOW_CONNECTORS_PATH": str(folder), "TAKTFLOW_MQTT_URL": f"mqtt://127.0.0.1:{port}"}
    runner = CliRunner()
    assert runner.invoke(cli, ["--database-url", db_url, "db", "upgrade"]).exit_code == 0
    done = threading.Event()

    def station() -> None:
        # Publish until the connector has surely subscribed (earlier ones reach no one).
        sent = 0
        while not done.wait(0.2):
            try:
                publish(port, {"serial": f"SN-{sent}", "run_id": f"cli-{sent}"})
                sent += 1
            except OSError:
                pass  # not listening yet, or the broker stopped with the runtime

    thread = threading.Thread(target=station, daemon=True)
    thread.start()
    try:
        ran = runner.invoke(cli, ["--database-url", db_url, "connectors", "run",
                                  "--embedded-broker", "--duration", "3", "--json"],
                            env=env, catch_exceptions=False)  # fmt: skip
    finally:
        done.set()
        thread.join(5)
    assert ran.exit_code == 0, ran.output
    assert f"embedded MQTT broker on mqtt://127.0.0.1:{port} (amqtt, MQTT 3.1.1)" in ran.stderr
    assert f"station: MQTT 3.1.1 mqtt://127.0.0.1:{port}, 1 subscription" in ran.stderr
    [status] = json.loads(ran.stdout)
    assert status["state"] == "stopped" and status["events_out"] >= 3, status
