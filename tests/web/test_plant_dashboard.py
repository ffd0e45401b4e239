"""The shop-floor dashboard: machines with their state and running operation, orders with
plan against reality, OEE with its inputs, downtime by reason, quality and approvals — built
from a plant in mid-shift — and who may see it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from taktflow.mfg.dashboard import dashboard

SEED = Path(__file__).parents[2] / "seed_data"
#: A Wednesday morning, in the early shift of the demo calendar.
MIDSHIFT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def running_plant(app: Any, now: datetime | None = None) -> Any:
    """The demo plant with order PO-D1 running on press_1 for the 40 minutes before `now`
    (default: the app's clock): 30 parts counted (2 rejects), a 10-minute alarm with its
    reason, and order PO-D2 still planned."""
    from taktflow.app import workflow_engine
    from taktflow.mfg.downtime import close_downtime, open_downtime, set_reason
    from taktflow.mfg.execution import count_on_machine, release_order, start_operation
    from taktflow.mfg.machine_time import record_count, record_state
    from taktflow.mfg.orders import create_order
    from taktflow.mfg.seed import load_plant
    from taktflow.mfg.stock import move_stock

    with app.app_context():
        engine = workflow_engine()
        load_plant(engine.bind, SEED)
        now = now or engine.clock.now()
        start = now - timedelta(minutes=40)
        with Session(engine.bind) as s, s.begin():
            for item, quantity in (("BRACKET-BLANK", 200), ("BOLT-M8", 800)):
                move_stock(s, item=item, quantity=quantity, reason="receipt", now=start,
                           to_location="RM-STORES")  # fmt: skip
            create_order(s, number="PO-D1", item="BRACKET-A", quantity=100, now=start,
                         due_at=now + timedelta(minutes=5))  # fmt: skip
            create_order(s, number="PO-D2", item="BRACKET-A", quantity=50, now=start)
            release_order(s, "PO-D1", now=start)
            start_operation(s, "PO-D1", 20, now=start, machine="press_1", operator="olga")
            record_state(s, "press_1", start, "running")
            record_state(s, "press_1", start + timedelta(minutes=20), "alarm", alarm_code=101)
            record_state(s, "press_1", start + timedelta(minutes=30), "running")
            record_count(s, "press_1", start + timedelta(minutes=5), total=30, reject=2)
            count_on_machine(s, "press_1", total=30, reject=2)
            stop = open_downtime(s, machine="press_1", started_at=start + timedelta(minutes=20),
                                 now=now, state="alarm", alarm_code=101)  # fmt: skip
            set_reason(s, stop["id"], "TOOL-BROKEN", by="olga", now=now)
            close_downtime(s, stop["id"], ended_at=start + timedelta(minutes=30), now=now)
        return engine


def test_the_board_shows_plan_against_reality(app: Any) -> None:
    engine = running_plant(app, MIDSHIFT)
    with Session(engine.bind) as s:
        board = dashboard(s, MIDSHIFT)
    assert board["shift"]["name"]
    press = next(m for m in board["machines"] if m["code"] == "press_1")
    assert press["state"] == "running"
    assert press["operation"]["order"] == "PO-D1" and press["operation"]["counted_good"] == 28
    assert next(m for m in board["machines"] if m["code"] == "laser_1")["state"] == "offline"
    orders = {o["number"]: o for o in board["orders"]}
    assert (orders["PO-D1"]["status"], orders["PO-D1"]["planned"]) == ("running", 100)
    assert orders["PO-D2"]["expected_finish"] is None  # not released: no estimate
    # 72 parts left at 6 s ideal, plus 100 at 45 s on assembly: later than it is due.
    assert orders["PO-D1"]["expected_finish"] > orders["PO-D1"]["due_at"]
    day = board["oee"]["day"]["machines"]["press_1"]
    assert (day["total"], day["good"], day["reject"]) == (30, 28, 2)
    assert board["downtime"]["reasons"][0]["reason"] == "TOOL-BROKEN"
    assert board["downtime"]["reasons"][0]["duration_s"] == 600


def test_the_page_draws_it_for_the_floor_and_refuses_operators(app: Any, sign_in: Any) -> None:
    from taktflow.app import accounts

    running_plant(app)
    with app.app_context():
        accounts().create_user("sue", ["supervisor"], "sue-pass-1")
        accounts().create_user("otto", ["operator"], "otto-pass-1")
    client = app.test_client()
    assert sign_in(client, "sue", "sue-pass-1").status_code == 302
    page = client.get("/dashboard").get_data(as_text=True)
    assert '<meta http-equiv="refresh"' in page
    # Figures of "today" depend on the hour the test runs; the machines and orders do not.
    assert 'data-machine="press_1"' in page and "PO-D1" in page and "PO-D2" in page
    data = re.search(r'id="oee-chart-data">(.*?)</script>', page, re.S)
    assert data is not None
    chart = json.loads(data.group(1))
    assert "press_1" in chart["labels"]
    other = app.test_client()
    assert sign_in(other, "otto", "otto-pass-1").status_code == 302
    assert other.get("/dashboard").status_code == 403
