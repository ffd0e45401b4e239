"""Sales orders (mfg.sales): the demo plant's file loads, again without duplicates; a bad
entry is refused naming file, line and field and loads nothing; and the view adds up the
production orders whose erp_reference names a sales order, run through the execution
functions."""

from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.errors import ValidationFailed
from taktflow.mfg.execution import (
    complete_operation,
    receive_finished_goods,
    release_order,
    start_operation,
)
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.models import Item
from taktflow.mfg.orders import create_order, get_order, set_status
from taktflow.mfg.sales import (
    SalesOrder,
    load_sales_orders,
    sales_order_views,
    sales_summary,
    seed_sales,
)
from taktflow.mfg.stock import load_master_data, move_stock

SEED = Path(__file__).parents[2] / "seed_data"
SEED_FILE = SEED / "sales_orders.yaml"

#: A good entry, then the entry the bad-file cases spoil; the second entry's item is on line
#: 10, its quantity on 11, its due date on 12.
TWO_ORDERS = """\
# Sales orders for a test.
sales_orders:
  - number: SO-9001
    customer: Good customer
    item: BRACKET-A
    quantity: 100
    due_on: 2026-03-02
  - number: SO-9002
    customer: Second customer
    item: BRACKET-A
    quantity: 100
    due_on: 2026-03-09
"""


@pytest.fixture
def session(sa_engine: Any) -> Any:
    """The demo plant's chart of accounts and master data (no sales orders yet)."""
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        yield s


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(SalesOrder))


def test_the_demo_plant_sales_orders_load_once_and_update(
    session: Session, clock: ManualClock, tmp_path: Path
) -> None:
    assert load_sales_orders(session, SEED_FILE, now=clock.now()) == 5
    orders = session.scalars(select(SalesOrder).order_by(SalesOrder.number)).all()
    assert [o.number for o in orders] == ["SO-1001", "SO-1002", "SO-1003", "SO-1004", "SO-1005"]
    assert len({o.customer for o in orders}) == 3
    assert {o.status for o in orders} == {"open"}
    assert all(session.get(Item, o.item).type == "finished" for o in orders)
    # Quantities are scaled like production orders' (pcs: no decimals, so 600 is 600).
    assert all(100 <= o.quantity <= 1000 for o in orders)
    assert all(date(2026, 3, 1) <= o.due_on <= date(2026, 3, 31) for o in orders)
    first = session.get(SalesOrder, "SO-1001")
    assert (first.customer, first.item, first.quantity) == (
        "Nordbau Fassaden GmbH", "BRACKET-A", 600)  # fmt: skip
    loaded_at = first.created_at
    assert loaded_at == clock.now()

    # Again: nothing duplicated, nothing re-created.
    clock.advance(hours=1)
    assert load_sales_orders(session, SEED_FILE, now=clock.now()) == 5
    assert count(session) == 5
    assert session.get(SalesOrder, "SO-1001").created_at == loaded_at

    # A changed file updates what it names and adds what is new; a status the file leaves out
    # is kept (an order closed since is not reopened).
    session.get(SalesOrder, "SO-1002").status = "closed"
    changed = tmp_path / "sales_orders.yaml"
    changed.write_text(SEED_FILE.read_text().replace("quantity: 600", "quantity: 650")
                       + "  - {number: SO-1006, customer: New customer, item: PLATE-P2,\n"
                         "     quantity: 300, due_on: 2026-03-31, status: open}\n")  # fmt: skip
    assert load_sales_orders(session, changed, now=clock.now()) == 6
    assert count(session) == 6
    assert session.get(SalesOrder, "SO-1001").quantity == 650
    assert session.get(SalesOrder, "SO-1002").status == "closed"
    assert session.get(SalesOrder, "SO-1006").item == "PLATE-P2"
    assert sales_summary(session) == {"open": 5, "total": 6}


