"""The report pages through the Flask test client: who may see them, what they show for an
order run through the execution functions, filters, paging, empty states and escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from taktflow.config import DEFAULT_ROLES

SEED = Path(__file__).parents[2] / "seed_data"
READERS = {"planner", "quality", "supervisor", "manager", "director", "engineer", "admin"}
PAGES = ["/reports", "/reports/inventory", "/reports/genealogy", "/reports/orders",
         "/reports/orders/PO-W1", "/reports/trial-balance", "/reports/journal"]  # fmt: skip

#: A bought blank (5.20) pressed into a part with a standard of 8.50 per unit.
PLANT = """\
locations:
  - {code: BIN-X, name: "</script><script>alert(1)</script>", kind: stores, account: "1400"}
items:
  - {code: WEB-RAW, name: Web blank, type: raw, uom: pcs, tracking: lot,
     standard_cost: {material: "5.20"}}
  - {code: WEB-PART, name: "Web part <b>bold</b>", type: finished, uom: pcs, tracking: lot,
     standard_cost: {material: "5.00", labour: "2.00", overhead: "1.50", scrap_value: "2.00"}}
boms:
  - item: WEB-PART
    version: 1
    lines:
      - {component: WEB-RAW, quantity: 1, issue: manual, operation: 10}
routings:
  - item: WEB-PART
    version: 1
    operations:
      - {sequence: 10, name: Press part, work_center: PRESS, setup_min: 0, cycle_s: 60}
