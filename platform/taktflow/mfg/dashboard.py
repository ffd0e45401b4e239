"""The shop-floor dashboard's figures: where plan meets reality, in one read.

Per open order: planned, completed and scrapped quantity and an expected finish; per machine:
its state (with the downtime reason), the operation it runs and its counts; OEE per machine
and work center for the current shift and the day, with the inputs; downtime by reason; open
quality holds and nonconformances; approvals waiting and their age.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.mfg.downtime import pareto
from taktflow.mfg.machine_time import current_state, oee, shift_spans
from taktflow.mfg.models import (
    Item,
    Machine,
    OrderOperation,
    ProductionOrder,
    Routing,
    RoutingOperation,
    WorkCenter,
)
from taktflow.mfg.purchasing import pending_approvals
from taktflow.mfg.quality import open_quality
from taktflow.mfg.stock import unscaled

#: Orders in these states are on the board.
OPEN_STATES = ("planned", "released", "running", "held", "completed")


def dashboard(session: Session, now: datetime) -> dict[str, Any]:
    day_start = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    shift = _current_shift(session, now)
    window = {"day": (day_start, day_start + timedelta(days=1))}
    if shift is not None:
        window["shift"] = (shift.start, shift.end)
    machines = list(session.scalars(select(Machine).order_by(Machine.work_center, Machine.code)))
    centers = list(session.scalars(select(WorkCenter).order_by(WorkCenter.code)))
    return {
        "now": now,
        "shift": None
        if shift is None
        else {"name": shift.name, "start": shift.start, "end": shift.end},
        "orders": _orders(session, now),
        "machines": [_machine(session, m, now) for m in machines],
        "oee": {
            name: {
                "machines": {
                    m.code: _oee(session, start, end, now, machine=m.code) for m in machines
                },
                "work_centers": {
                    c.code: _oee(session, start, end, now, work_center=c.code) for c in centers
                },
            }
            for name, (start, end) in window.items()
        },
        "downtime": pareto(session, start=day_start, end=day_start + timedelta(days=1), now=now),
        "quality": open_quality(session, now),
        "approvals": pending_approvals(session, now=now),
    }


def _current_shift(session: Session, now: datetime) -> Any:
    for span in shift_spans(session, now - timedelta(days=1), now + timedelta(seconds=1)):
        if span.start <= now < span.end:
            return span
    return None


def _oee(session: Session, start: datetime, end: datetime, now: datetime, **which: str) -> Any:
    if now <= start:
        return None
    return oee(session, start=start, end=end, now=now, **which)


def _orders(session: Session, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for order in session.scalars(
        select(ProductionOrder)
        .where(ProductionOrder.status.in_(OPEN_STATES))
        .order_by(ProductionOrder.priority, ProductionOrder.number)
    ):
        item = session.get(Item, order.item)
        assert item is not None
        ops = list(
            session.scalars(
                select(OrderOperation)
                .where(OrderOperation.order_number == order.number)
                .order_by(OrderOperation.sequence)
            )
        )
        last = ops[-1] if ops else None
        completed = last.good if last and last.status == "completed" else 0
        scrapped = sum(o.scrap for o in ops)
        rows.append(
            {
                "number": order.number,
                "item": order.item,
                "uom": item.uom,
                "status": order.status,
                "priority": order.priority,
                "planned": unscaled(item, order.quantity),
                "completed": unscaled(item, completed),
                "scrapped": unscaled(item, scrapped),
                "progress_pct": _share(completed, order.quantity),
                "due_at": order.due_at,
                "expected_finish": _expected_finish(session, order, ops, now),
            }
        )
    return rows


def _expected_finish(
    session: Session, order: ProductionOrder, ops: list[OrderOperation], now: datetime
) -> datetime | None:
    """Now plus the ideal time of what is left: the units still to make at each operation
    that is not completed, at its routing's ideal cycle time (setups not counted)."""
    if order.status in ("planned", "completed") or not ops:
        return None
    routing = session.scalar(
        select(Routing).where(Routing.item == order.item, Routing.version == order.routing_version)
    )
    if routing is None:
        return None
    cycles = {
        r.sequence: r.cycle_ms
        for r in session.scalars(
            select(RoutingOperation).where(RoutingOperation.routing_id == routing.id)
        )
    }
    left_ms = 0
    for op in ops:
        if op.status == "completed":
            continue
        made = op.counted_good if op.status == "running" else 0
        left_ms += max(op.planned - made, 0) * cycles.get(op.sequence, 0)
    item = session.get(Item, order.item)
    assert item is not None
    return now + timedelta(milliseconds=left_ms / 10**item.decimals)


def _machine(session: Session, machine: Machine, now: datetime) -> dict[str, Any]:
    state = current_state(session, machine.code)
    # No signal yet, or the last one said so (a Sparkplug death certificate): offline.
    shown = state["state"] if state else "offline"
    op = session.scalars(
        select(OrderOperation)
        .where(OrderOperation.machine == machine.code, OrderOperation.status == "running")
        .order_by(OrderOperation.started_at.desc())
    ).first()
    current = None
    if op is not None:
        order = session.get(ProductionOrder, op.order_number)
        item = session.get(Item, order.item) if order else None
        if order is not None and item is not None:
            current = {
                "order": op.order_number,
                "sequence": op.sequence,
                "name": op.name,
                "planned": unscaled(item, op.planned),
                "counted_good": unscaled(item, op.counted_good),
                "counted_reject": unscaled(item, op.counted_reject),
            }
    return {
        "code": machine.code,
        "name": machine.name,
        "work_center": machine.work_center,
        "state": shown,
        "reason": state["reason"] if state else None,
        "alarm_code": state["alarm_code"] if state else None,
        "since": state["since"] if state else None,
        "operation": current,
    }


def _share(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))
