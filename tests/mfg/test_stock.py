"""Stock: every movement recorded, on hand as their sum, never negative; quantities exact in
the item's unit; lots where the item is lot-tracked; master data with problems by entry."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from taktflow.engine.clock import ManualClock
from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.ledger import load_chart
from taktflow.mfg.stock import load_master_data, move_stock, on_hand, stock_report

SEED = Path(__file__).parents[2] / "seed_data"


@pytest.fixture
def session(sa_engine: Any) -> Any:
    with Session(bind=sa_engine) as s:
        load_chart(s, SEED / "chart_of_accounts.yaml")
        counts = load_master_data(s, SEED / "master_data.yaml")
        assert counts == {"items": 16, "locations": 6, "boms": 10, "work_centers": 3,
                          "machines": 4, "routings": 10}  # fmt: skip
        yield s


def move(session: Session, clock: ManualClock, **kw: Any) -> int:
    return move_stock(session, now=clock.now(), **kw)


def test_receive_issue_and_consume_keep_stock_by_location_and_lot(
    session: Session, clock: ManualClock
) -> None:
    move(session, clock, item="STEEL-S235-2", quantity="500.000", reason="receipt",
         to_location="RM-STORES", lot="L-77")  # fmt: skip
    move(session, clock, item="STEEL-S235-2", quantity="250.5", reason="receipt",
         to_location="RM-STORES", lot="L-78")  # fmt: skip
    move(session, clock, item="STEEL-S235-2", quantity="120.125", reason="issue",
         from_location="RM-STORES", to_location="WIP", lot="L-77", reference="PO-1")  # fmt: skip
    move(session, clock, item="STEEL-S235-2", quantity="100", reason="consume",
         from_location="WIP", lot="L-77", reference="PO-1")  # fmt: skip

    assert on_hand(session, "STEEL-S235-2", "RM-STORES", "L-77") == Decimal("379.875")
    assert on_hand(session, "STEEL-S235-2", "RM-STORES") == Decimal("630.375")
    assert on_hand(session, "STEEL-S235-2", "WIP", "L-77") == Decimal("20.125")
    rows = {(r["location"], r["lot"]): r["quantity"] for r in stock_report(session)}
    assert rows == {("RM-STORES", "L-77"): Decimal("379.875"),
                    ("RM-STORES", "L-78"): Decimal("250.5"),
                    ("WIP", "L-77"): Decimal("20.125")}  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"item": "BOLT-M8", "quantity": 10, "reason": "issue", "from_location": "RM-STORES",
          "to_location": "WIP"}, "RM-STORES holds 0 pcs of BOLT-M8; 10 cannot be taken"),
        ({"item": "BOLT-M8", "quantity": "1.5", "reason": "receipt",
          "to_location": "RM-STORES"}, "pcs takes at most 0 decimals"),
        ({"item": "BOLT-M8", "quantity": 0, "reason": "receipt", "to_location": "RM-STORES"},
         "must be positive"),
        ({"item": "STEEL-S235-2", "quantity": 5, "reason": "receipt",
          "to_location": "RM-STORES"}, "tracked by lot: give the lot"),
        ({"item": "BOLT-M8", "quantity": 5, "reason": "receipt", "from_location": "WIP",
          "to_location": "RM-STORES"}, "a receipt of BOLT-M8 needs a destination location"),
        ({"item": "BOLT-M8", "quantity": 5, "reason": "teleport", "to_location": "WIP"},
         "reason 'teleport' is not one of"),
        ({"item": "BOLT-M8", "quantity": "five", "reason": "receipt", "to_location": "WIP"},
         "'five' is not a number"),
    ],
)  # fmt: skip
def test_a_wrong_movement_is_refused_with_its_reason(
    session: Session, clock: ManualClock, kw: dict, message: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        move(session, clock, **kw)
    assert message in refused.value.message
    assert stock_report(session) == []


def test_unknown_items_and_locations_are_named(session: Session, clock: ManualClock) -> None:
    with pytest.raises(NotFound, match="item 'NUT-M9' does not exist"):
        move(session, clock, item="NUT-M9", quantity=1, reason="receipt", to_location="WIP")
    with pytest.raises(NotFound, match="location 'DOCK-9' does not exist"):
        move(session, clock, item="BOLT-M8", quantity=1, reason="receipt", to_location="DOCK-9")


def test_a_repeated_movement_key_moves_once(session: Session, clock: ManualClock) -> None:
    for _ in range(2):
        move(session, clock, item="BOLT-M8", quantity=100, reason="receipt",
             to_location="RM-STORES", idempotency_key="gr-1/line-1")  # fmt: skip
    assert on_hand(session, "BOLT-M8", "RM-STORES") == Decimal("100")


def test_master_data_problems_name_the_entry(session: Session, tmp_path: Path) -> None:
    bad = tmp_path / "master.yaml"
    bad.write_text("items:\n  - {code: X1, name: Widget, type: gadget, uom: pcs, decimals: 9}\n")
    with pytest.raises(ValidationFailed) as refused:
        load_master_data(session, bad)
    text = refused.value.message
    assert "item 1 (X1)" in text and "type must be one of" in text and "decimals must be" in text
    bad.write_text("locations:\n  - {code: L1, name: Dock, kind: stores, account: '9999'}\n")
    with pytest.raises(ValidationFailed, match=r"location 1 \(L1\): account '9999' does not"):
        load_master_data(session, bad)