"""


def build_plant(app: Any, tmp_path: Path, *, run: bool = True) -> None:
    """The demo master data plus PLANT; with `run`, order PO-W1 made from lots W-1 and W-2
    (98 good, 2 scrapped, 11 h labour, 8 h machine on press_1 by olga), received and closed."""
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

    extra = tmp_path / "web_plant.yaml"
    extra.write_text(PLANT)
    with app.app_context():
        engine = workflow_engine()
        now = engine.clock.now()
        with Session(engine.bind) as s, s.begin():
            load_chart(s, SEED / "chart_of_accounts.yaml")
            load_master_data(s, SEED / "master_data.yaml")
            load_master_data(s, extra)
            if not run:
                return
            for lot in ("W-1", "W-2"):
                move_stock(s, item="WEB-RAW", quantity=60, reason="receipt", now=now,
                           to_location="RM-STORES", lot=lot)  # fmt: skip
            move_stock(s, item="WEB-RAW", quantity=5, reason="receipt", now=now,
                       to_location="BIN-X", lot="W-9")  # fmt: skip
            create_order(s, number="PO-W1", item="WEB-PART", quantity=100, now=now)
            release_order(s, "PO-W1", now=now)
            issue_material(s, "PO-W1", "WEB-RAW", 100, now=now)
            start_operation(s, "PO-W1", 10, now=now, machine="press_1", operator="olga")
            complete_operation(s, "PO-W1", 10, good=98, scrap=2, scrap_reason="crack",
                               labour_hours=11, machine_hours=8, now=now)  # fmt: skip
            receive_finished_goods(s, "PO-W1", now=now)
            close_order(s, "PO-W1", now=now)


@pytest.fixture
def plant(app: Any, tmp_path: Path) -> None:
    build_plant(app, tmp_path)


@pytest.fixture
def reader(app: Any, client: Any, sign_in: Any) -> Any:
    """The test client logged in as a manager."""
    from taktflow.app import accounts

    with app.app_context():
        accounts().create_user("mara", ["manager"], "mara-pass-1")
    assert sign_in(client, "mara", "mara-pass-1").status_code == 302
    return client


def html(response: Any) -> str:
    return response.get_data(as_text=True)


def chart_data(page: str, canvas: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{canvas}-data">(.*?)</script>', page,
                      re.S)  # fmt: skip
    assert match, f"no data for chart {canvas}"
    return json.loads(match.group(1))


def test_readers_see_every_report_and_the_shop_floor_is_refused(
    app: Any, plant: None, sign_in: Any
) -> None:
    from taktflow.app import accounts

    roles = DEFAULT_ROLES.split(",")
    with app.app_context():
        for role in roles:
            accounts().create_user(role, [role], f"{role}-pass-1")
    for role in roles:
        client = app.test_client()
        assert sign_in(client, role, f"{role}-pass-1").status_code == 302
        nav = re.findall(r'<nav aria-label="Main">(.*?)</nav>', html(client.get("/tasks")), re.S)
        assert ("Reports" in nav[0]) == (role in READERS), role
        for path in PAGES:
            response = client.get(path)
            if role in READERS:
                assert response.status_code == 200, f"{path} as {role}"
            else:
                assert response.status_code == 403, f"{path} as {role}"
                assert "Not allowed" in html(response)
                assert "report.read needs one of the roles" in html(response)
    assert set(roles) - READERS == {"operator", "maintenance"}


def test_pages_need_a_login(client: Any) -> None:
    response = client.get("/reports/inventory")
    assert response.status_code == 302 and "/login?next=/reports/inventory" in response.location


def test_inventory_shows_stock_by_location_and_lot_with_totals_and_a_chart(
    reader: Any, plant: None
) -> None:
    page = html(reader.get("/reports/inventory"))
    # 833.00 finished, 104.00 blanks left in stores, 4.00 scrap, 26.00 blanks in BIN-X.
    assert 'id="inventory-total">967.00<' in page
    fg = re.search(r'<table class="list" id="stock-FG".*?</table>', page, re.S).group(0)
    assert 'data-item="WEB-PART" data-lot="L-PO-W1"' in fg and "833.00" in fg and ">98<" in fg
    assert 'href="/reports/genealogy?item=WEB-PART&amp;lot=L-PO-W1"' in fg
    scrap = re.search(r'<table class="list" id="stock-SCRAP".*?</table>', page, re.S).group(0)
    assert "4.00" in scrap and "scrap value" in scrap
    totals = re.search(r'id="location-totals".*?</table>', page, re.S).group(0)
    assert re.search(r'data-location="RM-STORES">.*?104\.00', totals, re.S)
    data = chart_data(page, "inventory-chart")
    assert dict(zip(data["labels"], data["datasets"][0]["data"], strict=True)) == {
        "BIN-X": 26.0, "FG": 833.0, "RM-STORES": 104.0, "SCRAP": 4.0}  # fmt: skip
    assert "/vendor/chartjs/chart.umd.min.js" in page
    # Names are escaped, in the page and in the chart's data.
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert(1)</script>" not in page

    filtered = html(reader.get("/reports/inventory?item=WEB-RAW&location=RM-STORES"))
    assert 'id="stock-RM-STORES"' in filtered and 'id="stock-FG"' not in filtered
    assert 'id="inventory-total">104.00<' in filtered and "Clear filters" in filtered
    nothing = html(reader.get("/reports/inventory?item=WEB-PART&location=RM-STORES"))
    assert "Nothing in stock of WEB-PART at RM-STORES" in nothing
    assert 'id="inventory-chart"' not in nothing


def test_empty_reports_say_what_to_do(app: Any, reader: Any, tmp_path: Path) -> None:
    assert "No accounts yet" in html(reader.get("/reports/trial-balance"))
    build_plant(app, tmp_path, run=False)
    inventory = html(reader.get("/reports/inventory"))
    assert "No stock yet: run <code>taktflow seed</code>" in inventory
    assert "chart.umd.min.js" not in inventory
    assert "No production orders yet" in html(reader.get("/reports/orders"))
    assert "No journal entries yet" in html(reader.get("/reports/journal"))
    ledger = html(reader.get("/reports/trial-balance"))
    assert "Nothing posted yet" in ledger and 'id="balanced">balanced' in ledger
    assert "Choose an item and enter one of its lots" in html(reader.get("/reports/genealogy"))
    overview = html(reader.get("/reports"))
    assert "none yet" in overview and "0 stock rows" in overview


def test_genealogy_traces_a_lot_both_ways(reader: Any, plant: None) -> None:
    page = html(reader.get("/reports/genealogy?item=WEB-PART&lot=L-PO-W1"))
    backward = re.search(r'<table class="list" id="backward">.*?</table>', page, re.S).group(0)
    assert 'data-input-lot="W-1"' in backward and 'data-input-lot="W-2"' in backward
    assert re.search(r'data-input-lot="W-1".*?>60<', backward, re.S)
    assert 'href="/reports/orders/PO-W1"' in backward
    assert 'id="forward-empty"' in page and "Not used in any production order yet" in page
    assert "FG · Finished goods warehouse: <strong>98 pcs</strong>" in page

    raw = html(reader.get("/reports/genealogy?item=WEB-RAW&lot=W-2"))
    forward = re.search(r'<table class="list" id="forward">.*?</table>', raw, re.S).group(0)
    assert 'data-output-lot="L-PO-W1"' in forward and ">40<" in forward
    assert "received from outside (bought)" in raw
    assert '<option value="W-9">' in raw  # known lots are offered

    unknown = html(reader.get("/reports/genealogy?item=WEB-PART&lot=NOPE"))
    assert "Nothing in the plant names lot NOPE of WEB-PART" in unknown
    missing = reader.get("/reports/genealogy?item=GHOST&lot=L-1")
    assert missing.status_code == 404 and "item &#39;GHOST&#39; does not exist" in html(missing)
    half = reader.get("/reports/genealogy?lot=L-PO-W1")
    assert half.status_code == 422 and "Give both the item and the lot" in html(half)


def test_order_list_and_order_cost_page(reader: Any, plant: None) -> None:
    listing = html(reader.get("/reports/orders"))
    row = re.search(r'<tr data-order="PO-W1">.*?</tr>', listing, re.S).group(0)
    assert "closed" in row and ">100<" in row and ">98<" in row
    assert 'data-order="PO-W1"' not in html(reader.get("/reports/orders?status=running"))
    assert 'data-order="PO-W1"' in html(reader.get("/reports/orders?status=closed&item=WEB-PART"))
    # An unknown status is ignored rather than refused.
    assert 'data-order="PO-W1"' in html(reader.get("/reports/orders?status=bogus"))

    page = html(reader.get("/reports/orders/PO-W1"))
    cost = re.search(r'<table class="list" id="cost">.*?</table>', page, re.S).group(0)
    material = re.search(r'<tr data-element="material">.*?</tr>', cost, re.S).group(0)
    assert re.findall(r'class="num[^"]*">([^<]+)<', material) == ["490.00", "520.00", "26.00"]
    assert 'id="variance-total">53.00<' in cost and 'id="wip">0.00<' in page
    assert "The order is closed" in page
    op = re.search(r'<tr data-sequence="10">.*?</tr>', page, re.S).group(0)
    assert all(text in op for text in ("press_1", "olga", ">98<", ">11.00<", ">8.00<"))
    movements = re.search(r'id="movements".*?</table>', page, re.S).group(0)
    assert 'data-item="WEB-RAW" data-reason="issue"' in movements and "W-1" in movements
    assert 'data-reason="produce"' in movements
    entries = re.findall(r'<div class="card entry" data-entry="(\d+)">', page)
    assert len(entries) >= 4 and entries == sorted(entries, key=int, reverse=True)
    data = chart_data(page, "cost-chart")
    assert data["labels"] == ["Material", "Labour", "Overhead"]
    assert [d["label"] for d in data["datasets"]] == ["Standard", "Actual"]
    assert data["datasets"][1]["data"] == [520.0, 220.0, 150.0]

    missing = reader.get("/reports/orders/PO-GHOST")
    assert missing.status_code == 404 and "PO-GHOST" in html(missing)


def test_trial_balance_and_journal(app: Any, reader: Any, plant: None) -> None:
    from taktflow.app import workflow_engine
    from taktflow.mfg.ledger import post_entry

    ledger = html(reader.get("/reports/trial-balance"))
    assert 'id="balanced">balanced' in ledger
    debit = re.search(r'id="total-debit">([^<]+)<', ledger).group(1)
    assert debit == re.search(r'id="total-credit">([^<]+)<', ledger).group(1) != "0.00"
    fg = re.search(r'<tr data-account="1420".*?</tr>', ledger, re.S).group(0)
    assert "833.00" in fg and 'href="/reports/journal?account=1420"' in fg

    with app.app_context():
        engine = workflow_engine()
        with Session(engine.bind) as s, s.begin():
            for n in range(30):
                post_entry(s, [{"account": "1400", "debit": "1.00"},
                               {"account": "2000", "credit": "1.00"}],
                           description=f"<i>Adjustment</i> {n}", reference=f"ADJ-{n}",
                           now=engine.clock.now())  # fmt: skip
    first = html(reader.get("/reports/journal"))
    assert len(re.findall(r'class="card entry"', first)) == 25
    assert "Page 1 of 2" in first and "&lt;i&gt;Adjustment&lt;/i&gt; 29" in first
    second = html(reader.get("/reports/journal?page=2"))
    assert "Page 2 of 2" in second and "Adjustment</i> 0" not in second
    by_reference = html(reader.get("/reports/journal?reference=PO-W1"))
    assert "Adjustment" not in by_reference and "reference <a" in by_reference
    by_account = html(reader.get("/reports/journal?account=2000&reference=ADJ-7"))
    assert len(re.findall(r'class="card entry"', by_account)) == 1
    none = html(reader.get("/reports/journal?reference=ADJ"))
    assert "No entries with reference ADJ" in none and "must match exactly" in none


def test_sales_orders_page_lists_the_seeded_orders_for_readers_only(
    app: Any, reader: Any, tmp_path: Path, sign_in: Any
) -> None:
    from taktflow.app import accounts, workflow_engine
    from taktflow.mfg.orders import create_order
    from taktflow.mfg.sales import load_sales_orders

    build_plant(app, tmp_path, run=False)
    assert "No sales orders yet" in html(reader.get("/reports/sales-orders"))
    extra = tmp_path / "more_sales_orders.yaml"
    extra.write_text('sales_orders:\n  - {number: SO-X1, customer: "Kunde <b>fett</b>", '
                     "item: WEB-PART, quantity: 10, due_on: 2026-03-31}\n")  # fmt: skip
    with app.app_context():
        engine = workflow_engine()
        with Session(engine.bind) as s, s.begin():
            assert load_sales_orders(s, SEED / "sales_orders.yaml") == 5
            load_sales_orders(s, extra)
            create_order(s, number="PO-S1", item="BRACKET-A", quantity=400,
                         now=engine.clock.now(), erp_reference="SO-1001/1")  # fmt: skip

    page = html(reader.get("/reports/sales-orders"))
    rows = re.findall(r'<tr data-sales-order="([^"]+)">', page)
    assert rows == ["SO-1001", "SO-1003", "SO-1002", "SO-1004", "SO-1005", "SO-X1"]
    row = re.search(r'<tr data-sales-order="SO-1001">.*?</tr>', page, re.S).group(0)
    assert "Nordbau Fassaden GmbH" in row and "2026-03-06" in row
    quantities = dict(re.findall(r'data-qty="(\w+)">([^<]*)<', row))
    assert quantities == {"ordered": "600", "in_production": "400", "received": "0",
                          "open": "600 pcs"}  # fmt: skip
    assert 'href="/reports/orders/PO-S1"' in row and "planned" in row
    assert "production planned, not released yet; 200 pcs not planned yet" in row
    untouched = re.search(r'<tr data-sales-order="SO-1002">.*?</tr>', page, re.S).group(0)
    assert "no production order yet" in untouched
    assert "<b>fett</b>" not in page and "Kunde &lt;b&gt;fett&lt;/b&gt;" in page
    overview = html(reader.get("/reports"))
    assert 'href="/reports/sales-orders"' in overview
    assert re.search(r'id="overview-sales">.*?class="value">6<', overview, re.S)

    with app.app_context():
        accounts().create_user("olga", ["operator"], "olga-pass-1")
    operator = app.test_client()
    assert sign_in(operator, "olga", "olga-pass-1").status_code == 302
    refused = operator.get("/reports/sales-orders")
    assert refused.status_code == 403
    assert "report.read needs one of the roles" in html(refused)
    assert "SO-1001" not in html(refused)
