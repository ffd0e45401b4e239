"""Bills of materials: versioned, multi-level, exploded into what an order needs and checked
against the stock on hand (the shortages start procurement)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.models import BOM_DECIMALS, ISSUE_METHODS, Bom, BomLine, Item, Location
from taktflow.mfg.stock import _on_hand, unscaled

#: Deeper than this a BOM structure is a mistake (or a cycle the check did not see).
MAX_LEVELS = 20


def _per_unit(value: Any, where: str) -> int:
    try:
        amount = Decimal(str(value))
        if isinstance(value, bool) or not amount.is_finite() or amount <= 0:
            raise InvalidOperation
    except InvalidOperation:
        raise ValidationFailed(f"{where}: quantity {value!r} must be a positive number") from None
    scaled = amount * Decimal(10) ** BOM_DECIMALS
    if scaled != scaled.to_integral_value():
        raise ValidationFailed(f"{where}: quantity {value} has more than {BOM_DECIMALS} decimals")
    return int(scaled)


def load_boms(session: Session, boms: list[Mapping[str, Any]], source: str) -> int:
    """Add the BOM versions listed (`[{item, version, lines: [{component, quantity,
    scrap_pct, issue, operation}]}]`); a version that exists is left as it is (versions are
    immutable: make a new one). Refuses unknown items and structures that contain their own
    product (a cycle). Returns how many versions were added."""
    added = 0
    for number, raw in enumerate(boms, 1):
        where = f"{source}: bom {number}"
        if not isinstance(raw, Mapping):
            raise ValidationFailed(f"{where}: expected {{item, version, lines}}")
        item, version = str(raw.get("item", "")), raw.get("version", 1)
        where = f"{where} ({item} v{version})"
        if session.get(Item, item) is None:
            raise ValidationFailed(f"{where}: item {item!r} does not exist")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValidationFailed(f"{where}: version must be a whole number from 1")
        if session.scalar(select(Bom.id).where(Bom.item == item, Bom.version == version)):
            continue
        lines = raw.get("lines")
        if not isinstance(lines, list) or not lines:
            raise ValidationFailed(f"{where}: lines are missing")
        bom = Bom(item=item, version=version, active=True)
        session.add(bom)
        session.flush()
        for line_no, line in enumerate(lines, 1):
            at = f"{where} line {line_no}"
            component = str(line.get("component", "")) if isinstance(line, Mapping) else ""
            if session.get(Item, component) is None:
                raise ValidationFailed(f"{at}: component {component!r} does not exist")
            if component == item:
                raise ValidationFailed(f"{at}: {item} cannot contain itself")
            issue = line.get("issue", "manual")
            if issue not in ISSUE_METHODS:
                raise ValidationFailed(f"{at}: issue must be one of {', '.join(ISSUE_METHODS)}")
            try:
                scrap = Decimal(str(line.get("scrap_pct", 0)))
            except InvalidOperation:
                scrap = Decimal(-1)
            if not Decimal(0) <= scrap < Decimal(100) or scrap != scrap.quantize(Decimal("0.01")):
                raise ValidationFailed(f"{at}: scrap_pct must be 0 to below 100, two decimals")
            session.add(BomLine(bom_id=bom.id, component=component,
                                quantity=_per_unit(line.get("quantity"), at),
                                scrap_bp=int(scrap * 100), issue_method=issue,
                                operation=line.get("operation")))  # fmt: skip
        session.flush()
        _check_cycle(session, item, where)
        added += 1
    return added


def current_bom(session: Session, item: str, version: int | None = None) -> Bom | None:
    """The given version of an item's BOM, or its latest active one; None for a bought item."""
    query = select(Bom).where(Bom.item == item)
    if version is not None:
        found = session.scalar(query.where(Bom.version == version))
        if found is None:
            raise NotFound(f"{item} has no BOM version {version}")
        return found
    return session.scalar(query.where(Bom.active.is_(True)).order_by(Bom.version.desc()))


def explode(
    session: Session, item: str, quantity: Any, *, version: int | None = None
) -> list[dict[str, Any]]:
    """What making `quantity` of `item` needs, level by level: for each line its component,
    level, required quantity (per unit x quantity, plus the line's scrap allowance, rounded up
    to what the component's unit can hold), issue method and operation. A semi-finished
    component with a BOM of its own is exploded below it."""
    top = session.get(Item, item)
    if top is None:
        raise NotFound(f"item {item!r} does not exist")
    try:
        amount = Decimal(str(quantity))
        if isinstance(quantity, bool) or not amount.is_finite() or amount <= 0:
            raise InvalidOperation
    except InvalidOperation:
        raise ValidationFailed(f"quantity {quantity!r} must be a positive number") from None
    bom = current_bom(session, item, version)
    if bom is None:
        raise ValidationFailed(f"{item} has no bill of materials (it is bought, not made)")
    result: list[dict[str, Any]] = []
    _explode(session, bom, amount, 1, result)
    return result


def _explode(session: Session, bom: Bom, amount: Decimal, level: int, out: list) -> None:
    if level > MAX_LEVELS:
        raise ValidationFailed(f"BOM of {bom.item} is more than {MAX_LEVELS} levels deep")
    lines = session.scalars(select(BomLine).where(BomLine.bom_id == bom.id).order_by(BomLine.id))
    for line in lines:
        component = session.get(Item, line.component)
        assert component is not None  # a foreign key
        per_unit = Decimal(line.quantity) / Decimal(10) ** BOM_DECIMALS
        required = per_unit * amount * (1 + Decimal(line.scrap_bp) / Decimal(10_000))
        step = Decimal(1).scaleb(-component.decimals)
        required = required.quantize(step, rounding=ROUND_CEILING)
        out.append({"component": component.code, "name": component.name, "level": level,
                    "parent": bom.item, "quantity": required, "uom": component.uom,
                    "issue": line.issue_method, "operation": line.operation})  # fmt: skip
        sub = current_bom(session, component.code)
        if sub is not None:
            _explode(session, sub, required, level + 1, out)


def shortages(
    session: Session, requirements: list[dict[str, Any]], location: str
) -> list[dict[str, Any]]:
    """Requirements of bought items (no BOM of their own) that `location` cannot cover:
    component, required, on hand and missing, totalled per component."""
    if session.get(Location, location) is None:
        raise NotFound(f"location {location!r} does not exist")
    needed: dict[str, Decimal] = {}
    for req in requirements:
        if current_bom(session, req["component"]) is None:
            needed[req["component"]] = needed.get(req["component"], Decimal(0)) + req["quantity"]
    short = []
    for code, required in needed.items():
        item = session.get(Item, code)
        assert item is not None
        available = unscaled(item, _on_hand(session, code, location, None))
        if available < required:
            short.append({"component": code, "uom": item.uom, "required": required,
                          "on_hand": available, "missing": required - available})  # fmt: skip
    return short


def _check_cycle(session: Session, item: str, where: str) -> None:
    """Refuse a structure in which `item` (directly or below) contains itself."""
    seen: set[str] = set()
    stack = [item]
    while stack:
        current = stack.pop()
        bom = current_bom(session, current)
        if bom is None:
            continue
        for component in session.scalars(select(BomLine.component).where(BomLine.bom_id == bom.id)):
            if component == item:
                raise ValidationFailed(f"{where}: {item} would contain itself (through "
                                       f"{current})")  # fmt: skip
            if component not in seen:
                seen.add(component)
                stack.append(component)
