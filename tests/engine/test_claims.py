"""Task claims: who holds a task, who may complete it, and reassigning."""

from __future__ import annotations

import pytest

from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import Conflict, NotFound, PermissionDenied

FLOW = """\
process: claim_check
lanes: [operator]
steps:
  - task: Record setup
    lane: operator
"""


def ready_task(engine: WorkflowEngine) -> str:
    engine.deploy_text("claim_check.yaml", FLOW)
    instance_id = engine.start("claim_check", {})["instance_id"]
    [task] = engine.tasks(instance_id)
    assert task["claimed_by"] is None
    return task["task_id"]


def test_a_claimed_task_is_completed_only_by_its_claimant(engine: WorkflowEngine) -> None:
    task_id = ready_task(engine)
    assert engine.claim_task(task_id, "anna")["claimed_by"] == "anna"
    assert engine.claim_task(task_id, "anna")["claimed_by"] == "anna"  # again: no change
    with pytest.raises(Conflict, match="already claimed by anna"):
        engine.claim_task(task_id, "bert")
    with pytest.raises(PermissionDenied, match="claimed by anna"):
        engine.complete_task(task_id, {}, actor="bert")
    assert engine.task(task_id)["claimed_by"] == "anna"
    view = engine.complete_task(task_id, {}, actor="anna")
    assert view["status"] == "completed"
    kinds = [e["kind"] for e in view["history"]]
    assert kinds == ["started", "task_claimed", "task_completed", "completed"]


def test_unclaim_and_reassign(engine: WorkflowEngine) -> None:
    task_id = ready_task(engine)
    engine.claim_task(task_id, "anna")
    with pytest.raises(PermissionDenied, match="only they"):
        engine.unclaim_task(task_id, "bert")
    assert engine.unclaim_task(task_id, "anna")["claimed_by"] is None
    engine.claim_task(task_id, "anna")
    assert engine.assign_task(task_id, "bert", actor="mia")["claimed_by"] == "bert"
    assert engine.unclaim_task(task_id, "mia", force=True)["claimed_by"] is None
    instance = engine.instance(engine.task(task_id)["instance_id"])
    assert [(e["kind"], e["actor"]) for e in instance["history"][1:]] == [
        ("task_claimed", "anna"),
        ("task_unclaimed", "anna"),
        ("task_claimed", "anna"),
        ("task_assigned", "mia"),
        ("task_unclaimed", "mia"),
    ]


def test_claims_on_unknown_or_completed_tasks(engine: WorkflowEngine) -> None:
    task_id = ready_task(engine)
    engine.complete_task(task_id, {}, actor="anna")
    with pytest.raises(Conflict, match="already completed by anna"):
        engine.claim_task(task_id, "anna")
    with pytest.raises(NotFound):
        engine.claim_task("not-a-task", "anna")
