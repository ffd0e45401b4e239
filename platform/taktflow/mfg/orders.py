"""Production orders: created with the BOM and routing versions they will be made with and
one operation per routing step; moved through their states only along the allowed paths."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.bom import current_bom
from taktflow.mfg.ledger import balance
from taktflow.mfg.models import (
    ORDER_TRANSITIONS,
    Item,
    OrderOperation,
    ProductionOrder,
    Reservation,
)
from taktflow.mfg.routing import current_routing, operations
from taktflow.mfg.stock import scaled, unscaled


def create_order(
    session: Session,
    *,
    number: str,
    item: str,
    quantity: Any,
    now: datetime,
    due_at: datetime | None = None,
    priority: int = 5,
    erp_reference: str | None = None,
) -> dict[str, Any]:
    """A new order in state `planned`, bound to the item's current BOM and routing."""
    if not number or len(number) > 40:
        raise ValidationFailed("an order number is 1 to 40 characters",
                               details={"number": "invalid"})  # fmt: skip
    if session.get(ProductionOrder, number) is not None:
        raise Conflict(f"production order {number} exists already")
    found = session.get(Item, item)
    if found is None:
        raise NotFound(f"item {item!r} does not exist")
    amount = scaled(found, quantity)
    if amount <= 0:
        raise ValidationFailed(f"quantity {quantity} must be positive",
                               details={"quantity": "not positive"})  # fmt: skip
    bom = current_bom(session, item)
    if bom is None:
        raise ValidationFailed(f"{item} has no bill of materials: it cannot be made")
    routing = current_routing(session, item)
    order = ProductionOrder(
        number=number, item=item, quantity=amount, bom_version=bom.version,
        routing_version=routing.version, status="planned", due_at=due_at, priority=priority,
        erp_reference=erp_reference, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(order)
    session.flush()
    for op in operations(session, routing):
        session.add(OrderOperation(order_number=number, sequence=op.sequence, name=op.name,
                                   work_center=op.work_center, planned=amount))  # fmt: skip
    session.flush()
    return order_view(session, number)


def parse_due(value: Any) -> datetime | None:
    """A due date from ISO 8601 text with an offset (None stays None)."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed(
                f"due date {value!r} is not an ISO 8601 date-time (2026-03-06T14:00:00+01:00)",
                details={"due_at": "invalid"},
            ) from None
    if parsed.tzinfo is None:
        raise ValidationFailed(f"due date {value!r} needs a UTC offset (Z or +01:00)",
                               details={"due_at": "no offset"})  # fmt: skip
    return parsed


def set_status(session: Session, number: str, status: str, *, now: datetime) -> dict[str, Any]:
    """Move an order to `status`; Conflict naming what is allowed from where it is."""
    order = get_order(session, number)
    if status not in ORDER_TRANSITIONS:
        raise ValidationFailed(f"status {status!r} is not one of {', '.join(ORDER_TRANSITIONS)}")
    allowed = ORDER_TRANSITIONS[order.status]
    if status not in allowed:
        options = ", ".join(allowed) or "nothing (it is final)"
        raise Conflict(f"production order {number} is {order.status}: it can become {options}, "
                       f"not {status}")  # fmt: skip
    if status == "cancelled":
        _refuse_cancel_with_wip(session, number)
    order.status, order.updated_at = status, now
    if status == "cancelled":
        # A cancelled order will take nothing: what it held in stores is free for others.
        held = select(Reservation).where(
            Reservation.order_number == number, Reservation.open.is_(True)
        )
        for reservation in session.scalars(held):
            reservation.open = False
    session.flush()
    return order_view(session, number)


def _refuse_cancel_with_wip(session: Session, number: str) -> None:
    """A cancelled order is never closed, so what was issued or booked to it would stay in
    work in progress for good: such an order has to be completed and closed instead."""
    from taktflow.mfg.execution import WIP_ACCOUNT  # execution imports this module

    wip = balance(session, WIP_ACCOUNT, number)
    if wip:
        raise Conflict(
            f"production order {number} cannot be cancelled: {wip} is in work in progress "
            "for it (material issued or time booked). Complete and close it instead: the "
            "close consumes what is on the floor and posts the rest as variances."
        )


def order_view(session: Session, number: str) -> dict[str, Any]:
    order = get_order(session, number)
    item = session.get(Item, order.item)
    assert item is not None
    ops = session.scalars(select(OrderOperation).where(OrderOperation.order_number == number)
                          .order_by(OrderOperation.sequence))  # fmt: skip
    return {
        "number": order.number, "item": order.item, "uom": item.uom,
        "quantity": unscaled(item, order.quantity), "status": order.status,
        "bom_version": order.bom_version, "routing_version": order.routing_version,
        "priority": order.priority, "erp_reference": order.erp_reference,
        "due_at": order.due_at.isoformat() if order.due_at else None,
        "operations": [{"sequence": o.sequence, "name": o.name, "work_center": o.work_center,
                        "status": o.status, "planned": unscaled(item, o.planned),
                        "good": unscaled(item, o.good), "scrap": unscaled(item, o.scrap)}
                       for o in ops],
    }  # fmt: skip


def get_order(session: Session, number: str) -> ProductionOrder:
    order = session.get(ProductionOrder, number)
    if order is None:
        raise NotFound(f"production order {number!r} does not exist")
    return order
