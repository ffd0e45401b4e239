"""The simulated week (taktflow.mfg.scenario, docs/scenario.md): the demo plant's real
workflows, forms, connector rules and projector run for a week of orders, and the books, the
stock and the machine counts reconcile. Also: the hand calculation the OEE check relies on,
and that the checks do fail when the data disagrees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.config import Config
from taktflow.mfg.models import OrderOperation, ProductionOrder
from taktflow.mfg.scenario import START, ScenarioError, WeekSettings, run_week
from taktflow.mfg.scenario_checks import hand_oee, planned_segments_from_file, reconcile
from taktflow.mfg.stock import move_stock

ROOT = Path(__file__).parents[2]
CHECKS = {
    "orders closed",
    "units counted by machines = units confirmed by operators",
    "finished-goods stock = good quantities received",
    "material issued = BOM x produced + scrap allowance",
    "WIP of every closed order is zero",
    "trial balance balances",
    "OEE of laser_1 (%) = hand calculation from its signals",
    "OEE of press_1 (%) = hand calculation from its signals",
    "OEE of press_2 (%) = hand calculation from its signals",
    "nothing left in the inbox or dead letters",
    "shortage of WK-001 bought through procurement with an escalation",
    "lot of WK-002 failed its gate, was reworked and passed",
    "lot of WK-003 failed its gate and was scrapped",
    "machine downtimes recorded, explained and closed",
    "no task outside the script",
}


def config() -> Config:
    return Config.from_env({}, {"connectors_path": str(ROOT / "connectors")})


def failures(checks: list) -> list[str]:
    return [
        f"{c.name}: expected {c.expected}, actual {c.actual} {c.detail}"
        for c in checks
        if not c.passed
    ]


def test_a_week_of_twenty_orders_reconciles(sa_engine: Engine) -> None:
    week, checks = run_week(sa_engine, config(), WeekSettings(orders=20, seed=1, root=ROOT))
    assert {c.name for c in checks} == CHECKS
    assert failures(checks) == []
    by_name = {c.name: c for c in checks}
    assert by_name["orders closed"].actual == 20
    # The machines really ran: thousands of parts counted, each confirmed.
    assert by_name["units counted by machines = units confirmed by operators"].actual > 2000
    with Session(sa_engine) as s:
        statuses = set(s.scalars(select(ProductionOrder.status)))
        assert statuses == {"closed"}
    assert len(week.log.jobs) >= 20 and week.log.finished_at is not None
    assert week.log.finished_at < START + timedelta(days=5)


def test_another_seed_reconciles_and_tampered_data_fails_its_check(sa_engine: Engine) -> None:
    week, checks = run_week(sa_engine, config(), WeekSettings(orders=5, seed=7, root=ROOT))
    assert failures(checks) == []
    # The reworked order: finished goods received, and its first operation on a press.
    order = next(o for o in week.log.orders if o.role == "rework")
    with Session(sa_engine) as s, s.begin():
        found = s.get(ProductionOrder, order.number)
        assert found is not None and found.lot
        # One unit leaves the finished-goods store without a word in the books, and the
        # machine's count of the first operation goes astray.
        move_stock(
            s,
            item=found.item,
            quantity=1,
            reason="scrap",
            now=START + timedelta(days=6),
            from_location="FG",
            lot=found.lot,
        )
        s.execute(
            update(OrderOperation)
            .where(OrderOperation.order_number == order.number, OrderOperation.sequence == 20)
            .values(counted_good=OrderOperation.counted_good - 1)
        )
    failed = {c.name for c in reconcile(week) if not c.passed}
    assert failed == {
        "finished-goods stock = good quantities received",
        "units counted by machines = units confirmed by operators",
    }


def test_the_week_needs_a_fresh_database(sa_engine: Engine) -> None:
    with Session(sa_engine) as s, s.begin():
        from taktflow.mfg.seed import load_plant

        load_plant(sa_engine, ROOT / "seed_data")
        from taktflow.mfg.orders import create_order

        create_order(s, number="PO-1", item="HINGE-H1", quantity=10, now=START)
    with pytest.raises(ScenarioError, match="already holds 1 production orders"):
        run_week(sa_engine, config(), WeekSettings(orders=5, root=ROOT))


@pytest.mark.parametrize("orders", [3, 61])
def test_an_order_count_out_of_range_is_refused(orders: int) -> None:
    with pytest.raises(ScenarioError, match=f"--orders {orders}"):
        WeekSettings(orders=orders)


def test_planned_time_comes_from_the_shift_file() -> None:
    monday = planned_segments_from_file(
        ROOT / "seed_data" / "shifts.yaml", START, START + timedelta(days=1)
    )
    # 06:00-22:00 in Berlin (UTC+1 in March) less four breaks of 15, 30, 15 and 30 minutes.
    assert monday[0] == (START, START + timedelta(hours=3))
    assert sum((b - a for a, b in monday), timedelta()) == timedelta(hours=14, minutes=30)
    weekend = planned_segments_from_file(
        ROOT / "seed_data" / "shifts.yaml", START + timedelta(days=5), START + timedelta(days=7)
    )
    assert weekend == []


def test_the_hand_calculation_of_oee() -> None:
    at = START + timedelta(hours=1)  # 07:00, inside the early shift

    def reading(minutes: float, state: int, parts: int, rejects: int = 0) -> tuple:
        return (
            at + timedelta(minutes=minutes),
            {"state_code": state, "part_counter": parts, "reject_counter": rejects},
        )

    readings = [
        reading(0, 0, 0),
        reading(10, 1, 0),
        reading(11, 1, 6),
        reading(20, 1, 60, 2),
        reading(30, 0, 100, 4),
        reading(40, 3, 0),
        reading(50, 1, 5),
    ]
    planned = [(at, at + timedelta(hours=1))]
    figures = hand_oee(readings, lambda moment: 5.0, planned, at + timedelta(hours=1))
    # Running 10-30 and 50-60 min: 30 of 60 planned minutes. 100 parts (4 rejected) before
    # the counter reset, 5 after: 105 parts of 5 s ideal = 525 s in 1,800 s of running.
    assert figures["run_s"] == 1800 and figures["total"] == 105 and figures["reject"] == 4
    assert figures["availability_pct"] == Decimal("50.00")
    assert figures["performance_pct"] == Decimal("29.17")
    assert figures["quality_pct"] == Decimal("96.19")
    assert figures["oee_pct"] == Decimal("14.03")  # 525 s x 101/105 / 3,600 s
    # A part read outside planned time does not count.
    late = hand_oee(
        readings, lambda moment: 5.0, [(at, at + timedelta(minutes=15))], at + timedelta(hours=1)
    )
    assert late["total"] == 6


def test_the_simulation_starts_on_a_monday_at_six_in_the_plant() -> None:
    from zoneinfo import ZoneInfo

    local = START.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.weekday(), local.hour, START.tzinfo) == (0, 6, UTC)
    assert START == datetime(2026, 3, 2, 5, tzinfo=UTC)
