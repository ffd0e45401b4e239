"""Downtime records: opened with the reason the alarm names, given a reason by the operator
(only a downtime reason), closed with their duration; the Pareto of a window; reason codes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.downtime import (
    close_downtime,
    downtime_reasons,
    downtimes,
    load_reason_codes,
    open_downtime,
    pareto,
    record_repair,
    set_reason,
)
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.machine_actions import seed_machine
from taktflow.mfg.machine_models import MachineState, ReasonSignal
from taktflow.mfg.machine_time import record_state
from taktflow.mfg.stock import load_master_data

SEED = Path(__file__).parents[2] / "seed_data"
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=8)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def session(sa_engine: Engine) -> Iterator[Session]:
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        seed_machine(s, SEED)
        yield s


def test_a_downtime_opens_with_the_alarms_reason_takes_the_operators_and_closes(
    session: Session,
) -> None:
    record_state(session, "press_1", at(-30), "running")
    record_state(session, "press_1", at(0), "alarm", alarm_code=102)
    opened = open_downtime(session, machine="press_1", started_at=at(0), now=at(2),
                           state="alarm", alarm_code=102, idempotency_key="k1")  # fmt: skip
    assert (opened["open"], opened["reason"], opened["reason_source"], opened["category"]) == (
        True, "DIE-JAM", "signal", "availability")  # fmt: skip
    # A retried step gets the same record back.
    again = open_downtime(session, machine="press_1", started_at=at(0), now=at(3),
                          idempotency_key="k1")  # fmt: skip
    assert again["id"] == opened["id"]
    given = set_reason(session, opened["id"], "TOOL-BROKEN", by="olga", note="punch chipped",
                       now=at(5))  # fmt: skip
    assert (given["reason"], given["reason_source"], given["reason_by"], given["note"]) == (
        "TOOL-BROKEN", "operator", "olga", "punch chipped")  # fmt: skip
    # The machine's stop interval carries the reason too (availability loss by reason).
    stop = session.scalar(select(MachineState).where(MachineState.state == "alarm"))
    assert stop is not None and stop.reason == "TOOL-BROKEN"
    repaired = record_repair(session, opened["id"], "  replaced the punch ", by="max")
    assert (repaired["repair_note"], repaired["repaired_by"]) == ("replaced the punch", "max")
    closed = close_downtime(session, opened["id"], ended_at=at(12.5), now=at(13))
    assert (closed["open"], closed["duration_s"], closed["already_closed"]) == (
        False, Decimal("750.000"), False)  # fmt: skip
    # A second restart message changes nothing.
    twice = close_downtime(session, opened["id"], ended_at=at(20), now=at(21))
    assert (twice["ended_at"], twice["already_closed"]) == (at(12.5).isoformat(), True)
    # A reason may still be given after the machine runs again.
    late = set_reason(session, opened["id"], "DIE-JAM", by="olga", now=at(30))
    assert (late["reason"], late["duration_s"]) == ("DIE-JAM", Decimal("750.000"))


def test_only_an_active_downtime_reason_is_taken(session: Session, tmp_path: Path) -> None:
    opened = open_downtime(session, machine="press_2", started_at=at(0), now=at(2), state="idle")
    assert opened["reason"] is None  # idle names no reason by itself
    with pytest.raises(ValidationFailed) as refused:
        set_reason(session, opened["id"], "DIM-POS")  # a defect code, not a downtime reason
    assert "reason 'DIM-POS' is not a downtime reason (reasons: " in refused.value.message
    assert "DIE-JAM" in refused.value.message and refused.value.details == {
        "reason": "is not a downtime reason"}  # fmt: skip
    retired = tmp_path / "reason_codes.yaml"
    retired.write_text("downtime:\n  - {code: NO-ORDER, name: No order, category: planned, "
                       "active: false}\n")  # fmt: skip
    load_reason_codes(session, retired)
    with pytest.raises(ValidationFailed, match="reason 'NO-ORDER' is retired"):
        set_reason(session, opened["id"], "NO-ORDER")
    assert "NO-ORDER" not in [r["value"] for r in downtime_reasons(session)]
    # The file's signal mapping replaces the old one as a whole.
    assert session.get(ReasonSignal, "alarm:101") is None


def test_wrong_downtimes_are_refused(session: Session) -> None:
    first = open_downtime(session, machine="press_1", started_at=at(0), now=at(1))
    with pytest.raises(Conflict, match=f"press_1 has downtime {first['id']} open since"):
        open_downtime(session, machine="press_1", started_at=at(5), now=at(6))
    with pytest.raises(NotFound, match="machine 'press_9' does not exist"):
        open_downtime(session, machine="press_9", started_at=at(0), now=at(1))
    with pytest.raises(ValidationFailed, match="press_2 is running"):
        open_downtime(session, machine="press_2", started_at=at(0), now=at(1), state="running")
    with pytest.raises(ValidationFailed, match="lies in the future"):
        open_downtime(session, machine="press_2", started_at=at(10), now=at(1))
    with pytest.raises(ValidationFailed, match="it cannot end before"):
        close_downtime(session, first["id"], ended_at=at(-1), now=at(2))
    with pytest.raises(NotFound, match="downtime 999 does not exist"):
        close_downtime(session, 999, ended_at=at(1), now=at(2))
    with pytest.raises(ValidationFailed, match="repair note is empty"):
        record_repair(session, first["id"], "  ")


def test_the_pareto_ranks_reasons_by_their_time_in_the_window(session: Session) -> None:
    def downtime(machine: str, start: float, end: float | None, reason: str | None) -> None:
        made = open_downtime(session, machine=machine, started_at=at(start), now=NOW)
        if reason:
            set_reason(session, made["id"], reason)
        if end is not None:
            close_downtime(session, made["id"], ended_at=at(end), now=NOW)

    downtime("press_1", 0, 30, "DIE-JAM")
    downtime("press_1", 40, 50, "NO-MATERIAL")
    downtime("press_2", -20, 10, "DIE-JAM")  # began before the window: 10 minutes count
    downtime("press_2", 60, 65, None)
    downtime("laser_1", 100, None, "BREAKDOWN")  # still open: counts up to now
    chart = pareto(session, start=at(0), end=at(200), now=at(130))
    assert (chart["end"], chart["count"], chart["duration_s"]) == (
        at(130).isoformat(), 5, Decimal(85 * 60))  # fmt: skip
    assert [(r["reason"], r["count"], r["duration_s"], r["share_pct"], r["cumulative_pct"])
            for r in chart["reasons"]] == [
        ("DIE-JAM", 2, Decimal(2400), Decimal("47.1"), Decimal("47.1")),
        ("BREAKDOWN", 1, Decimal(1800), Decimal("35.3"), Decimal("82.4")),
        ("NO-MATERIAL", 1, Decimal(600), Decimal("11.8"), Decimal("94.1")),
        ("UNASSIGNED", 1, Decimal(300), Decimal("5.9"), Decimal("100.0")),
    ]  # fmt: skip
    assert chart["reasons"][3]["name"] == "No reason given"
    press = pareto(session, start=at(0), end=at(200), work_center="PRESS", now=at(130))
    assert [r["reason"] for r in press["reasons"]] == ["DIE-JAM", "NO-MATERIAL", "UNASSIGNED"]


def test_reason_codes_load_again_and_bad_ones_are_named(session: Session, tmp_path: Path) -> None:
    assert load_reason_codes(session, SEED / "reason_codes.yaml") == 16
    assert session.get(ReasonSignal, "state:setup").reason == "SETUP"
    for text, message in [
        ("downtime:\n  - {code: X, name: X, category: quality}", "reason 1 (X): category must"),
        ("downtime:\n  - {code: X, category: planned, alarm_codes: [1]}\n"
         "  - {code: Y, category: planned, alarm_codes: [1]}", "alarm 1 already belongs to X"),
        ("downtime:\n  - {code: X, category: planned, states: [running]}", "running is no stop"),
        ("reasons: []", "expected `downtime:`"),
    ]:  # fmt: skip
        path = tmp_path / "reason_codes.yaml"
        path.write_text(text + "\n")
        with pytest.raises(ValidationFailed) as refused:
            load_reason_codes(session, path)
        assert message in refused.value.message and str(path) in refused.value.message


def test_downtimes_of_a_work_center(session: Session) -> None:
    open_downtime(session, machine="press_1", started_at=at(0), now=NOW)
    open_downtime(session, machine="laser_1", started_at=at(0), now=NOW)
    press = downtimes(session, start=at(-10), end=at(10), work_center="PRESS")
    assert [d["machine"] for d in press] == ["press_1"]
    assert downtimes(session, start=at(1), end=at(10), machine="laser_1")[0]["open"] is True
