"""What is stored, and what is never read back: spec once per version, side tables, audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from taktflow.engine.runtime import WorkflowEngine
from taktflow.engine.serialization import SERIALIZER_VERSION

DATA = Path(__file__).parent / "data"
ORDER = {"order_id": "P-1", "order_qty": 10, "scrap_rate": 0.0, "bom": {}, "unit_cost": 1.0}


def test_instance_rows_hold_no_spec_and_name_their_serializer(
    engine: WorkflowEngine, sa_engine
) -> None:
    engine.deploy_paths([DATA / "production_order.bpmn"])
    ids = [engine.start("production_order", ORDER)["instance_id"] for _ in range(3)]
    with sa_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT state, serializer_version FROM process_instance ORDER BY id")
        ).all()
        specs = conn.execute(text("SELECT count(*), max(length(spec)) FROM process_version")).one()
    assert len(rows) == len(ids)
    for state, version in rows:
        stored = json.loads(state)
        assert "spec" not in stored and "subprocess_specs" not in stored
        assert stored["serializer_version"] == version == SERIALIZER_VERSION
        assert len(state) < specs[1]  # the spec alone is bigger than an instance
    assert specs[0] == 1  # stored once, for the one version


def test_listings_correlation_and_timer_scan_never_deserialize(
    engine: WorkflowEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.deploy_paths([DATA / "goods_receipt.bpmn", DATA / "cure_timer.bpmn"])
    waiting = engine.start("goods_receipt", {"po_number": "PO-1"})["instance_id"]
    engine.start("cure_timer")
    engine.workflows.clear()

    def refuse(*args, **kwargs):
        raise AssertionError("a workflow was deserialized")

    monkeypatch.setattr(engine.serializer, "loads", refuse)
    assert {i["instance_id"] for i in engine.instances()} >= {waiting}
    assert engine.tasks() == []
    assert engine.fire_due_timers() == 0  # nothing due: the scan reads only instance_wait
    # A message for another order is matched against the side table, not the workflows.
    result = engine.send_message("goods_received", correlation={"po_number": "PO-2"})
    assert result.buffered and result.delivered_to == []


def test_audit_is_append_only_in_the_database(engine: WorkflowEngine, sa_engine) -> None:
    engine.deploy_paths([DATA / "production_order.bpmn"])
    engine.start("production_order", ORDER)
    for statement in ("UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            with sa_engine.begin() as conn:
                conn.execute(text(statement))
    with sa_engine.connect() as conn:
        kinds = conn.execute(text("SELECT kind, actor FROM audit_event ORDER BY id")).all()
    assert kinds == [("deployed", None), ("started", None)]
