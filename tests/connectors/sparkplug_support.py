"""A simulated Sparkplug B edge node and a host application client, both on paho-mqtt 2, for
the Sparkplug tests against a real Mosquitto."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
from connector_support import wait_for
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from taktflow.connectors.paho_support import stop_loop
from taktflow.connectors.sparkplug import (
    BDSEQ_METRIC,
    REBIRTH_METRIC,
    DataType,
    Metric,
    Payload,
    SparkplugError,
    SparkplugHost,
    SparkplugUpdate,
    decode_payload,
    encode_payload,
    node_topic,
    now_ms,
    state_birth,
    state_topic,
    state_will,
)

HOST = "127.0.0.1"


class EdgeNode:
    """An edge node as the specification describes one, with devices.

    MQTT 3.1.1 with a clean session; NDEATH (with bdSeq) is its will. `start` subscribes to its
    commands, then publishes NBIRTH and a DBIRTH per device. DDATA carries only aliases and
    no datatypes, as real nodes send it. A `Node Control/Rebirth` NCMD makes it publish its
    births again (seq restarting at 0, same bdSeq), from paho's thread.

    `devices` maps a device name to its metrics (name, datatype, value); aliases are numbered
    1, 2, ... across the node, as they must be unique per node.
    """

    def __init__(
        self,
        port: int,
        group: str,
        name: str,
        devices: dict[str, list[Metric]],
        *,
        bd_seq: int = 0,
    ) -> None:
        self.port, self.group, self.name, self.bd_seq = port, group, name, bd_seq
        self.devices: dict[str, dict[str, Metric]] = {}
        alias = 0
        for device, metrics in devices.items():
            self.devices[device] = {}
            for metric in metrics:
                alias += 1
                self.devices[device][metric.name or ""] = replace(metric, alias=alias)
        self.rebirths = 0  # rebirth commands received and answered
        self.errors: list[str] = []
        # Serialises seq numbering and publishing between the test's thread and paho's (which
        # answers rebirth commands), so seq order is publish order.
        self._lock = threading.Lock()
        self._seq = 0
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"edge-{group}-{name}",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=True,
        )
        self.client.will_set(node_topic("NDEATH", group, name), self._ndeath(), qos=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> EdgeNode:
        self.client.connect(HOST, self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise AssertionError("edge node: no SUBACK for its command topics")
        self.publish_births()
        return self

    def kill(self) -> None:
        """Lose the connection without DISCONNECT: the broker publishes the will (NDEATH)."""
        self.close()

    def close(self) -> None:
        """End the test's connection, whatever state it is in (the will may be published)."""
        stop_loop(self.client)
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        """Leave cleanly: NDEATH first (a DISCONNECT suppresses the will), then DISCONNECT."""
        info = self.client.publish(node_topic("NDEATH", self.group, self.name), self._ndeath(), 1)
        info.wait_for_publish(5)
        self.client.disconnect()
        stop_loop(self.client)

    # -------------------------------------------------------------------------- messages
    def publish_births(self) -> None:
        with self._lock:
            self._seq = 0
            node_metrics = [
                Metric(BDSEQ_METRIC, self.bd_seq, DataType.Int64, timestamp=now_ms()),
                Metric(REBIRTH_METRIC, False, DataType.Boolean, timestamp=now_ms()),
            ]
            self._publish("NBIRTH", node_metrics)
            for device, metrics in self.devices.items():
                self._publish("DBIRTH", list(metrics.values()), device)

    def publish_ddata(self, device: str, values: dict[str, Any]) -> int:
        """Publish changed values by alias; returns the seq used."""
        with self._lock:
            metrics = []
            for name, value in values.items():
                known = self.devices[device][name]
                self.devices[device][name] = replace(known, value=value)
                metrics.append(Metric(None, value, known.datatype, alias=known.alias))
            return self._publish("DDATA", metrics, device, datatypes=False)

    def publish_ddeath(self, device: str) -> int:
        with self._lock:
            return self._publish("DDEATH", [], device)

    def skip_seq(self, count: int = 1) -> None:
        """Pretend `count` messages were lost on the way."""
        with self._lock:
            self._seq = (self._seq + count) % 256

    def _publish(
        self,
        kind: str,
        metrics: Iterable[Metric],
        device: str | None = None,
        *,
        datatypes: bool = True,
    ) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        stamped = [replace(m, timestamp=now_ms()) for m in metrics]
        payload = encode_payload(Payload(stamped, seq=seq, timestamp=now_ms()), datatypes=datatypes)
        # QoS 0, not retained, as the specification has births and data; no waiting here, as
        # this also runs in paho's own thread when answering a rebirth command.
        self.client.publish(node_topic(kind, self.group, self.name, device), payload, qos=0)
        return seq

    def _ndeath(self) -> bytes:
        bd_seq = Metric(BDSEQ_METRIC, self.bd_seq, DataType.Int64)
        return encode_payload(Payload([bd_seq], timestamp=now_ms()))

    # ------------------------------------------------------------------------- callbacks
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        client.subscribe([
            (node_topic("NCMD", self.group, self.name), 0),
            (node_topic("DCMD", self.group, self.name, "+"), 0),
        ])  # fmt: skip

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = decode_payload(msg.payload)
            if any(m.name == REBIRTH_METRIC and m.value is True for m in payload.metrics):
                self.publish_births()
                self.rebirths += 1
        except Exception as exc:  # an exception would end paho's loop thread
            self.errors.append(f"{msg.topic}: {type(exc).__name__}: {exc}")


