"""Purchasing: suppliers loaded from their file with problems named by place; requisitions at
the cheapest supplier's price; approval levels decided, escalated and listed while waiting;
purchase orders; goods receipts that add stock by lot and post a balanced entry (with a
purchase price variance against standard cost), partial but never more than ordered."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.ledger import balance, load_chart, trial_balance
from taktflow.mfg.models import Account, JournalLine
from taktflow.mfg.orders import create_order
from taktflow.mfg.purchasing import (
    approval_state,
    cancel_requisition,
    create_purchase_order,
    create_requisition,
    escalate_approval,
    load_suppliers,
    offers,
    pending_approvals,
    purchase_order_view,
    receive_goods,
    record_approval,
    requisition_view,
    route_requisition,
)
from taktflow.mfg.purchasing_actions import seed_purchasing
from taktflow.mfg.purchasing_models import Supplier, SupplierItem
from taktflow.mfg.stock import load_master_data, on_hand

SEED = Path(__file__).parents[2] / "seed_data"
DEADLINES = {"supervisor": "PT4H", "manager": "PT8H", "director": "PT24H"}


@pytest.fixture
def session(sa_engine: Any) -> Any:
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        seed_purchasing(s, SEED)
        yield s


def with_variance_account(session: Session) -> None:
    """The account the lead is asked to add to the chart (see docs/purchasing.md)."""
    if session.get(Account, "5300") is None:
        session.add(Account(code="5300", name="Purchase price variance", type="expense",
                            active=True))  # fmt: skip
        session.flush()


def approved(session: Session, clock: ManualClock, item: str, quantity: Any, **kw: Any) -> str:
    """A requisition approved by every level its amount needs."""
    number = create_requisition(session, item=item, quantity=quantity, now=clock.now(),
                                **kw)["number"]  # fmt: skip
    state = route_requisition(session, number, ["supervisor"], now=clock.now())
    record_approval(session, number, state["next_level"], "approve", now=clock.now(),
                    decided_by="sam")  # fmt: skip
    return number


# ------------------------------------------------------------------ suppliers


def test_the_suppliers_file_loads_again_without_harm(session: Session) -> None:
    again = load_suppliers(session, SEED / "suppliers.yaml")
    assert again == {"suppliers": 5, "supplier items": 11}
    assert len(session.scalars(select(SupplierItem)).all()) == 11
    assert [o["supplier"] for o in offers(session, "STEEL-S235-2")] == ["STAHL-WEST",
                                                                        "METALL-NORD"]  # fmt: skip
    assert offers(session, "BRACKET-A") == []


def test_a_new_price_list_replaces_the_old_one(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "suppliers.yaml"
    path.write_text("suppliers:\n  - code: STAHL-WEST\n    name: Stahlhandel West\n"
                    "    active: false\n    items:\n"
                    "      - {item: STEEL-S235-2, price: '1.10', lead_time_days: 4}\n")  # fmt: skip
    assert load_suppliers(session, path) == {"suppliers": 1, "supplier items": 1}
    west = session.get(Supplier, "STAHL-WEST")
    assert west is not None and (west.name, west.active) == ("Stahlhandel West", False)
    rows = session.scalars(select(SupplierItem).where(SupplierItem.supplier == "STAHL-WEST"))
    assert [(r.item, r.unit_price_cents, r.lead_time_days) for r in rows] == [
        ("STEEL-S235-2", 110, 4)]  # fmt: skip
    # An inactive supplier is no longer chosen, however cheap.
    assert [o["supplier"] for o in offers(session, "STEEL-S235-2")] == ["METALL-NORD"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  - code: ACME\n    name: Acme\n    items:\n"
         "      - {item: BOLT-M8, price: '0.05', lead_time_days: 2}\n"
         "      - {item: UNOBTAINIUM, price: '1.00', lead_time_days: 2}\n",
         "suppliers.yaml:3: supplier 2 (ACME): item 2 (UNOBTAINIUM): item 'UNOBTAINIUM' does "
         "not exist"),
        ("  - code: ACME\n    name: Acme\n    items:\n"
         "      - {item: BOLT-M8, price: '0.055', lead_time_days: 2}\n",
         "supplier 2 (ACME): item 1 (BOLT-M8): price: 0.055 has more than two decimals"),
        ("  - code: ACME\n    name: Acme\n    items:\n"
         "      - {item: BOLT-M8, price: '0.05', lead_time_days: soon}\n",
         "item 1 (BOLT-M8): lead_time_days must be a whole number of days, 0 to 365, got 'soon'"),
        ("  - code: ACME\n    items: []\n", "supplier 2 (ACME): name is missing"),
        ("  - code: OK\n    name: Ok\n    currency: USD\n",
         "supplier 2 (OK): currency 'USD': only EUR is supported"),
        ("  - code: OK\n    name: Ok\n    phone: 123\n", "unknown keys ['phone']"),
    ],
)  # fmt: skip
def test_a_broken_suppliers_file_names_the_entry(
    session: Session, tmp_path: Path, entry: str, message: str
) -> None:
    path = tmp_path / "suppliers.yaml"
    path.write_text("suppliers:\n  - {code: FIRST, name: First}\n" + entry)
    with pytest.raises(ValidationFailed) as refused:
        load_suppliers(session, path)
    assert message in refused.value.message
    assert str(path) in refused.value.message


# ------------------------------------------------------------------ requisitions


def test_a_requisition_takes_the_cheapest_supplier_unless_one_is_named(
    session: Session, clock: ManualClock
) -> None:
    cheap = create_requisition(session, item="STEEL-S235-2", quantity="12.345", now=clock.now(),
                               needed_by="2026-03-04", requested_by="paul")  # fmt: skip
    # 12.345 kg x 1.15 = 14.19675: rounded half up to the cent.
    assert (cheap["number"], cheap["supplier"], cheap["unit_price"], cheap["amount"]) == (
        "PR-00001", "STAHL-WEST", Decimal("1.15"), Decimal("14.20"))  # fmt: skip
    assert (cheap["quantity"], cheap["status"], cheap["needed_by"]) == (
        Decimal("12.345"), "open", date(2026, 3, 4))  # fmt: skip
    # Five days of lead time from 2 March miss the 4th.
    assert (cheap["expected_on"], cheap["late"]) == (date(2026, 3, 7), True)
    named = create_requisition(session, item="STEEL-S235-2", quantity=10, now=clock.now(),
                               supplier="METALL-NORD")  # fmt: skip
    assert (named["supplier"], named["amount"], named["late"]) == (
        "METALL-NORD", Decimal("12.60"), False)  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"item": "UNOBTAINIUM", "quantity": 1}, NotFound, "item 'UNOBTAINIUM' does not exist"),
        ({"item": "BRACKET-A", "quantity": 1}, ValidationFailed, "no supplier sells BRACKET-A"),
        ({"item": "BOLT-M8", "quantity": 1, "supplier": "STAHL-WEST"}, ValidationFailed,
         "supplier STAHL-WEST does not sell BOLT-M8"),
        ({"item": "BOLT-M8", "quantity": 1, "supplier": "NOBODY"}, NotFound,
         "supplier 'NOBODY' does not exist"),
        ({"item": "BOLT-M8", "quantity": "2.5"}, ValidationFailed, "pcs takes at most 0 decimals"),
        ({"item": "BOLT-M8", "quantity": 0}, ValidationFailed, "quantity 0 of BOLT-M8 must be"),
        ({"item": "BOLT-M8", "quantity": 5, "order_number": "PO-404"}, NotFound,
         "production order 'PO-404' does not exist"),
        ({"item": "BOLT-M8", "quantity": 5, "needed_by": "next week"}, ValidationFailed,
         "needed_by 'next week' is not a date (YYYY-MM-DD)"),
    ],
)  # fmt: skip
def test_a_wrong_requisition_is_refused_with_its_reason(
    session: Session, clock: ManualClock, kw: dict, error: type, message: str
) -> None:
    with pytest.raises(error) as refused:
        create_requisition(session, now=clock.now(), **kw)
    assert message in refused.value.message


def test_a_requisition_for_an_order_is_made_once_per_key(
    session: Session, clock: ManualClock
) -> None:
    create_order(session, number="PO-1001", item="BRACKET-A", quantity=100, now=clock.now())
    first = create_requisition(session, item="BOLT-M8", quantity=400, now=clock.now(),
                               order_number="PO-1001", idempotency_key="k1")  # fmt: skip
    again = create_requisition(session, item="BOLT-M8", quantity=400, now=clock.now(),
                               order_number="PO-1001", idempotency_key="k1")  # fmt: skip
    assert first == again and first["order_number"] == "PO-1001"
    with pytest.raises(NotFound, match="requisition 'PR-00002' does not exist"):
        requisition_view(session, "PR-00002")
    with pytest.raises(NotFound, match="numbers look like PR-00001"):
        requisition_view(session, "PO-1001")


# ------------------------------------------------------------------ approvals


def test_levels_open_one_after_the_other_and_a_rejection_ends_it(
    session: Session, clock: ManualClock
) -> None:
    number = create_requisition(session, item="STEEL-S235-2", quantity=5000,
                                now=clock.now())["number"]  # fmt: skip
    state = route_requisition(session, number, ["supervisor", "manager"], now=clock.now(),
                              deadlines=DEADLINES)  # fmt: skip
    assert (state["next_level"], state["next_role"], state["amount"]) == (
        1, "supervisor", Decimal("5750.00"))  # fmt: skip
    assert state["decisions"][0]["due_at"] == clock.now() + timedelta(hours=4)
    clock.advance(hours=1)
    state = record_approval(session, number, 1, "approve", now=clock.now(), decided_by="sam",
                            comment="needed for PO-1001")  # fmt: skip
    assert (state["status"], state["next_level"], state["next_role"]) == ("open", 2, "manager")
    # A retried step records nothing new; a different decision for the same level conflicts.
    assert record_approval(session, number, 1, "approve", now=clock.now())["next_level"] == 2
    with pytest.raises(Conflict, match="level 1 of PR-00001 is decided already: approve by sam"):
        record_approval(session, number, 1, "reject", now=clock.now(), comment="no")
    with pytest.raises(ValidationFailed, match="a rejection needs a comment"):
        record_approval(session, number, 2, "reject", now=clock.now(), decided_by="mia")
    with pytest.raises(ValidationFailed, match="decision 'maybe' is not one of approve, reject"):
        record_approval(session, number, 2, "maybe", now=clock.now())
    with pytest.raises(NotFound, match="level 3 of requisition PR-00001 is not open"):
        record_approval(session, number, 3, "approve", now=clock.now())
    state = record_approval(session, number, 2, "reject", now=clock.now(), decided_by="mia",
                            comment="Buy from stock of the sister plant")  # fmt: skip
    assert (state["status"], state["next_role"], state["reason"]) == (
        "rejected", None, "Buy from stock of the sister plant")  # fmt: skip
    assert [(d["level"], d["role"], d["decision"], d["decided_by"]) for d in state["decisions"]
            ] == [(1, "supervisor", "approve", "sam"), (2, "manager", "reject", "mia")]  # fmt: skip
    with pytest.raises(Conflict, match="PR-00001 is rejected: only approved"):
        create_purchase_order(session, number, now=clock.now())


def test_waiting_approvals_are_listed_with_age_level_and_escalation(
    session: Session, clock: ManualClock
) -> None:
    small = create_requisition(session, item="BOLT-M8", quantity=500, now=clock.now())["number"]
    route_requisition(session, small, ["supervisor"], now=clock.now(), deadlines=DEADLINES)
    clock.advance(hours=1)
    big = create_requisition(session, item="STEEL-S235-2", quantity=10000,
                             now=clock.now())["number"]  # fmt: skip
    route_requisition(session, big, ["supervisor", "manager", "director"], now=clock.now(),
                      deadlines=DEADLINES)  # fmt: skip
    clock.advance(hours=3, minutes=30)
    waiting = pending_approvals(session, now=clock.now())
    assert [(w["requisition"], w["level"], w["levels"], w["role"], w["age_hours"], w["overdue"])
            for w in waiting] == [(small, 1, 1, "supervisor", Decimal("4.5"), True),
                                  (big, 1, 3, "supervisor", Decimal("3.5"), False)]  # fmt: skip
    assert waiting[1]["amount"] == Decimal("11500.00") and waiting[0]["age_seconds"] == 16200

    # The supervisor misses the deadline of the big one: the manager decides level 1, and
    # that decision covers the manager's own level 2; the director is asked next.
    clock.advance(hours=1)
    state = escalate_approval(session, big, 1, "manager", now=clock.now())
    assert state["next_role"] == "manager"
    escalated = [w for w in pending_approvals(session, now=clock.now()) if w["requisition"] == big]
    assert [(w["role"], w["escalated"], w["escalated_from"], w["due_at"]) for w in escalated] == [
        ("manager", True, "supervisor", None)]  # fmt: skip
    assert escalate_approval(session, big, 1, "manager", now=clock.now()) == state
    state = record_approval(session, big, 1, "approve", now=clock.now(), decided_by="mia")
    assert (state["next_level"], state["next_role"]) == (3, "director")
    assert [(d["level"], d["role"], d["decision"], d["decided_by"], d["escalated"])
            for d in state["decisions"]] == [
        (1, "manager", "approve", "mia", True), (2, "manager", "approve", "mia", False),
        (3, "director", None, None, False)]  # fmt: skip
    with pytest.raises(Conflict, match="level 1 of PR-00002 is decided already"):
        escalate_approval(session, big, 1, "director", now=clock.now())

    # Cancelled requisitions leave the list.
    cancel_requisition(session, small, now=clock.now(), reason="bought elsewhere")
    assert [w["requisition"] for w in pending_approvals(session, now=clock.now())] == [big]
    with pytest.raises(Conflict, match="PR-00001 is cancelled"):
        record_approval(session, small, 1, "approve", now=clock.now())


def test_a_route_is_set_once(session: Session, clock: ManualClock) -> None:
    number = create_requisition(session, item="BOLT-M8", quantity=5, now=clock.now())["number"]
    with pytest.raises(ValidationFailed, match="give one or more distinct roles"):
        route_requisition(session, number, [], now=clock.now())
    with pytest.raises(ValidationFailed, match="'4 hours' is not an ISO 8601 duration"):
        route_requisition(session, number, ["supervisor"], now=clock.now(),
                          deadlines={"supervisor": "4 hours"})  # fmt: skip
    first = route_requisition(session, number, ["supervisor"], now=clock.now())
    assert route_requisition(session, number, ["supervisor"], now=clock.now()) == first
    with pytest.raises(Conflict, match="routed to supervisor already, not supervisor,manager"):
        route_requisition(session, number, ["supervisor", "manager"], now=clock.now())
    assert approval_state(session, number)["decisions"][0]["due_at"] is None


# ------------------------------------------------------------------ orders and receipts


def test_an_approved_requisition_is_ordered_once(session: Session, clock: ManualClock) -> None:
    number = approved(session, clock, "BOLT-M8", 500)
    order = create_purchase_order(session, number, now=clock.now(), created_by="paul")
    assert (order["number"], order["supplier"], order["status"], order["amount"]) == (
        "PUR-00001", "SCHRAUBEN-KRAFT", "open", Decimal("20.00"))  # fmt: skip
    assert order["expected_on"] == date(2026, 3, 5)
    assert [(ln["line"], ln["item"], ln["quantity"], ln["requisition"]) for ln in order["lines"]
            ] == [(1, "BOLT-M8", Decimal("500"), number)]  # fmt: skip
    assert create_purchase_order(session, number, now=clock.now()) == order
    assert requisition_view(session, number)["status"] == "ordered"
    assert requisition_view(session, number)["purchase_order"] == "PUR-00001"
    other = approved(session, clock, "STEEL-S235-2", 10)
    with pytest.raises(Conflict, match="ordered already on PUR-00001"):
        create_purchase_order(session, [number, other], now=clock.now())
    third = approved(session, clock, "NUT-M8", 100)
    with pytest.raises(ValidationFailed, match="these requisitions are for SCHRAUBEN-KRAFT, "
                                               "STAHL-WEST"):  # fmt: skip
        create_purchase_order(session, [other, third], now=clock.now())


def test_receipts_add_stock_by_lot_and_post_at_standard_with_a_price_variance(
    session: Session, clock: ManualClock
) -> None:
    with_variance_account(session)
    number = approved(session, clock, "STEEL-S235-2", "1000.000")
    order = create_purchase_order(session, number, now=clock.now())["number"]
    first = receive_goods(session, order, quantity="600.500", lot="H-4711", now=clock.now(),
                          received_by="olga", delivery_note="DN-1")  # fmt: skip
    assert (first["received"], first["remaining"], first["complete"], first["order_status"]) == (
        Decimal("600.500"), Decimal("399.500"), False, "partial")  # fmt: skip
    assert on_hand(session, "STEEL-S235-2", "RM-STORES", "H-4711") == Decimal("600.500")
    lines = session.scalars(select(JournalLine).where(JournalLine.entry_id == first["entry_id"])
                            .order_by(JournalLine.id)).all()  # fmt: skip
    # 600.5 kg: at standard 1.20 = 720.60 into stock, at the order price 1.15 = 690.58 owed
    # (690.575 rounded half up), 30.02 bought below standard.
    assert [(ln.account, ln.debit_cents, ln.credit_cents, ln.reference) for ln in lines] == [
        ("1400", 72060, 0, order), ("2100", 0, 69058, order),
        ("5300", 0, 3002, order)]  # fmt: skip

    # Over-receipt is refused and changes nothing; the rest arrives as a second lot.
    with pytest.raises(ValidationFailed, match=r"over-receipt refused: PUR-00001 line 1 orders "
                       r"1000\.000 kg of STEEL-S235-2, 600\.500 received; 400\.000 more would "
                       r"be 0\.500 too many"):  # fmt: skip
        receive_goods(session, order, quantity=400, lot="H-4712", now=clock.now())
    with pytest.raises(ValidationFailed, match="STEEL-S235-2 is tracked by lot: give the lot"):
        receive_goods(session, order, quantity=1, now=clock.now())
    with pytest.raises(ValidationFailed, match="location; WIP is wip"):
        receive_goods(session, order, quantity=1, lot="H-1", location="WIP", now=clock.now())
    last = receive_goods(session, order, quantity="399.5", lot="H-4712", now=clock.now())
    assert (last["complete"], last["order_status"], last["remaining"]) == (
        True, "received", Decimal("0.000"))  # fmt: skip
    assert last["lots"] == [{"lot": "H-4711", "quantity": Decimal("600.500")},
                            {"lot": "H-4712", "quantity": Decimal("399.500")}]  # fmt: skip
    assert requisition_view(session, number)["status"] == "received"
    assert purchase_order_view(session, order)["lines"][0]["received"] == Decimal("1000.000")
    with pytest.raises(Conflict, match="PUR-00001 is received: nothing more can be received"):
        receive_goods(session, order, quantity=1, lot="H-9", now=clock.now())
    # Stock in 1400 is worth exactly its quantity at standard; 2100 holds what is owed.
    assert balance(session, "1400") == Decimal("1200.00")
    assert balance(session, "2100") == Decimal("-1150.00")
    assert balance(session, "5300") == Decimal("-50.00")
    assert trial_balance(session)["balanced"]


def test_without_a_variance_account_a_receipt_is_valued_at_the_order_price(
    session: Session, clock: ManualClock
) -> None:
    # A chart without a purchase price variance account (the demo chart has one).
    session.delete(session.get(Account, "5300"))
    session.flush()
    order = create_purchase_order(session, approved(session, clock, "BOLT-M8", 1000),
                                  now=clock.now())["number"]  # fmt: skip
    receipt = receive_goods(session, order, quantity=1000, lot="B-1", now=clock.now())
    # An item not tracked by lot keeps one stock: the supplier's batch stays on the receipt.
    assert on_hand(session, "BOLT-M8", "RM-STORES", "") == Decimal("1000")
    assert receipt["lot"] == "B-1"
    lines = session.scalars(select(JournalLine).where(
        JournalLine.entry_id == receipt["entry_id"])).all()  # fmt: skip
    assert sorted((ln.account, ln.debit_cents, ln.credit_cents) for ln in lines) == [
        ("1400", 4000, 0), ("2100", 0, 4000)]  # fmt: skip


def test_a_retried_receipt_is_booked_once(session: Session, clock: ManualClock) -> None:
    order = create_purchase_order(session, approved(session, clock, "BOLT-M8", 100),
                                  now=clock.now())["number"]  # fmt: skip
    first = receive_goods(session, order, quantity=40, now=clock.now(), idempotency_key="r1")
    again = receive_goods(session, order, quantity=40, now=clock.now(), idempotency_key="r1")
    assert first == again and again["received"] == Decimal("40")
    assert on_hand(session, "BOLT-M8", "RM-STORES") == Decimal("40")
    with pytest.raises(NotFound, match="purchase order 'PUR-00009' does not exist"):
        receive_goods(session, "PUR-00009", quantity=1, now=clock.now())
