"""Sales orders: what customers ordered of the plant's finished items, and how far the
production orders made for them have got.

A sales order is what a production order's `erp_reference` points at: the ERP names the
order line it plans for as `<sales order>/<line>` (SO-1001/1), or the sales order itself
(SO-1001). Nothing else links the two, so a production order created by an ERP, by the order
release workflow or by hand is counted the same way. For that reason a sales order number
may not contain "/": the part of a reference before its first "/" names the sales order.

As in the other mfg modules, functions take the caller's Session and never commit.
Quantities are stored scaled by 10 ** item.decimals (mfg.stock.scaled) and leave as Decimal
in the item's unit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from taktflow.db import Base
from taktflow.engine.models import UTCDateTime
from taktflow.errors import ValidationFailed
from taktflow.mfg.models import Item, ProductionOrder
from taktflow.mfg.seed_files import read_list
from taktflow.mfg.stock import scaled, unscaled

SALES_ORDERS_FILE = "sales_orders.yaml"
#: A sales order is open until it is closed (shipped, or given up); closing is recorded in
#: the sales orders file (or by the ERP that owns it), not derived from the production.
SALES_ORDER_STATUSES = ("open", "closed")
#: Production order states whose unreceived quantity is still being made. A completed or
#: closed order makes nothing more (what it did not receive was scrapped); a cancelled one
#: never will.
ACTIVE_ORDER_STATUSES = ("planned", "released", "running", "held")
FIELDS = ("number", "customer", "item", "quantity", "due_on", "status", "note")
REQUIRED = FIELDS[:5]
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SalesOrder(Base):
    """A customer's order for a quantity of one finished item, due on a day."""

    __tablename__ = "mfg_sales_order"

    number: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer: Mapped[str] = mapped_column(String(200))
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"), index=True)
    #: Scaled by 10 ** item.decimals, like ProductionOrder.quantity.
    quantity: Mapped[int] = mapped_column(BigInteger)
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)


# ------------------------------------------------------------------ loading


@dataclass(frozen=True)
class _Entry:
    """One checked entry of a sales orders file (quantity scaled)."""

    number: str
    customer: str
    item: str
    quantity: int
    due_on: date
    status: str | None
    note: str | None


def load_sales_orders(session: Session, path: str | Path, *, now: datetime | None = None) -> int:
    """Add or update the sales orders of a sales orders file: `sales_orders: [{number,
    customer, item, quantity, due_on, status?, note?}]`; the number of sales orders it holds.

    Loading again updates what the file names and adds what is new, so `taktflow seed` can
    run on every start. A status left out keeps the stored one (a new order is open): an
    order closed since the last load is not reopened by the demo file. Sales orders are
    never deleted (production orders' references name them). Every entry is checked before
    anything is written; a bad one is refused naming the file, the line and the field, e.g.
    `sales_orders.yaml:28: sales order 4 (SO-1004): item: BOLT-M8 is raw, not a finished item
    (only finished items are sold)`.
    `now` is the creation time of new orders (default: the current time)."""
    path = Path(path)
    entries = read_list(path, "sales orders", "sales_orders", "a list of sales orders")
    checked: list[_Entry] = []
    seen: set[str] = set()
    for index, raw in enumerate(entries, 1):
        line = _line_of(entries, index - 1)
        entry = _check_entry(session, raw, path, index, line)
        if entry.number in seen:
            at = _field_line(raw, "number") or line
            raise ValidationFailed(
                f"{path}:{at}: sales order {index} ({entry.number}): "
                f"number: {entry.number} is listed twice",
                details={"number": "listed twice"},
            )
        seen.add(entry.number)
        checked.append(entry)
    created_at = now or datetime.now(UTC)
    for entry in checked:
        order = session.get(SalesOrder, entry.number)
        if order is None:
            order = SalesOrder(number=entry.number, status="open", created_at=created_at)
            session.add(order)
        order.customer, order.item, order.quantity = entry.customer, entry.item, entry.quantity
        order.due_on, order.note = entry.due_on, entry.note
        if entry.status is not None:
            order.status = entry.status
    session.flush()
    return len(checked)


def seed_sales(session: Session, folder: str | Path) -> dict[str, Any]:
    """Load `folder`'s sales orders file (idempotent); counts of what was loaded. A plant
    without the file simply has no sales orders."""
    path = Path(folder) / SALES_ORDERS_FILE
    if not path.exists():
        return {"sales orders": 0}
    return {"sales orders": load_sales_orders(session, path)}


