"""Timers fire from persisted due times on the engine clock: tests move the clock, never sleep."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from taktflow.engine import models as m
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine

DATA = Path(__file__).parent / "data"


def test_duration_timer_waits_for_its_due_time(engine: WorkflowEngine, clock: ManualClock) -> None:
    engine.deploy_paths([DATA / "cure_timer.bpmn"])
    started_at = clock.now()
    instance_id = engine.start("cure_timer")["instance_id"]
    [wait] = engine.instance(instance_id)["waiting"]
    assert wait["kind"] == "timer" and wait["element_id"] == "cure"
    assert wait["due"] == (started_at + timedelta(hours=2)).isoformat()

    clock.advance(hours=1, minutes=59)
    assert engine.fire_due_timers() == 0
    assert engine.instance(instance_id)["status"] == m.ACTIVE

    clock.advance(minutes=2)
    assert engine.worker_pass()["timers_fired"] == 1
    view = engine.instance(instance_id)
    assert view["status"] == m.COMPLETED and view["data"]["released"] is True
    fired = [e for e in view["history"] if e["kind"] == "timer_fired"]
    assert [e["element_id"] for e in fired] == ["cure"]
    assert engine.fire_due_timers() == 0


def test_suspended_instance_timer_fires_only_after_resume(
    engine: WorkflowEngine, clock: ManualClock
) -> None:
    engine.deploy_paths([DATA / "cure_timer.bpmn"])
    instance_id = engine.start("cure_timer")["instance_id"]
    engine.suspend(instance_id)
    clock.advance(hours=3)
    assert engine.fire_due_timers() == 0
    engine.resume(instance_id)
    assert engine.fire_due_timers() == 1
    assert engine.instance(instance_id)["status"] == m.COMPLETED
