"""Production order execution: reservations and release, operations in sequence, backflush and
manual issue by lot, labour and machine time, receipts, scrap, rework, genealogy, and the close
with its variances — the notes' worked example to the cent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.engine.models import MachineContext
from taktflow.errors import Conflict, ValidationFailed
from taktflow.mfg.execution import (
    close_order,
    complete_operation,
    count_on_machine,
    genealogy,
    issue_material,
    order_costs,
    receive_finished_goods,
    release_order,
    report_quantity,
    reserve_material,
    rework_operation,
    scrap_quantity,
    start_operation,
)
from taktflow.mfg.ledger import balance, load_chart, trial_balance
from taktflow.mfg.models import OrderOperation, Reservation
from taktflow.mfg.orders import create_order
from taktflow.mfg.stock import load_master_data, move_stock, on_hand

SEED = Path(__file__).parents[2] / "seed_data"

#: The notes' worked example as a plant: one component worth 5.20 per unit, issued by hand,
#: one operation in the press shop (labour 20.00/h, machine 18.75/h); the product's standard
#: is 5.00 + 2.00 + 1.50, a scrapped unit is worth 2.00.
WORKED_EXAMPLE = """\
items:
  - {code: RAW-W, name: Widget blank, type: raw, uom: pcs, tracking: lot,
     standard_cost: {material: "5.20"}}
  - {code: WIDGET, name: Widget, type: finished, uom: pcs, tracking: lot,
     standard_cost: {material: "5.00", labour: "2.00", overhead: "1.50", scrap_value: "2.00"}}
boms:
  - item: WIDGET
    version: 1
    lines:
      - {component: RAW-W, quantity: 1, issue: manual, operation: 10}
routings:
  - item: WIDGET
    version: 1
    operations:
      - {sequence: 10, name: Stamp widget, work_center: PRESS, setup_min: 0, cycle_s: 60}
