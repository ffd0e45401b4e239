"""An MQTT broker inside a taktflow process, so the demo (`make run`) needs nothing installed.

`taktflow connectors run --embedded-broker` serves the broker of TAKTFLOW_MQTT_URL itself, with
amqtt (pure Python, asyncio), in the event loop of the connectors. amqtt speaks MQTT 3.1.1
only, so the MQTT connectors that point at it speak 3.1.1 too (persistent session with
clean_session off). It keeps sessions and queued messages in memory, for as long as the
process runs, and drops a message whose acknowledgement has not come within a few seconds
instead of sending it again: good for a demo, not for a plant. Tests and production use
Mosquitto (docs/connectors.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from amqtt.broker import Broker
from amqtt.errors import BrokerError
from amqtt.plugins.base import BaseAuthPlugin

from taktflow.config import EMBEDDED_MQTT_URL
from taktflow.connectors.definition import ConnectorDefinition
from taktflow.errors import TaktflowError

#: Seconds an embedded broker keeps the session of a client that went away (a day, like the
#: connectors' own MQTT 5 default).
SESSION_EXPIRY_S = 86400


class EmbeddedBrokerError(TaktflowError):
    """The embedded broker cannot serve: the address is not on this machine, or it is taken."""

    code = "broker_failed"


class LocalClients(BaseAuthPlugin):
    """Lets every client in, as a known one.

    amqtt's own anonymous plugin marks each session anonymous, and amqtt keeps neither the
    subscriptions nor the queued messages of an anonymous session once its client goes: a
    connector that reconnects would miss what was published meanwhile. The broker listens on
    the loopback address only, so every client is a process of this machine.
    """

    @dataclass
    class Config:
        """No settings."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedBroker:
    """An amqtt broker on a loopback address; `start()` in a running event loop, then `stop()`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        host = parts.hostname or ""
        if parts.scheme != "mqtt" or not is_loopback(host) or not port:
            raise EmbeddedBrokerError(
                f"the embedded MQTT broker serves this machine only, without TLS: "
                f"TAKTFLOW_MQTT_URL must be mqtt://127.0.0.1:PORT (make run uses "
                f"{EMBEDDED_MQTT_URL}), not {url!r}"
            )
        self.url, self.host, self.port = url, host, port
        self._broker: Broker | None = None

    async def start(self) -> None:
        bind = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        config = {
            "listeners": {"default": {"type": "tcp", "bind": bind}},
            "session_expiry_interval": SESSION_EXPIRY_S,
            # Only the plugin above: no $SYS topics, no packet logging, no anonymous sessions.
            "plugins": {f"{LocalClients.__module__}.{LocalClients.__qualname__}": {}},
        }
        # amqtt logs every connection at INFO (its state machines, `transitions`, every state
        # change) and a failed bind with a traceback at ERROR; a failure is raised below with
        # one line instead.
        logging.getLogger("transitions").setLevel(logging.WARNING)
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        broker = Broker(config)
        try:
            await broker.start()
        except BrokerError as exc:
            cause = exc.__cause__
            reason = getattr(cause, "strerror", None) or str(cause or exc)
            raise EmbeddedBrokerError(
                f"the embedded MQTT broker cannot listen on {self.host}:{self.port}: {reason}. "
                "Is a broker running there already (a Mosquitto, another `connectors run "
                "--embedded-broker`)? Use it without --embedded-broker, or point "
                f"TAKTFLOW_MQTT_URL at a free port (make run uses {EMBEDDED_MQTT_URL})"
            ) from None
        finally:
            logging.getLogger("amqtt").setLevel(logging.WARNING)
        self._broker = broker

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            # Shutting down waits a few seconds for clients that do not answer; never longer.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broker.shutdown(), timeout=10)

    def serves(self, definition: ConnectorDefinition) -> bool:
        """Whether an MQTT connector's broker is this one."""
        link = definition.mqtt
        return (
            link is not None and not link.tls and link.port == self.port and is_loopback(link.host)
        )

    def adapt(self, definitions: list[ConnectorDefinition]) -> list[ConnectorDefinition]:
        """The connectors, those pointing at this broker switched to MQTT 3.1.1 (all amqtt
        speaks); the files themselves stay as they are, for a real broker."""
        adapted = []
        for d in definitions:
            if self.serves(d) and d.mqtt is not None and d.mqtt.protocol != "3.1.1":
                d = dataclasses.replace(d, mqtt=dataclasses.replace(d.mqtt, protocol="3.1.1"))
            adapted.append(d)
        return adapted
