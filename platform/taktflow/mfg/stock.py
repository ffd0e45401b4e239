"""Items, locations and stock: every movement recorded, stock on hand as their sum.

As in the ledger, functions take the caller's Session and never commit. Quantities enter and
leave as Decimal in the item's unit of measure and are stored scaled to integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.ledger import to_cents
from taktflow.mfg.models import (
    ITEM_TYPES,
    LOCATION_KINDS,
    TRACKING,
    Account,
    Item,
    Location,
    StockMovement,
)

#: Movements that bring stock in from outside (no source) or take it out (no destination).
INBOUND = ("receipt", "produce", "adjust_in")
OUTBOUND = ("consume", "scrap", "ship", "adjust_out")
TRANSFER = ("transfer", "issue", "quarantine", "release")
REASONS = INBOUND + OUTBOUND + TRANSFER


def scaled(item: Item, value: Any, what: str = "quantity") -> int:
    """`value` in the item's unit as a scaled integer; ValidationFailed naming the problem."""
    try:
        if isinstance(value, bool) or value is None:
            raise InvalidOperation
        amount = Decimal(str(value))
        if not amount.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise ValidationFailed(f"{what} {value!r} is not a number",
                               details={what: "not a number"}) from None  # fmt: skip
    factor = Decimal(10) ** item.decimals
    if amount * factor != (amount * factor).to_integral_value():
        raise ValidationFailed(
            f"{what} {value} of {item.code}: {item.uom} takes at most {item.decimals} decimals",
            details={what: "too many decimals"},
        )
    return int(amount * factor)


def unscaled(item: Item, quantity: int) -> Decimal:
    return Decimal(quantity) / (Decimal(10) ** item.decimals)


def load_master_data(session: Session, path: str | Path) -> dict[str, int]:
    """Add or update the items and locations of a master-data file, and add its BOM versions:
    `items: [{code, name, type, uom, decimals, tracking, standard_cost: {material, labour,
    overhead, scrap_value}}]`, `locations: [{code, name, kind, account}]`,
    `boms: [{item, version, lines}]` (see mfg.bom.load_boms). Counts of each."""
    from taktflow.yamlflow.loader import YamlProblem, load

    path = Path(path)
    try:
        doc = load(path.read_text(encoding="utf-8"), kind="master data")
    except YamlProblem as exc:
        raise ValidationFailed(f"{path}: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ValidationFailed(f"{path}: expected `items:` and `locations:`")
    for number, raw in enumerate(doc.get("locations") or [], 1):
        where = f"{path}: location {number}"
        code = str(raw.get("code", "")) if isinstance(raw, Mapping) else ""
        if not code or raw.get("kind") not in LOCATION_KINDS:
            raise ValidationFailed(f"{where} ({code or '?'}): needs a code and a kind, one of "
                                   f"{', '.join(LOCATION_KINDS)}")  # fmt: skip
        account = raw.get("account")
        if account is not None and session.get(Account, str(account)) is None:
            raise ValidationFailed(f"{where} ({code}): account {account!r} does not exist "
                                   "(load the chart of accounts first)")  # fmt: skip
        location = session.get(Location, code) or Location(code=code)
        location.name = str(raw.get("name") or code)
        location.kind = raw["kind"]
        location.account = None if account is None else str(account)
        session.add(location)
    for number, raw in enumerate(doc.get("items") or [], 1):
        where = f"{path}: item {number}"
        code = str(raw.get("code", "")) if isinstance(raw, Mapping) else ""
        problems = []
        if not code:
            problems.append("code is missing")
        if raw.get("type") not in ITEM_TYPES:
            problems.append(f"type must be one of {', '.join(ITEM_TYPES)}")
        if not raw.get("uom"):
            problems.append("uom (unit of measure) is missing")
        decimals = raw.get("decimals", 0)
        if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 6:
            problems.append("decimals must be 0 to 6")
        if raw.get("tracking", "none") not in TRACKING:
            problems.append(f"tracking must be one of {', '.join(TRACKING)}")
        cost = raw.get("standard_cost") or {}
        cents = {}
        for part in ("material", "labour", "overhead", "scrap_value"):
            try:
                cents[part] = to_cents(cost.get(part, 0), f"standard_cost.{part}")
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValidationFailed(f"{where} ({code or '?'}): " + "; ".join(problems))
        item = session.get(Item, code) or Item(code=code)
        item.name, item.type, item.uom = str(raw.get("name") or code), raw["type"], raw["uom"]
        item.decimals, item.tracking = decimals, raw.get("tracking", "none")
        item.std_material_cents = cents["material"]
        item.std_labour_cents = cents["labour"]
        item.std_overhead_cents = cents["overhead"]
        item.scrap_value_cents = cents["scrap_value"]
        session.add(item)
    session.flush()
    from taktflow.mfg.bom import load_boms

    boms = doc.get("boms") or []
    if not isinstance(boms, list):
        raise ValidationFailed(f"{path}: `boms:` must be a list")
    load_boms(session, boms, str(path))
    from taktflow.mfg.routing import load_plant_layout

    layout = load_plant_layout(session, doc, str(path))
    return {"items": len(doc.get("items") or []), "locations": len(doc.get("locations") or []),
            "boms": len(boms)} | layout  # fmt: skip


def on_hand(session: Session, item: str, location: str, lot: str | None = None) -> Decimal:
    """Stock of an item at a location (of one lot, or of all lots)."""
    found = get_item(session, item)
    return unscaled(found, _on_hand(session, item, location, lot))


def _on_hand(session: Session, item: str, location: str, lot: str | None) -> int:
    inbound = select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
        StockMovement.item == item, StockMovement.to_location == location)  # fmt: skip
    outbound = select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
        StockMovement.item == item, StockMovement.from_location == location)  # fmt: skip
    if lot is not None:
        inbound = inbound.where(StockMovement.lot == lot)
        outbound = outbound.where(StockMovement.lot == lot)
    return int(session.scalar(inbound)) - int(session.scalar(outbound))


