"""The plant's reports: inventory by location and lot, lot genealogy, production order cost,
trial balance and journal.

Read-only queries: each takes the caller's Session and never writes or commits. Quantities
leave as Decimal in the item's unit (with the item's `decimals`, so a page can show them as
the unit is counted), money as Decimal with two decimals (the ledger stores cents).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session

from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.execution import genealogy, order_costs
from taktflow.mfg.ledger import from_cents, trial_balance
from taktflow.mfg.models import (
    ORDER_TRANSITIONS,
    Account,
    Item,
    JournalEntry,
    JournalLine,
    Location,
    OrderOperation,
    ProductionOrder,
    StockMovement,
)
from taktflow.mfg.stock import unscaled

#: Journal entries per page.
JOURNAL_PAGE_SIZE = 25
#: Production orders per page of the order list.
ORDER_PAGE_SIZE = 50
#: Order states, in the order an order goes through them (the order list filters by them).
ORDER_STATUSES = tuple(ORDER_TRANSITIONS)
#: The cost elements of an order, as order_costs names them.
COST_ELEMENTS = ("material", "labour", "overhead")


# ---------------------------------------------------------------------- inventory
def inventory(
    session: Session, *, item: str | None = None, location: str | None = None
) -> dict[str, Any]:
    """Stock on hand by item, location and lot, valued at standard cost (material + labour +
    overhead per unit, rounded half up to the cent per row) — in a scrap location at the
    item's scrap value, as the postings value scrap — optionally of one item and/or one
    location. Returns {rows, locations (totals per location: rows, value), value (all),
    items and all_locations (the filter choices)}. Rows are sorted by location, item, lot."""
    signed = union_all(
        select(
            StockMovement.item.label("item"),
            StockMovement.to_location.label("location"),
            StockMovement.lot.label("lot"),
            StockMovement.quantity.label("quantity"),
        ).where(StockMovement.to_location.is_not(None)),
        select(
            StockMovement.item,
            StockMovement.from_location,
            StockMovement.lot,
            (literal(0) - StockMovement.quantity),
        ).where(StockMovement.from_location.is_not(None)),
    ).subquery()
    query = select(signed.c.item, signed.c.location, signed.c.lot, func.sum(signed.c.quantity))
    if item:
        query = query.where(signed.c.item == item)
    if location:
        query = query.where(signed.c.location == location)
    query = query.group_by(signed.c.item, signed.c.location, signed.c.lot).having(
        func.sum(signed.c.quantity) != 0
    )
    items = {i.code: i for i in session.scalars(select(Item).order_by(Item.code))}
    locations = {loc.code: loc for loc in session.scalars(select(Location).order_by(Location.code))}
    rows = []
    for code, where, lot, quantity in session.execute(query):
        found = items[code]
        scrap = where in locations and locations[where].kind == "scrap"
        unit_cents = found.scrap_value_cents if scrap else _standard_cents(found)
        value_cents = _value_cents(found, int(quantity), unit_cents)
        rows.append(
            {
                "item": code,
                "name": found.name,
                "type": found.type,
                "location": where,
                "location_name": locations[where].name if where in locations else where,
                "lot": lot or None,
                "quantity": unscaled(found, int(quantity)),
                "decimals": found.decimals,
                "uom": found.uom,
                "unit_cost": from_cents(unit_cents),
                "valued_as": "scrap value" if scrap else "standard cost",
                "value": from_cents(value_cents),
                "_cents": value_cents,
            }
        )
    rows.sort(key=lambda r: (r["location"], r["item"], r["lot"] or ""))
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        total = totals.setdefault(
            row["location"],
            {"location": row["location"], "name": row["location_name"], "rows": 0, "_cents": 0},
        )
        total["rows"] += 1
        total["_cents"] += row.pop("_cents")
    per_location = []
    for total in totals.values():
        total["value"] = from_cents(total.pop("_cents"))
        per_location.append(total)
    return {
        "rows": rows,
        "locations": per_location,
        "value": sum((t["value"] for t in per_location), Decimal("0.00")),
        "items": [{"code": i.code, "name": i.name} for i in items.values()],
        "all_locations": [{"code": loc.code, "name": loc.name} for loc in locations.values()],
    }


# ---------------------------------------------------------------------- genealogy
def lot_trace(session: Session, item: str, lot: str) -> dict[str, Any]:
    """Where a lot came from and where it went: the backward trace (the input lots that went
    into it, level by level), the forward trace (the output lots it went into), the orders
    that made it, and where it is in stock now. `known` is false when nothing in the plant
    (no movement, no genealogy link, no order) names this lot of this item."""
    found = session.get(Item, item)
    if found is None:
        raise NotFound(f"item {item!r} does not exist")
    lot = lot.strip()
    if not lot:
        raise ValidationFailed("give the lot to trace", details={"lot": "missing"})
    decimals = dict(session.execute(select(Item.code, Item.decimals)).all())
    # Each link's quantity is in its input item's unit: the page shows it with its decimals.
    backward = [r | {"decimals": decimals[r["input_item"]]}
                for r in genealogy(session, item, lot, direction="backward")]  # fmt: skip
    forward = [r | {"decimals": decimals[r["input_item"]]}
               for r in genealogy(session, item, lot, direction="forward")]  # fmt: skip
    made_by = [
        {"number": o.number, "status": o.status, "quantity": unscaled(found, o.quantity),
         "received": unscaled(found, o.received), "uom": found.uom}
        for o in session.scalars(
            select(ProductionOrder)
            .where(ProductionOrder.item == item, ProductionOrder.lot == lot)
            .order_by(ProductionOrder.number)
        )
    ]  # fmt: skip
    stock = [row for row in inventory(session, item=item)["rows"] if row["lot"] == lot]
    moved = session.scalar(
        select(func.count())
        .select_from(StockMovement)
        .where(StockMovement.item == item, StockMovement.lot == lot)
    )
    return {
        "item": item,
        "name": found.name,
        "uom": found.uom,
        "decimals": found.decimals,
        "lot": lot,
        "backward": backward,
        "forward": forward,
        "made_by": made_by,
        "stock": stock,
        "movements": int(moved or 0),
        "known": bool(backward or forward or made_by or moved),
    }


def known_lots(session: Session, item: str | None = None, limit: int = 200) -> list[str]:
    """Lots that stock movements name (of one item, or of all), newest first: the choices a
    lot search offers."""
    query = select(StockMovement.lot, func.max(StockMovement.id).label("last")).where(
        StockMovement.lot != ""
    )
    if item:
        query = query.where(StockMovement.item == item)
    query = query.group_by(StockMovement.lot).order_by(func.max(StockMovement.id).desc())
    return [lot for lot, _ in session.execute(query.limit(limit))]


def lot_items(session: Session) -> list[dict[str, str]]:
    """The items whose stock is tracked by lot (the genealogy search picks one)."""
    return [
        {"code": i.code, "name": i.name}
        for i in session.scalars(select(Item).where(Item.tracking == "lot").order_by(Item.code))
    ]


# ---------------------------------------------------------------------- production orders
def order_list(
    session: Session, *, status: str | None = None, item: str | None = None, page: int = 1
) -> dict[str, Any]:
    """Production orders, newest first (by creation), optionally of one status and/or item,
    ORDER_PAGE_SIZE to a page: number, item, status, quantity, received, due date, lot."""
    if status is not None and status not in ORDER_STATUSES:
        raise ValidationFailed(
            f"status {status!r} is not one of {', '.join(ORDER_STATUSES)}",
            details={"status": "unknown"},
        )
    query = select(ProductionOrder)
    if status:
        query = query.where(ProductionOrder.status == status)
    if item:
        query = query.where(ProductionOrder.item == item)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    pages = max(1, -(-total // ORDER_PAGE_SIZE))
    page = min(max(1, page), pages)
    items = {i.code: i for i in session.scalars(select(Item))}
    rows = []
    for order in session.scalars(
        query.order_by(ProductionOrder.created_at.desc(), ProductionOrder.number.desc())
        .offset((page - 1) * ORDER_PAGE_SIZE)
        .limit(ORDER_PAGE_SIZE)
    ):
        product = items[order.item]
        rows.append(
            {
                "number": order.number,
                "item": order.item,
                "name": product.name,
                "status": order.status,
                "quantity": unscaled(product, order.quantity),
                "received": unscaled(product, order.received),
                "decimals": product.decimals,
                "uom": product.uom,
                "lot": order.lot,
                "due_at": order.due_at,
                "created_at": order.created_at,
            }
        )
    made = sorted({o for o in session.scalars(select(ProductionOrder.item).distinct())})
    return {
        "orders": rows,
        "total": total,
        "page": page,
        "pages": pages,
        "statuses": list(ORDER_STATUSES),
        "items": [{"code": code, "name": items[code].name} for code in made],
    }


def order_cost_report(session: Session, number: str) -> dict[str, Any]:
    """One production order as its cost report shows it: the order, its operations (planned,
    good, scrap, rework, machine-counted, machine, operator, labour and machine hours), the
    stock movements made for it, its cost standard against actual with the variances
    (execution.order_costs, as money), and its journal entries with their lines."""
    order = session.get(ProductionOrder, number)
    if order is None:
        raise NotFound(f"production order {number!r} does not exist")
    items = {i.code: i for i in session.scalars(select(Item))}
    product = items[order.item]
    operations = [
        {
            "sequence": op.sequence,
            "name": op.name,
            "work_center": op.work_center,
            "status": op.status,
            "planned": unscaled(product, op.planned),
            "good": unscaled(product, op.good),
            "scrap": unscaled(product, op.scrap),
            "rework": unscaled(product, op.rework),
            "counted_good": unscaled(product, op.counted_good),
            "counted_reject": unscaled(product, op.counted_reject),
            "scrap_reason": op.scrap_reason,
            "machine": op.machine,
            "operator": op.operator,
            "labour_hours": _hours(op.labour_s),
            "machine_hours": _hours(op.machine_s),
            "started_at": op.started_at,
            "completed_at": op.completed_at,
        }
        for op in session.scalars(
            select(OrderOperation)
            .where(OrderOperation.order_number == number)
            .order_by(OrderOperation.sequence)
        )
    ]
    movements = []
    for move in session.scalars(
        select(StockMovement).where(StockMovement.reference == number).order_by(StockMovement.id)
    ):
        moved = items[move.item]
        movements.append(
            {
                "at": move.at,
                "item": move.item,
                "name": moved.name,
                "lot": move.lot or None,
                "quantity": unscaled(moved, move.quantity),
                "decimals": moved.decimals,
                "uom": moved.uom,
                "from_location": move.from_location,
                "to_location": move.to_location,
                "reason": move.reason,
            }
        )
    costs = order_costs(session, number)
    elements = []
    for element in COST_ELEMENTS:
        elements.append(
            {
                "element": element,
                "standard": from_cents(costs["standard_cents"][element]),
                "actual": from_cents(costs["actual_cents"][element]),
                "variance": from_cents(costs["variance_cents"][element]),
            }
        )
    cost = {
        "elements": elements,
        "standard": from_cents(sum(costs["standard_cents"].values())),
        "actual": from_cents(sum(costs["actual_cents"].values())),
        "variance": from_cents(sum(costs["variance_cents"].values())),
        "received_value": from_cents(costs["received_cents"]),
        "scrap_recovered": from_cents(costs["scrap_recovered_cents"]),
        "wip": from_cents(costs["wip_cents"]),
    }
    return {
        "order": {
            "number": order.number,
            "item": order.item,
            "name": product.name,
            "status": order.status,
            "quantity": unscaled(product, order.quantity),
            "received": unscaled(product, order.received),
            "decimals": product.decimals,
            "uom": product.uom,
            "lot": order.lot,
            "tracking": product.tracking,
            "bom_version": order.bom_version,
            "routing_version": order.routing_version,
            "erp_reference": order.erp_reference,
            "due_at": order.due_at,
            "created_at": order.created_at,
        },
        "operations": operations,
        "movements": movements,
        "cost": cost,
        "entries": journal(session, reference=number, page_size=None)["entries"],
    }


# ---------------------------------------------------------------------- ledger
def trial_balance_report(session: Session) -> dict[str, Any]:
    """ledger.trial_balance (every account with its debit and credit totals and balance, and
    whether the totals agree) plus the number of journal entries posted."""
    report = trial_balance(session)
    report["entries"] = int(session.scalar(select(func.count()).select_from(JournalEntry)) or 0)
    return report


def journal(
    session: Session,
    *,
    reference: str | None = None,
    account: str | None = None,
    page: int = 1,
    page_size: int | None = JOURNAL_PAGE_SIZE,
) -> dict[str, Any]:
    """Journal entries newest first, each with its lines (account and its name, debit,
    credit, memo), the entry that reverses it if any, and its total. Filtered by reference
    (exact, e.g. an order number) and/or by an account one of its lines posts to; paged
    (`page_size` None: all). Returns {entries, total, page, pages, accounts}."""
    reference = (reference or "").strip() or None
    account = (account or "").strip() or None
    query = select(JournalEntry)
    if reference is not None:
        query = query.where(JournalEntry.reference == reference)
    if account is not None:
        query = query.where(
            JournalEntry.id.in_(select(JournalLine.entry_id).where(JournalLine.account == account))
        )
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    query = query.order_by(JournalEntry.posted_at.desc(), JournalEntry.id.desc())
    if page_size is None:
        pages, page = 1, 1
    else:
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        query = query.offset((page - 1) * page_size).limit(page_size)
    entries = list(session.scalars(query))
    ids = [e.id for e in entries]
    accounts = {a.code: a for a in session.scalars(select(Account).order_by(Account.code))}
    lines: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    reversed_by: dict[int, int] = {}
    if ids:
        for line in session.scalars(
            select(JournalLine).where(JournalLine.entry_id.in_(ids)).order_by(JournalLine.id)
        ):
            known = accounts.get(line.account)
            lines[line.entry_id].append(
                {
                    "account": line.account,
                    "account_name": known.name if known else line.account,
                    "debit": from_cents(line.debit_cents) if line.debit_cents else None,
                    "credit": from_cents(line.credit_cents) if line.credit_cents else None,
                    "memo": line.memo,
                }
            )
        reversed_by = dict(
            session.execute(
                select(JournalEntry.reverses, JournalEntry.id).where(JournalEntry.reverses.in_(ids))
            ).all()
        )
    return {
        "entries": [
            {
                "id": e.id,
                "posted_at": e.posted_at,
                "description": e.description,
                "reference": e.reference,
                "posted_by": e.posted_by,
                "instance_id": e.instance_id,
                "reverses": e.reverses,
                "reversed_by": reversed_by.get(e.id),
                "total": sum(
                    (line["debit"] or Decimal(0) for line in lines[e.id]), Decimal("0.00")
                ),
                "lines": lines[e.id],
            }
            for e in entries
        ],
        "total": total,
        "page": page,
        "pages": pages,
        "reference": reference,
        "account": account,
        "accounts": [{"code": a.code, "name": a.name} for a in accounts.values()],
    }


# ---------------------------------------------------------------------- helpers
def _standard_cents(item: Item) -> int:
    return item.std_material_cents + item.std_labour_cents + item.std_overhead_cents


def _value_cents(item: Item, amount: int, cents_per_unit: int) -> int:
    """Cents for a scaled quantity at a price per unit, rounded half up to the cent (as the
    postings value it)."""
    units = Decimal(amount) / Decimal(10) ** item.decimals
    return int((units * cents_per_unit).to_integral_value(ROUND_HALF_UP))


def _hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / 3600).quantize(Decimal("0.01"), ROUND_HALF_UP)


def overview(session: Session) -> dict[str, Any]:
    """The key figure of each report, for the reports' start page: stock value and rows,
    production orders per state, journal entries and whether the trial balance agrees."""
    stock = inventory(session)
    counts = dict(
        session.execute(
            select(ProductionOrder.status, func.count()).group_by(ProductionOrder.status)
        ).all()
    )
    ledger = trial_balance_report(session)
    return {
        "stock_value": stock["value"],
        "stock_rows": len(stock["rows"]),
        "stock_locations": len(stock["locations"]),
        "orders": {status: int(counts.get(status, 0)) for status in ORDER_STATUSES},
        "order_count": sum(int(n) for n in counts.values()),
        "entries": ledger["entries"],
        "accounts": len(ledger["accounts"]),
        "balanced": ledger["balanced"],
        "debit": ledger["debit"],
        "lots": int(
            session.scalar(
                select(func.count()).select_from(
                    select(StockMovement.item, StockMovement.lot)
                    .where(StockMovement.lot != "")
                    .distinct()
                    .subquery()
                )
            )
            or 0
        ),
    }
