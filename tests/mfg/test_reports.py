"""The plant's reports (mfg.reports) on data made by running production orders through the
execution functions: inventory by location and lot at standard cost, lot genealogy, order
cost standard against actual, the order list, trial balance and journal."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg import reports
from taktflow.mfg.execution import (
    close_order,
    complete_operation,
    issue_material,
    receive_finished_goods,
    release_order,
    start_operation,
)
from taktflow.mfg.ledger import balance, load_chart, post_entry, reverse_entry
from taktflow.mfg.orders import create_order
from taktflow.mfg.stock import load_master_data, move_stock

SEED = Path(__file__).parents[2] / "seed_data"

#: One bought component at 5.20, issued by hand, one press operation; the product's standard
#: is 5.00 + 2.00 + 1.50 = 8.50 per unit and a scrapped unit is worth 2.00.
PLANT = """\
items:
  - {code: RPT-RAW, name: Report blank, type: raw, uom: pcs, tracking: lot,
     standard_cost: {material: "5.20"}}
  - {code: RPT-PART, name: Report part, type: finished, uom: pcs, tracking: lot,
     standard_cost: {material: "5.00", labour: "2.00", overhead: "1.50", scrap_value: "2.00"}}
boms:
  - item: RPT-PART
    version: 1
    lines:
      - {component: RPT-RAW, quantity: 1, issue: manual, operation: 10}
routings:
  - item: RPT-PART
    version: 1
    operations:
      - {sequence: 10, name: Press part, work_center: PRESS, setup_min: 0, cycle_s: 60}
