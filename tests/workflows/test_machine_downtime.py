"""Workflow 6, machine downtime (workflows/machine_downtime.yaml), on the real engine with the
demo plant: a long stop opens a downtime, the operator gives its reason, maintenance repairs,
the restart closes it; a short stop records nothing; a planned stop needs no maintenance; an
unknown reason is asked again; a restart from before the stop is not taken for this one's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.connectors.definition import parse_connector
from taktflow.connectors.runtime import record_sample
from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.mfg.machine_models import Downtime
from taktflow.mfg.machine_time import current_state, project_machine_events, state_intervals

ROOT = Path(__file__).parents[2]
FILES = ("workflows/machine_downtime.yaml", "forms/downtime_reason.yaml",
         "forms/downtime_repair.yaml")  # fmt: skip


@pytest.fixture
def downtime_engine(plant_engine: WorkflowEngine, deploy: Callable[..., Any]) -> WorkflowEngine:
    deploy(*FILES)
    return plant_engine


def stop(engine: WorkflowEngine, clock: ManualClock, machine: str = "press_1", **extra: Any) -> int:
    """What the connector's `stopped` rule does: start an instance with the stop's data."""
    data = {"machine_id": machine, "state": "alarm", "alarm_code": 102,
            "stopped_at": clock.now().isoformat()} | extra  # fmt: skip
    return engine.start("machine_downtime", data)["instance_id"]


def restart(engine: WorkflowEngine, clock: ManualClock, machine: str = "press_1") -> Any:
    """What the connector's `running_again` rule sends."""
    data = {"at": clock.now().isoformat(), "previous_state": "alarm"}
    return engine.send_message("machine_running", correlation={"machine_id": machine}, data=data)


def tasks(engine: WorkflowEngine, instance: int) -> dict[str, str]:
    return {t["name"]: t["task_id"] for t in engine.tasks(instance)}


def records(sa_engine: Engine) -> list[Downtime]:
    with Session(bind=sa_engine) as s:
        return list(s.scalars(select(Downtime).order_by(Downtime.id)))


def pass_threshold(engine: WorkflowEngine, clock: ManualClock) -> None:
    clock.advance(timedelta(minutes=2, seconds=1))
    assert engine.fire_due_timers() == 1


def test_a_long_stop_is_a_downtime_with_reason_repair_and_duration(
    downtime_engine: WorkflowEngine, clock: ManualClock, sa_engine: Engine
) -> None:
    engine = downtime_engine
    instance = stop(engine, clock)
    clock.advance(timedelta(minutes=1))
    assert engine.fire_due_timers() == 0 and records(sa_engine) == []
    pass_threshold(engine, clock)
    [record] = records(sa_engine)
    assert (record.machine, record.reason, record.reason_source, record.ended_at) == (
        "press_1", "DIE-JAM", "signal", None)  # fmt: skip
    reason_task = tasks(engine, instance)["give_reason"]
    task = engine.task(reason_task)
    assert (task["lane"], task["form"]) == ("operator", "downtime_reason")
    data = engine.instance(instance, history=False)["data"]
    assert "DIE-JAM" in [r["value"] for r in data["downtime"]["reasons"]]
    engine.complete_task(reason_task, {"reason": "TOOL-BROKEN", "note": "punch chipped"},
                         actor="olga")  # fmt: skip
    repair_task = tasks(engine, instance)["repair_machine"]
    assert engine.task(repair_task)["lane"] == "maintenance"
    clock.advance(timedelta(minutes=9))
    restart(engine, clock)
    [record] = records(sa_engine)
    assert (record.reason, record.reason_by, record.duration_ms) == (
        "TOOL-BROKEN", "olga", 12 * 60_000 + 1000)  # fmt: skip
    assert engine.instance(instance)["status"] == "active"  # maintenance still reports
    engine.complete_task(repair_task, {"repair_note": "replaced the punch"}, actor="max")
    view = engine.instance(instance, history=False)
    assert view["status"] == "completed"
    assert view["data"]["closed"]["duration_s"] == "721.000"
    [record] = records(sa_engine)
    assert (record.repair_note, record.repaired_by) == ("replaced the punch", "max")


def test_a_short_stop_records_nothing(
    downtime_engine: WorkflowEngine, clock: ManualClock, sa_engine: Engine
) -> None:
    instance = stop(downtime_engine, clock)
    clock.advance(timedelta(seconds=50))
    assert restart(downtime_engine, clock).delivered_to == [instance]
    view = downtime_engine.instance(instance, history=False)
    assert (view["status"], view["data"]["short_stop"]) == ("completed", True)
    clock.advance(timedelta(minutes=5))
    assert downtime_engine.fire_due_timers() == 0
    assert records(sa_engine) == []


