"""The shop-floor dashboard in Chromium: a supervisor opens it from the menu and sees the
running press with its order and counts, the order's progress, and the OEE chart drawn,
without console errors (the `page` fixture fails the test on any)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from sqlalchemy.orm import Session

SEED = Path(__file__).parents[2] / "seed_data"


def press_running() -> None:
    """In the app context: the demo plant with order PO-F1 running on press_1 for 20 minutes,
    12 parts counted."""
    from taktflow.app import workflow_engine
    from taktflow.mfg.execution import count_on_machine, release_order, start_operation
    from taktflow.mfg.machine_time import record_count, record_state
    from taktflow.mfg.orders import create_order
    from taktflow.mfg.seed import load_plant
    from taktflow.mfg.stock import move_stock

    engine = workflow_engine()
    load_plant(engine.bind, SEED)
    start = engine.clock.now() - timedelta(minutes=20)
    with Session(engine.bind) as s, s.begin():
        for item, quantity in (("BRACKET-BLANK", 100), ("BOLT-M8", 400)):
            move_stock(s, item=item, quantity=quantity, reason="receipt", now=start,
                       to_location="RM-STORES")  # fmt: skip
        create_order(s, number="PO-F1", item="BRACKET-A", quantity=60, now=start)
        release_order(s, "PO-F1", now=start)
        start_operation(s, "PO-F1", 20, now=start, machine="press_1", operator="olga")
        record_state(s, "press_1", start, "running")
        record_count(s, "press_1", start + timedelta(minutes=1), total=12)
        count_on_machine(s, "press_1", total=12)


def test_a_supervisor_sees_the_running_plant_with_its_chart(
    page: Any, login: Any, backend: Any
) -> None:
    backend.user("sue", ["supervisor"])
    backend.call(press_running)
    login("sue")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Shop floor").click()
    expect(page.locator("h1")).to_have_text("Shop floor")
    press = page.locator('[data-machine="press_1"]')
    expect(press).to_contain_text("running")
    expect(press).to_contain_text("PO-F1")
    expect(press).to_contain_text("counted 12 good")
    expect(page.locator("#orders")).to_contain_text("PO-F1")
    expect(page.locator("#oee-chart")).to_have_attribute("data-chart", "drawn")
    drawn = page.evaluate(
        """() => { const c = Chart.getChart("oee-chart");
                   const box = document.getElementById("oee-chart").getBoundingClientRect();
                   return c && {labels: c.data.labels, width: box.width, height: box.height}; }"""
    )
    assert drawn and "press_1" in drawn["labels"] and drawn["width"] > 100
