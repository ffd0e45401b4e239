"""End to end, nothing is lost: 5,000 QoS 1 messages from 100 sources and a Modbus counter,
while `taktflow connectors run` is killed with SIGKILL three times and the broker is
restarted once. Every event reaches its workflow exactly once and in order per source, the
counter's rises add up to its final value, and the inbox ends empty of pending and failed rows.

The runtime is a real subprocess on the test's database; the broker a Mosquitto of the test's
own (restarted with its persistence), the PLC a pymodbus server in the test process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from connector_support import Mosquitto, wait_for
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from taktflow.connectors.paho_support import stop_loop
from taktflow.engine.runtime import WorkflowEngine

SOURCES = 100
PER_SOURCE = 50
MESSAGES = SOURCES * PER_SOURCE
#: Published messages after which the runtime is killed, and after which the broker restarts.
KILLS_AT = (900, 2300, 3700)
BROKER_RESTART_AT = 3000
STEP = 7  # the PLC counter rises by this much at a time

TALLY = """\
process: tally
steps:
  - repeat: Count units
    until: count >= expected
    steps:
      - wait: Unit
        message: unit_counted
        correlate: [source]
        into: unit
      - script: Add
        set:
          in_order: "in_order and unit['n'] == count + 1"
          count: count + 1
"""

PLC_TALLY = """\
process: plc_tally
steps:
  - repeat: Sum the rises
    until: total >= expected
    steps:
      - wait: Rise
        message: plc_counted
        correlate: [machine]
        into: rise
      - script: Add
        set:
          total: "total + rise['delta']"
          rises: rises + 1
"""


def connector_files(folder: Path, broker: int, plc: int) -> None:
    folder.mkdir()
    (folder / "units.yaml").write_text(f"""\
connector: units
type: mqtt
mqtt: {{url: "mqtt://127.0.0.1:{broker}", client_id: taktflow-e2e-units, session_expiry_s: 600}}
subscriptions: [{{topic: "e2e/+/unit", qos: 1}}]
rules:
  - id: unit
    trigger: condition
    condition: payload.id is defined
    message: unit_counted
    message_id: payload.id
    correlation: {{source: "topic.split('/')[1]"}}
    variables: {{n: payload.n}}
""")  # fmt: skip
    (folder / "plc.yaml").write_text(f"""\
connector: plc
type: modbus
modbus: {{host: 127.0.0.1, port: {plc}, poll_ms: 30, timeout_s: 0.5}}
points:
  parts: {{table: holding, address: 0, type: uint32}}
rules:
  - id: rises
    point: parts
    trigger: increase
    message: plc_counted
    correlation: {{machine: "'plc'"}}
    variables: {{delta: delta, value: value, reset: reset}}
""")  # fmt: skip


class Runtime:
    """`taktflow connectors run` as a subprocess that can be killed and started again."""

    def __init__(self, db_url: str, folder: Path, log: Path) -> None:
        self.command = [str(Path(sys.executable).with_name("taktflow")), "--database-url",
                        db_url, "connectors", "run"]  # fmt: skip
        self.env = {**os.environ, "TAKTFLOW_CONNECTORS_PATH": str(folder)}
        self.log = log.open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, note: str = "") -> None:
        self.log.write(f"--- {time.strftime('%H:%M:%S')} starting the runtime {note}\n".encode())
        self.log.flush()
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)  # fmt: skip

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, "runtime died early"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Publisher:
    """Publishes each message until the broker acknowledges it, across a broker restart."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-publisher",
                                  protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.client.is_connected():
                info = self.client.publish(topic, payload, qos=1)
                try:
                    info.wait_for_publish(2)
                except (RuntimeError, ValueError):
                    pass
                if info.is_published():
                    return
            time.sleep(0.05)
        raise AssertionError(f"could not publish {payload} within 30 s")

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)