def _check_entry(session: Session, raw: Any, path: Path, index: int, line: int | None) -> _Entry:
    """One entry of the file, checked; ValidationFailed naming file:line, entry and field."""
    label = f"sales order {index}"
    if not isinstance(raw, Mapping):
        at = f"{path}:{line}" if line else f"{path}"
        raise ValidationFailed(f"{at}: {label}: expected a mapping with {', '.join(FIELDS)}")
    number = raw.get("number")
    label += f" ({number})" if isinstance(number, str | int) and number != "" else " (?)"

    def refuse(field: str, problem: str, reason: str) -> ValidationFailed:
        at = _field_line(raw, field) or line
        where = f"{path}:{at}" if at else f"{path}"
        return ValidationFailed(f"{where}: {label}: {field}: {problem}", details={field: reason})

    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise refuse(unknown[0], f"unknown key (expected {', '.join(FIELDS)})", "unknown key")
    for field in REQUIRED:
        if raw.get(field) in (None, ""):
            raise refuse(field, "is missing", "missing")
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    if not isinstance(number, str) or not number.strip() or len(number.strip()) > 40:
        raise refuse("number", "must be text of 1 to 40 characters", "invalid")
    number = number.strip()
    if "/" in number:
        raise refuse("number", f"{number!r} may not contain '/' (a production order's "
                     "erp_reference names the sales order before its first '/')",
                     "contains /")  # fmt: skip
    customer = raw.get("customer")
    if not isinstance(customer, str) or not customer.strip() or len(customer.strip()) > 200:
        raise refuse("customer", "must be text of 1 to 200 characters", "invalid")
    code = raw.get("item")
    item = session.get(Item, code) if isinstance(code, str) else None
    if item is None:
        raise refuse("item", f"{code!r} does not exist (add it to master_data.yaml first)",
                     "unknown item")  # fmt: skip
    if item.type != "finished":
        raise refuse("item", f"{item.code} is {item.type}, not a finished item (only finished "
                     "items are sold)", "not finished")  # fmt: skip
    quantity = raw.get("quantity")
    try:
        amount = scaled(item, quantity)
    except ValidationFailed as exc:
        problem = exc.message.removeprefix("quantity ")
        raise refuse("quantity", problem, "invalid") from None
    if amount <= 0:
        raise refuse("quantity", f"{quantity} must be positive", "not positive")
    due = raw.get("due_on")
    try:
        if not isinstance(due, str) or not _ISO_DATE.match(due.strip()):
            raise ValueError
        due_on = date.fromisoformat(due.strip())
    except ValueError:
        raise refuse("due_on", f"{due!r} is not a date (YYYY-MM-DD)", "not a date") from None
    status = raw.get("status")
    if status is not None and status not in SALES_ORDER_STATUSES:
        raise refuse("status", f"{status!r} is not one of {', '.join(SALES_ORDER_STATUSES)}",
                     "unknown status")  # fmt: skip
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise refuse("note", "must be text", "invalid")
    return _Entry(number=number, customer=customer.strip(), item=item.code, quantity=amount,
                  due_on=due_on, status=status, note=(note or "").strip() or None)  # fmt: skip


def _line_of(entries: list, index: int) -> int | None:
    """The line of a list item (the loader's Seq remembers it)."""
    positions = getattr(entries, "item_pos", None)
    if positions and index < len(positions):
        return positions[index].line
    return getattr(getattr(entries[index], "pos", None), "line", None)


def _field_line(raw: Any, field: str) -> int | None:
    """The line of a field's value, or of its key for a key with no value; None outside
    the loader's positioned mappings."""
    for positions in ("value_pos", "key_pos"):
        pos = getattr(raw, positions, {}).get(field)
        if pos is not None:
            return pos.line
    return None


# ------------------------------------------------------------------ views