"""


@pytest.fixture
def session(sa_engine: Any, tmp_path: Path) -> Any:
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        extra = tmp_path / "worked_example.yaml"
        extra.write_text(WORKED_EXAMPLE)
        load_master_data(s, extra)
        yield s


def receive(session: Session, clock: ManualClock, item: str, quantity: Any, lot: str) -> None:
    move_stock(session, item=item, quantity=quantity, reason="receipt", now=clock.now(),
               to_location="RM-STORES", lot=lot)  # fmt: skip


def test_the_worked_example_posts_to_the_cent_and_leaves_no_wip(
    session: Session, clock: ManualClock
) -> None:
    receive(session, clock, "RAW-W", 60, "R-1")
    clock.advance(seconds=60)
    receive(session, clock, "RAW-W", 60, "R-2")
    create_order(session, number="PO-1", item="WIDGET", quantity=100, now=clock.now())
    assert release_order(session, "PO-1", now=clock.now())["status"] == "released"

    issued = issue_material(session, "PO-1", "RAW-W", 100, now=clock.now())
    # First in, first out: all of the older lot, then the rest from the newer one.
    assert issued["lots"] == [{"lot": "R-1", "quantity": Decimal(60)},
                              {"lot": "R-2", "quantity": Decimal(40)}]  # fmt: skip
    start_operation(session, "PO-1", 10, now=clock.now(), machine="press_1", operator="olga")
    op = complete_operation(session, "PO-1", 10, good=98, scrap=2, scrap_reason="crack",
                            labour_hours=11, machine_hours=8, now=clock.now())  # fmt: skip
    assert (op["good"], op["scrap"], op["labour_hours"]) == (98, 2, 11)
    receive_finished_goods(session, "PO-1", now=clock.now())
    assert balance(session, "1410", "PO-1") == Decimal("53.00")

    closed = close_order(session, "PO-1", now=clock.now())
    costs = closed["costs"]
    assert costs["actual_cents"] == {"material": 52000, "labour": 22000, "overhead": 15000}
    assert costs["received_cents"] == 83300 and costs["scrap_recovered_cents"] == 400
    assert costs["variance_cents"] == {"material": 2600, "labour": 2400, "overhead": 300}
    assert costs["wip_cents"] == 0 and closed["status"] == "closed"
    assert balance(session, "1410", "PO-1") == 0
    assert (balance(session, "5400", "PO-1"), balance(session, "5410", "PO-1"),
            balance(session, "5420", "PO-1")) == (26, 24, 3)  # fmt: skip
    assert trial_balance(session)["balanced"]
    assert on_hand(session, "WIDGET", "FG", "L-PO-1") == 98
    assert on_hand(session, "WIDGET", "SCRAP") == 2
    # Material issued to the floor is used up at the close; nothing stays in WIP.
    assert on_hand(session, "RAW-W", "WIP") == 0 and on_hand(session, "RAW-W", "RM-STORES") == 20
    trace = genealogy(session, "WIDGET", "L-PO-1")
    assert {(r["input_lot"], r["quantity"]) for r in trace} == {("R-1", 60), ("R-2", 40)}
    assert genealogy(session, "RAW-W", "R-2", direction="forward")[0]["output_lot"] == "L-PO-1"


def test_reservations_hold_stock_for_their_order_and_shortages_say_what_is_missing(
    session: Session, clock: ManualClock
) -> None:
    receive(session, clock, "RAW-W", 150, "R-1")
    create_order(session, number="PO-A", item="WIDGET", quantity=100, now=clock.now())
    create_order(session, number="PO-B", item="WIDGET", quantity=100, now=clock.now())
    assert not reserve_material(session, "PO-A")["short"]
    short = reserve_material(session, "PO-B")
    assert short["shortages"] == [{"component": "RAW-W", "uom": "pcs", "required": 100,
                                   "reserved": 50, "missing": 50, "make": False}]  # fmt: skip
    with pytest.raises(Conflict, match="PO-B cannot be released: 50 pcs of RAW-W missing"):
        release_order(session, "PO-B", now=clock.now())
    receive(session, clock, "RAW-W", 50, "R-2")
    assert release_order(session, "PO-B", now=clock.now())["status"] == "released"


def test_a_cancelled_order_frees_what_it_reserved(session: Session, clock: ManualClock) -> None:
    from taktflow.mfg.orders import set_status

    receive(session, clock, "RAW-W", 100, "R-1")
    create_order(session, number="PO-C", item="WIDGET", quantity=100, now=clock.now())
    create_order(session, number="PO-D", item="WIDGET", quantity=100, now=clock.now())
    assert not reserve_material(session, "PO-C")["short"]
    assert reserve_material(session, "PO-D")["short"]
    set_status(session, "PO-C", "cancelled", now=clock.now())
    # The stock PO-C held is PO-D's now.
    assert not reserve_material(session, "PO-D")["short"]


def test_an_order_with_work_in_progress_is_closed_not_cancelled(
    session: Session, clock: ManualClock
) -> None:
    from taktflow.mfg.orders import get_order, set_status

    receive(session, clock, "RAW-W", 10, "R-1")
    create_order(session, number="PO-W", item="WIDGET", quantity=10, now=clock.now())
    release_order(session, "PO-W", now=clock.now())
    issue_material(session, "PO-W", "RAW-W", 4, now=clock.now())
    # Cancelled, it would never be closed: the 20.80 issued would stay in WIP for good.
    with pytest.raises(Conflict, match=r"PO-W cannot be cancelled: 20\.80 is in work in "
                                       "progress.*Complete and close it"):  # fmt: skip
        set_status(session, "PO-W", "cancelled", now=clock.now())
    assert get_order(session, "PO-W").status == "released"
    held = select(Reservation).where(Reservation.order_number == "PO-W", Reservation.open)
    assert session.scalars(held).all(), "its reservations still hold"
    # The way out the message names: the close consumes what is on the floor.
    start_operation(session, "PO-W", 10, now=clock.now())
    complete_operation(session, "PO-W", 10, good=0, scrap=4, scrap_reason="order dropped",
                       now=clock.now())  # fmt: skip
    assert close_order(session, "PO-W", now=clock.now())["status"] == "closed"
    assert balance(session, "1410", "PO-W") == 0


def test_operations_run_in_sequence_and_backflush_their_components(
    session: Session, clock: ManualClock
) -> None:
    receive(session, clock, "BOLT-M8", 1000, "")
    move_stock(session, item="BRACKET-BLANK", quantity=50, reason="receipt", now=clock.now(),
               to_location="RM-STORES")  # fmt: skip
    create_order(session, number="PO-2", item="BRACKET-A", quantity=40, now=clock.now())
    release_order(session, "PO-2", now=clock.now())
    with pytest.raises(Conflict, match="operation 30 of PO-2 cannot start: operation 20 "
                                       r"\(Form bracket\) is waiting"):  # fmt: skip
        start_operation(session, "PO-2", 30, now=clock.now())
    with pytest.raises(ValidationFailed, match="machine laser_1 belongs to LASER"):
        start_operation(session, "PO-2", 20, now=clock.now(), machine="laser_1")
    start_operation(session, "PO-2", 20, now=clock.now(), machine="press_1", operator="olga")
    context = session.get(MachineContext, "press_1")
    assert context is not None and '"order": "PO-2"' in context.data
    # Counts from the press's connector reach the operation running on it, and only that one.
    assert count_on_machine(session, "press_1", total=30)
    assert count_on_machine(session, "press_1", reject=1)  # one of those 30 was a reject
    assert not count_on_machine(session, "press_2", total=5)
    report_quantity(session, "PO-2", 20, good=10)
    clock.advance(hours=1)
    with pytest.raises(ValidationFailed, match="more than the 40 pcs that reached it"):
        complete_operation(session, "PO-2", 20, good=40, scrap=1, scrap_reason="x",
                           now=clock.now())  # fmt: skip
    with pytest.raises(ValidationFailed, match="need a scrap reason"):
        complete_operation(session, "PO-2", 20, good=39, scrap=1, now=clock.now())
    op20 = complete_operation(session, "PO-2", 20, good=39, scrap=1, scrap_reason="split",
                              now=clock.now())  # fmt: skip
    # Machine counts stand beside the operator's figures; time defaults to the elapsed hour.
    assert (op20["counted_good"], op20["counted_reject"], op20["labour_hours"]) == (39, 1, 1)
    # The press works on nothing now: its context is cleared for the connector's rules.
    assert session.get(MachineContext, "press_1").data == "{}"
    # Blanks are backflushed at operation 20 for good + scrap (40), no scrap allowance.
    assert on_hand(session, "BRACKET-BLANK", "RM-STORES") == 10
    start_operation(session, "PO-2", 30, now=clock.now(), machine="test_station_10")
    with pytest.raises(ValidationFailed, match="more than the 39 pcs that reached it"):
        complete_operation(session, "PO-2", 30, good=40, now=clock.now())
    complete_operation(session, "PO-2", 30, good=39, now=clock.now())
    assert on_hand(session, "BOLT-M8", "RM-STORES") == 1000 - 39 * 4
    # PRESS: 1 h labour at 20.00 and 1 h machine at 18.75, credited to the applied accounts.
    assert (balance(session, "5100", "PO-2"), balance(session, "5200", "PO-2")) == (
        Decimal("-20.00"), Decimal("-18.75"))  # fmt: skip


def test_rework_and_scrap_after_a_failed_gate(session: Session, clock: ManualClock) -> None:
    receive(session, clock, "RAW-W", 10, "R-9")
    create_order(session, number="PO-3", item="WIDGET", quantity=10, now=clock.now())
    release_order(session, "PO-3", now=clock.now())
    issue_material(session, "PO-3", "RAW-W", 10, now=clock.now())
    start_operation(session, "PO-3", 10, now=clock.now())
    complete_operation(session, "PO-3", 10, good=10, labour_hours=1, machine_hours=1,
                       now=clock.now())  # fmt: skip
    rework_operation(session, "PO-3", 10, 4)
    with pytest.raises(Conflict, match="PO-3: its last operation is rework"):
        receive_finished_goods(session, "PO-3", now=clock.now())
    start_operation(session, "PO-3", 10, now=clock.now())
    with pytest.raises(ValidationFailed, match="reworked 4: good \\+ scrap must add up to it"):
        complete_operation(session, "PO-3", 10, good=4, scrap=1, scrap_reason="burr",
                           now=clock.now())  # fmt: skip
    op = complete_operation(session, "PO-3", 10, good=3, scrap=1, scrap_reason="burr",
                            labour_hours="0.5", machine_hours=0, now=clock.now())  # fmt: skip
    assert (op["good"], op["scrap"], op["rework"], op["labour_hours"]) == (9, 1, 4, Decimal("1.5"))
    scrap_quantity(session, "PO-3", 10, 2, reason="gate failed", now=clock.now())
    received = receive_finished_goods(session, "PO-3", now=clock.now())
    assert received["received"] == 7 and received["status"] == "completed"
    closed = close_order(session, "PO-3", now=clock.now())
    assert closed["costs"]["wip_cents"] == 0 and balance(session, "1410", "PO-3") == 0
    assert on_hand(session, "WIDGET", "SCRAP") == 3
    assert balance(session, "1430", "PO-3") == Decimal("6.00")  # 3 x 2.00 recovered
    assert trial_balance(session)["balanced"]
    with pytest.raises(Conflict, match="PO-3 is closed"):
        close_order(session, "PO-3", now=clock.now())


def test_issue_refuses_what_the_bom_does_not_list_or_stock_cannot_give(
    session: Session, clock: ManualClock
) -> None:
    receive(session, clock, "RAW-W", 5, "R-1")
    create_order(session, number="PO-4", item="WIDGET", quantity=5, now=clock.now())
    with pytest.raises(Conflict, match="PO-4 is planned: material is issued"):
        issue_material(session, "PO-4", "RAW-W", 1, now=clock.now())
    release_order(session, "PO-4", now=clock.now())
    with pytest.raises(ValidationFailed, match="BOLT-M8 is not in the bill of materials of PO-4"):
        issue_material(session, "PO-4", "BOLT-M8", 1, now=clock.now())
    with pytest.raises(ValidationFailed, match="holds 5 pcs of RAW-W; 6 are needed for PO-4"):
        issue_material(session, "PO-4", "RAW-W", 6, now=clock.now())
    issue_material(session, "PO-4", "RAW-W", 2, now=clock.now(), lot="R-1")
    ops = session.scalars(select(OrderOperation).where(OrderOperation.order_number == "PO-4"))
    assert [o.status for o in ops] == ["waiting"]
    assert order_costs(session, "PO-4")["actual_cents"]["material"] == 1040
