"""Errors and retry, terminate, suspend and resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from taktflow.engine import models as m
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import Conflict, NotFound

DATA = Path(__file__).parent / "data"


def test_failing_script_puts_instance_in_error_and_retry_continues(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "failing_script.bpmn"])
    instance_id = engine.start("failing_script", {"qty": 50, "good": 45, "total": 0})["instance_id"]
    view = engine.instance(instance_id)
    assert view["status"] == m.ERROR
    error = view["error"]
    assert error["element_id"] == "compute_rate"
    assert "division by zero" in error["message"]
    assert error["task_id"]
    # The work before the failing task is kept; nothing after it happened.
    assert view["data"]["lots"] == 5
    assert view["ready_tasks"] == []
    assert engine.tasks(instance_id) == []

    fixed = engine.retry(instance_id, {"total": 50}, actor="engineer")
    assert fixed["status"] == m.ACTIVE and fixed["error"] is None
    [task] = fixed["ready_tasks"]
    assert task["name"] == "confirm"
    done = engine.complete_task(task["task_id"])
    assert done["status"] == m.COMPLETED
    assert done["data"]["rate"] == 0.9 and done["data"]["ok"] is False
    kinds = [e["kind"] for e in done["history"]]
    assert kinds == ["started", "error", "retried", "task_completed", "completed"]
    retried = done["history"][2]
    assert retried["actor"] == "engineer" and retried["element_id"] == "compute_rate"


def test_retry_that_fails_again_stays_in_error(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "failing_script.bpmn"])
    instance_id = engine.start("failing_script", {"qty": 50, "good": 45, "total": 0})["instance_id"]
    again = engine.retry(instance_id, {"good": 40})
    assert again["status"] == m.ERROR and again["error"]["element_id"] == "compute_rate"
    with pytest.raises(Conflict, match="not in error"):
        engine.retry(
            engine.start("failing_script", {"qty": 1, "good": 1, "total": 1})["instance_id"]
        )


def test_terminate_removes_tasks_and_refuses_completion(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "production_order.bpmn"])
    instance_id = engine.start(
        "production_order",
        {"order_id": "P", "order_qty": 10, "scrap_rate": 0.0, "bom": {}, "unit_cost": 1.0},
    )["instance_id"]
    [task] = engine.tasks(instance_id)
    view = engine.terminate(instance_id, actor="manager", reason="order cancelled by ERP")
    assert view["status"] == m.TERMINATED
    assert view["ready_tasks"] == [] and view["waiting"] == []
    assert view["history"][-1]["details"] == {"reason": "order cancelled by ERP"}
    with pytest.raises(NotFound, match="not ready"):
        engine.complete_task(task["task_id"])
    with pytest.raises(Conflict, match="already terminated"):
        engine.terminate(instance_id)


def test_suspended_instance_takes_no_task_or_message_until_resumed(engine: WorkflowEngine) -> None:
    engine.deploy_paths([DATA / "production_order.bpmn"])
    instance_id = engine.start(
        "production_order",
        {"order_id": "P", "order_qty": 10, "scrap_rate": 0.0, "bom": {}, "unit_cost": 2.0},
    )["instance_id"]
    [task] = engine.tasks(instance_id)
    engine.complete_task(task["task_id"], {"operator": "op-1"})
    suspended = engine.suspend(instance_id, actor="supervisor")
    assert suspended["status"] == m.SUSPENDED and suspended["waiting"] == []
    result = engine.send_message("machine_done", data={"machine": "M1", "cycle_s": 3.0})
    assert result.buffered and result.delivered_to == []
    assert engine.instance(instance_id)["status"] == m.SUSPENDED
    resumed = engine.resume(instance_id, actor="supervisor")
    # The message kept meanwhile reaches the instance as soon as it waits again.
    assert resumed["status"] == m.COMPLETED
    assert resumed["data"]["ledger_entry"]["machine"] == "M1"
    assert engine.delivery(result.message_id).delivered_to == [instance_id]
    with pytest.raises(Conflict, match="not suspended"):
        engine.resume(instance_id)
