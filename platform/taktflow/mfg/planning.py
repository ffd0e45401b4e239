"""A planner's new production order (the page /orders/new, docs/factory-workflows.md): the
options its form offers and the order release workflow started with what the planner entered
— the same start the ERP interface makes, so an order from a screen and one from the ERP run
the same way.

Nothing is started until the entry is valid and its order number is free: a refused entry
leaves no instance, order or reservation behind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.errors import ValidationFailed
from taktflow.mfg.machine_models import Shift
from taktflow.mfg.models import Bom, Item, ProductionOrder
from taktflow.mfg.sales import SalesOrder

FORM = "production_order_request"
PROCESS = "order_release"
#: New numbers are PO-<year>-<four digits>, counting on from the highest of the year.
_NUMBERED = re.compile(r"^PO-(\d{4})-(\d{4,})$")


def order_form_data(session: Session, now: datetime) -> dict[str, Any]:
    """What the form shows: the items that can be made (they have a BOM), the open sales
    orders, and the number a new order gets when none is entered."""
    made = select(Bom.item).distinct()
    items = session.scalars(select(Item).where(Item.code.in_(made)).order_by(Item.type, Item.code))
    sales = session.scalars(
        select(SalesOrder).where(SalesOrder.status == "open").order_by(SalesOrder.due_on)
    )
    return {
        "items": [{"value": i.code, "label": f"{i.code}: {i.name} ({i.uom}, {i.type})"}
                  for i in items],
        "sales_orders": [{"value": o.number, "label": f"{o.number}: {o.customer}, {o.item} "
                          f"due {o.due_on.isoformat()}"} for o in sales],
        "next_number": next_order_number(session, now),
    }  # fmt: skip


def next_order_number(session: Session, now: datetime) -> str:
    year = now.year
    highest = 0
    for number in session.scalars(
        select(ProductionOrder.number).where(ProductionOrder.number.like(f"PO-{year}-%"))
    ):
        found = _NUMBERED.match(number)
        if found and int(found.group(1)) == year:
            highest = max(highest, int(found.group(2)))
    return f"PO-{year}-{highest + 1:04d}"


def due_at(session: Session, day: date) -> str:
    """The end of `day`'s last shift in the plant's time zone (22:00 in the demo plant), or
    the end of the day when the calendar has no shift then; ISO 8601 with its offset."""
    shifts = list(session.scalars(select(Shift).where(Shift.active.is_(True))))
    zone = ZoneInfo(shifts[0].timezone) if shifts else ZoneInfo("UTC")
    ends = [s.end_min if s.end_min > s.start_min else s.end_min + 1440 for s in shifts
            if str(day.isoweekday()) in s.weekdays.split(",")]  # fmt: skip
    if not ends:
        return datetime.combine(day, time(23, 59), zone).isoformat()
    return (datetime.combine(day, time(), zone) + timedelta(minutes=max(ends))).isoformat()


def start_data(session: Session, values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The order release workflow's start data from a valid form entry; ValidationFailed
    naming the field when the order number is taken."""
    number = (values.get("order_number") or "").strip() or next_order_number(session, now)
    if session.get(ProductionOrder, number) is not None:
        raise ValidationFailed(
            f"production order {number} exists already",
            details={"fields": {"order_number": f"{number} exists already: choose another"}},
        )
    return {
        "order_number": number,
        "item": values["item"],
        "quantity": values["quantity"],
        "priority": int(values["priority"]),
        "erp_reference": values.get("erp_reference") or None,
        "due_at": due_at(session, date.fromisoformat(str(values["due_on"]))),
    }
