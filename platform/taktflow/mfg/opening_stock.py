"""The demo plant's opening stock (seed_data/opening_stock.yaml): what the stores hold when the
plant starts using taktflow, received by lot and valued at standard cost against equity
(Dr the location's stock account / Cr 3000), so that stock and books agree from the start.

`taktflow seed` loads it once: each line is received with an idempotency key made from the
item, the location and the lot, so loading again adds nothing. The workflows' tests load the
plant without it (taktflow.mfg.seed.load_plant) and stock exactly what they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.errors import ValidationFailed
from taktflow.mfg.ledger import post_entry
from taktflow.mfg.models import Item, Location, StockMovement
from taktflow.mfg.seed_files import read_list
from taktflow.mfg.stock import move_stock

OPENING_STOCK_FILE = "opening_stock.yaml"
#: Where the opening stock's value comes from: the owners' equity.
EQUITY_ACCOUNT = "3000"
DEFAULT_LOCATION = "RM-STORES"
_KEYS = {"item", "location", "lot", "quantity"}


def load_opening_stock(session: Session, path: str | Path, *, now: datetime) -> dict[str, int]:
    """Receive the file's lines (`stock: [{item, location?, lot?, quantity}]`) that were not
    received before, and post their value; {lines, received}. Every line is checked before
    anything is written; a bad one is refused naming the file, line and field."""
    path = Path(path)
    entries = read_list(path, "opening stock", "stock", "a list of {item, quantity}")
    lines = [_check(session, raw, f"{path}:{_line(entries, n)}") for n, raw in enumerate(entries)]
    received = 0
    for item, location, lot, quantity in lines:
        key = f"opening:{item.code}:{location.code}:{lot or ''}"
        existed = session.scalar(
            select(StockMovement.id).where(StockMovement.idempotency_key == key)
        )
        move_stock(
            session,
            item=item.code,
            quantity=quantity,
            reason="receipt",
            now=now,
            to_location=location.code,
            lot=lot,
            reference="opening stock",
            idempotency_key=key,
        )
        cents = int((quantity * _standard_cents(item)).to_integral_value(ROUND_HALF_UP))
        if cents and location.account:
            post_entry(
                session,
                [
                    {
                        "account": location.account,
                        "debit": _money(cents),
                        "memo": f"{quantity} {item.uom} {item.code}"
                        + (f" lot {lot}" if lot else ""),
                    },
                    {"account": EQUITY_ACCOUNT, "credit": _money(cents)},
                ],
                description="Opening stock",
                reference="opening stock",
                now=now,
                idempotency_key=key,
            )
        received += existed is None
    return {"lines": len(lines), "received": received}


def _check(session: Session, raw: Any, where: str) -> tuple[Item, Location, str | None, Decimal]:
    if not isinstance(raw, Mapping):
        raise ValidationFailed(f"{where}: expected {{item, location, lot, quantity}}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValidationFailed(
            f"{where}: unknown field {unknown[0]!r} (use {', '.join(sorted(_KEYS))})",
            details={unknown[0]: "unknown"},
        )
    item = session.get(Item, str(raw.get("item") or ""))
    if item is None:
        raise ValidationFailed(
            f"{where}: item: {raw.get('item')!r} does not exist", details={"item": "unknown"}
        )
    location = session.get(Location, str(raw.get("location") or DEFAULT_LOCATION))
    if location is None:
        raise ValidationFailed(
            f"{where}: location: {raw.get('location')!r} does not exist",
            details={"location": "unknown"},
        )
    lot = str(raw["lot"]).strip() if raw.get("lot") not in (None, "") else None
    if item.tracking == "lot" and lot is None:
        raise ValidationFailed(
            f"{where}: lot: {item.code} is tracked by lot: name its lot", details={"lot": "missing"}
        )
    try:
        quantity = Decimal(str(raw.get("quantity")))
    except InvalidOperation:
        quantity = Decimal(-1)
    if not quantity.is_finite() or quantity <= 0:
        raise ValidationFailed(
            f"{where}: quantity: {raw.get('quantity')!r} is not a positive number of {item.uom}",
            details={"quantity": "invalid"},
        )
    return item, location, lot, quantity


def _line(entries: list, index: int) -> int | str:
    positions = getattr(entries, "item_pos", None)
    return positions[index].line if positions and index < len(positions) else "?"


def _standard_cents(item: Item) -> int:
    return item.std_material_cents + item.std_labour_cents + item.std_overhead_cents


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
