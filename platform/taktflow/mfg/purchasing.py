"""Purchasing: suppliers and their prices, purchase requisitions routed through approval
levels, purchase orders, and goods receipts that add stock and value it in the ledger.

As in the ledger and stock modules, every function takes the caller's Session and never
commits: a workflow step's purchasing work commits or rolls back with the step. Quantities
enter and leave as Decimal in the item's unit, money as Decimal euros; both are stored as
scaled integers (mfg.stock.scaled, mfg.ledger.to_cents).

Requisitions are numbered PR-00001, purchase orders PUR-00001 (production orders already use
PO-...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.ledger import from_cents, post_entry, to_cents
from taktflow.mfg.models import Account, Item, Location, ProductionOrder
from taktflow.mfg.purchasing_models import (
    DECISIONS,
    GoodsReceipt,
    PurchaseApproval,
    PurchaseOrder,
    PurchaseOrderLine,
    PurchaseRequisition,
    Supplier,
    SupplierItem,
)
from taktflow.mfg.stock import move_stock, scaled, unscaled

REQUISITION_PREFIX = "PR"
PURCHASE_ORDER_PREFIX = "PUR"
#: The default receiving location, and the kinds of location goods may be received into.
DEFAULT_LOCATION = "RM-STORES"
RECEIVING_KINDS = ("stores", "receiving", "quarantine")
#: Accounts of a receipt: stock (when its location names none), goods received not
#: invoiced (cleared when the supplier's invoice is booked), purchase price variance.
STOCK_ACCOUNT = "1400"
GRNI_ACCOUNT = "2100"
PRICE_VARIANCE_ACCOUNT = "5300"


# ------------------------------------------------------------------ suppliers


def load_suppliers(session: Session, path: str | Path) -> dict[str, int]:
    """Add or update the suppliers of a suppliers file and replace each one's price list:
    `suppliers: [{code, name, currency?, active?, items: [{item, price, lead_time_days}]}]`.
    Suppliers are never deleted (requisitions refer to them); an item left out of a
    supplier's list is no longer bought from it. Counts of suppliers and of offers."""
    from taktflow.yamlflow.loader import YamlProblem, load

    path = Path(path)
    try:
        doc = load(path.read_text(encoding="utf-8"), kind="suppliers")
    except YamlProblem as exc:
        line = f":{exc.pos.line}" if exc.pos else ""
        raise ValidationFailed(f"{path}{line}: {exc.message}") from None
    entries = doc.get("suppliers") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise ValidationFailed(f"{path}: expected `suppliers:` with a list of suppliers")
    offers = 0
    seen: set[str] = set()
    for number, raw in enumerate(entries, 1):
        line = getattr(getattr(raw, "pos", None), "line", None)
        where = f"{path}:{line}: supplier {number}" if line else f"{path}: supplier {number}"
        if not isinstance(raw, Mapping):
            raise ValidationFailed(f"{where}: expected code, name and items")
        code = str(raw.get("code") or "")
        where += f" ({code or '?'})"
        unknown = set(raw) - {"code", "name", "currency", "active", "items"}
        if unknown:
            raise ValidationFailed(f"{where}: unknown keys {sorted(unknown)} (expected code, "
                                   "name, currency, active, items)")  # fmt: skip
        if not code or len(code) > 40:
            raise ValidationFailed(f"{where}: code must be 1 to 40 characters")
        if code in seen:
            raise ValidationFailed(f"{where}: supplier {code} is listed twice")
        seen.add(code)
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed(f"{where}: name is missing")
        currency = raw.get("currency", "EUR")
        if currency != "EUR":
            raise ValidationFailed(f"{where}: currency {currency!r}: only EUR is supported")
        active = raw.get("active", True)
        if not isinstance(active, bool):
            raise ValidationFailed(f"{where}: active must be true or false")
        items = raw.get("items") or []
        if not isinstance(items, list):
            raise ValidationFailed(f"{where}: items must be a list of {{item, price, "
                                   "lead_time_days}}")  # fmt: skip
        prices: dict[str, tuple[int, int]] = {}
        for index, offer in enumerate(items, 1):
            prices |= _offer_entry(session, offer, f"{where}: item {index}", prices)
        supplier = session.get(Supplier, code) or Supplier(code=code)
        supplier.name, supplier.currency, supplier.active = name.strip(), currency, active
        session.add(supplier)
        session.flush()
        existing = {o.item: o for o in session.scalars(
            select(SupplierItem).where(SupplierItem.supplier == code))}  # fmt: skip
        for item, (cents, days) in prices.items():
            row = existing.pop(item, None) or SupplierItem(supplier=code, item=item)
            row.unit_price_cents, row.lead_time_days = cents, days
            session.add(row)
        for gone in existing.values():
            session.delete(gone)
        offers += len(prices)
    session.flush()
    return {"suppliers": len(entries), "supplier items": offers}


