"""The plant's reports as pages: inventory by location and lot, lot genealogy, production order
cost, sales orders, trial balance and journal (docs/reports.md).

Views are thin: each reads the request, calls one query of taktflow.mfg.reports (or of the
area's own module, taktflow.mfg.sales) in a read-only session and renders. Every page needs
`report.read`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import render_template, request
from sqlalchemy.orm import Session

from taktflow.auth.service import Principal
from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg import reports, sales
from taktflow.web import page, web_bp

PERMISSION = "report.read"


@contextmanager
def _session() -> Iterator[Session]:
    """A session on the engine's database for reading; nothing is written or committed."""
    from taktflow.app import workflow_engine

    with Session(workflow_engine().bind) as session:
        yield session


def _text(name: str, limit: int = 100) -> str | None:
    """A text filter from the query string, trimmed; None when empty."""
    value = (request.args.get(name) or "").strip()[:limit]
    return value or None


def _page_number() -> int:
    return max(1, request.args.get("page", default=1, type=int) or 1)


# ---------------------------------------------------------------------- formatting
@web_bp.app_template_filter("plant_money")
def plant_money(value: Decimal | int | None) -> str:
    """Money with two decimals and thousands separators: 1,234.50."""
    if value is None:
        return ""
    return f"{Decimal(value):,.2f}"


@web_bp.app_template_filter("plant_qty")
def plant_qty(value: Decimal | int | None, decimals: int = 0) -> str:
    """A quantity with as many decimals as its unit takes: 130.000 kg, 98 pcs."""
    if value is None:
        return ""
    return f"{Decimal(value):,.{int(decimals)}f}"


@web_bp.app_template_filter("plant_time")
def plant_time(value: datetime | None) -> str:
    """A timestamp to the minute (UTC, as stored)."""
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


# ---------------------------------------------------------------------- pages
@web_bp.get("/reports")
@page(PERMISSION)
def plant_reports(user: Principal) -> str:
    """The reports' start page: each report with its key figure."""
    with _session() as session:
        figures = reports.overview(session)
        figures["sales"] = sales.sales_summary(session)
    return render_template("plant_reports.html", figures=figures)


@web_bp.get("/reports/inventory")
@page(PERMISSION)
def plant_inventory(user: Principal) -> str:
    """Stock on hand by location and lot at standard cost, filtered by item and location."""
    item, location = _text("item", 40), _text("location", 40)
    with _session() as session:
        view = reports.inventory(session, item=item, location=location)
    return render_template("plant_inventory.html", view=view, item=item, location=location)


@web_bp.get("/reports/genealogy")
@page(PERMISSION)
def plant_genealogy(user: Principal) -> Any:
    """Search a lot of an item; show where it came from (backward) and went (forward)."""
    item, lot = _text("item", 40), _text("lot", 60)
    trace, error, status = None, None, 200
    with _session() as session:
        items = reports.lot_items(session)
        lots = reports.known_lots(session)
        if item and lot:
            try:
                trace = reports.lot_trace(session, item, lot)
            except NotFound as exc:
                error, status = exc.message, 404
            except ValidationFailed as exc:
                error, status = exc.message, 422
        elif item or lot:
            error, status = "Give both the item and the lot to trace.", 422
    return render_template(
        "plant_genealogy.html", trace=trace, error=error, items=items, lots=lots, item=item,
        lot=lot,
    ), status  # fmt: skip


@web_bp.get("/reports/orders")
@page(PERMISSION)
def plant_orders(user: Principal) -> str:
    """Production orders, newest first, filtered by state and item."""
    status = _text("status", 20)
    if status not in reports.ORDER_STATUSES:
        status = None
    item = _text("item", 40)
    with _session() as session:
        view = reports.order_list(session, status=status, item=item, page=_page_number())
    return render_template("plant_orders.html", view=view, status=status, item=item)


@web_bp.get("/reports/orders/<number>")
@page(PERMISSION)
def plant_order(user: Principal, number: str) -> str:
    """One order's cost: operations, material movements, standard against actual, entries.
    An unknown number is answered by the blueprint's NotFound page (404)."""
    with _session() as session:
        view = reports.order_cost_report(session, number)
    return render_template("plant_order.html", view=view)


@web_bp.get("/reports/sales-orders")
@page(PERMISSION)
def plant_sales_orders(user: Principal) -> str:
    """Sales orders, earliest due first, with the production orders made for them and what
    they have received; late ones marked against the engine's clock."""
    from taktflow.app import workflow_engine

    today = workflow_engine().clock.now().date()
    with _session() as session:
        orders = sales.sales_order_views(session, today=today)
    return render_template("plant_sales_orders.html", orders=orders, today=today)


@web_bp.get("/reports/trial-balance")
@page(PERMISSION)
def plant_trial_balance(user: Principal) -> str:
    """Every account's debits, credits and balance; whether the totals agree."""
    with _session() as session:
        report = reports.trial_balance_report(session)
    return render_template("plant_trial_balance.html", report=report)


@web_bp.get("/reports/journal")
@page(PERMISSION)
def plant_journal(user: Principal) -> str:
    """Journal entries newest first with their lines, paged, by reference and/or account."""
    with _session() as session:
        view = reports.journal(
            session, reference=_text("reference"), account=_text("account", 20),
            page=_page_number(),
        )  # fmt: skip
    return render_template("plant_journal.html", view=view)


# ---------------------------------------------------------------------- shop floor
#: Seconds between the dashboard's own refreshes.
DASHBOARD_REFRESH_S = 30


@web_bp.get("/dashboard")
@page(PERMISSION)
def plant_dashboard(user: Principal) -> str:
    """The shop floor at a glance: machines, orders, OEE, downtime, quality, approvals."""
    from taktflow.app import workflow_engine
    from taktflow.mfg.dashboard import dashboard

    with _session() as session:
        board = dashboard(session, workflow_engine().clock.now())
    day = board["oee"]["day"]["machines"]
    oee_chart = {"labels": list(day), "datasets": [{
        "label": "OEE today (%)", "backgroundColor": "#2e7d32",
        "data": [float(f["oee_pct"]) if f and f["oee_pct"] is not None else 0
                 for f in day.values()]}]}  # fmt: skip
    reasons = board["downtime"]["reasons"]
    downtime_chart = {"labels": [r["name"] for r in reasons], "datasets": [{
        "label": "Minutes", "backgroundColor": "#c62828",
        "data": [round(float(r["duration_s"]) / 60, 1) for r in reasons]}]}  # fmt: skip
    return render_template(
        "plant_dashboard.html", board=board, oee_chart=oee_chart,
        downtime_chart=downtime_chart, refresh_s=DASHBOARD_REFRESH_S,
    )  # fmt: skip
