"""The planner's new order (taktflow.mfg.planning): the next free number, the due time from
the shift calendar, and the start data refused for a taken number."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.errors import ValidationFailed
from taktflow.mfg.orders import create_order
from taktflow.mfg.planning import due_at, next_order_number, order_form_data, start_data
from taktflow.mfg.seed import load_plant

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def plant(sa_engine: Engine) -> Engine:
    load_plant(sa_engine, ROOT / "seed_data")
    return sa_engine


def test_numbers_count_on_from_the_highest_of_the_year(plant: Engine) -> None:
    with Session(plant) as s, s.begin():
        assert next_order_number(s, NOW) == "PO-2026-0001"
        for number in ("PO-2026-0007", "PO-2026-0012", "PO-2025-0099", "PO-2026-X", "WK-001"):
            create_order(s, number=number, item="HINGE-H1", quantity=1, now=NOW)
        assert next_order_number(s, NOW) == "PO-2026-0013"


def test_an_order_is_due_at_the_end_of_the_days_last_shift(plant: Engine) -> None:
    with Session(plant) as s:
        # Friday: the late shift ends at 22:00 in Berlin; summer time from 29 March.
        assert due_at(s, date(2026, 3, 6)) == "2026-03-06T22:00:00+01:00"
        assert due_at(s, date(2026, 7, 3)) == "2026-07-03T22:00:00+02:00"
        # Saturday has no shift: the end of the day.
        assert due_at(s, date(2026, 3, 7)) == "2026-03-07T23:59:00+01:00"


def test_start_data_takes_the_next_number_and_refuses_a_taken_one(plant: Engine) -> None:
    values = {
        "item": "CLAMP-C1",
        "quantity": 250.0,
        "due_on": "2026-03-06",
        "priority": 3,
        "erp_reference": "SO-1002",
        "order_number": "",
    }
    with Session(plant) as s, s.begin():
        data = start_data(s, values, NOW)
        assert data == {
            "order_number": "PO-2026-0001",
            "item": "CLAMP-C1",
            "quantity": 250.0,
            "priority": 3,
            "erp_reference": "SO-1002",
            "due_at": "2026-03-06T22:00:00+01:00",
        }
        create_order(s, number="PO-9", item="CLAMP-C1", quantity=1, now=NOW)
        with pytest.raises(ValidationFailed) as taken:
            start_data(s, values | {"order_number": " PO-9 "}, NOW)
        assert taken.value.details["fields"] == {
            "order_number": "PO-9 exists already: choose another"
        }
        options = order_form_data(s, NOW)
        assert {"HINGE-BLANK", "CLAMP-C1"} <= {o["value"] for o in options["items"]}
        assert "BOLT-M8" not in {o["value"] for o in options["items"]}
        assert [o["value"] for o in options["sales_orders"]][:1] == ["SO-1001"]
