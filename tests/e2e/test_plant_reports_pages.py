"""The report pages in Chromium: a manager opens the inventory and an order's cost page and
sees their figures and their Chart.js charts drawn, without console errors (the `page`
fixture fails the test on any)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from sqlalchemy.orm import Session

SEED = Path(__file__).parents[2] / "seed_data"


#: A lot-tracked blank (5.20) pressed into a part with a standard of 8.50 per unit.
PLANT = """\
items:
  - {code: E2E-RAW, name: Press blank, type: raw, uom: pcs, tracking: lot,
     standard_cost: {material: "5.20"}}
  - {code: E2E-PART, name: Pressed part, type: finished, uom: pcs, tracking: lot,
     standard_cost: {material: "5.00", labour: "2.00", overhead: "1.50", scrap_value: "2.00"}}
boms:
  - item: E2E-PART
    version: 1
    lines:
      - {component: E2E-RAW, quantity: 1, issue: manual, operation: 10}
routings:
  - item: E2E-PART
    version: 1
    operations:
      - {sequence: 10, name: Press part, work_center: PRESS, setup_min: 0, cycle_s: 60}
"""


def run_order(tmp_path: Path) -> None:
    """In the app context: the demo plant's master data and PLANT, then order PO-E1 of 40
    parts from blank lots B-1 (30) and B-2 (10): 39 good and 1 scrapped on press_1, 4 h of
    labour and 3 h of machine time, received under lot L-PO-E1 and closed."""
    from taktflow.app import workflow_engine
    from taktflow.mfg.execution import (
        close_order,
        complete_operation,
        issue_material,
        receive_finished_goods,
        release_order,
        start_operation,
    )
    from taktflow.mfg.ledger import load_chart
    from taktflow.mfg.orders import create_order
    from taktflow.mfg.stock import load_master_data, move_stock

    extra = tmp_path / "e2e_plant.yaml"
    extra.write_text(PLANT)
    engine = workflow_engine()
    now = engine.clock.now()
    with Session(engine.bind) as s, s.begin():
        load_chart(s, SEED / "chart_of_accounts.yaml")
        load_master_data(s, SEED / "master_data.yaml")
        load_master_data(s, extra)
        for lot, quantity in (("B-1", 30), ("B-2", 25)):
            move_stock(s, item="E2E-RAW", quantity=quantity, reason="receipt", now=now,
                       to_location="RM-STORES", lot=lot)  # fmt: skip
        create_order(s, number="PO-E1", item="E2E-PART", quantity=40, now=now)
        release_order(s, "PO-E1", now=now)
        issue_material(s, "PO-E1", "E2E-RAW", 40, now=now)
        start_operation(s, "PO-E1", 10, now=now, machine="press_1", operator="olga")
        complete_operation(s, "PO-E1", 10, good=39, scrap=1, scrap_reason="split",
                           labour_hours=4, machine_hours=3, now=now)  # fmt: skip
        receive_finished_goods(s, "PO-E1", now=now)
        close_order(s, "PO-E1", now=now)


def chart_size(page: Any, canvas_id: str) -> dict:
    """The Chart instance on a canvas: its size and data, as the browser has them."""
    return page.evaluate(
        """(id) => {
            const chart = Chart.getChart(id);
            const box = document.getElementById(id).getBoundingClientRect();
            return chart && { width: box.width, height: box.height, labels: chart.data.labels,
                              data: chart.data.datasets.map((d) => d.data) };
        }""",
        canvas_id,
    )


def test_a_manager_sees_inventory_and_order_cost_with_their_charts(
    page: Any, login: Any, backend: Any, tmp_path: Path
) -> None:
    backend.user("mara", ["manager"])
    backend.call(lambda: run_order(tmp_path))
    login("mara")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    expect(page.locator("h1")).to_have_text("Reports")
    expect(page.locator("#overview-orders")).to_contain_text("1 closed")
    page.get_by_role("navigation", name="Reports").get_by_role("link", name="Inventory").click()
    expect(page.locator("h1")).to_have_text("Inventory by location and lot")
    finished = page.locator('#stock-FG tr[data-item="E2E-PART"]')
    expect(finished).to_contain_text("L-PO-E1")
    expect(finished).to_contain_text("331.50")  # 39 x 8.50
    expect(page.locator('#location-totals tr[data-location="FG"]')).to_contain_text("331.50")
    expect(page.locator("#inventory-chart")).to_have_attribute("data-chart", "drawn")
    drawn = chart_size(page, "inventory-chart")
    assert drawn and drawn["width"] > 100 and drawn["height"] > 100
    assert "FG" in drawn["labels"]
    assert drawn["data"][0][drawn["labels"].index("FG")] == 331.5

    # Filter by location through the form.
    page.select_option('#inventory-filters select[name="location"]', "FG")
    page.click("#inventory-filters button[type=submit]")
    expect(page.locator("table.list[data-location]")).to_have_count(1)
    expect(page.locator("#inventory-total")).to_have_text("331.50")

    # From the lot to its trace, and from there to the order that made it.
    page.locator("#stock-FG").get_by_role("link", name="L-PO-E1").click()
    expect(page.locator("#trace-title")).to_contain_text("Lot L-PO-E1 of E2E-PART")
    expect(page.locator("#backward tr[data-level]")).to_have_count(2)
    expect(page.locator('#backward tr[data-input-lot="B-1"]')).to_contain_text("30")
    expect(page.locator('#backward tr[data-input-lot="B-2"]')).to_contain_text("10")
    page.get_by_role("link", name="PO-E1").first.click()

    expect(page.locator("h1")).to_contain_text("Order PO-E1")
    expect(page.locator('#cost tr[data-element="labour"]')).to_contain_text("78.00")  # 39 x 2.00
    expect(page.locator("#wip")).to_have_text("0.00")
    expect(page.locator('#operations tr[data-sequence="10"]')).to_contain_text("press_1")
    expect(page.locator('#movements tr[data-reason="produce"][data-to="FG"]')).to_contain_text("39")
    expect(page.locator("#order-entries .entry").first).to_be_visible()
    expect(page.locator("#cost-chart")).to_have_attribute("data-chart", "drawn")
    drawn = chart_size(page, "cost-chart")
    assert drawn and drawn["width"] > 100 and drawn["height"] > 100
    assert drawn["labels"] == ["Material", "Labour", "Overhead"]
    assert len(drawn["data"]) == 2 and drawn["data"][0][1] == 78.0
    page.screenshot(path=tmp_path / "order.png", full_page=True)


def test_an_operator_is_refused_the_reports(
    page: Any, login: Any, backend: Any, page_errors: Any
) -> None:
    page_errors.allow(r"/reports/inventory: Failed to load resource: .* status of 403")
    backend.user("olga", ["operator"])
    login("olga")
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Reports")
    response = page.goto("/reports/inventory")
    assert response is not None and response.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")
    expect(page.locator("#reason")).to_contain_text("report.read needs one of the roles")
