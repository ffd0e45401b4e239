"""Machine time: the shift calendar, and the projector that turns connector events in the inbox
into state intervals and per-minute counts (once each, whatever order ids commit in)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.engine.models import InboxMessage
from taktflow.engine.outbox import set_machine_context
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import ValidationFailed
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.machine_actions import seed_machine
from taktflow.mfg.machine_models import MachineCount, MachineState, ShiftBreak
from taktflow.mfg.machine_time import (
    GAP_WAIT,
    current_state,
    ideal_cycle_ms,
    load_calendar,
    planned_time,
    project_machine_events,
    shifts_of_day,
    state_intervals,
)
from taktflow.mfg.orders import create_order
from taktflow.mfg.stock import load_master_data

SEED = Path(__file__).parents[2] / "seed_data"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


@pytest.fixture
def plant(sa_engine: Engine) -> Engine:
    with Session(bind=sa_engine) as s, s.begin():
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        seed_machine(s, SEED)
    return sa_engine


@pytest.fixture
def session(plant: Engine) -> Iterator[Session]:
    with Session(bind=plant) as s:
        yield s


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def signal(engine: WorkflowEngine, name: str, machine: str, **payload: Any) -> int:
    """Store a connector event in the inbox as a connector does (nothing is dispatched)."""
    if isinstance(payload.get("at"), datetime):
        payload["at"] = payload["at"].isoformat()
    message_id, _ = engine.store_event("message", name, correlation={"machine_id": machine},
                                       data=payload, source=f"connector:{machine}")  # fmt: skip
    return message_id


# ---------------------------------------------------------------------- calendar
def test_the_demo_calendar_gives_the_shifts_of_a_day_in_local_time(session: Session) -> None:
    monday = shifts_of_day(session, date(2026, 3, 2))
    assert [(s["shift"], s["start"], s["end"]) for s in monday] == [
        ("EARLY", "2026-03-02T05:00:00+00:00", "2026-03-02T13:00:00+00:00"),
        ("LATE", "2026-03-02T13:00:00+00:00", "2026-03-02T21:00:00+00:00")]  # fmt: skip
    early = monday[0]
    assert (early["shift_s"], early["planned_stop_s"], early["planned_s"]) == (
        Decimal("28800"), Decimal("2700"), Decimal("26100"))  # fmt: skip
    assert [b["name"] for b in early["breaks"]] == ["Breakfast break", "Lunch break"]
    # After the clocks went forward (29 March) the early shift still starts at 06:00 local.
    assert shifts_of_day(session, date(2026, 3, 30))[0]["start"] == "2026-03-30T04:00:00+00:00"
    assert shifts_of_day(session, date(2026, 3, 7)) == []  # a Saturday
    assert shifts_of_day(session, date(2026, 4, 3)) == []  # Good Friday
    whole_day = planned_time(session, datetime(2026, 3, 2, tzinfo=UTC),
                             datetime(2026, 3, 3, tzinfo=UTC))  # fmt: skip
    assert (whole_day["shift_s"], whole_day["planned_s"]) == (Decimal(57600), Decimal(52200))


def test_loading_the_calendar_again_updates_and_adds_nothing_twice(
    session: Session, tmp_path: Path
) -> None:
    breaks = session.scalar(select(func.count()).select_from(ShiftBreak))
    assert seed_machine(session, SEED) == {"reason_codes": 16, "shifts": 2, "holidays": 11,
                                           "ideal_cycle_times": 4}  # fmt: skip
    assert session.scalar(select(func.count()).select_from(ShiftBreak)) == breaks == 4
    changed = tmp_path / "shifts.yaml"
    changed.write_text('timezone: UTC\nshifts:\n  - {code: EARLY, name: Early, start: "07:00",'
                       ' end: "15:00", days: [mon], breaks: []}\n')  # fmt: skip
    load_calendar(session, changed)
    [early] = shifts_of_day(session, date(2026, 3, 2))[:1]
    assert (early["name"], early["start"], early["breaks"]) == (
        "Early", "2026-03-02T07:00:00+00:00", [])  # fmt: skip


def test_a_night_shift_runs_past_midnight_with_its_break(session: Session, tmp_path: Path) -> None:
    night = tmp_path / "shifts.yaml"
    night.write_text('timezone: UTC\nshifts:\n  - {code: NIGHT, name: Night, start: "22:00", '
                     'end: "06:00", days: [sun], breaks: [{start: "02:00", end: "02:30"}]}\n'
                     '  - {code: EARLY, name: Early, start: "06:00", end: "14:00", days: [mon],'
                     ' active: false}\n  - {code: LATE, start: "14:00", end: "22:00", days: [mon],'
                     ' active: false}\n')  # fmt: skip
    load_calendar(session, night)
    # Sunday 22:00 to Monday 06:00; the window starts on Monday at 01:00.
    window = planned_time(session, datetime(2026, 3, 2, 1, tzinfo=UTC), at(60))
    assert (window["shift_s"], window["planned_stop_s"], window["planned_s"]) == (
        Decimal(5 * 3600), Decimal(1800), Decimal(5 * 3600 - 1800))  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('shifts:\n  - {code: A, start: "6:00", end: "14:00"}', 'shift 1 (A): start \'6:00\''),
        ('shifts:\n  - {code: A, start: "06:00", end: "14:00", breaks: [{start: "15:00", end: '
         '"15:30"}]}', "shift 1 (A): break 1: 15:00-15:30 does not lie inside the shift"),
        ('shifts:\n  - {code: A, start: "06:00", end: "14:00", days: [monday]}',
         "shift 1 (A): days must be a list of mon"),
        ('timezone: Mars/Olympus\nshifts:\n  - {code: A, start: "06:00", end: "14:00"}',
         "timezone 'Mars/Olympus' is not a time zone"),
        ("holidays:\n  - {date: 2026-13-01, name: X}", "holiday 1: date '2026-13-01'"),
        ("machines:\n  - {machine: press_9, ideal_cycle_s: 6}",
         "machine 1 (press_9): machine 'press_9' does not exist"),
        ("machines:\n  - {machine: press_1, ideal_cycle_s: 0}",
         "machine 1 (press_1): ideal_cycle_s must be a positive number"),
        ("shift: []", "unknown keys ['shift']"),
    ],
)  # fmt: skip
def test_a_bad_calendar_is_refused_naming_file_and_entry(
    session: Session, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "shifts.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValidationFailed) as refused:
        load_calendar(session, path)
    assert message in refused.value.message and str(path) in refused.value.message


# ---------------------------------------------------------------------- recording
def test_state_events_become_intervals_and_counts_become_minute_buckets(
    plant: Engine, engine: WorkflowEngine, clock: ManualClock
) -> None:
    signal(engine, "machine_state", "press_1", state="running", alarm_code=0, at=at(0))
    signal(engine, "parts_produced", "press_1", good=3, count=3, total=3, at=at(0.5))
    signal(engine, "parts_produced", "press_1", good=2, count=2, total=5, at=at(0.9))
    signal(engine, "parts_rejected", "press_1", scrap=1, count=1, at=at(0.95))
    signal(engine, "machine_state", "press_1", state="alarm", alarm_code=102, at=at(1.5))
    signal(engine, "parts_produced", "press_1", good=4, total=9, at=at(2.1))  # no count: good
    signal(engine, "machine_state", "press_1", state="running", alarm_code=0, at=at(4))
    signal(engine, "machine_warning", "press_1", reason="oil")  # not machine time
    clock.advance(timedelta(minutes=5))
    result = project_machine_events(plant, now=clock.now())
    assert (result["read"], result["projected"], result["skipped"]) == (8, 7, 0)
    with Session(bind=plant) as s:
        intervals = state_intervals(s, "press_1", at(0), at(10), now=at(5))
        assert [(i["state"], i["reason"], i["seconds"], i["open"]) for i in intervals] == [
            ("running", None, Decimal("90.000"), False),
            ("alarm", "DIE-JAM", Decimal("150.000"), False),  # alarm 102 names its reason
            ("running", None, Decimal("60.000"), True)]  # fmt: skip
        buckets = s.scalars(select(MachineCount).order_by(MachineCount.bucket_start)).all()
        assert [(b.bucket_start, b.total, b.reject, b.ideal_ms) for b in buckets] == [
            (at(0), 5, 1, 5 * 6000), (at(2), 4, 0, 4 * 6000)]  # fmt: skip
        assert current_state(s, "press_1")["since"] == at(4).isoformat()
    # A second pass finds nothing new: nothing is counted twice.
    again = project_machine_events(plant, now=clock.now())
    assert (again["read"], again["projected"]) == (0, 0)
    with Session(bind=plant) as s:
        assert s.scalar(select(func.sum(MachineCount.total))) == 9


def test_a_counter_reset_counts_what_was_made_since_and_bad_events_are_skipped(
    plant: Engine, engine: WorkflowEngine, clock: ManualClock
) -> None:
    signal(engine, "parts_produced", "press_1", count=7, total=1000, at=at(0))
    # The counter dropped from 1000 to 5: the connector reports the 5 made since the reset.
    signal(engine, "parts_produced", "press_1", count=5, total=5, reset=True, at=at(1))
    signal(engine, "parts_produced", "press_1", count=-995, total=5, at=at(1))  # never negative
    signal(engine, "parts_produced", "press_9", count=3, at=at(1))  # unknown machine
    signal(engine, "machine_state", "press_1", state=42, at=at(1))  # not a state name
    signal(engine, "parts_produced", "press_1", count=2)  # no `at`: when the inbox got it
    result = project_machine_events(plant, now=clock.now())
    assert (result["projected"], result["skipped"]) == (3, 3)
    with Session(bind=plant) as s:
        totals = dict(s.execute(select(MachineCount.bucket_start, MachineCount.total)).all())
        assert totals == {at(0): 7 + 2, at(1): 5}


def test_ids_that_commit_late_are_projected_when_they_appear(
    plant: Engine, clock: ManualClock
) -> None:
    """On PostgreSQL id 2 can commit after id 3 was read; the projector keeps the gap open."""

    def inbox(message_id: int, state: str, minute: float) -> None:
        with Session(bind=plant) as s, s.begin():
            s.add(InboxMessage(
                id=message_id, idempotency_key=f"test/{message_id}", kind="message",
                name="machine_state", correlation='{"machine_id": "press_1"}',
                payload=f'{{"state": "{state}", "at": "{at(minute).isoformat()}"}}',
                status="buffered", source="connector:press_1", received_at=clock.now(),
                expires_at=clock.now() + timedelta(hours=1), delivered_to="[]", started="[]",
                attempts=0))  # fmt: skip

    inbox(1, "running", 0)
    inbox(3, "running", 20)
    first = project_machine_events(plant, now=clock.now())
    assert (first["projected"], first["last_id"], first["gaps"]) == (2, 3, 1)
    inbox(2, "alarm", 10)  # committed late, with an earlier time than id 3's event
    clock.advance(timedelta(seconds=30))
    second = project_machine_events(plant, now=clock.now())
    assert (second["projected"], second["gaps"]) == (1, 0)
    with Session(bind=plant) as s:
        intervals = state_intervals(s, "press_1", at(0), at(30))
        assert [(i["state"], i["start"], i["end"]) for i in intervals] == [
            ("running", at(0).isoformat(), at(10).isoformat()),
            ("alarm", at(10).isoformat(), at(20).isoformat()),
            ("running", at(20).isoformat(), at(30).isoformat())]  # fmt: skip
    # A gap that never fills is given up after GAP_WAIT.
    inbox(5, "alarm", 40)
    assert project_machine_events(plant, now=clock.now())["gaps"] == 1
    clock.advance(GAP_WAIT + timedelta(seconds=1))
    assert project_machine_events(plant, now=clock.now())["gaps"] == 0


def test_the_same_event_twice_is_one_interval(
    plant: Engine, engine: WorkflowEngine, clock: ManualClock
) -> None:
    signal(engine, "machine_state", "press_2", state="idle", at=at(0))
    signal(engine, "machine_state", "press_2", state="idle", at=at(0))
    signal(engine, "machine_state", "press_2", state="setup", at=at(2))
    project_machine_events(plant, now=clock.now())
    with Session(bind=plant) as s:
        rows = s.scalars(select(MachineState).order_by(MachineState.started_at)).all()
        # Setup names its reason by itself (reason_codes.yaml: states: [setup]).
        assert [(r.state, r.reason, r.ended_at) for r in rows] == [
            ("idle", None, at(2)), ("setup", "SETUP", None)]  # fmt: skip


def test_the_ideal_cycle_comes_from_the_operation_the_machine_runs(
    session: Session, clock: ManualClock
) -> None:
    assert ideal_cycle_ms(session, "press_2") == 8000  # shifts.yaml: the machine's own
    create_order(session, number="PO-7", item="BRACKET-B", quantity=10, now=clock.now())
    set_machine_context(session, "press_2", {"order": "PO-7", "operation": 20}, actor=None,
                        now=clock.now())  # fmt: skip
    assert ideal_cycle_ms(session, "press_2") == 8000  # BRACKET-B's forming: cycle_s 8
    create_order(session, number="PO-8", item="CLAMP-C1", quantity=10, now=clock.now())
    set_machine_context(session, "press_2", {"order": "PO-8", "operation": 20}, actor=None,
                        now=clock.now())  # fmt: skip
    assert ideal_cycle_ms(session, "press_2") == 5000  # CLAMP-C1's forming: cycle_s 5
    set_machine_context(session, "press_2", {"ideal_cycle_ms": 4321}, actor=None,
                        now=clock.now())  # fmt: skip
    assert ideal_cycle_ms(session, "press_2") == 4321
    assert ideal_cycle_ms(session, "press_9") is None
