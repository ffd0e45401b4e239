"""The demo plant's opening stock (taktflow.mfg.opening_stock, seed_data/opening_stock.yaml):
received once by lot and valued at standard against equity, so stock and books agree; a bad
line is refused by file, line and field, and nothing is loaded."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.errors import ValidationFailed
from taktflow.mfg.ledger import balance, trial_balance
from taktflow.mfg.models import StockMovement
from taktflow.mfg.opening_stock import load_opening_stock
from taktflow.mfg.seed import load_plant
from taktflow.mfg.stock import on_hand

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def plant(sa_engine: Engine) -> Engine:
    load_plant(sa_engine, ROOT / "seed_data")
    return sa_engine


def test_the_demo_stock_is_received_once_and_valued_at_standard(sa_engine: Engine) -> None:
    first = load_plant(sa_engine, ROOT / "seed_data", opening_stock_at=NOW)
    again = load_plant(sa_engine, ROOT / "seed_data", opening_stock_at=NOW)
    assert (first["opening stock lines"], first["opening stock lines received now"]) == (10, 10)
    assert again["opening stock lines received now"] == 0
    with Session(sa_engine) as s:
        assert on_hand(s, "STEEL-S235-2", "RM-STORES", "H-2602-117") == Decimal("1800")
        assert on_hand(s, "STEEL-S235-2", "RM-STORES") == Decimal("3000")
        assert on_hand(s, "WASHER-M8", "RM-STORES") == 0  # bought on the first order
        assert s.scalar(select(func.count()).select_from(StockMovement)) == 10
        # 3,000 kg x 1.20 + 900 x 1.60 + 400 x 4.10 + 8,000 x 0.05 + 6,000 x 0.02
        # + blanks at their full standard: 300 x 2.25 + 600 x 1.60 + 200 x 2.90 + 150 x 3.60
        expected = Decimal("3600") + 1440 + 1640 + 400 + 120 + Decimal("675") + 960 + 580 + 540
        assert balance(s, "1400") == expected and balance(s, "3000") == -expected
        assert trial_balance(s)["balanced"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{item: NO-SUCH, quantity: 5}", "item: 'NO-SUCH' does not exist"),
        ("{item: STEEL-S235-2, quantity: 5}", "lot: STEEL-S235-2 is tracked by lot"),
        ("{item: BOLT-M8, quantity: -5}", "quantity: -5 is not a positive number of pcs"),
        ("{item: BOLT-M8, quantity: lots}", "quantity: 'lots' is not a positive number"),
        ("{item: BOLT-M8, location: ATTIC, quantity: 5}", "location: 'ATTIC' does not exist"),
        ("{item: BOLT-M8, qty: 5}", "unknown field 'qty'"),
    ],
)
def test_a_bad_line_names_file_line_and_field_and_loads_nothing(
    plant: Engine, tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "opening_stock.yaml"
    path.write_text(f"stock:\n  - {{item: NUT-M8, quantity: 10}}\n  - {line}\n")
    with Session(plant) as s, s.begin():
        with pytest.raises(ValidationFailed) as refused:
            load_opening_stock(s, path, now=NOW)
        assert refused.value.message.startswith(f"{path}:3: {message}")
        assert on_hand(s, "NUT-M8", "RM-STORES") == 0