class HostClient:
    """A Sparkplug host application as a connector runs one: paho 2 (MQTT 5) + SparkplugHost.

    Registers its STATE death as will, subscribes to the group and its own STATE topic, then
    publishes its STATE birth. Every message goes through `SparkplugHost.handle`; rebirth
    requests are published as they come.
    """

    def __init__(self, port: int, group: str, host_id: str) -> None:
        self.port, self.group, self.host_id = port, group, host_id
        self.host = SparkplugHost()
        self.updates: list[SparkplugUpdate] = []
        self.errors: list[str] = []
        self.rebirths_sent: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._connected_at = now_ms()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"host-{host_id}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        topic, will = state_will(host_id, self._connected_at)
        self.client.will_set(topic, will, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> HostClient:
        self.client.connect(HOST, self.port, keepalive=10)
        self.client.loop_start()
        if not self._ready.wait(5):
            raise AssertionError("host: no SUBACK")
        return self

    def stop(self) -> None:
        topic, death = state_will(self.host_id)
        self.client.publish(topic, death, qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        stop_loop(self.client)

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m for update in self.updates for m in update.messages]

    def problems(self) -> list[str]:
        with self._lock:
            return [u.problem for u in self.updates if u.problem is not None]

    def wait_for_message(self, **fields: Any) -> dict[str, Any]:
        """The first message whose keys have these values (waiting up to 5 s)."""

        def find() -> dict[str, Any] | None:
            for message in self.messages():
                if all(message.get(k) == v for k, v in fields.items()):
                    return message
            return None

        return wait_for(find)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        client.subscribe([(f"spBv1.0/{self.group}/#", 0), (state_topic(self.host_id), 1)])

    def _on_subscribe(self, client: mqtt.Client, *args: Any) -> None:
        topic, birth = state_birth(self.host_id, self._connected_at)
        client.publish(topic, birth, qos=1, retain=True)
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            update = self.host.handle(msg.topic, msg.payload)
        except SparkplugError as exc:
            self.errors.append(str(exc))
            return
        except Exception as exc:  # an exception would end paho's loop thread
            self.errors.append(f"{msg.topic}: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self.updates.append(update)
        if update.rebirth is not None:
            self.rebirths_sent.append(update.rebirth[0])
            client.publish(*update.rebirth, qos=0)
