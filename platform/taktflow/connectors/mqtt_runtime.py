"""The MQTT connector: subscribe, run the rules on every message, commit, then acknowledge.

At-least-once, end to end: the client uses an MQTT 5 persistent session (clean_start=False
with a session expiry) and acknowledges a QoS 1/2 message only after its events and the rule
states that produced them are committed (`record_connector_events`). A crash or an engine
failure before the commit leaves the message unacknowledged, and the broker delivers it again
after the next connect; messages published while the connector is away wait in the session.

paho runs the network loop and every callback in its own thread; its on_message only queues.
A committer thread takes the queue in batches, in arrival order: rules, one transaction, then
the acknowledgements. Delivery to workflows is the runtime's dispatcher's job, so a slow
workflow step never holds up the broker. An exception escaping a paho callback silently ends
its loop thread, so every callback body catches everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from taktflow.connectors import sparkplug
from taktflow.connectors.definition import ConnectorDefinition, Subscription
from taktflow.connectors.paho_support import stop_loop
from taktflow.connectors.rules import RuleError, Sample, evaluate
from taktflow.connectors.runtime import Status, event_dict, machine_context

log = logging.getLogger("taktflow.connectors")

#: How often the asyncio side looks at the paho thread's flags (stop, failed commit).
_TICK_S = 0.1
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1, 30
#: Messages committed in one transaction at most.
_BATCH_MAX = 1000


class _Malformed(Exception):
    """A payload that no retry can fix: counted, logged and acknowledged."""


class MqttConnector:
    def __init__(self, definition: ConnectorDefinition, engine: Any) -> None:
        assert definition.mqtt is not None
        self.definition = definition
        self.link = definition.mqtt
        self.engine = engine
        self.status = Status(definition.id)
        self.rule_states: dict[str, dict[str, Any]] = {}
        # Set by the paho thread when a commit failed: the asyncio side then reconnects, which
        # makes the broker deliver the unacknowledged message again.
        self._commit_failed = threading.Event()
        self._committed = threading.Event()
        self._pending_subscribe: int | None = None
        # The Sparkplug B host state (birth cache, sequence numbers) when a subscription asks
        # for Sparkplug payloads; its STATE topic is named after the client id.
        self._sparkplug = (
            sparkplug.SparkplugHost()
            if any(s.format == "sparkplug" for s in definition.subscriptions) else None
        )  # fmt: skip
        self._host_id = re.sub(r"[/+#]", "_", self.link.client_id)
        self._topic_cache: dict[str, Subscription | None] = {}
        self._state_since = 0
        # Messages paho received, for the committer thread (paho's thread only enqueues).
        self._received: queue.Queue[tuple[mqtt.Client, mqtt.MQTTMessage]] = queue.Queue()
        #: The live client; messages of an earlier one are never acknowledged on it.
        self.client: mqtt.Client | None = None
        #: Called after each commit that stored events (the runtime wakes its dispatcher).
        self.wake: Callable[[], None] = lambda: None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            credentials = self.credentials()
        except ValueError as exc:
            # A configuration problem: nothing to retry until the environment is fixed.
            self._failed(str(exc), "error")
            return
        stored = await asyncio.to_thread(self.engine.connector_state, self.definition.id)
        # The rules' sequence numbers must continue, or keys of a restart would collide
        # with stored ones and new events would be dropped as duplicates.
        self.rule_states = {
            key.removeprefix("rule:"): value for key, value in stored.items()
            if key.startswith("rule:") and isinstance(value, dict)
        }  # fmt: skip
        backoff: float = _RECONNECT_MIN_S
        halt = threading.Event()
        committer = threading.Thread(target=self._commit_loop, args=(halt,), daemon=True,
                                     name=f"taktflow-mqtt-{self.definition.id}")  # fmt: skip
        committer.start()
        client = self.client = self._make_client(*credentials)
        self._begin(client)
        try:
            while not stop.is_set():
                if self._commit_failed.is_set():
                    await asyncio.to_thread(self._halt, client)
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=backoff)
                    except TimeoutError:
                        pass
                    backoff = min(backoff * 2, _RECONNECT_MAX_S)
                    self._commit_failed.clear()
                    if stop.is_set():
                        break
                    # A new client: paho leaks its wake-up socket pair when loop_start is
                    # called twice on one client.
                    client = self.client = self._make_client(*credentials)
                    self._begin(client)
                    continue
                if self._committed.is_set():
                    # The engine takes commits again: the next failure starts a fresh backoff.
                    self._committed.clear()
                    backoff = _RECONNECT_MIN_S
                try:
                    await asyncio.wait_for(stop.wait(), timeout=_TICK_S)
                except TimeoutError:
                    pass
        finally:
            await asyncio.to_thread(self._halt, client)
            halt.set()
            await asyncio.to_thread(committer.join, 10)
            self.status.state = "stopped"

    # ------------------------------------------------------------------ connection
    def _make_client(self, username: str | None, password: str | None) -> mqtt.Client:
        link = self.link
        if link.protocol == "3.1.1":
            # The persistent session of MQTT 3.1.1: the broker keeps it (and queues for it)
            # for as long as it is configured to; there is no expiry to ask for.
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=link.client_id,
                protocol=MQTTProtocolVersion.MQTTv311, clean_session=False, manual_ack=True,
            )  # fmt: skip
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=link.client_id,
                protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True,
            )  # fmt: skip
        if username is not None or password is not None:
            client.username_pw_set(username or "", password)
        if link.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=_RECONNECT_MIN_S, max_delay=_RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        if self._sparkplug is not None:
            # Sparkplug 3.0: edge nodes watch the host's STATE; the broker publishes this
            # "offline" if the connection drops, and _on_subscribe publishes "online".
            self._state_since = sparkplug.now_ms()
            topic, payload = sparkplug.state_will(self._host_id, self._state_since)
            client.will_set(topic, payload, qos=1, retain=True)
        return client

    def credentials(self) -> tuple[str | None, str | None]:
        """(username, password) from the environment variables the file names."""
        return (self._secret(self.link.username_env, "username_env"),
                self._secret(self.link.password_env, "password_env"))  # fmt: skip

    def _secret(self, variable: str | None, key: str) -> str | None:
        if variable is None:
            return None
        value = os.environ.get(variable)
        if value is None:
            raise ValueError(
                f"{self.definition.id}: mqtt {key} names the environment variable {variable}, "
                "which is not set"
            )
        return value

    def _begin(self, client: mqtt.Client) -> None:
        if self.link.protocol == "3.1.1":
            # clean_session=False was given to the client (3.1.1 has no CONNECT properties).
            client.connect_async(self.link.host, self.link.port)
        else:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.link.session_expiry_s
            # paho's MQTT 5 default (clean start) would drop the queued messages on every
            # restart.
            client.connect_async(self.link.host, self.link.port, clean_start=False,
                                 properties=properties)  # fmt: skip
        # The loop thread retries the first connection too, so a broker that is down at start
        # is waited for like one that goes away later.
        client.loop_start()

    def _halt(self, client: mqtt.Client) -> None:
        if self._sparkplug is not None and client.is_connected():
            # A clean DISCONNECT discards the will: say "offline" ourselves.
            topic, payload = sparkplug.state_will(self._host_id)
            client.publish(topic, payload, qos=1, retain=True).wait_for_publish(2)
        # A normal DISCONNECT keeps the session (and its queue) for session_expiry_s.
        client.disconnect()
        stop_loop(client)
        if self.status.state in ("connected", "disconnected", "starting"):
            self.status.state = "disconnected"

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:  # fmt: skip
        try:
            if reason.is_failure:
                self._failed(f"{self._where()}: the broker refused the connection: {reason}",
                             "error")  # fmt: skip
                return
            # Subscriptions are renewed on every connect: the session may have expired, and the
            # connector file may have changed since it was created.
            topics = [(s.topic, s.qos) for s in self.definition.subscriptions]
            _, self._pending_subscribe = client.subscribe(topics)
        except Exception as exc:
            self._crashed("on_connect", exc)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:  # fmt: skip
        try:
            if mid != self._pending_subscribe:
                return
            refused = [
                f"{s.topic} ({r})" for s, r in zip(self.definition.subscriptions, reasons,
                                                    strict=False) if r.is_failure
            ]  # fmt: skip
            if refused:
                self._failed(f"{self._where()}: subscription refused: {', '.join(refused)}",
                             "error")  # fmt: skip
                return
            if self._sparkplug is not None:
                client.publish(*sparkplug.state_birth(self._host_id, self._state_since), qos=1,
                               retain=True)  # fmt: skip
            # "connected" means receiving: only once the broker confirmed every subscription.
            self.status.state = "connected"
            self.status.last_error = None
        except Exception as exc:
            self._crashed("on_subscribe", exc)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        try:
            self._failed(f"{self._where()}: cannot connect to the broker", "disconnected")
        except Exception as exc:
            self._crashed("on_connect_fail", exc)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:  # fmt: skip
        try:
            if self.status.state != "error":
                self.status.state = "disconnected"
            if reason.is_failure:
                self._failed(f"{self._where()}: connection lost: {reason}", "disconnected")
        except Exception as exc:
            self._crashed("on_disconnect", exc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if self._commit_failed.is_set():
                # An earlier message is waiting for redelivery; taking later ones now would
                # deliver out of order. They stay unacknowledged and come again after reconnect.
                return
            self._received.put((client, msg))
        except Exception as exc:
            self._crashed("on_message", exc)
            self._commit_failed.set()

    # ------------------------------------------------------------------ messages
    def _commit_loop(self, halt: threading.Event) -> None:
        """Take the received messages in batches: one transaction per batch, then the acks.

        Under load a batch holds what arrived during the previous commit, so the cost of a
        commit is shared; alone, a message is committed at once. (The broker's in-flight limit
        for unacknowledged messages, 20 in Mosquitto by default, bounds a batch in practice.)
        """
        while not halt.is_set():
            try:
                batch = [self._received.get(timeout=_TICK_S)]
            except queue.Empty:
                continue
            while len(batch) < _BATCH_MAX:
                try:
                    batch.append(self._received.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit(batch)
            except Exception as exc:
                # Nothing of the batch is acknowledged: the broker delivers it again after the
                # reconnect, and what was queued behind it comes again too, in order.
                self._crashed("committing", exc)
                self._commit_failed.set()
                while not self._received.empty():
                    self._received.get_nowait()

    def _commit(self, batch: list[tuple[mqtt.Client, mqtt.MQTTMessage]]) -> None:
        connector = self.definition.id
        current = [(c, msg) for c, msg in batch if c is self.client]
        if not current:
            return  # from a connection that is gone: the broker sends them again
        machine = machine_context(self.engine, self.definition)
        states = dict(self.rule_states)
        changed: dict[str, dict[str, Any]] = {}
        events: list[dict[str, Any]] = []
        problems: list[str] = []
        points: dict[str, Any] = {}
        for _client, msg in current:
            self.status.events_in += 1
            try:
                payloads = self._payloads(msg, points)
            except _Malformed as exc:
                self.status.malformed += 1
                problems.append(f"{msg.topic}: {exc}")
                continue
            for payload in payloads:
                self._apply_rules(msg, payload, machine, states, changed, events, problems)
        stored = {f"rule:{rule_id}": state for rule_id, state in changed.items()}
        # (A metric path too long for a state key is shown in the status only.)
        stored |= {f"point:{name}": value for name, value in points.items() if len(name) < 290}
        ids: list[int | None] = []
        if stored or events:
            ids = self.engine.record_connector_events(connector, stored, events, deliver=False)
        # Committed: only now does the connector take the new state, and the broker forget it.
        self.rule_states = states
        self.status.last_values.update(points)
        for client, msg in current:
            client.ack(msg.mid, msg.qos)
        self._committed.set()
        self.status.events_out += sum(1 for i in ids if i is not None)
        self.status.duplicates += sum(1 for i in ids if i is None)
        if events:
            self.wake()
        if problems:
            self._failed(f"{connector}: {'; '.join(problems[:3])}"
                         + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""),
                         self.status.state)  # fmt: skip

    def _apply_rules(self, msg: mqtt.MQTTMessage, payload: Any, machine: dict[str, Any],
                     states: dict[str, Any], changed: dict[str, Any],
                     events: list[dict[str, Any]], problems: list[str]) -> None:  # fmt: skip
        connector = self.definition.id
        sample = Sample(now=datetime.now(UTC), values={}, topic=msg.topic, payload=payload)
        for rule in self.definition.rules:
            try:
                fired, state = evaluate(rule, states.get(rule.id, {}), sample,
                                        connector=connector, machine=machine)  # fmt: skip
            except RuleError as exc:
                # Deterministic: the same message fails the same way every time, so it is
                # reported and acknowledged; the other rules still get their events.
                self.status.rule_errors += 1
                problems.append(f"{msg.topic}: {exc}")
                continue
            states[rule.id] = changed[rule.id] = state
            # Rules with `message_id` take the key from the payload, so a redelivery is a
            # duplicate. Without it the key is the rule's sequence number, and a message
            # redelivered after a commit whose acknowledgement was lost is delivered
            # twice: give message_id (docs/connectors.md recommends it).
            events.extend(event_dict(e) for e in fired)

    def _payloads(self, msg: mqtt.MQTTMessage, points: dict[str, Any]) -> list[Any]:
        """What the rules see as `payload` for this message: one value for JSON and text;
        for Sparkplug B one dict per node or device it concerns (none for a command)."""
        subscription = self._subscription(msg.topic)
        if subscription is None:
            # Left over in the persistent session from an older version of the file.
            raise _Malformed("no subscription of this connector matches the topic")
        if subscription.format != "sparkplug" or self._sparkplug is None:
            return [self._decode(msg, subscription.format)]
        try:
            update = self._sparkplug.handle(msg.topic, msg.payload)
        except sparkplug.SparkplugError as exc:
            raise _Malformed(str(exc)) from None
        if update.rebirth is not None and self.client is not None:
            self.client.publish(*update.rebirth, qos=0)
            self.status.rebirths += 1
        if update.problem:
            self._failed(f"{self.definition.id}: {msg.topic}: {update.problem}",
                         self.status.state)  # fmt: skip
        for payload in update.messages:
            # Shown on the connectors page and kept with the events: last value per metric,
            # and whether the node or device is online (NDEATH/DDEATH make it offline).
            where = "/".join(filter(None, (payload["edge_node"], payload["device"])))
            points[f"{where}/online"] = payload["online"]
            for name, value in payload["metrics"].items():
                points[f"{where}/{name}"] = value
        return update.messages

    def _decode(self, msg: mqtt.MQTTMessage, format: str) -> Any:
        try:
            text = msg.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Malformed(f"payload is not UTF-8 text: {exc}") from None
        if format == "text":
            return text
        try:
            return json.loads(text)
        except ValueError as exc:
            raise _Malformed(f"payload is not JSON: {exc}") from None

    def _subscription(self, topic: str) -> Subscription | None:
        # paho builds a matcher per call: remember the answer per topic (a plant has a few
        # hundred topics, each seen many times).
        if topic in self._topic_cache:
            return self._topic_cache[topic]
        found = None
        for subscription in self.definition.subscriptions:
            if mqtt.topic_matches_sub(subscription.topic, topic):
                found = subscription
                break
        if len(self._topic_cache) < 10_000:
            self._topic_cache[topic] = found
        return found

    # ------------------------------------------------------------------ status
    def _where(self) -> str:
        return f"{self.definition.id} ({self.link.url})"

    def _failed(self, message: str, state: str) -> None:
        # Logged once per distinct problem, not once per message.
        if message != self.status.last_error:
            log.warning("%s", message)
        self.status.state, self.status.last_error = state, message

    def _crashed(self, where: str, exc: Exception) -> None:
        message = f"{self.definition.id}: {where} failed: {type(exc).__name__}: {exc}"
        if message != self.status.last_error:
            log.exception("%s", message)
        self.status.state, self.status.last_error = "error", message
