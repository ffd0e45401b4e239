"""Sends what workflows put in the outbox: MQTT publishes and Modbus writes, in order per target.

A row is marked sent only after the broker acknowledged the publish (QoS 1/2) or the PLC
answered the write. A failure holds back the later rows of the same target (an andon light
must not end up green because "red" failed and "green" went through) and is retried with a
growing pause; after its attempts the row is dead-lettered and the target moves on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from taktflow.connectors.paho_support import stop_loop
from taktflow.engine.outbox import OutboxRow

log = logging.getLogger("taktflow.connectors")

#: How often the sender looks for new rows (they are written by other processes).
POLL_S = 0.2
#: How long a publish may wait for the broker's acknowledgement.
PUBLISH_TIMEOUT_S = 5.0


class SendError(Exception):
    """The row could not be sent now; it is retried later."""


def payload_bytes(payload: Any) -> bytes:
    """Text as it is; anything else (dict, list, number, true/false) as JSON; None as empty."""
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


class Publisher:
    """One paho client for publishing to one broker (apart from the connectors' subscribers,
    whose persistent sessions must not be disturbed)."""

    def __init__(self, *, host: str, port: int, client_id: str, protocol: str = "5",
                 username: str | None = None, password: str | None = None,
                 tls: bool = False) -> None:  # fmt: skip
        self.where = f"{host}:{port}"
        self.v5 = protocol == "5"
        version = MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=version)  # fmt: skip
        if username is not None or password is not None:
            self.client.username_pw_set(username or "", password)
        if tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(host, port)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:  # fmt: skip
        self._connected.clear()

    def publish(self, outbox_id: int, body: dict[str, Any]) -> None:
        """Publish and wait for the broker's acknowledgement; SendError if it does not come."""
        if not self._connected.wait(PUBLISH_TIMEOUT_S):
            raise SendError(f"MQTT broker {self.where} is not reachable")
        properties = None
        if self.v5:
            # Receivers that must not act twice on a re-sent row can deduplicate on this.
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = ("taktflow-outbox-id", str(outbox_id))
        info = self.client.publish(body["topic"], payload_bytes(body.get("payload")),
                                   qos=body.get("qos", 1), retain=bool(body.get("retain")),
                                   properties=properties)  # fmt: skip
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SendError(f"MQTT broker {self.where}: publish refused: "
                            f"{mqtt.error_string(info.rc)}")  # fmt: skip
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise SendError(f"MQTT broker {self.where} did not confirm the publish in "
                            f"{PUBLISH_TIMEOUT_S:.0f} s")  # fmt: skip

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)


class OutboxSender:
    """The connector runtime's task that empties the outbox."""

    def __init__(self, engine: Any, connectors: list[Any], mqtt_url: str | None,
                 mqtt_protocol: str = "5") -> None:  # fmt: skip
        self.engine = engine
        self.by_id = {c.definition.id: c for c in connectors}
        self.mqtt_url = mqtt_url
        self.mqtt_protocol = mqtt_protocol
        self.publishers: dict[str, Publisher] = {}
        self.sent = 0
        self.failed = 0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.send_due()
                except Exception:  # noqa: BLE001 - the database is away: try again later
                    log.exception("reading the outbox failed")
                try:
                    await asyncio.wait_for(stop.wait(), timeout=POLL_S)
                except TimeoutError:
                    pass
        finally:
            for publisher in self.publishers.values():
                await asyncio.to_thread(publisher.close)

    async def send_due(self) -> int:
        """Send every due row (in order per target); the number sent."""
        rows = await asyncio.to_thread(self.engine.outbox_due)
        held: set[str] = set()
        sent = 0
        for row in rows:
            if row.target in held:
                continue
            if not self._ready(row):
                held.add(row.target)  # its connector is still starting: not a failure
                continue
            try:
                await self.send(row)
            except Exception as exc:  # noqa: BLE001 - recorded on the row, retried later
                held.add(row.target)
                error = str(exc) if isinstance(exc, SendError) else f"{type(exc).__name__}: {exc}"
                dead = await asyncio.to_thread(self.engine.outbox_failed, row.id, error)
                self.failed += 1
                if dead:
                    log.error("outbox %s (%s to %s) given up: %s", row.id, row.kind, row.target,
                              error)  # fmt: skip
                else:
                    log.warning("outbox %s (%s to %s) failed, will retry: %s", row.id, row.kind,
                                row.target, error)  # fmt: skip
                continue
            await asyncio.to_thread(self.engine.outbox_sent, row.id)
            sent += 1
        self.sent += sent
        return sent

    def _ready(self, row: OutboxRow) -> bool:
        connector = self.by_id.get(row.body.get("connector", ""))
        return row.kind != "modbus.write" or connector is None or connector.client is not None

    async def send(self, row: OutboxRow) -> None:
        if row.kind == "modbus.write":
            connector = self.by_id.get(row.body["connector"])
            if connector is None or not hasattr(connector, "write"):
                raise SendError(f"Modbus connector {row.body['connector']!r} is not running "
                                "(not in the connectors folder, or disabled)")  # fmt: skip
            await connector.write(row.body["point"], row.body["value"])
        elif row.kind == "mqtt.publish":
            publisher = self._publisher(row.target)
            await asyncio.to_thread(publisher.publish, row.id, row.body)
        else:
            raise SendError(f"unknown outbox kind {row.kind!r}")

    def _publisher(self, target: str) -> Publisher:
        publisher = self.publishers.get(target)
        if publisher is not None:
            return publisher
        if target == "mqtt":
            if not self.mqtt_url:
                raise SendError("no platform MQTT broker: set TAKTFLOW_MQTT_URL")
            url = urlsplit(self.mqtt_url)
            publisher = Publisher(host=url.hostname or "127.0.0.1", port=url.port or 1883,
                                  client_id=f"taktflow-outbox-{os.getpid()}",
                                  protocol=self.mqtt_protocol, username=url.username,
                                  password=url.password, tls=url.scheme == "mqtts")  # fmt: skip
        else:
            connector = self.by_id.get(target.removeprefix("mqtt:"))
            if connector is None or getattr(connector, "link", None) is None:
                raise SendError(f"MQTT connector {target.removeprefix('mqtt:')!r} is not "
                                "running (not in the connectors folder, or disabled)")  # fmt: skip
            link = connector.link
            username, password = connector.credentials()
            publisher = Publisher(host=link.host, port=link.port,
                                  client_id=f"{link.client_id}-outbox",
                                  protocol=getattr(link, "protocol", "5"), username=username,
                                  password=password, tls=link.tls)  # fmt: skip
        self.publishers[target] = publisher
        return publisher