def test_seeding_a_folder_with_and_without_the_file(session: Session, tmp_path: Path) -> None:
    assert seed_sales(session, tmp_path) == {"sales orders": 0}
    assert count(session) == 0
    assert seed_sales(session, SEED) == {"sales orders": 5}
    assert seed_sales(session, SEED) == {"sales orders": 5}
    assert count(session) == 5


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "problem"),
    [
        ("item: BRACKET-A\n    quantity: 100\n    due_on: 2026-03-09",
         "item: NOPE\n    quantity: 100\n    due_on: 2026-03-09", 10, "item",
         "'NOPE' does not exist"),
        ("item: BRACKET-A\n    quantity: 100\n    due_on: 2026-03-09",
         "item: BOLT-M8\n    quantity: 100\n    due_on: 2026-03-09", 10, "item",
         "BOLT-M8 is raw, not a finished item"),
        ("item: BRACKET-A\n    quantity: 100\n    due_on: 2026-03-09",
         "item: BRACKET-BLANK\n    quantity: 100\n    due_on: 2026-03-09", 10, "item",
         "BRACKET-BLANK is semi, not a finished item"),
        ("quantity: 100\n    due_on: 2026-03-09", "quantity: ten\n    due_on: 2026-03-09", 11,
         "quantity", "'ten' is not a number"),
        ("quantity: 100\n    due_on: 2026-03-09", "quantity: 0\n    due_on: 2026-03-09", 11,
         "quantity", "0 must be positive"),
        ("quantity: 100\n    due_on: 2026-03-09", "quantity: -5\n    due_on: 2026-03-09", 11,
         "quantity", "-5 must be positive"),
        ("quantity: 100\n    due_on: 2026-03-09", "quantity: 12.5\n    due_on: 2026-03-09", 11,
         "quantity", "pcs takes at most 0 decimals"),
        ("due_on: 2026-03-09", "due_on: 2026-02-30", 12, "due_on",
         "'2026-02-30' is not a date (YYYY-MM-DD)"),
        ("due_on: 2026-03-09", "due_on: 09.03.2026", 12, "due_on",
         "'09.03.2026' is not a date (YYYY-MM-DD)"),
        ("due_on: 2026-03-09", "due_on:", 12, "due_on", "is missing"),
        ("due_on: 2026-03-09", "due_on: 2026-03-09\n    status: shipped", 13, "status",
         "'shipped' is not one of open, closed"),
        ("due_on: 2026-03-09", "due_on: 2026-03-09\n    qty: 5", 13, "qty", "unknown key"),
        ("number: SO-9002", "number: SO-9002/1", 8, "number", "may not contain '/'"),
        ("number: SO-9002", "number: SO-9001", 8, "number", "SO-9001 is listed twice"),
    ],
)  # fmt: skip
def test_a_bad_entry_names_file_line_and_field_and_loads_nothing(
    session: Session, tmp_path: Path, old: str, new: str, line: int, field: str, problem: str
) -> None:
    path = tmp_path / "sales_orders.yaml"
    second = TWO_ORDERS.index("  - number: SO-9002")  # only the second entry is spoilt
    path.write_text(TWO_ORDERS[:second] + TWO_ORDERS[second:].replace(old, new))
    with pytest.raises(ValidationFailed) as caught:
        load_sales_orders(session, path)
    message = caught.value.message
    assert message.startswith(f"{path}:{line}: sales order 2 (SO-900"), message
    assert f": {field}: " in message and problem in message, message
    assert field in caught.value.details
    assert count(session) == 0, "the good entry before it is not written either"