def sales_order_views(session: Session, *, today: date | None = None) -> list[dict[str, Any]]:
    """Every sales order, earliest due first, with its production orders and quantities in
    the item's unit:

    - `ordered`: what the customer ordered;
    - `received`: good output of its production orders received into stock (any state);
    - `in_production`: what its planned, released, running and held orders still have to
      make (their quantity less what they received);
    - `open`: ordered less received (what the customer still waits for);
    - `unplanned`: what no production order covers yet (open less in production): a
      completed order that scrapped part of its quantity leaves this much to plan again.

    `progress` is one of closed, received, in production, planned, not planned, and
    `progress_text` says it in words; with `today`, `late` marks an open order whose due date
    has passed with something not received."""
    rows = session.execute(
        select(SalesOrder, Item)
        .join(Item, Item.code == SalesOrder.item)
        .order_by(SalesOrder.due_on, SalesOrder.number)
    ).all()
    linked = _production_orders(session, {order.number for order, _ in rows})
    views = []
    for order, item in rows:
        productions = linked.get(order.number, [])
        counted = [p for p in productions if p.item == order.item]
        received = sum(p.received for p in counted)
        in_production = sum(
            max(p.quantity - p.received, 0) for p in counted if p.status in ACTIVE_ORDER_STATUSES
        )
        still_open = max(order.quantity - received, 0)
        unplanned = max(still_open - in_production, 0)
        progress, text = _progress(order, item, counted, received, still_open, unplanned)
        views.append({
            "number": order.number, "customer": order.customer, "item": order.item,
            "name": item.name, "uom": item.uom, "decimals": item.decimals,
            "status": order.status, "due_on": order.due_on, "note": order.note,
            "created_at": order.created_at,
            "ordered": _qty(item, order.quantity), "in_production": _qty(item, in_production),
            "received": _qty(item, received), "open": _qty(item, still_open),
            "unplanned": _qty(item, unplanned), "progress": progress, "progress_text": text,
            "late": bool(today and order.status == "open" and still_open
                         and order.due_on < today),
            "production_orders": [_production_view(session, p, order.item) for p in productions],
        })  # fmt: skip
    return views


def sales_summary(session: Session) -> dict[str, int]:
    """Counts for the reports' start page: open and all sales orders."""
    counts = dict(session.execute(
        select(SalesOrder.status, func.count()).group_by(SalesOrder.status)).all())  # fmt: skip
    return {"open": int(counts.get("open", 0)), "total": sum(int(n) for n in counts.values())}


def _production_orders(session: Session, numbers: set[str]) -> dict[str, list[ProductionOrder]]:
    """The production orders whose erp_reference is a sales order number, or starts with one
    followed by "/", by sales order number; oldest first."""
    if not numbers:
        return {}
    found: dict[str, list[ProductionOrder]] = {}
    orders = session.scalars(
        select(ProductionOrder)
        .where(ProductionOrder.erp_reference.is_not(None))
        .order_by(ProductionOrder.created_at, ProductionOrder.number)
    )
    for order in orders:
        number = (order.erp_reference or "").split("/", 1)[0]
        if number in numbers:
            found.setdefault(number, []).append(order)
    return found


def _progress(
    order: SalesOrder,
    item: Item,
    productions: list[ProductionOrder],
    received: int,
    still_open: int,
    unplanned: int,
) -> tuple[str, str]:
    """A short state and a sentence for the report."""
    if order.status == "closed":
        return "closed", "closed"
    if not still_open:
        return "received", "received in full: ready to ship"
    active = [p for p in productions if p.status in ACTIVE_ORDER_STATUSES]
    if not active and not received:
        return "not planned", "no production order yet"
    rest = f"; {_qty(item, unplanned)} {item.uom} not planned yet" if unplanned else ""
    if received or any(p.status != "planned" for p in active):
        return "in production", (f"{_qty(item, received)} of {_qty(item, order.quantity)} "
                                 f"{item.uom} received{rest}")  # fmt: skip
    return "planned", f"production planned, not released yet{rest}"


def _production_view(session: Session, order: ProductionOrder, sold: str) -> dict[str, Any]:
    """A linked production order. `counted` is false for an order of another item than the
    sales order's (a sub-assembly that carries the same reference, or a wrong one): it is
    listed, but its quantities are not added to the sales order's."""
    item = session.get(Item, order.item)
    assert item is not None
    return {
        "number": order.number, "erp_reference": order.erp_reference, "status": order.status,
        "item": order.item, "uom": item.uom, "decimals": item.decimals,
        "counted": order.item == sold, "quantity": _qty(item, order.quantity),
        "received": _qty(item, order.received), "due_at": order.due_at,
    }  # fmt: skip


def _qty(item: Item, quantity: int) -> Decimal:
    """A scaled quantity in the item's unit, with all its decimals."""
    return unscaled(item, quantity).quantize(Decimal(1).scaleb(-item.decimals))