def _offer_entry(
    session: Session, raw: Any, where: str, seen: Mapping[str, Any]
) -> dict[str, tuple[int, int]]:
    if not isinstance(raw, Mapping) or set(raw) - {"item", "price", "lead_time_days"}:
        raise ValidationFailed(f"{where}: expected item, price and lead_time_days")
    code = str(raw.get("item") or "")
    where += f" ({code or '?'})"
    if session.get(Item, code) is None:
        raise ValidationFailed(f"{where}: item {code!r} does not exist (add it to the master "
                               "data first)")  # fmt: skip
    if code in seen:
        raise ValidationFailed(f"{where}: {code} is listed twice for this supplier")
    try:
        cents = to_cents(raw.get("price"), "price")
    except ValueError as exc:
        raise ValidationFailed(f"{where}: {exc}") from None
    if cents <= 0:
        raise ValidationFailed(f"{where}: price must be positive, got {raw.get('price')}")
    days = raw.get("lead_time_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 365:
        raise ValidationFailed(f"{where}: lead_time_days must be a whole number of days, 0 to "
                               f"365, got {days!r}")  # fmt: skip
    return {code: (cents, days)}


def offers(session: Session, item: str) -> list[dict[str, Any]]:
    """Who sells `item` (active suppliers), cheapest first; ties go to the shorter lead
    time, then to the supplier code (so the choice never depends on row order)."""
    rows = session.execute(
        select(SupplierItem, Supplier)
        .join(Supplier, Supplier.code == SupplierItem.supplier)
        .where(SupplierItem.item == item, Supplier.active.is_(True))
        .order_by(SupplierItem.unit_price_cents, SupplierItem.lead_time_days, Supplier.code)
    ).all()
    return [{"supplier": s.code, "name": s.name, "item": o.item,
             "unit_price": from_cents(o.unit_price_cents), "lead_time_days": o.lead_time_days}
            for o, s in rows]  # fmt: skip


def _choose_offer(session: Session, item: str, supplier: str | None) -> SupplierItem:
    if supplier:
        found = session.get(Supplier, supplier)
        if found is None:
            raise NotFound(f"supplier {supplier!r} does not exist")
        if not found.active:
            raise ValidationFailed(f"supplier {supplier} is inactive",
                                   details={"supplier": "inactive"})  # fmt: skip
        offer = session.scalar(select(SupplierItem).where(
            SupplierItem.supplier == supplier, SupplierItem.item == item))  # fmt: skip
        if offer is None:
            raise ValidationFailed(f"supplier {supplier} does not sell {item}",
                                   details={"supplier": "does not sell the item"})  # fmt: skip
        return offer
    best = offers(session, item)
    if not best:
        raise ValidationFailed(f"no supplier sells {item} (see seed_data/suppliers.yaml)",
                               details={"item": "no supplier"})  # fmt: skip
    return session.scalars(select(SupplierItem).where(
        SupplierItem.supplier == best[0]["supplier"], SupplierItem.item == item)).one()  # fmt: skip


# ------------------------------------------------------------------ requisitions


def create_requisition(
    session: Session,
    *,
    item: str,
    quantity: Any,
    now: datetime,
    needed_by: Any = None,
    order_number: str | None = None,
    supplier: str | None = None,
    requested_by: str | None = None,
    idempotency_key: str | None = None,
    instance_id: int | None = None,
) -> dict[str, Any]:
    """A new open requisition for `quantity` of `item` from `supplier` (default: the
    cheapest active supplier selling it) at that supplier's current price. `order_number`
    names the production order it covers (empty for a stand-alone requisition). With
    `idempotency_key`, the same key returns the first requisition."""
    if idempotency_key is not None:
        existing = session.scalar(select(PurchaseRequisition).where(
            PurchaseRequisition.idempotency_key == idempotency_key))  # fmt: skip
        if existing is not None:
            return requisition_view(session, existing)
    found = session.get(Item, item)
    if found is None:
        raise NotFound(f"item {item!r} does not exist")
    amount = scaled(found, quantity)
    if amount <= 0:
        raise ValidationFailed(f"quantity {quantity} of {item} must be positive",
                               details={"quantity": "not positive"})  # fmt: skip
    order_number = (order_number or "").strip() or None
    if order_number is not None and session.get(ProductionOrder, order_number) is None:
        raise NotFound(f"production order {order_number!r} does not exist")
    offer = _choose_offer(session, item, (supplier or "").strip() or None)
    requisition = PurchaseRequisition(
        item=item, quantity=amount, supplier=offer.supplier,
        unit_price_cents=offer.unit_price_cents,
        amount_cents=_value_cents(found, amount, offer.unit_price_cents),
        lead_time_days=offer.lead_time_days, needed_by=_date(needed_by, "needed_by"),
        order_number=order_number, requested_by=requested_by, status="open", created_at=now,
        updated_at=now, idempotency_key=idempotency_key, instance_id=instance_id,
    )  # fmt: skip
    session.add(requisition)
    session.flush()
    return requisition_view(session, requisition)


def route_requisition(
    session: Session,
    number: str,
    roles: Iterable[str],
    *,
    now: datetime,
    deadlines: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Set the approval levels of an open requisition — one role per level, in order, e.g.
    ["supervisor", "manager"] — and open the first level. `deadlines` gives each role's time
    to decide as an ISO 8601 duration ({"supervisor": "PT4H"}); a level's due time is when
    it opened plus its role's deadline. Routing again with the same roles changes nothing."""
    requisition = _requisition(session, number)
    roles = [str(r).strip() for r in roles]
    if not roles or any(not r for r in roles) or len(set(roles)) != len(roles):
        raise ValidationFailed(f"approval roles {roles!r}: give one or more distinct roles",
                               details={"roles": "invalid"})  # fmt: skip
    deadlines = dict(deadlines or {})
    for role, duration in deadlines.items():
        _duration(duration, f"deadline of {role}", now)
    route, due = ",".join(roles), ",".join(f"{r}={d}" for r, d in sorted(deadlines.items()))
    if requisition.approval_roles is not None:
        if requisition.approval_roles != route:
            raise Conflict(f"requisition {number} is routed to {requisition.approval_roles} "
                           f"already, not {route}")  # fmt: skip
        return approval_state(session, requisition)
    if requisition.status != "open":
        raise Conflict(f"requisition {number} is {requisition.status}: it cannot be routed")
    requisition.approval_roles, requisition.approval_deadlines = route, due or None
    requisition.updated_at = now
    _open_level(session, requisition, 1, now)
    return approval_state(session, requisition)


def escalate_approval(
    session: Session, number: str, level: int, to_role: str, *, now: datetime
) -> dict[str, Any]:
    """Hand a waiting level's decision to `to_role` (its deadline passed): the decision is
    recorded with escalated=true and the role that was passed over. Escalating again to the
    same role changes nothing."""
    requisition = _requisition(session, number)
    row = _level(session, requisition, level)
    to_role = (to_role or "").strip()
    if not to_role:
        raise ValidationFailed("escalation needs the role that takes over",
                               details={"to_role": "missing"})  # fmt: skip
    if row.escalated and row.role == to_role:
        return approval_state(session, requisition)
    if row.decision is not None:
        raise Conflict(f"level {level} of {number} is decided already ({row.decision} by "
                       f"{row.decided_by or 'unknown'}): it cannot be escalated")  # fmt: skip
    if requisition.status != "open":
        raise Conflict(f"requisition {number} is {requisition.status}: nothing to escalate")
    row.escalated, row.escalated_from, row.escalated_at = True, row.role, now
    row.role = to_role
    # The role that took over has no deadline of its own: the dashboard shows the level as
    # escalated, and its age keeps growing from when it was first opened.
    row.due_at = None
    requisition.updated_at = now
    session.flush()
    return approval_state(session, requisition)


def record_approval(
    session: Session,
    number: str,
    level: int,
    decision: str,
    *,
    now: datetime,
    decided_by: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Record the decision of a waiting level (approve or reject; a rejection needs a
    comment, its reason). A rejection rejects the requisition; an approval opens the next
    level or, after the last, approves the requisition. An escalated approval also decides
    the next level when that level belongs to the role that took over, so nobody is asked
    twice. Recording the same decision again changes nothing (a retried step)."""
    requisition = _requisition(session, number)
    row = _level(session, requisition, level)
    decision = str(decision or "").strip().lower()
    if decision not in DECISIONS:
        raise ValidationFailed(f"decision {decision!r} is not one of {', '.join(DECISIONS)}",
                               details={"decision": "unknown"})  # fmt: skip
    comment = (comment or "").strip() or None
    if row.decision is not None:
        if row.decision == decision:
            return approval_state(session, requisition)
        raise Conflict(f"level {level} of {number} is decided already: {row.decision} by "
                       f"{row.decided_by or 'unknown'}")  # fmt: skip
    if requisition.status != "open":
        raise Conflict(f"requisition {number} is {requisition.status}: no decision is taken")
    if decision == "reject" and comment is None:
        raise ValidationFailed("a rejection needs a comment saying why",
                               details={"comment": "missing"})  # fmt: skip
    row.decision, row.decided_by, row.decided_at, row.comment = (
        decision, decided_by, now, comment)  # fmt: skip
    requisition.updated_at = now
    roles = _roles(requisition)
    if decision == "reject":
        requisition.status = "rejected"
        session.flush()
        return approval_state(session, requisition)
    following = level + 1
    if row.escalated and following <= len(roles) and roles[following - 1] == row.role:
        session.add(PurchaseApproval(
            requisition_id=requisition.id, level=following, role=row.role, requested_at=now,
            decision="approve", decided_by=decided_by, decided_at=now, escalated=False,
            comment=f"decided with level {level}, escalated to {row.role}",
        ))  # fmt: skip
        following += 1
    if following <= len(roles):
        _open_level(session, requisition, following, now)
    else:
        requisition.status = "approved"
    session.flush()
    return approval_state(session, requisition)


def cancel_requisition(
    session: Session, number: str, *, now: datetime, reason: str
) -> dict[str, Any]:
    """Cancel an open or approved requisition (not yet ordered), with a reason: its waiting
    approval leaves the dashboard."""
    requisition = _requisition(session, number)
    if requisition.status not in ("open", "approved"):
        raise Conflict(f"requisition {number} is {requisition.status}: only open or approved "
                       "requisitions can be cancelled")  # fmt: skip
    if not reason or not reason.strip():
        raise ValidationFailed("a cancellation needs a reason", details={"reason": "missing"})
    requisition.status, requisition.updated_at = "cancelled", now
    session.flush()
    return requisition_view(session, requisition)


def pending_approvals(session: Session, *, now: datetime) -> list[dict[str, Any]]:
    """The approval levels waiting for a decision, longest waiting first: requisition, item,
    amount, level (of how many), role, since when, age in hours, due time, whether it is
    overdue and whether it was escalated."""
    rows = session.execute(
        select(PurchaseApproval, PurchaseRequisition, Item)
        .join(PurchaseRequisition, PurchaseRequisition.id == PurchaseApproval.requisition_id)
        .join(Item, Item.code == PurchaseRequisition.item)
        .where(PurchaseApproval.decision.is_(None), PurchaseRequisition.status == "open")
        .order_by(PurchaseApproval.requested_at, PurchaseApproval.id)
    ).all()
    waiting = []
    for approval, requisition, item in rows:
        age = int((now - approval.requested_at).total_seconds())
        waiting.append({
            "requisition": _number(REQUISITION_PREFIX, requisition.id),
            "item": requisition.item, "uom": item.uom,
            "quantity": _qty(item, requisition.quantity),
            "amount": from_cents(requisition.amount_cents), "supplier": requisition.supplier,
            "order_number": requisition.order_number, "level": approval.level,
            "levels": len(_roles(requisition)), "role": approval.role,
            "escalated": approval.escalated, "escalated_from": approval.escalated_from,
            "waiting_since": approval.requested_at, "age_seconds": age,
            "age_hours": (Decimal(age) / 3600).quantize(Decimal("0.1"), ROUND_HALF_UP),
            "due_at": approval.due_at,
            "overdue": approval.due_at is not None and now > approval.due_at,
        })  # fmt: skip
    return waiting


def approval_state(session: Session, requisition: PurchaseRequisition | str) -> dict[str, Any]:
    """Where a requisition's approval stands: status, route, the waiting level and role
    (none once decided), every decision so far and the reason of a rejection."""
    if isinstance(requisition, str):
        requisition = _requisition(session, requisition)
    rows = _levels(session, requisition)
    waiting = next((r for r in rows if r.decision is None), None)
    if requisition.status != "open":
        waiting = None
    rejected = next((r for r in rows if r.decision == "reject"), None)
    return {
        "requisition": _number(REQUISITION_PREFIX, requisition.id),
        "status": requisition.status, "roles": _roles(requisition),
        "amount": from_cents(requisition.amount_cents),
        "next_level": waiting.level if waiting else None,
        "next_role": waiting.role if waiting else None,
        "reason": rejected.comment if rejected else None,
        "decisions": [{"level": r.level, "role": r.role, "decision": r.decision,
                       "decided_by": r.decided_by, "decided_at": r.decided_at,
                       "comment": r.comment, "escalated": r.escalated,
                       "escalated_from": r.escalated_from, "requested_at": r.requested_at,
                       "due_at": r.due_at} for r in rows],
    }  # fmt: skip


def requisition_view(session: Session, requisition: PurchaseRequisition | str) -> dict[str, Any]:
    """A requisition as the workflow and the screens see it (Decimals, dates)."""
    if isinstance(requisition, str):
        requisition = _requisition(session, requisition)
    item = session.get(Item, requisition.item)
    assert item is not None
    expected = requisition.created_at.date() + timedelta(days=requisition.lead_time_days)
    line = session.scalar(select(PurchaseOrderLine).where(
        PurchaseOrderLine.requisition_id == requisition.id))  # fmt: skip
    return {
        "number": _number(REQUISITION_PREFIX, requisition.id), "item": requisition.item,
        "uom": item.uom, "quantity": _qty(item, requisition.quantity),
        "lot_tracked": item.tracking == "lot", "supplier": requisition.supplier,
        "unit_price": from_cents(requisition.unit_price_cents),
        "amount": from_cents(requisition.amount_cents), "currency": "EUR",
        "lead_time_days": requisition.lead_time_days, "needed_by": requisition.needed_by,
        # Ordered today, the goods would arrive then: later than needed_by means late.
        "expected_on": expected,
        "late": requisition.needed_by is not None and expected > requisition.needed_by,
        "order_number": requisition.order_number, "requested_by": requisition.requested_by,
        "status": requisition.status, "roles": _roles(requisition),
        "purchase_order": _number(PURCHASE_ORDER_PREFIX, line.order_id) if line else None,
    }  # fmt: skip


# ------------------------------------------------------------------ purchase orders


def create_purchase_order(
    session: Session,
    requisitions: str | Iterable[str],
    *,
    now: datetime,
    created_by: str | None = None,
) -> dict[str, Any]:
    """A purchase order with one line per approved requisition (all from one supplier);
    the requisitions become ordered. Ordering requisitions that are already ordered together
    returns their purchase order (a retried step)."""
    numbers = [requisitions] if isinstance(requisitions, str) else list(requisitions)
    if not numbers:
        raise ValidationFailed("a purchase order needs at least one requisition",
                               details={"requisitions": "empty"})  # fmt: skip
    found = [_requisition(session, n) for n in numbers]
    lines = [session.scalar(select(PurchaseOrderLine).where(
        PurchaseOrderLine.requisition_id == r.id)) for r in found]  # fmt: skip
    if all(lines) and len({line.order_id for line in lines if line}) == 1:
        assert lines[0] is not None
        return purchase_order_view(session, lines[0].order_id)
    for requisition, line in zip(found, lines, strict=True):
        number = _number(REQUISITION_PREFIX, requisition.id)
        if line is not None:
            raise Conflict(f"requisition {number} is ordered already on "
                           f"{_number(PURCHASE_ORDER_PREFIX, line.order_id)}")  # fmt: skip
        if requisition.status != "approved":
            raise Conflict(f"requisition {number} is {requisition.status}: only approved "
                           "requisitions are ordered")  # fmt: skip
    suppliers = sorted({r.supplier for r in found})
    if len(suppliers) > 1:
        raise ValidationFailed(f"one purchase order is for one supplier; these requisitions "
                               f"are for {', '.join(suppliers)}",
                               details={"requisitions": "several suppliers"})  # fmt: skip
    order = PurchaseOrder(
        supplier=suppliers[0], status="open", created_at=now, updated_at=now,
        expected_on=now.date() + timedelta(days=max(r.lead_time_days for r in found)),
        created_by=created_by,
    )  # fmt: skip
    session.add(order)
    session.flush()
    for index, requisition in enumerate(found, 1):
        session.add(PurchaseOrderLine(
            order_id=order.id, line=index, item=requisition.item, quantity=requisition.quantity,
            received=0, unit_price_cents=requisition.unit_price_cents,
            amount_cents=requisition.amount_cents, requisition_id=requisition.id,
        ))  # fmt: skip
        requisition.status, requisition.updated_at = "ordered", now
    session.flush()
    return purchase_order_view(session, order.id)


def purchase_order_view(session: Session, order: int | str) -> dict[str, Any]:
    """A purchase order with its lines (ordered, received, remaining per line)."""
    found = session.get(PurchaseOrder, order if isinstance(order, int) else _order_id(order))
    if found is None:
        raise NotFound(f"purchase order {order!r} does not exist")
    lines = []
    for line in _lines(session, found.id):
        item = session.get(Item, line.item)
        assert item is not None
        lines.append({
            "line": line.line, "item": line.item, "uom": item.uom,
            "quantity": _qty(item, line.quantity), "received": _qty(item, line.received),
            "remaining": _qty(item, line.quantity - line.received),
            "unit_price": from_cents(line.unit_price_cents),
            "amount": from_cents(line.amount_cents),
            "requisition": (_number(REQUISITION_PREFIX, line.requisition_id)
                            if line.requisition_id else None),
        })  # fmt: skip
    return {
        "number": _number(PURCHASE_ORDER_PREFIX, found.id), "supplier": found.supplier,
        "status": found.status, "expected_on": found.expected_on, "currency": "EUR",
        "amount": sum((ln["amount"] for ln in lines), Decimal("0.00")), "lines": lines,
        "created_by": found.created_by,
    }  # fmt: skip


# ------------------------------------------------------------------ goods receipts


def receive_goods(
    session: Session,
    purchase_order: str,
    *,
    quantity: Any,
    now: datetime,
    lot: str | None = None,
    location: str | None = None,
    item: str | None = None,
    received_by: str | None = None,
    delivery_note: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Receive `quantity` against a purchase order line (the one for `item`; the only one
    when the order has one line) into `location` (default RM-STORES; a stores, receiving or
    quarantine location). Adds the stock (reason receipt, with the lot, required for
    lot-tracked items) and posts the receipt: Dr stock at standard cost, Cr 2100 goods
    received not invoiced at the order price, the difference to 5300 purchase price
    variance. Partial receipts are allowed; more than is still open is refused. With
    `idempotency_key`, the same key returns the first receipt."""
    if idempotency_key is not None:
        existing = session.scalar(select(GoodsReceipt).where(
            GoodsReceipt.idempotency_key == idempotency_key))  # fmt: skip
        if existing is not None:
            return _receipt_view(session, existing)
    order_id = _order_id(purchase_order)
    order = session.get(PurchaseOrder, order_id)
    if order is None:
        raise NotFound(f"purchase order {purchase_order!r} does not exist")
    number = _number(PURCHASE_ORDER_PREFIX, order.id)
    if order.status not in ("open", "partial"):
        raise Conflict(f"purchase order {number} is {order.status}: nothing more can be "
                       "received")  # fmt: skip
    line = _receiving_line(session, order.id, number, item)
    found = session.get(Item, line.item)
    assert found is not None
    amount = scaled(found, quantity)
    if amount <= 0:
        raise ValidationFailed(f"quantity {quantity} of {line.item} must be positive",
                               details={"quantity": "not positive"})  # fmt: skip
    remaining = line.quantity - line.received
    if amount > remaining:
        raise ValidationFailed(
            f"over-receipt refused: {number} line {line.line} orders "
            f"{_qty(found, line.quantity)} {found.uom} of {line.item}, "
            f"{_qty(found, line.received)} received; {_qty(found, amount)} more would "
            f"be {_qty(found, amount - remaining)} too many",
            details={"quantity": "more than is still open"},
        )
    location = (location or "").strip() or DEFAULT_LOCATION
    place = session.get(Location, location)
    if place is None:
        raise NotFound(f"location {location!r} does not exist")
    if place.kind not in RECEIVING_KINDS:
        raise ValidationFailed(f"goods are received into a {', '.join(RECEIVING_KINDS)} "
                               f"location; {location} is {place.kind}",
                               details={"location": "not a receiving location"})  # fmt: skip
    lot = (lot or "").strip() or None
    if found.tracking == "lot" and lot is None:
        raise ValidationFailed(f"{line.item} is tracked by lot: give the lot of the delivery",
                               details={"lot": "missing"})  # fmt: skip
    if lot is not None and len(lot) > 60:
        raise ValidationFailed("a lot is at most 60 characters", details={"lot": "too long"})
    key = idempotency_key or None
    # An item not tracked by lot keeps one stock for all deliveries: the supplier's batch
    # is kept on the receipt, not on the stock (issues take such stock without a lot).
    movement_id = move_stock(
        session, item=line.item, quantity=_qty(found, amount), reason="receipt", now=now,
        to_location=location, lot=lot if found.tracking == "lot" else None, reference=number,
        moved_by=received_by, idempotency_key=f"{key}:stock" if key else None,
    )  # fmt: skip
    entry_id = _post_receipt(session, found, place, line, amount, number=number, lot=lot,
                             now=now, posted_by=received_by,
                             key=f"{key}:journal" if key else None)  # fmt: skip
    receipt = GoodsReceipt(
        line_id=line.id, item=line.item, quantity=amount, lot=lot or "", location=location,
        received_at=now, received_by=received_by, delivery_note=(delivery_note or None),
        movement_id=movement_id, entry_id=entry_id, idempotency_key=key,
    )  # fmt: skip
    session.add(receipt)
    line.received += amount
    lines = _lines(session, order.id)
    order.status = "received" if all(ln.received >= ln.quantity for ln in lines) else "partial"
    order.updated_at = now
    if line.received >= line.quantity and line.requisition_id is not None:
        requisition = session.get(PurchaseRequisition, line.requisition_id)
        assert requisition is not None
        requisition.status, requisition.updated_at = "received", now
    session.flush()
    return _receipt_view(session, receipt)


def _post_receipt(
    session: Session,
    item: Item,
    place: Location,
    line: PurchaseOrderLine,
    amount: int,
    *,
    number: str,
    lot: str | None,
    now: datetime,
    posted_by: str | None,
    key: str | None,
) -> int | None:
    """Value a receipt: stock at standard cost (the issues to production take it out at
    standard), the supplier's price into goods received not invoiced, the difference to the
    purchase price variance. Without a standard cost, or while the chart has no variance
    account, stock is valued at the order price."""
    # Valued as "everything received so far" minus "what was received before": rounding to
    # the cent then never drifts, and the receipts of a line add up to its amount exactly.
    before, after = line.received, line.received + amount

    def value(unit_cents: int) -> int:
        return _value_cents(item, after, unit_cents) - _value_cents(item, before, unit_cents)

    ordered = value(line.unit_price_cents)
    standard = item.std_material_cents + item.std_labour_cents + item.std_overhead_cents
    variance_account = session.get(Account, PRICE_VARIANCE_ACCOUNT)
    at_standard = standard > 0 and variance_account is not None and variance_account.active
    stock = value(standard) if at_standard else ordered
    memo = f"{_qty(item, amount)} {item.uom} {item.code}" + (f" lot {lot}" if lot else "")
    stock_account = place.account or STOCK_ACCOUNT
    lines: list[dict[str, Any]] = [
        {"account": stock_account, "debit": from_cents(stock), "memo": memo},
        {"account": GRNI_ACCOUNT, "credit": from_cents(ordered), "memo": memo},
    ]
    if ordered > stock:
        lines.append({"account": PRICE_VARIANCE_ACCOUNT, "debit": from_cents(ordered - stock),
                      "memo": "paid above standard"})  # fmt: skip
    elif stock > ordered:
        lines.append({"account": PRICE_VARIANCE_ACCOUNT, "credit": from_cents(stock - ordered),
                      "memo": "paid below standard"})  # fmt: skip
    # A quantity so small that its value rounds to 0.00 moves stock but posts nothing.
    lines = [ln for ln in lines if (ln.get("debit") or ln.get("credit"))]
    if len(lines) < 2:
        return None
    return post_entry(session, lines, description=f"Goods receipt {number} line {line.line}",
                      now=now, reference=number, posted_by=posted_by,
                      idempotency_key=key)  # fmt: skip


def _receipt_view(session: Session, receipt: GoodsReceipt) -> dict[str, Any]:
    line = session.get(PurchaseOrderLine, receipt.line_id)
    item = session.get(Item, receipt.item)
    order = session.get(PurchaseOrder, line.order_id) if line else None
    assert line is not None and item is not None and order is not None
    requisition = (session.get(PurchaseRequisition, line.requisition_id)
                   if line.requisition_id else None)  # fmt: skip
    lots: dict[str, int] = {}
    for lot, quantity in session.execute(
        select(GoodsReceipt.lot, GoodsReceipt.quantity)
        .where(GoodsReceipt.line_id == line.id).order_by(GoodsReceipt.id)
    ):  # fmt: skip
        lots[lot] = lots.get(lot, 0) + quantity
    return {
        "receipt": receipt.id, "purchase_order": _number(PURCHASE_ORDER_PREFIX, order.id),
        "line": line.line, "item": receipt.item, "uom": item.uom,
        "quantity": _qty(item, receipt.quantity), "lot": receipt.lot or None,
        "location": receipt.location, "ordered": _qty(item, line.quantity),
        "received": _qty(item, line.received),
        "remaining": _qty(item, line.quantity - line.received),
        "complete": line.received >= line.quantity, "order_status": order.status,
        "requisition": _number(REQUISITION_PREFIX, requisition.id) if requisition else None,
        "order_number": requisition.order_number if requisition else None,
        "lots": [{"lot": lot or None, "quantity": _qty(item, q)} for lot, q in lots.items()],
        "entry_id": receipt.entry_id, "movement_id": receipt.movement_id,
    }  # fmt: skip


# ------------------------------------------------------------------ helpers


def _number(prefix: str, row_id: int) -> str:
    return f"{prefix}-{row_id:05d}"


def _parse_number(number: Any, prefix: str, what: str) -> int:
    text = str(number or "").strip()
    head, _, digits = text.partition("-")
    if head.upper() != prefix or not digits.isdigit() or len(digits) > 12:
        raise NotFound(f"{what} {text!r} does not exist (numbers look like {prefix}-00001)")
    return int(digits)


def _requisition(session: Session, number: str) -> PurchaseRequisition:
    found = session.get(PurchaseRequisition,
                        _parse_number(number, REQUISITION_PREFIX, "requisition"))  # fmt: skip
    if found is None:
        raise NotFound(f"requisition {number!r} does not exist")
    return found


def _order_id(number: str) -> int:
    return _parse_number(number, PURCHASE_ORDER_PREFIX, "purchase order")


def _lines(session: Session, order_id: int) -> list[PurchaseOrderLine]:
    return list(session.scalars(select(PurchaseOrderLine).where(
        PurchaseOrderLine.order_id == order_id).order_by(PurchaseOrderLine.line)))  # fmt: skip


def _receiving_line(
    session: Session, order_id: int, number: str, item: str | None
) -> PurchaseOrderLine:
    lines = _lines(session, order_id)
    if item:
        matching = [ln for ln in lines if ln.item == item and ln.received < ln.quantity]
        matching = matching or [ln for ln in lines if ln.item == item]
        if not matching:
            raise ValidationFailed(f"purchase order {number} does not order {item} (it orders "
                                   f"{', '.join(sorted({ln.item for ln in lines}))})",
                                   details={"item": "not on the order"})  # fmt: skip
        return matching[0]
    if len(lines) != 1:
        raise ValidationFailed(f"purchase order {number} has {len(lines)} lines: say which "
                               "item is received", details={"item": "missing"})  # fmt: skip
    return lines[0]


def _levels(session: Session, requisition: PurchaseRequisition) -> list[PurchaseApproval]:
    return list(session.scalars(select(PurchaseApproval).where(
        PurchaseApproval.requisition_id == requisition.id)
        .order_by(PurchaseApproval.level)))  # fmt: skip


def _level(session: Session, requisition: PurchaseRequisition, level: Any) -> PurchaseApproval:
    number = _number(REQUISITION_PREFIX, requisition.id)
    row = session.scalar(select(PurchaseApproval).where(
        PurchaseApproval.requisition_id == requisition.id,
        PurchaseApproval.level == level))  # fmt: skip
    if row is None:
        route = requisition.approval_roles or "not routed yet"
        raise NotFound(f"level {level} of requisition {number} is not open (route: {route})")
    return row


def _roles(requisition: PurchaseRequisition) -> list[str]:
    return requisition.approval_roles.split(",") if requisition.approval_roles else []


def _open_level(
    session: Session, requisition: PurchaseRequisition, level: int, now: datetime
) -> None:
    role = _roles(requisition)[level - 1]
    deadlines = dict(part.split("=", 1) for part in
                     (requisition.approval_deadlines or "").split(",") if part)  # fmt: skip
    due = None
    if role in deadlines:
        due = now + _duration(deadlines[role], f"deadline of {role}", now)
    session.add(PurchaseApproval(requisition_id=requisition.id, level=level, role=role,
                                 requested_at=now, due_at=due, escalated=False))  # fmt: skip
    session.flush()


def _duration(value: Any, what: str, start: datetime) -> timedelta:
    """An ISO 8601 duration (PT4H, P1D), read by the parser the engine's timers use, so that
    a level's due time is the moment its timeout fires."""
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    text = str(value or "").strip()
    try:
        if not text.upper().startswith("P"):
            raise ValueError(text)
        parsed = TimerEventDefinition.parse_iso_duration(text)
        return TimerEventDefinition.get_timedelta_from_start(parsed, start)
    except Exception:  # noqa: BLE001 - the parser raises a bare Exception
        raise ValidationFailed(f"{what}: {value!r} is not an ISO 8601 duration such as PT4H",
                               details={"deadlines": "not a duration"}) from None  # fmt: skip


def _date(value: Any, what: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise ValidationFailed(f"{what} {value!r} is not a date (YYYY-MM-DD)",
                               details={what: "not a date"}) from None  # fmt: skip


def _qty(item: Item, quantity: int) -> Decimal:
    """A scaled quantity in the item's unit, with all its decimals (600.500 kg, not 600.5)."""
    return unscaled(item, quantity).quantize(Decimal(1).scaleb(-item.decimals))


def _value_cents(item: Item, quantity: int, unit_cents: int) -> int:
    """Scaled quantity x price per unit, rounded half up to the cent."""
    exact = Decimal(quantity) * unit_cents / (Decimal(10) ** item.decimals)
    return int(exact.quantize(Decimal(1), ROUND_HALF_UP))