def test_files_that_are_not_sales_orders_are_refused(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "sales_orders.yaml"
    path.write_text("sales_orders:\n  - number: SO-1\n    customer: [unclosed\n")
    with pytest.raises(ValidationFailed, match=rf"^{path}:\d+: "):
        load_sales_orders(session, path)
    path.write_text("orders: []\n")
    with pytest.raises(ValidationFailed, match="expected `sales_orders:` with a list"):
        load_sales_orders(session, path)
    path.write_text("sales_orders:\n  - just text\n")
    with pytest.raises(ValidationFailed, match=rf"^{path}:2: sales order 1: expected a mapping"):
        load_sales_orders(session, path)


def receive_material(session: Session, clock: ManualClock) -> None:
    """Enough blanks and bolts in RM-STORES for the brackets below (4 bolts a bracket)."""
    for item, quantity in (("BRACKET-BLANK", 1000), ("BOLT-M8", 5000)):
        move_stock(session, item=item, quantity=quantity, reason="receipt", now=clock.now(),
                   to_location="RM-STORES")  # fmt: skip


def make(session: Session, clock: ManualClock, number: str, quantity: int, **kw: Any) -> None:
    create_order(session, number=number, item="BRACKET-A", quantity=quantity,
                 now=clock.now(), **kw)  # fmt: skip
    clock.advance(minutes=1)


def finish(session: Session, clock: ManualClock, number: str, good: int, *, scrap: int = 0) -> None:
    """Run a released bracket order's operations 20 (press) and 30 (assembly, where `scrap`
    are scrapped) and receive its good output. Operation 20 may be running already."""
    for sequence, made, scrapped in ((20, good + scrap, 0), (30, good, scrap)):
        if sequence == 30 or get_order(session, number).status == "released":
            start_operation(session, number, sequence, now=clock.now())
        clock.advance(hours=1)
        complete_operation(session, number, sequence, good=made, scrap=scrapped,
                           scrap_reason="bent" if scrapped else None, now=clock.now())  # fmt: skip
    receive_finished_goods(session, number, now=clock.now())


def test_the_view_adds_up_the_production_orders_of_a_sales_order(
    session: Session, clock: ManualClock
) -> None:
    load_sales_orders(session, SEED_FILE, now=clock.now())
    receive_material(session, clock)
    # SO-1001: 600 brackets. PO-S1 (line 1, 400) is made: 390 good, 10 scrapped, received.
    make(session, clock, "PO-S1", 400, erp_reference="SO-1001/1")
    release_order(session, "PO-S1", now=clock.now())
    finish(session, clock, "PO-S1", 390, scrap=10)
    # PO-S2 (line 2, 150) runs; PO-S3 names the sales order itself but is cancelled.
    make(session, clock, "PO-S2", 150, erp_reference="SO-1001/2")
    release_order(session, "PO-S2", now=clock.now())
    start_operation(session, "PO-S2", 20, now=clock.now())
    make(session, clock, "PO-S3", 50, erp_reference="SO-1001")
    set_status(session, "PO-S3", "cancelled", now=clock.now())
    # Not SO-1001's: another sales order whose number only starts the same, and no reference.
    make(session, clock, "PO-X1", 70, erp_reference="SO-10010/1")
    make(session, clock, "PO-X2", 80)

    views = {v["number"]: v for v in sales_order_views(session, today=date(2026, 3, 10))}
    assert list(views) == ["SO-1001", "SO-1003", "SO-1002", "SO-1004", "SO-1005"]  # by due date
    so = views["SO-1001"]
    assert [p["number"] for p in so["production_orders"]] == ["PO-S1", "PO-S2", "PO-S3"]
    assert [p["status"] for p in so["production_orders"]] == ["completed", "running", "cancelled"]
    assert [p["received"] for p in so["production_orders"]] == [390, 0, 0]
    # Ordered 600; received 390 (PO-S1's good output in stock); in production 150 (PO-S2:
    # PO-S1 is completed, its 10 scrapped make nothing more; PO-S3 is cancelled); open 210,
    # of which 60 no production order covers.
    assert (so["ordered"], so["received"], so["in_production"], so["open"], so["unplanned"]) == (
        600, 390, 150, 210, 60)  # fmt: skip
    assert isinstance(so["open"], Decimal) and so["uom"] == "pcs"
    assert so["progress"] == "in production"
    assert so["progress_text"] == "390 of 600 pcs received; 60 pcs not planned yet"
    assert so["late"] is True  # due 2026-03-06, 210 still open on the 10th
    other = views["SO-1002"]
    assert other["production_orders"] == [] and other["progress"] == "not planned"
    assert (other["ordered"], other["open"], other["unplanned"]) == (250, 250, 250)
    assert views["SO-1005"]["late"] is False  # due 2026-03-27

    # Another planned order covers the rest; receiving everything makes it "received".
    make(session, clock, "PO-S4", 60, erp_reference="SO-1001/3")
    so = {v["number"]: v for v in sales_order_views(session)}["SO-1001"]
    assert (so["in_production"], so["unplanned"], so["late"]) == (210, 0, False)
    assert so["progress_text"] == "390 of 600 pcs received"
    finish(session, clock, "PO-S2", 150)
    release_order(session, "PO-S4", now=clock.now())
    finish(session, clock, "PO-S4", 60)
    so = {v["number"]: v for v in sales_order_views(session)}["SO-1001"]
    assert (so["received"], so["in_production"], so["open"], so["unplanned"]) == (600, 0, 0, 0)
    assert so["progress"] == "received" and so["progress_text"] == "received in full: ready to ship"

    session.get(SalesOrder, "SO-1001").status = "closed"
    session.flush()
    so = {v["number"]: v for v in sales_order_views(session, today=date(2026, 4, 1))}["SO-1001"]
    assert so["progress"] == "closed" and so["late"] is False


def test_a_planned_order_and_an_order_of_another_item(session: Session, clock: ManualClock) -> None:
    """Planned, not released: "planned". An order of another item with the same reference (a
    blank made for the brackets) is listed but not counted: its pieces are not brackets."""
    load_sales_orders(session, SEED_FILE, now=clock.now())
    make(session, clock, "PO-P1", 600, erp_reference="SO-1001/1")
    create_order(session, number="PO-B1", item="BRACKET-BLANK", quantity=600, now=clock.now(),
                 erp_reference="SO-1001/1")  # fmt: skip
    so = {v["number"]: v for v in sales_order_views(session)}["SO-1001"]
    assert (so["in_production"], so["open"], so["unplanned"]) == (600, 600, 0)
    assert so["progress"] == "planned"
    assert so["progress_text"] == "production planned, not released yet"
    assert [(p["number"], p["item"], p["counted"]) for p in so["production_orders"]] == [
        ("PO-P1", "BRACKET-A", True), ("PO-B1", "BRACKET-BLANK", False)]  # fmt: skip


def test_the_seed_file_loads_through_the_plant_load(sa_engine: Any, tmp_path: Path) -> None:
    """`taktflow seed` (mfg.seed.load_plant) loads the sales orders with the rest; a folder
    without the file loads none."""
    from taktflow.mfg.seed import load_plant

    assert load_plant(sa_engine, SEED)["sales orders"] == 5
    assert load_plant(sa_engine, SEED)["sales orders"] == 5
    folder = tmp_path / "seed"
    shutil.copytree(SEED, folder)
    (folder / "sales_orders.yaml").unlink()
    assert load_plant(sa_engine, folder)["sales orders"] == 0
    with Session(sa_engine) as s:
        assert count(s) == 5