def test_a_reason_given_after_the_restart_and_a_planned_stop_without_maintenance(
    downtime_engine: WorkflowEngine, clock: ManualClock, sa_engine: Engine
) -> None:
    engine = downtime_engine
    instance = stop(engine, clock, state="setup", alarm_code=0)
    pass_threshold(engine, clock)
    assert records(sa_engine)[0].reason == "SETUP"  # the setup state names its reason
    clock.advance(timedelta(minutes=20))
    restart(engine, clock)
    [record] = records(sa_engine)
    assert (record.ended_at, record.duration_ms) == (clock.now(), (22 * 60 + 1) * 1000)
    engine.complete_task(tasks(engine, instance)["give_reason"], {"reason": "SETUP"})
    # A planned stop is no case for maintenance: the instance ends.
    assert engine.instance(instance)["status"] == "completed"
    assert records(sa_engine)[0].reason_source == "operator"


def test_an_unknown_reason_is_refused_and_asked_again(
    downtime_engine: WorkflowEngine, clock: ManualClock, sa_engine: Engine
) -> None:
    engine = downtime_engine
    instance = stop(engine, clock, machine="press_2", state="idle", alarm_code=0)
    pass_threshold(engine, clock)
    first = tasks(engine, instance)["give_reason"]
    engine.complete_task(first, {"reason": "COFFEE", "note": "?"})
    view = engine.instance(instance, history=False)
    assert view["status"] == "active"
    assert "reason 'COFFEE' is not a downtime reason" in view["data"]["reason_result"]["message"]
    again = tasks(engine, instance)["give_reason"]
    assert again != first
    assert "is not a downtime reason" in engine.task(again)["instructions"]
    assert records(sa_engine)[0].reason is None
    engine.complete_task(again, {"reason": "NO-MATERIAL", "note": "coil missing"})
    assert records(sa_engine)[0].reason == "NO-MATERIAL"
    assert "repair_machine" in tasks(engine, instance)


def test_a_restart_from_before_the_stop_is_not_this_stops_end(
    downtime_engine: WorkflowEngine, clock: ManualClock, sa_engine: Engine
) -> None:
    engine = downtime_engine
    # The machine started running when nothing waited: the message is kept in the inbox.
    assert restart(engine, clock).buffered
    clock.advance(timedelta(minutes=30))
    instance = stop(engine, clock)
    view = engine.instance(instance, history=False)
    assert view["status"] == "active" and "short_stop" not in view["data"]
    pass_threshold(engine, clock)
    assert [r.ended_at for r in records(sa_engine)] == [None]


def test_the_press_connector_starts_the_workflow_and_reports_the_restart(
    downtime_engine: WorkflowEngine, clock: ManualClock, sa_engine: Engine
) -> None:
    """connectors/press_1.yaml's rules, fed readings as the PLC gives them, through the
    connector runtime's own recording (record_sample)."""
    path = ROOT / "connectors" / "press_1.yaml"
    definition = parse_connector(path.read_text(), str(path))
    states: dict[str, dict] = {}

    def poll(code: int, alarm: int) -> list[dict]:
        nonlocal states
        values = {"part_counter": 0, "reject_counter": 0, "state_code": code,
                  "alarm_code": alarm, "oil_temp": 40.0}  # fmt: skip
        events, states, _ = record_sample(engine, definition, states, values, clock.now())
        engine.dispatch()
        return events

    engine = downtime_engine
    assert poll(1, 0) == []  # the first reading is the baseline
    stopped = poll(2, 104)
    assert sorted((e["kind"], e["name"]) for e in stopped) == [
        ("message", "machine_state"), ("start", "machine_downtime")]  # fmt: skip
    assert [e["variables"] for e in stopped if e["kind"] == "start"] == [
        {"machine_id": "press_1", "state": "alarm", "alarm_code": 104,
         "stopped_at": clock.now().isoformat()}]  # fmt: skip
    [instance] = [i["instance_id"] for i in engine.instances(process_id="machine_downtime")]
    pass_threshold(engine, clock)
    assert records(sa_engine)[0].reason == "LIGHT-CURTAIN"  # alarm 104
    clock.advance(timedelta(minutes=3))
    restarted = poll(1, 0)
    assert sorted(e["name"] for e in restarted) == ["machine_running", "machine_state"]
    [record] = records(sa_engine)
    assert record.duration_ms == (5 * 60 + 1) * 1000
    data = engine.instance(instance, history=False)["data"]
    assert Decimal(data["closed"]["duration_s"]) == Decimal(301)
    # The same events give the machine's state intervals (the workflow took none of them).
    project_machine_events(sa_engine, now=clock.now())
    with Session(bind=sa_engine) as s:
        assert [(i["state"], i["reason"], i["seconds"]) for i in state_intervals(
            s, "press_1", clock.now() - timedelta(hours=1), clock.now())] == [
            ("alarm", "LIGHT-CURTAIN", Decimal(301))]  # fmt: skip
        assert current_state(s, "press_1")["state"] == "running"