"""


@pytest.fixture
def session(sa_engine: Any, tmp_path: Path) -> Any:
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        extra = tmp_path / "report_plant.yaml"
        extra.write_text(PLANT)
        load_master_data(s, extra)
        yield s


def run_order(session: Session, clock: ManualClock, *, close: bool = True) -> None:
    """PO-R1: 100 ordered from two lots of blanks (60 of R-1, 40 of R-2), 98 good and 2
    scrapped, 11 h labour and 8 h machine on press_1 by olga, received, then closed."""
    for lot, quantity in (("R-1", 60), ("R-2", 60)):
        move_stock(session, item="RPT-RAW", quantity=quantity, reason="receipt",
                   now=clock.now(), to_location="RM-STORES", lot=lot)  # fmt: skip
        clock.advance(minutes=1)
    create_order(session, number="PO-R1", item="RPT-PART", quantity=100, now=clock.now())
    release_order(session, "PO-R1", now=clock.now())
    issue_material(session, "PO-R1", "RPT-RAW", 100, now=clock.now())
    clock.advance(minutes=5)
    start_operation(session, "PO-R1", 10, now=clock.now(), machine="press_1", operator="olga")
    clock.advance(hours=8)
    complete_operation(session, "PO-R1", 10, good=98, scrap=2, scrap_reason="crack",
                       labour_hours=11, machine_hours=8, now=clock.now())  # fmt: skip
    clock.advance(minutes=5)
    receive_finished_goods(session, "PO-R1", now=clock.now())
    if close:
        clock.advance(minutes=5)
        close_order(session, "PO-R1", now=clock.now())


def test_inventory_values_stock_by_location_and_lot_and_agrees_with_the_ledger(
    session: Session, clock: ManualClock
) -> None:
    run_order(session, clock)
    view = reports.inventory(session)
    rows = {(r["location"], r["item"], r["lot"]): r for r in view["rows"]}
    assert set(rows) == {("FG", "RPT-PART", "L-PO-R1"), ("SCRAP", "RPT-PART", "L-PO-R1"),
                         ("RM-STORES", "RPT-RAW", "R-2")}  # fmt: skip
    finished = rows[("FG", "RPT-PART", "L-PO-R1")]
    assert (finished["quantity"], finished["uom"], finished["unit_cost"], finished["value"]) == (
        Decimal(98), "pcs", Decimal("8.50"), Decimal("833.00"))  # fmt: skip
    # What is left of the second lot: 60 received, 40 issued.
    assert rows[("RM-STORES", "RPT-RAW", "R-2")]["quantity"] == 20
    assert rows[("RM-STORES", "RPT-RAW", "R-2")]["value"] == Decimal("104.00")
    # Scrap is worth its recovery value, as the close posted it.
    scrap = rows[("SCRAP", "RPT-PART", "L-PO-R1")]
    assert (scrap["value"], scrap["valued_as"]) == (Decimal("4.00"), "scrap value")
    totals = {t["location"]: t for t in view["locations"]}
    assert [t["location"] for t in view["locations"]] == ["FG", "RM-STORES", "SCRAP"]
    assert totals["FG"]["value"] == balance(session, "1420") == Decimal("833.00")
    assert totals["SCRAP"]["value"] == balance(session, "1430") == Decimal("4.00")
    assert view["value"] == Decimal("941.00")
    # Issued material was used up at the close: nothing stays on the shop floor.
    assert "WIP" not in totals
    assert {"FG", "WIP", "SCRAP"} <= {loc["code"] for loc in view["all_locations"]}


def test_inventory_filters_by_item_and_location(session: Session, clock: ManualClock) -> None:
    run_order(session, clock, close=False)
    by_item = reports.inventory(session, item="RPT-RAW")
    # Before the close the issued blanks are still on the shop floor, by lot.
    assert {(r["location"], r["lot"], r["quantity"]) for r in by_item["rows"]} == {
        ("RM-STORES", "R-2", 20), ("WIP", "R-1", 60), ("WIP", "R-2", 40)}  # fmt: skip
    assert [(t["location"], t["rows"], t["value"]) for t in by_item["locations"]] == [
        ("RM-STORES", 1, Decimal("104.00")), ("WIP", 2, Decimal("520.00"))]  # fmt: skip
    by_location = reports.inventory(session, location="FG")
    assert [(r["item"], r["quantity"]) for r in by_location["rows"]] == [("RPT-PART", 98)]
    assert by_location["value"] == Decimal("833.00")
    assert reports.inventory(session, item="RPT-RAW", location="FG")["rows"] == []
    both = reports.inventory(session, item="RPT-RAW", location="WIP")
    assert [(r["lot"], r["value"]) for r in both["rows"]] == [
        ("R-1", Decimal("312.00")), ("R-2", Decimal("208.00"))]  # fmt: skip


def test_inventory_of_an_empty_plant_is_empty_with_its_filter_choices(session: Session) -> None:
    view = reports.inventory(session)
    assert view["rows"] == [] and view["locations"] == [] and view["value"] == 0
    assert "RPT-PART" in {i["code"] for i in view["items"]}


def test_a_lot_traces_backward_to_its_inputs_and_forward_to_its_outputs(
    session: Session, clock: ManualClock
) -> None:
    run_order(session, clock)
    trace = reports.lot_trace(session, "RPT-PART", "L-PO-R1")
    assert trace["known"] and trace["name"] == "Report part"
    assert {(r["input_item"], r["input_lot"], r["quantity"], r["order"], r["level"])
            for r in trace["backward"]} == {("RPT-RAW", "R-1", 60, "PO-R1", 1),
                                            ("RPT-RAW", "R-2", 40, "PO-R1", 1)}  # fmt: skip
    assert trace["forward"] == []
    assert [o["number"] for o in trace["made_by"]] == ["PO-R1"]
    assert trace["made_by"][0]["received"] == 98
    assert {(s["location"], s["quantity"]) for s in trace["stock"]} == {("FG", 98), ("SCRAP", 2)}

    raw = reports.lot_trace(session, "RPT-RAW", "R-1")
    assert [(r["output_item"], r["output_lot"]) for r in raw["forward"]] == [
        ("RPT-PART", "L-PO-R1")]  # fmt: skip
    assert raw["backward"] == [] and raw["made_by"] == [] and raw["stock"] == []
    assert raw["known"] and raw["movements"] == 3  # received, issued, consumed at the close

    assert "R-1" in reports.known_lots(session) and "L-PO-R1" in reports.known_lots(session)
    assert reports.known_lots(session, "RPT-RAW") == ["R-2", "R-1"]
    assert {"code": "RPT-PART", "name": "Report part"} in reports.lot_items(session)


def test_an_unknown_lot_is_not_known_and_an_unknown_item_is_refused(
    session: Session, clock: ManualClock
) -> None:
    run_order(session, clock)
    missing = reports.lot_trace(session, "RPT-PART", "l-po-r1")  # lots are case-sensitive
    assert not missing["known"] and missing["backward"] == [] and missing["stock"] == []
    with pytest.raises(NotFound, match="item 'NOPE' does not exist"):
        reports.lot_trace(session, "NOPE", "L-1")
    with pytest.raises(ValidationFailed, match="give the lot"):
        reports.lot_trace(session, "RPT-PART", "  ")


def test_order_cost_shows_standard_against_actual_operations_movements_and_entries(
    session: Session, clock: ManualClock
) -> None:
    run_order(session, clock)
    view = reports.order_cost_report(session, "PO-R1")
    order = view["order"]
    assert (order["status"], order["quantity"], order["received"], order["lot"]) == (
        "closed", 100, 98, "L-PO-R1")  # fmt: skip
    cost = view["cost"]
    rows = [(e["element"], e["standard"], e["actual"], e["variance"]) for e in cost["elements"]]
    assert rows == [
        ("material", Decimal("490.00"), Decimal("520.00"), Decimal("26.00")),
        ("labour", Decimal("196.00"), Decimal("220.00"), Decimal("24.00")),
        ("overhead", Decimal("147.00"), Decimal("150.00"), Decimal("3.00")),
    ]
    assert (cost["standard"], cost["actual"], cost["variance"]) == (
        Decimal("833.00"), Decimal("890.00"), Decimal("53.00"))  # fmt: skip
    assert (cost["received_value"], cost["scrap_recovered"], cost["wip"]) == (
        Decimal("833.00"), Decimal("4.00"), Decimal("0.00"))  # fmt: skip

    [op] = view["operations"]
    assert (op["good"], op["scrap"], op["rework"], op["planned"]) == (98, 2, 0, 100)
    assert (op["machine"], op["operator"], op["scrap_reason"]) == ("press_1", "olga", "crack")
    assert (op["labour_hours"], op["machine_hours"]) == (Decimal("11.00"), Decimal("8.00"))

    moves = [(m["reason"], m["item"], m["lot"], m["quantity"]) for m in view["movements"]]
    assert moves[:2] == [("issue", "RPT-RAW", "R-1", 60), ("issue", "RPT-RAW", "R-2", 40)]
    assert ("produce", "RPT-PART", "L-PO-R1", 98) in moves
    assert sum(m[3] for m in moves if m[0] == "consume") == 100

    entries = view["entries"]
    assert entries and all(e["reference"] == "PO-R1" for e in entries)
    # Newest first: the close is the last posting.
    assert entries[0]["posted_at"] >= entries[-1]["posted_at"]
    assert "close" in entries[0]["description"].lower()
    for entry in entries:
        debits = sum((line["debit"] or 0 for line in entry["lines"]), Decimal(0))
        credits = sum((line["credit"] or 0 for line in entry["lines"]), Decimal(0))
        assert debits == credits == entry["total"] > 0


def test_order_cost_before_the_close_leaves_wip_and_refuses_unknown_orders(
    session: Session, clock: ManualClock
) -> None:
    run_order(session, clock, close=False)
    cost = reports.order_cost_report(session, "PO-R1")["cost"]
    # Everything is received: what is left in WIP is what the close will post as variances.
    assert cost["wip"] == cost["variance"] == Decimal("53.00")
    assert reports.order_cost_report(session, "PO-R1")["order"]["status"] == "completed"
    with pytest.raises(NotFound, match="production order 'PO-NONE' does not exist"):
        reports.order_cost_report(session, "PO-NONE")


def test_the_order_list_is_newest_first_filtered_and_paged(
    session: Session, clock: ManualClock
) -> None:
    run_order(session, clock)
    for n in range(reports.ORDER_PAGE_SIZE + 2):
        clock.advance(minutes=1)
        create_order(session, number=f"PO-L{n:03}", item="RPT-PART", quantity=5, now=clock.now())
    first = reports.order_list(session)
    assert first["total"] == reports.ORDER_PAGE_SIZE + 3 and first["pages"] == 2
    assert first["orders"][0]["number"] == f"PO-L{reports.ORDER_PAGE_SIZE + 1:03}"
    last = reports.order_list(session, page=99)  # past the end: the last page
    assert last["page"] == 2 and [o["number"] for o in last["orders"]][-1] == "PO-R1"
    closed = reports.order_list(session, status="closed")
    assert [(o["number"], o["received"], o["quantity"]) for o in closed["orders"]] == [
        ("PO-R1", 98, 100)]  # fmt: skip
    assert reports.order_list(session, item="RPT-RAW")["orders"] == []
    assert first["items"] == [{"code": "RPT-PART", "name": "Report part"}]
    with pytest.raises(ValidationFailed, match="status 'done' is not one of"):
        reports.order_list(session, status="done")


def test_the_journal_is_newest_first_paged_and_filtered_with_reversals(
    session: Session, clock: ManualClock
) -> None:
    run_order(session, clock)
    order_entries = reports.journal(session, reference="PO-R1", page_size=None)["total"]
    for n in range(reports.JOURNAL_PAGE_SIZE):
        clock.advance(minutes=1)
        post_entry(session, [{"account": "1400", "debit": "1.00"},
                             {"account": "2000", "credit": "1.00"}],
                   description=f"Adjustment {n}", reference=f"ADJ-{n}",
                   now=clock.now())  # fmt: skip
    clock.advance(minutes=1)
    reversal = reverse_entry(session, 1, now=clock.now(), reason="typo")
    total = order_entries + reports.JOURNAL_PAGE_SIZE + 1
    first = reports.journal(session)
    assert first["total"] == total and first["pages"] == 2
    assert first["entries"][0]["id"] == reversal and first["entries"][0]["reverses"] == 1
    assert len(first["entries"]) == reports.JOURNAL_PAGE_SIZE
    second = reports.journal(session, page=2)
    assert len(second["entries"]) == total - reports.JOURNAL_PAGE_SIZE
    assert second["entries"][-1]["id"] == 1 and second["entries"][-1]["reversed_by"] == reversal
    times = [e["posted_at"] for e in first["entries"] + second["entries"]]
    assert times == sorted(times, reverse=True)

    one = reports.journal(session, reference=" ADJ-3 ")
    assert [e["description"] for e in one["entries"]] == ["Adjustment 3"]
    assert [(line["account"], line["account_name"], line["debit"], line["credit"])
            for line in one["entries"][0]["lines"]][0][:3] == ("1400", "Raw materials",
                                                              Decimal("1.00"))  # fmt: skip
    # By account: every entry listed has a line on it, and every such entry is listed.
    labour = reports.journal(session, account="5100", page_size=None)
    assert labour["total"] >= 1
    assert all(any(line["account"] == "5100" for line in e["lines"]) for e in labour["entries"])
    assert reports.journal(session, reference="ADJ-3", account="5100")["entries"] == []
    assert reports.journal(session, reference="PO-R")["total"] == 0  # exact, not a prefix


def test_trial_balance_and_overview_count_what_was_posted(
    session: Session, clock: ManualClock
) -> None:
    empty = reports.trial_balance_report(session)
    assert empty["entries"] == 0 and empty["balanced"] and empty["debit"] == 0
    run_order(session, clock)
    report = reports.trial_balance_report(session)
    assert report["balanced"] and report["debit"] == report["credit"] > 0
    assert report["entries"] == reports.journal(session)["total"]
    by_code = {a["account"]: a for a in report["accounts"]}
    assert by_code["1420"]["balance"] == Decimal("833.00")
    assert by_code["1410"]["balance"] == 0
    figures = reports.overview(session)
    assert figures["stock_value"] == Decimal("941.00") and figures["stock_locations"] == 3
    assert figures["orders"]["closed"] == 1 and figures["order_count"] == 1
    assert figures["balanced"] and figures["entries"] == report["entries"]
    assert figures["lots"] == 3  # L-PO-R1