def test_nothing_is_lost_through_kills_and_a_broker_restart(
    engine: WorkflowEngine,
    db_url: str,
    plc: Any,
    tmp_path: Path,
    restartable_broker: Mosquitto,
) -> None:
    mosquitto = restartable_broker
    folder = tmp_path / "connectors"
    connector_files(folder, mosquitto.port, plc.port)
    engine.deploy_text("tally.yaml", TALLY)
    engine.deploy_text("plc_tally.yaml", PLC_TALLY)
    tallies = {
        f"s{s:03d}": engine.start("tally", {"source": f"s{s:03d}", "count": 0, "in_order": True,
                                            "expected": PER_SOURCE})["instance_id"]
        for s in range(SOURCES)
    }  # fmt: skip
    probe = engine.start("tally", {"source": "probe", "count": 0, "in_order": True,
                                   "expected": 1})["instance_id"]  # fmt: skip
    runtime = Runtime(db_url, folder, tmp_path / "runtime.log")
    publisher: Publisher | None = None
    counting = threading.Event()
    counter = {"value": 0}

    def count_parts() -> None:
        while counting.is_set():
            counter["value"] += STEP
            plc.set("holding", 0, [counter["value"] >> 16, counter["value"] & 0xFFFF])
            time.sleep(0.04)

    try:
        runtime.start()
        # The MQTT session must exist before the first publish, and the PLC's baseline (0)
        # must be stored before the counter moves.
        wait_for(lambda: engine.connector_state("plc").get("point:parts") == 0, timeout=20)
        publisher = Publisher(mosquitto.port)
        # A probe until one arrives: from then on the connector's session holds what comes.
        wait_for(lambda: publisher.publish("e2e/probe/unit", '{"id": "probe", "n": 1}')
                 or engine.instance(probe)["status"] == "completed", timeout=20)  # fmt: skip
        counting.set()
        counter_thread = threading.Thread(target=count_parts, daemon=True)
        counter_thread.start()
        for i in range(MESSAGES):
            source, n = f"s{i % SOURCES:03d}", i // SOURCES + 1
            publisher.publish(f"e2e/{source}/unit",
                              json.dumps({"id": f"{source}-{n}", "n": n}))  # fmt: skip
            if i + 1 in KILLS_AT:
                runtime.kill()
                runtime.start(f"after a kill at message {i + 1}")
            if i + 1 == BROKER_RESTART_AT:
                mosquitto.restart()
                runtime.log.write(f"--- broker restarted at message {i + 1}\n".encode())
        counting.clear()
        counter_thread.join(5)
        final = counter["value"]
        plc_tally = engine.start("plc_tally", {"machine": "plc", "expected": final,
                                               "total": 0, "rises": 0})["instance_id"]  # fmt: skip

        def all_done() -> bool:
            states = [engine.instance(i, history=False)["status"] for i in tallies.values()]
            return all(s == "completed" for s in states)

        try:
            wait_for(all_done, timeout=180)
            wait_for(lambda: engine.instance(plc_tally)["status"] == "completed", timeout=60)
        except AssertionError:
            raise AssertionError(_situation(engine, tallies, tmp_path)) from None
    finally:
        counting.clear()
        if publisher is not None:
            publisher.close()
        runtime.stop()
        mosquitto.stop()

    for source, instance_id in tallies.items():
        data = engine.instance(instance_id, history=False)["data"]
        assert (data["count"], data["in_order"]) == (PER_SOURCE, True), source
    plc_data = engine.instance(plc_tally)["data"]
    assert plc_data["total"] == final, "the counter's rises add up to its final value"
    assert plc_data["rise"]["reset"] is False
    units = engine.connector_overview("units")["messages"]
    assert units["delivered"] == MESSAGES + 1, f"each message stored and delivered once: {units}"
    for connector in ("units", "plc"):
        counts = engine.connector_overview(connector)["messages"]
        assert counts["pending"] == counts["failed"] == counts["buffered"] == 0, counts
    log = (tmp_path / "runtime.log").read_text(errors="replace")
    assert "Traceback" not in log or "storing events failed" in log, log[-3000:]


def _situation(engine: WorkflowEngine, tallies: dict[str, int], tmp_path: Path) -> str:
    """What a timeout looked like: instance counts, inbox counts, the runtime's last words."""
    counts: dict[str, int] = {}
    behind = []
    for source, instance_id in tallies.items():
        view = engine.instance(instance_id, history=False)
        counts[view["status"]] = counts.get(view["status"], 0) + 1
        if view["status"] != "completed":
            behind.append((source, view["data"].get("count"), view.get("error")))
    inbox = {c: engine.connector_overview(c)["messages"] for c in ("units", "plc")}
    log = (tmp_path / "runtime.log").read_text(errors="replace")[-4000:]
    return f"instances {counts}; behind {behind[:5]}; inbox {inbox}\nruntime log:\n{log}"
