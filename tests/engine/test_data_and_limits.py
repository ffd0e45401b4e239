"""Task data of every type scripts can make, and the limits of SpiffWorkflow's task tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from taktflow.engine import models as m
from taktflow.engine.runtime import WorkflowEngine

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("cold", [False, True], ids=["cached", "reloaded"])
def test_script_values_survive_saving_and_show_in_views(engine: WorkflowEngine, cold: bool) -> None:
    engine.deploy_paths([DATA / "task_data_types.bpmn"])
    started = engine.start("task_data_types", {"qty": 5})
    instance_id = started["instance_id"]
    [task] = started["ready_tasks"]
    # A template that fails on the data does not stop the step; it says why on the task.
    assert task["instructions"].startswith("Weigh {{ qty")
    assert "could not be rendered: TypeError" in task["instructions"]
    view = engine.instance(instance_id)
    assert view["data"]["cure"] == 9000.0
    assert view["data"]["shift_start"] == "06:00:00"
    assert view["data"]["stations"] == ["ST-1", "ST-2"]
    assert view["data"]["price"] == "12.50"
    if cold:
        engine.workflows.clear()
    done = engine.complete_task(task["task_id"])
    # The set is still a set after a reload from the database, as it is in the cache.
    assert done["status"] == m.COMPLETED and done["data"]["count"] == 3


def test_a_loop_deeper_than_the_engine_can_follow_stops_with_an_error(
    engine: WorkflowEngine,
) -> None:
    engine.deploy_paths([DATA / "long_loop.bpmn"])
    short = engine.start("long_loop", {"limit": 100})["instance_id"]
    assert engine.instance(short)["data"]["n"] == 100
    long = engine.start("long_loop", {"limit": 5000})["instance_id"]
    view = engine.instance(long)
    # Never "completed" with half the work silently dropped.
    assert view["status"] == m.ERROR
    assert "tasks deep" in view["error"]["message"]
