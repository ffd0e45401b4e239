"""Connectors: machine signals (Modbus TCP, MQTT) in, workflow events out."""

from __future__ import annotations

from typing import Any


def overview(connectors_path: str, engine: Any) -> dict[str, Any]:
    """Each connector file with what its runtime last stored and its inbox counts, plus the
    problems of files that cannot be read: the API's and the connectors page's view."""
    from taktflow.connectors.definition import read_folder

    found, problems = read_folder(connectors_path)
    rows = []
    for d in found:
        if d.modbus is not None:
            address = f"{d.modbus.host}:{d.modbus.port}"
        else:
            address = d.mqtt.url if d.mqtt is not None else ""
        rows.append(
            {
                "connector": d.id, "type": d.type, "enabled": d.enabled, "machine": d.machine,
                "address": address, "file": d.file, "rules": [r.id for r in d.rules],
                "points": {}, "updated_at": None, "messages": {},
            } | engine.connector_overview(d.id)
        )  # fmt: skip
    return {"connectors": rows, "problems": [p.to_dict() for p in problems]}
