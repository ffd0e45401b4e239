"""OEE from real state intervals and counts: the notes' worked example (420/480, 400 x 1 min /
420, 380/400), windows and intervals that cross shift edges, and the cases without a divisor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.machine_actions import seed_machine
from taktflow.mfg.machine_time import load_calendar, oee, project_machine_events
from taktflow.mfg.stock import load_master_data

SEED = Path(__file__).parents[2] / "seed_data"
DAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
#: One shift of 8.5 h with a half-hour break: 480 minutes of planned production time.
CALENDAR = """\
timezone: UTC
shifts:
  - {code: EARLY, start: "06:00", end: "14:00", active: false}
  - {code: LATE, start: "14:00", end: "22:00", active: false}
  - code: DAY
    name: Day shift
    start: "06:00"
    end: "14:30"
    days: [mon, tue, wed, thu, fri]
    breaks: [{name: Break, start: "10:00", end: "10:30"}]
machines:
  - {machine: press_1, ideal_cycle_s: 60}
  - {machine: press_2, ideal_cycle_s: 8}
"""


def t(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


@pytest.fixture
def plant(sa_engine: Engine, tmp_path: Path) -> Engine:
    calendar = tmp_path / "shifts.yaml"
    calendar.write_text(CALENDAR)
    with Session(bind=sa_engine) as s, s.begin():
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        seed_machine(s, SEED)
        load_calendar(s, calendar)
    return sa_engine


def signal(engine: WorkflowEngine, name: str, machine: str, at: datetime, **payload: Any) -> None:
    engine.store_event("message", name, correlation={"machine_id": machine},
                       data=payload | {"at": at.isoformat()},
                       source=f"connector:{machine}")  # fmt: skip


@pytest.fixture
def worked_example(plant: Engine, engine: WorkflowEngine, clock: ManualClock) -> Engine:
    """press_1 on the day shift: running from before the shift, an hour in alarm from 08:00,
    running again from 09:00; 400 parts (one counter reset among them), 20 rejected; parts
    counted before the shift and during the break do not count."""
    signal(engine, "machine_state", "press_1", t(5.5), state="running", alarm_code=0)
    signal(engine, "machine_state", "press_1", t(8), state="alarm", alarm_code=103)
    signal(engine, "machine_state", "press_1", t(9), state="running", alarm_code=0)
    for minute in range(40):
        reset = minute == 20  # the counter dropped to 10: 10 parts since the reset
        signal(engine, "parts_produced", "press_1", t(6) + timedelta(minutes=minute, seconds=30),
               good=10, total=10 if reset else 10 * (minute + 1), reset=reset)  # fmt: skip
    signal(engine, "parts_rejected", "press_1", t(6.1), scrap=20)
    signal(engine, "parts_produced", "press_1", t(5.9), good=3)  # before the shift
    signal(engine, "parts_produced", "press_1", t(10.2), good=7)  # in the break
    signal(engine, "parts_rejected", "press_1", t(10.2), scrap=1)
    clock.set(t(15))
    project_machine_events(plant, now=clock.now())
    return plant


def test_the_worked_example_of_the_notes(worked_example: Engine) -> None:
    with Session(bind=worked_example) as s:
        view = oee(s, machine="press_1", start=t(6), end=t(14.5))
    assert view["work_center"] == "PRESS"
    assert (view["shift_s"], view["planned_stop_s"], view["planned_s"]) == (
        Decimal(510 * 60), Decimal(30 * 60), Decimal(480 * 60))  # fmt: skip
    assert (view["run_s"], view["down_s"]) == (Decimal(420 * 60), Decimal(60 * 60))
    assert (view["total"], view["good"], view["reject"]) == (400, 380, 20)
    assert (view["ideal_cycle_s"], view["ideal_s"]) == (Decimal(60), Decimal(400 * 60))
    assert (view["availability"], view["performance"], view["quality"], view["oee"]) == (
        Decimal("0.875000"), Decimal("0.952381"), Decimal("0.950000"),
        Decimal("0.791667"))  # fmt: skip
    assert (view["availability_pct"], view["performance_pct"], view["quality_pct"]) == (
        Decimal("87.50"), Decimal("95.24"), Decimal("95.00"))  # fmt: skip
    # Exactly: good x ideal cycle / planned = 380 / 480 = 79.17 %. The notes' 79.1 % is the
    # product of the factors after rounding each to 0.1 %.
    assert view["oee_pct"] == Decimal("79.17")
    rounded = [view[k].quantize(Decimal("0.1")) for k in
               ("availability_pct", "performance_pct", "quality_pct")]  # fmt: skip
    product = rounded[0] * rounded[1] * rounded[2] / 10000
    assert product.quantize(Decimal("0.1"), ROUND_DOWN) == Decimal("79.1")


def test_a_window_cuts_intervals_and_counts_at_its_edges(worked_example: Engine) -> None:
    with Session(bind=worked_example) as s:
        # 07:00-08:30: running until 08:00, then in alarm; the parts were made before 07:00.
        view = oee(s, machine="press_1", start=t(7), end=t(8.5))
        assert (view["planned_s"], view["run_s"]) == (Decimal(5400), Decimal(3600))
        assert view["total"] == 0
        assert (view["availability"], view["performance"], view["quality"], view["oee"]) == (
            Decimal("0.666667"), Decimal("0.000000"), None, Decimal("0.000000"))  # fmt: skip
        # 09:45-10:45 holds the break: 30 minutes planned, all of them running.
        around_break = oee(s, machine="press_1", start=t(9.75), end=t(10.75))
        assert (around_break["shift_s"], around_break["planned_s"], around_break["run_s"]) == (
            Decimal(3600), Decimal(1800), Decimal(1800))  # fmt: skip
        assert around_break["total"] == 0  # the 7 parts of the break are not planned time
        # A window not over yet counts up to now.
        so_far = oee(s, machine="press_1", start=t(6), end=t(14.5), now=t(7))
        assert (so_far["end"], so_far["planned_s"], so_far["run_s"]) == (
            t(7).isoformat(), Decimal(3600), Decimal(3600))  # fmt: skip
        assert so_far["availability"] == Decimal("1.000000")


def test_no_planned_time_and_no_signals_leave_the_ratios_empty(worked_example: Engine) -> None:
    with Session(bind=worked_example) as s:
        saturday = oee(s, machine="press_1", start=t(5 * 24), end=t(6 * 24))
        assert (saturday["planned_s"], saturday["run_s"], saturday["total"]) == (0, 0, 0)
        assert [saturday[k] for k in ("availability", "performance", "quality", "oee")] == [
            None] * 4  # fmt: skip
        # laser_1 sent nothing: planned time without a known state is downtime.
        silent = oee(s, machine="laser_1", start=t(6), end=t(14.5))
        assert (silent["planned_s"], silent["down_s"], silent["availability"], silent["oee"]) == (
            Decimal(28800), Decimal(28800), Decimal("0.000000"), Decimal("0.000000"))  # fmt: skip
        assert (silent["performance"], silent["quality"]) == (None, None)


def test_a_work_center_sums_its_machines(
    worked_example: Engine, engine: WorkflowEngine, clock: ManualClock
) -> None:
    signal(engine, "machine_state", "press_2", t(6), state="running")
    signal(engine, "parts_produced", "press_2", t(6.5), count=3000)
    signal(engine, "parts_rejected", "press_2", t(6.5), count=30)
    project_machine_events(worked_example, now=clock.now())
    with Session(bind=worked_example) as s:
        press = oee(s, work_center="PRESS", start=t(6), end=t(14.5))
    assert [m["machine"] for m in press["machines"]] == ["press_1", "press_2"]
    press_2 = press["machines"][1]
    assert (press_2["run_s"], press_2["total"], press_2["ideal_s"]) == (
        Decimal(28800), 3000, Decimal(24000))  # fmt: skip
    assert press_2["oee"] == Decimal("0.825000")  # 2970 x 8 s / 28800 s
    assert (press["planned_s"], press["run_s"], press["total"], press["reject"]) == (
        Decimal(2 * 28800), Decimal(25200 + 28800), 3400, 50)  # fmt: skip
    # The sums, not an average of the machines' ratios: (400 x 60 + 3000 x 8) / 54000 s.
    assert press["performance"] == Decimal("0.888889")
    # A x P x Q of the sums: 48000 s of ideal time x 3350/3400 good over 57600 s planned.
    assert press["oee"] == Decimal("0.821078")
    assert press["oee"] == (press["availability"] * press["performance"] * press["quality"]
                            ).quantize(Decimal("0.000001"))  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"machine": "press_1", "work_center": "PRESS"}, ValidationFailed, "one of them"),
        ({}, ValidationFailed, "give a machine or a work center"),
        ({"machine": "press_9"}, NotFound, "machine 'press_9' does not exist"),
        ({"work_center": "PAINT"}, NotFound, "work center 'PAINT'"),
        ({"machine": "press_1", "end": t(5)}, ValidationFailed, "before it starts"),
        ({"machine": "press_1", "start": datetime(2026, 3, 2, 6)}, ValidationFailed,
         "needs a time zone"),
    ],
)  # fmt: skip
def test_wrong_questions_are_refused(
    plant: Engine, kwargs: dict, error: type, message: str
) -> None:
    with Session(bind=plant) as s, pytest.raises(error, match=message):
        oee(s, **({"start": t(6), "end": t(14)} | kwargs))
