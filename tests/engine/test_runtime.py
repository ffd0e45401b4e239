"""The engine service end to end on a real database: start, complete, message, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from taktflow.engine import models as m
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import Conflict, NotFound

DATA = Path(__file__).parent / "data"
ORDER = {
    "order_id": "PO-000001",
    "order_qty": 120,
    "scrap_rate": 0.03,
    "bom": {"steel_kg": 1.25, "bolt_m8": 4, "paint_l": 0.05},
    "unit_cost": 12.5,
}
OPERATION = {"operator": "op-17", "workcenter": "WC-3", "setup_min": 12, "notes": "ok"}


def run_production_order(engine: WorkflowEngine, order_id: str = "PO-000001") -> int:
    started = engine.start("production_order", {**ORDER, "order_id": order_id}, actor="planner")
    instance_id = started["instance_id"]
    [task] = engine.tasks(instance_id)
    engine.complete_task(task["task_id"], OPERATION, actor="op-17")
    result = engine.send_message(
        "machine_done", data={"machine": "CNC-07", "cycle_s": 431.5, "alarms": []}
    )
    assert result.delivered_to == [instance_id]
    return instance_id


def test_production_order_runs_to_completion(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "production_order.bpmn"])
    instance_id = run_production_order(engine)
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED
    assert view["data"]["ledger_entry"] == {
        "order": "PO-000001",
        "good": 116,
        "scrap": 4,
        "machine": "CNC-07",
        "cycle_s": 431.5,
        "operator": "op-17",
        "cost": 1450.0,
    }
    assert view["ready_tasks"] == [] and view["waiting"] == []
    kinds = [event["kind"] for event in view["history"]]
    assert kinds == ["started", "task_completed", "message_received", "completed"]
    completed = view["history"][1]
    assert completed["actor"] == "op-17" and completed["details"]["data"] == OPERATION


def test_ready_task_carries_instructions_lane_and_form(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "production_order.bpmn"])
    instance_id = engine.start("production_order", ORDER)["instance_id"]
    [task] = engine.tasks(instance_id)
    assert task["name"] == "record_operation"
    assert task["title"] == "Record operation"
    assert task["instructions"] == "Record operation for order PO-000001"


def test_state_survives_a_new_engine(engine: WorkflowEngine, new_engine) -> None:
    """A second engine (another process, empty caches) continues the instance from the DB."""
    engine.deploy_paths([DATA / "production_order.bpmn"])
    instance_id = engine.start("production_order", ORDER)["instance_id"]
    other = new_engine()
    [task] = other.tasks(instance_id)
    other.complete_task(task["task_id"], OPERATION)
    assert other.workflows.hits == 0
    view = engine.instance(instance_id)
    assert view["waiting"] == [
        {"kind": "message", "name": "machine_done", "element_id": "machine_done", "correlation": {}}
    ]
    # The first engine's cached workflow is stale now: it must reload, not reuse it.
    engine.send_message("machine_done", data={"machine": "M", "cycle_s": 1.0, "alarms": []})
    assert engine.instance(instance_id)["status"] == m.COMPLETED


def test_unknown_process_and_task(engine: WorkflowEngine) -> None:
    with pytest.raises(NotFound, match="nothing is deployed yet"):
        engine.start("nope")
    with pytest.raises(NotFound, match="not a task id"):
        engine.complete_task("xyz")


def test_completing_twice_is_a_conflict(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "production_order.bpmn"])
    instance_id = engine.start("production_order", ORDER)["instance_id"]
    [task] = engine.tasks(instance_id)
    engine.complete_task(task["task_id"], OPERATION)
    with pytest.raises(Conflict, match="already completed"):
        engine.complete_task(task["task_id"], OPERATION)