def lots_on_hand(session: Session, item: str, location: str) -> list[tuple[str, int]]:
    """(lot, scaled quantity) of each lot of `item` held at `location`, oldest arrival first:
    the order in which stock is taken (first in, first out)."""
    held: dict[str, int] = {}
    first_in: dict[str, Any] = {}
    for lot, _source, target, quantity, first in session.execute(
        select(StockMovement.lot, StockMovement.from_location, StockMovement.to_location,
               func.sum(StockMovement.quantity), func.min(StockMovement.id))
        .where(StockMovement.item == item,
               (StockMovement.to_location == location) | (StockMovement.from_location == location))
        .group_by(StockMovement.lot, StockMovement.from_location, StockMovement.to_location)
    ):  # fmt: skip
        sign = 1 if target == location else -1
        held[lot] = held.get(lot, 0) + sign * int(quantity)
        if target == location:
            first_in[lot] = min(first_in.get(lot, first), first)
    return sorted(((lot, q) for lot, q in held.items() if q > 0),
                  key=lambda pair: first_in.get(pair[0], 0))  # fmt: skip


def stock_report(session: Session) -> list[dict[str, Any]]:
    """Stock on hand by item, location and lot (rows with stock only)."""
    totals: dict[tuple[str, str, str], int] = {}
    for item, lot, source, target, quantity in session.execute(
        select(StockMovement.item, StockMovement.lot, StockMovement.from_location,
               StockMovement.to_location, func.sum(StockMovement.quantity))
        .group_by(StockMovement.item, StockMovement.lot, StockMovement.from_location,
                  StockMovement.to_location)
    ):  # fmt: skip
        if target is not None:
            totals[(item, target, lot)] = totals.get((item, target, lot), 0) + int(quantity)
        if source is not None:
            totals[(item, source, lot)] = totals.get((item, source, lot), 0) - int(quantity)
    items = {i.code: i for i in session.scalars(select(Item))}
    return [
        {"item": item, "location": location, "lot": lot or None, "uom": items[item].uom,
         "quantity": unscaled(items[item], quantity)}
        for (item, location, lot), quantity in sorted(totals.items()) if quantity
    ]  # fmt: skip


def move_stock(
    session: Session,
    *,
    item: str,
    quantity: Any,
    reason: str,
    now: datetime,
    from_location: str | None = None,
    to_location: str | None = None,
    lot: str | None = None,
    reference: str | None = None,
    moved_by: str | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Record one movement; its id. Refused, with the reason, when the item or a location is
    unknown, the quantity is not positive or has too many decimals for the unit, a lot-tracked
    item has no lot, the locations do not fit the reason (a receipt has no source, a
    consumption no destination, a transfer both), or the source holds less than is taken:
    stock never goes negative."""
    if idempotency_key is not None:
        existing = session.scalar(
            select(StockMovement.id).where(StockMovement.idempotency_key == idempotency_key)
        )
        if existing is not None:
            return existing
    found = get_item(session, item)
    if reason not in REASONS:
        raise ValidationFailed(f"reason {reason!r} is not one of {', '.join(REASONS)}",
                               details={"reason": "unknown"})  # fmt: skip
    wanted = (reason in OUTBOUND or reason in TRANSFER, reason in INBOUND or reason in TRANSFER)
    given = (from_location is not None, to_location is not None)
    if wanted != given:
        needs = " and ".join(name for name, w in zip(("a source location",
                             "a destination location"), wanted, strict=True) if w)  # fmt: skip
        raise ValidationFailed(f"a {reason} of {item} needs {needs} (and no other)",
                               details={"location": "does not fit the reason"})  # fmt: skip
    for code in (from_location, to_location):
        if code is not None and session.get(Location, code) is None:
            raise NotFound(f"location {code!r} does not exist")
    if found.tracking == "lot" and not lot:
        raise ValidationFailed(f"{item} is tracked by lot: give the lot",
                               details={"lot": "missing"})  # fmt: skip
    amount = scaled(found, quantity)
    if amount <= 0:
        raise ValidationFailed(f"quantity {quantity} of {item} must be positive",
                               details={"quantity": "not positive"})  # fmt: skip
    if from_location is not None:
        available = _on_hand(session, item, from_location, lot or "")
        if available < amount:
            lot_text = f" lot {lot}" if lot else ""
            raise ValidationFailed(
                f"{from_location} holds {unscaled(found, available)} {found.uom} of "
                f"{item}{lot_text}; {quantity} cannot be taken",
                details={"quantity": "more than on hand"},
            )
    movement = StockMovement(
        at=now, item=item, lot=lot or "", quantity=amount, from_location=from_location,
        to_location=to_location, reason=reason, reference=reference,
        idempotency_key=idempotency_key, moved_by=moved_by,
    )  # fmt: skip
    session.add(movement)
    session.flush()
    return movement.id


def get_item(session: Session, code: str) -> Item:
    found = session.get(Item, code)
    if found is None:
        raise NotFound(f"item {code!r} does not exist")
    return found
