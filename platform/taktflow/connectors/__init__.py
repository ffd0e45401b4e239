"""Connectors: machine signals (Modbus TCP, MQTT) in, workflow events out."""

from __future__ import annotations

from typing import Any

from taktflow.config import DEFAULT_MQTT_URL


def overview(connectors_path: str, engine: Any, mqtt_url: str = DEFAULT_MQTT_URL) -> dict[str, Any]:
    """Each connector file with what its runtime last stored and its inbox counts, plus the
    problems of files that cannot be read: the API's and the connectors page's view.
    `mqtt_url` is the configured broker (config.mqtt_url) of MQTT files that name none."""
    from taktflow.connectors.definition import read_folder

    found, problems = read_folder(connectors_path, mqtt_url=mqtt_url)
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
    for row in rows:
        prefix = "modbus" if row["type"] == "modbus" else "mqtt"
        row["outbox"] = engine.outbox_counts(f"{prefix}:{row['connector']}")
    failed = engine.outbox(status="failed", limit=50)
    dead = [d for d in engine.dead_letters(limit=200)
            if (d["source"] or "").startswith("connector:")]  # fmt: skip
    return {
        "connectors": rows,
        "problems": [p.to_dict() for p in problems],
        # What an engineer has to look at: events the engine refused, writes that failed.
        "dead_letters": dead[:50],
        # Failed rows first (they need someone), then the latest others.
        "outbox": failed + [o for o in engine.outbox(limit=20) if o["status"] != "failed"],
    }
