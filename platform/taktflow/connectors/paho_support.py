"""Helpers around paho-mqtt's client that the connectors, the simulator and the tests share."""

from __future__ import annotations

from typing import Any


def stop_loop(client: Any) -> None:
    """Stop the client's network thread and close the sockets it keeps.

    `loop_stop` leaves the thread's wake-up socket pair open until the client is garbage
    collected; a client whose callbacks are bound methods of its owner sits in a reference
    cycle and is collected late, each socket then raising a ResourceWarning wherever the
    collection happens to run. paho has no public close, so its own reset is called — the
    one its finaliser uses."""
    client.loop_stop()
    reset = getattr(client, "_reset_sockets", None)
    if callable(reset):
        reset()
