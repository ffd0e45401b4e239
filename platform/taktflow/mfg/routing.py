"""Work centers, machines and routings (versioned operation sequences), from master data."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.ledger import to_cents
from taktflow.mfg.models import Item, Machine, Routing, RoutingOperation, WorkCenter


def load_plant_layout(session: Session, doc: Mapping[str, Any], source: str) -> dict[str, int]:
    """The `work_centers:`, `machines:` and `routings:` sections of a master-data file:
    work centers and machines are added or updated; routing versions are added once and
    then kept as they are (orders keep the version they were released with)."""
    for number, raw in enumerate(doc.get("work_centers") or [], 1):
        where = f"{source}: work center {number}"
        code = str(raw.get("code", "")) if isinstance(raw, Mapping) else ""
        if not code:
            raise ValidationFailed(f"{where}: code is missing")
        try:
            labour = to_cents(raw.get("labour_rate", 0), "labour_rate")
            machine = to_cents(raw.get("machine_rate", 0), "machine_rate")
        except ValueError as exc:
            raise ValidationFailed(f"{where} ({code}): {exc}") from None
        center = session.get(WorkCenter, code) or WorkCenter(code=code)
        center.name = str(raw.get("name") or code)
        center.labour_rate_cents, center.machine_rate_cents = labour, machine
        session.add(center)
    session.flush()
    for number, raw in enumerate(doc.get("machines") or [], 1):
        where = f"{source}: machine {number}"
        code = str(raw.get("code", "")) if isinstance(raw, Mapping) else ""
        center = str(raw.get("work_center", "")) if isinstance(raw, Mapping) else ""
        if not code or session.get(WorkCenter, center) is None:
            raise ValidationFailed(f"{where} ({code or '?'}): needs a code and a known "
                                   f"work_center (got {center!r})")  # fmt: skip
        found = session.get(Machine, code) or Machine(code=code)
        found.name, found.work_center = str(raw.get("name") or code), center
        found.connector = raw.get("connector")
        session.add(found)
    added = 0
    for number, raw in enumerate(doc.get("routings") or [], 1):
        added += _routing(session, raw, f"{source}: routing {number}")
    session.flush()
    return {"work_centers": len(doc.get("work_centers") or []),
            "machines": len(doc.get("machines") or []),
            "routings": len(doc.get("routings") or [])}  # fmt: skip


def _routing(session: Session, raw: Any, where: str) -> int:
    if not isinstance(raw, Mapping):
        raise ValidationFailed(f"{where}: expected {{item, version, operations}}")
    item, version = str(raw.get("item", "")), raw.get("version", 1)
    where = f"{where} ({item} v{version})"
    if session.get(Item, item) is None:
        raise ValidationFailed(f"{where}: item {item!r} does not exist")
    if session.scalar(select(Routing.id).where(Routing.item == item, Routing.version == version)):
        return 0
    operations = raw.get("operations")
    if not isinstance(operations, list) or not operations:
        raise ValidationFailed(f"{where}: operations are missing")
    routing = Routing(item=item, version=version, active=True)
    session.add(routing)
    session.flush()
    seen: set[int] = set()
    for number, op in enumerate(operations, 1):
        at = f"{where} operation {number}"
        sequence = op.get("sequence") if isinstance(op, Mapping) else None
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence in seen:
            raise ValidationFailed(f"{at}: sequence must be a whole number, unique in the routing")
        seen.add(sequence)
        if session.get(WorkCenter, str(op.get("work_center", ""))) is None:
            raise ValidationFailed(f"{at}: work center {op.get('work_center')!r} does not exist")
        try:
            cycle = Decimal(str(op.get("cycle_s")))
            if not cycle.is_finite() or cycle <= 0:
                raise InvalidOperation
        except InvalidOperation:
            raise ValidationFailed(
                f"{at}: cycle_s (ideal seconds per unit) must be positive"
            ) from None
        setup = op.get("setup_min", 0)
        if not isinstance(setup, int) or isinstance(setup, bool) or setup < 0:
            raise ValidationFailed(f"{at}: setup_min must be a whole number of minutes")
        session.add(RoutingOperation(
            routing_id=routing.id, sequence=sequence, name=str(op.get("name") or sequence),
            work_center=str(op["work_center"]), setup_min=setup,
            cycle_ms=int(cycle * 1000), inspection=op.get("inspection"), form=op.get("form"),
        ))  # fmt: skip
    return 1


def current_routing(session: Session, item: str, version: int | None = None) -> Routing:
    query = select(Routing).where(Routing.item == item)
    if version is not None:
        query = query.where(Routing.version == version)
    else:
        query = query.where(Routing.active.is_(True)).order_by(Routing.version.desc())
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"{item} has no routing" + (f" version {version}" if version else ""))
    return found


def operations(session: Session, routing: Routing) -> list[RoutingOperation]:
    return list(session.scalars(select(RoutingOperation)
                                .where(RoutingOperation.routing_id == routing.id)
                                .order_by(RoutingOperation.sequence)))  # fmt: skip
