"""Quality: inspection plans, inspections of lots against them, nonconformances.

As everywhere in the manufacturing model, functions take the caller's Session and never
commit: a workflow step's inspection or nonconformance commits or rolls back with the step.
Values enter as Decimal, text or numbers and are stored scaled to integers (the scaling of
mfg.stock); they leave as Decimal.

How a lot is judged: each sampled value of a characteristic is in spec when lower <= value <=
upper. A value outside lies some distance beyond its limit; measured against the width of the
tolerance band (upper - lower) this is its *excess* in percent. The worst excess of an
inspection, and the number of missing values, are what the quality gate's decision table reads
to pass, hold or fail the lot; this module only measures, the table decides.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.models import Item, ProductionOrder
from taktflow.mfg.quality_models import (
    DISPOSITIONS,
    DefectCode,
    Inspection,
    InspectionPlan,
    InspectionResult,
    InspectionValue,
    Nonconformance,
    PlanCharacteristic,
)
from taktflow.mfg.seed_files import read_list
from taktflow.mfg.stock import scaled, unscaled

#: Plan and characteristic names: they become form field names and task data keys.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
DEFECT_CATEGORIES = ("dimensional", "surface", "assembly", "material", "inspection", "other")
#: A sample size above this is a typing error, not an inspection plan.
MAX_SAMPLE_SIZE = 200


# ---------------------------------------------------------------------- scaling
@dataclass(frozen=True)
class _Gauge:
    """What mfg.stock's scaling helpers read from an Item (code, uom, decimals), for a
    characteristic: measured values are scaled exactly like quantities."""

    code: str
    uom: str
    decimals: int


def _gauge(name: str, unit: str, decimals: int) -> Item:
    # stock.scaled/unscaled only read code, uom and decimals; a cast keeps one parser.
    return cast(Item, _Gauge(name, unit, decimals))


def _dec(value: int, decimals: int) -> Decimal:
    """A scaled value as a Decimal showing the gauge's resolution (60.10, not 60.1)."""
    return Decimal(value).scaleb(-decimals)


# ---------------------------------------------------------------------- seed files
def _line(entry: Any) -> str:
    pos = getattr(entry, "pos", None)
    return f":{pos.line}" if pos is not None else ""


def load_defect_codes(session: Session, path: str | Path) -> int:
    """Add or update the defect codes of a file (`defect_codes: [{code, name, category}]`);
    how many it holds. Codes are never deleted (nonconformances refer to them)."""
    path = Path(path)
    entries = read_list(path, "defect codes", "defect_codes")
    seen: set[str] = set()
    for number, raw in enumerate(entries, 1):
        code = str(raw.get("code", "")) if isinstance(raw, Mapping) else ""
        where = f"{path}{_line(raw)}: defect code {number} ({code or '?'})"
        if not isinstance(raw, Mapping) or set(raw) - {"code", "name", "category", "active"}:
            raise ValidationFailed(f"{where}: expected code, name, category (and active)")
        if not re.match(r"^[A-Z0-9][A-Z0-9-]{0,39}$", code):
            raise ValidationFailed(f"{where}: code must be 1 to 40 capitals, digits or '-'")
        if code in seen:
            raise ValidationFailed(f"{where}: code {code} appears twice")
        seen.add(code)
        name, category = raw.get("name"), raw.get("category", "other")
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed(f"{where}: name is missing")
        if category not in DEFECT_CATEGORIES:
            raise ValidationFailed(
                f"{where}: category {category!r} is not one of {', '.join(DEFECT_CATEGORIES)}"
            )
        active = raw.get("active", True)
        if not isinstance(active, bool):
            raise ValidationFailed(f"{where}: active must be true or false")
        found = session.get(DefectCode, code) or DefectCode(code=code)
        found.name, found.category, found.active = name.strip(), category, active
        session.add(found)
    session.flush()
    return len(entries)


def load_inspection_plans(session: Session, path: str | Path) -> int:
    """Add or update the inspection plans of a file; how many it holds (format: docs/quality.md).

    Plans are never deleted; a characteristic left out of a plan becomes inactive. Refused as
    a whole, naming the file, line, plan and characteristic, when a limit is not a number or
    has more decimals than the characteristic's `decimals`, when lower <= nominal <= upper or
    lower < upper does not hold, the sample size is not a positive whole number, or an item
    or defect code does not exist."""
    path = Path(path)
    entries = read_list(path, "inspection plans", "plans")
    seen: set[str] = set()
    for number, raw in enumerate(entries, 1):
        name = str(raw.get("name", "")) if isinstance(raw, Mapping) else ""
        where = f"{path}{_line(raw)}: plan {number} ({name or '?'})"
        allowed = {"name", "title", "item", "frequency", "defect_code", "characteristics"}
        if not isinstance(raw, Mapping) or set(raw) - allowed:
            extra = sorted(set(raw) - allowed) if isinstance(raw, Mapping) else []
            raise ValidationFailed(f"{where}: unknown keys {extra} (expected "
                                   f"{', '.join(sorted(allowed))})")  # fmt: skip
        if not NAME.match(name):
            raise ValidationFailed(f"{where}: name must be lower-case letters, digits and "
                                   "_, starting with a letter (routings use it)")  # fmt: skip
        if name in seen:
            raise ValidationFailed(f"{where}: plan {name} appears twice")
        seen.add(name)
        item = raw.get("item")
        if item is not None and session.get(Item, str(item)) is None:
            raise ValidationFailed(f"{where}: item {item!r} does not exist")
        default_code = raw.get("defect_code")
        _check_defect_code(session, default_code, where)
        characteristics = raw.get("characteristics")
        if not isinstance(characteristics, list) or not characteristics:
            raise ValidationFailed(f"{where}: characteristics are missing")
        plan = session.scalar(select(InspectionPlan).where(InspectionPlan.name == name))
        if plan is None:
            plan = InspectionPlan(name=name)
            session.add(plan)
        plan.title = str(raw.get("title") or name)
        plan.item = None if item is None else str(item)
        plan.frequency = None if raw.get("frequency") is None else str(raw["frequency"])
        plan.defect_code = None if default_code is None else str(default_code)
        session.flush()
        existing = {c.name: c for c in session.scalars(
            select(PlanCharacteristic).where(PlanCharacteristic.plan_id == plan.id))}  # fmt: skip
        named: set[str] = set()
        for position, spec in enumerate(characteristics, 1):
            values = _characteristic(session, spec, f"{where} characteristic {position}")
            if values["name"] in named:
                raise ValidationFailed(f"{where} characteristic {position} ({values['name']}): "
                                       "appears twice in the plan")  # fmt: skip
            named.add(values["name"])
            found = existing.get(values["name"]) or PlanCharacteristic(plan_id=plan.id)
            for key, value in values.items():
                setattr(found, key, value)
            found.position, found.active = position, True
            session.add(found)
        for left_out in set(existing) - named:
            existing[left_out].active = False
    session.flush()
    return len(entries)


def _check_defect_code(session: Session, code: Any, where: str) -> None:
    if code is None:
        return
    found = session.get(DefectCode, str(code))
    if found is None or not found.active:
        raise ValidationFailed(f"{where}: defect code {code!r} does not exist "
                               "(load defect_codes.yaml first)")  # fmt: skip


def _characteristic(session: Session, raw: Any, where: str) -> dict[str, Any]:
    name = str(raw.get("name", "")) if isinstance(raw, Mapping) else ""
    where = f"{where} ({name or '?'})"
    allowed = {"name", "unit", "decimals", "nominal", "lower", "upper", "sample_size",
               "defect_code"}  # fmt: skip
    if not isinstance(raw, Mapping) or set(raw) - allowed:
        extra = sorted(set(raw) - allowed) if isinstance(raw, Mapping) else []
        raise ValidationFailed(f"{where}: unknown keys {extra} (expected "
                               f"{', '.join(sorted(allowed))})")  # fmt: skip
    if not NAME.match(name):
        raise ValidationFailed(f"{where}: name must be lower-case letters, digits and _, "
                               "starting with a letter")  # fmt: skip
    unit = raw.get("unit")
    if not isinstance(unit, str) or not unit.strip() or len(unit) > 20:
        raise ValidationFailed(f"{where}: unit is missing (e.g. mm, deg, Nm)")
    decimals = raw.get("decimals", 0)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 6:
        raise ValidationFailed(f"{where}: decimals must be a whole number from 0 to 6")
    gauge = _gauge(name, unit, decimals)
    limits = {}
    for key in ("nominal", "lower", "upper"):
        if raw.get(key) is None:
            raise ValidationFailed(f"{where}: {key} is missing")
        try:
            limits[key] = scaled(gauge, raw[key], key)
        except ValidationFailed as exc:
            raise ValidationFailed(f"{where}: {exc.message}") from None
    low, nominal, high = limits["lower"], limits["nominal"], limits["upper"]
    if not low <= nominal <= high:
        raise ValidationFailed(
            f"{where}: limits must satisfy lower <= nominal <= upper, got lower "
            f"{_dec(low, decimals)}, nominal {_dec(nominal, decimals)}, upper "
            f"{_dec(high, decimals)}"
        )
    if low == high:
        raise ValidationFailed(f"{where}: lower and upper are equal: a tolerance band needs width")
    size = raw.get("sample_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_SAMPLE_SIZE:
        raise ValidationFailed(f"{where}: sample_size must be a positive whole number (at most "
                               f"{MAX_SAMPLE_SIZE}), got {size!r}")  # fmt: skip
    _check_defect_code(session, raw.get("defect_code"), where)
    code = raw.get("defect_code")
    return {"name": name, "unit": unit.strip(), "decimals": decimals, "nominal": nominal,
            "lower": low, "upper": high, "sample_size": size,
            "defect_code": None if code is None else str(code)}  # fmt: skip


# ---------------------------------------------------------------------- plans
def _plan(session: Session, name: str) -> InspectionPlan:
    plan = session.scalar(select(InspectionPlan).where(InspectionPlan.name == name))
    if plan is None:
        known = ", ".join(session.scalars(select(InspectionPlan.name).order_by(
            InspectionPlan.name))) or "none"  # fmt: skip
        raise NotFound(f"inspection plan {name!r} does not exist (plans: {known})")
    return plan


def _characteristics(session: Session, plan: InspectionPlan) -> list[PlanCharacteristic]:
    return list(session.scalars(
        select(PlanCharacteristic)
        .where(PlanCharacteristic.plan_id == plan.id, PlanCharacteristic.active.is_(True))
        .order_by(PlanCharacteristic.position)))  # fmt: skip


def plan_view(session: Session, name: str) -> dict[str, Any]:
    """A plan as an inspection screen needs it: its characteristics (limits as Decimal), a
    `spec` mapping {characteristic: {nominal, lower, upper, unit, sample_size}} with numbers
    that form fields can take their limits from (`nominal_from: plan.spec.x.nominal`), the
    text of an empty measurement sheet, and the active defect codes as select options."""
    plan = _plan(session, name)
    rows = []
    for c in _characteristics(session, plan):
        rows.append({"name": c.name, "unit": c.unit, "decimals": c.decimals,
                     "nominal": _dec(c.nominal, c.decimals), "lower": _dec(c.lower, c.decimals),
                     "upper": _dec(c.upper, c.decimals), "sample_size": c.sample_size,
                     "defect_code": c.defect_code or plan.defect_code})  # fmt: skip
    codes = session.scalars(select(DefectCode).where(DefectCode.active.is_(True))
                            .order_by(DefectCode.code))  # fmt: skip
    return {
        "name": plan.name, "title": plan.title, "item": plan.item, "frequency": plan.frequency,
        "characteristics": rows,
        # Floats: form limits are only shown and checked as a hint; the verdict that counts
        # is computed exactly by record_inspection.
        "spec": {r["name"]: {"nominal": float(r["nominal"]), "lower": float(r["lower"]),
                             "upper": float(r["upper"]), "unit": r["unit"],
                             "sample_size": r["sample_size"]} for r in rows},
        "sheet": _empty_sheet(rows),
        "defect_codes": [{"value": d.code, "label": f"{d.code}: {d.name}"} for d in codes],
    }  # fmt: skip


def _empty_sheet(rows: list[dict[str, Any]]) -> str:
    lines = ["# One line per characteristic: its name, a colon, then the measured values",
             "# separated by spaces (a decimal comma is fine). Leave a value out if it could",
             "# not be measured."]  # fmt: skip
    for r in rows:
        lines.append(f"# {r['name']}: {r['unit']}, nominal {r['nominal']}, limits "
                     f"{r['lower']}..{r['upper']}, {r['sample_size']} values")  # fmt: skip
        lines.append(f"{r['name']}:")
    return "\n".join(lines) + "\n"


def parse_sheet(session: Session, plan: str, text: str) -> dict[str, list[str]]:
    """The measurements of a filled-in measurement sheet ("name: v1 v2 v3" per line, `#`
    comments); ValidationFailed naming the line and what is wrong with it."""
    rows = {c.name: c for c in _characteristics(session, _plan(session, plan))}
    found: dict[str, list[str]] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        name, colon, rest = content.partition(":")
        name = name.strip()
        if not colon:
            problems.append(f"line {number}: expected 'name: values', got {content!r}")
            continue
        if name not in rows:
            problems.append(f"line {number}: {name!r} is not a characteristic of plan {plan} "
                            f"({', '.join(rows)})")  # fmt: skip
            continue
        if name in found:
            problems.append(f"line {number}: {name} appears twice")
            continue
        values = [v.replace(",", ".") for v in rest.replace(";", " ").split()]
        c = rows[name]
        for value in values:
            try:
                scaled(_gauge(name, c.unit, c.decimals), value, "value")
            except ValidationFailed as exc:
                problems.append(f"line {number}: {exc.message}")
        found[name] = values
    if problems:
        raise ValidationFailed("the measurement sheet cannot be read: " + "; ".join(problems),
                               details={"lines": problems})  # fmt: skip
    return found


# ---------------------------------------------------------------------- signatures
def signature_record(signature: Any, what: str = "signature") -> tuple[str, datetime, str, str]:
    """Check a signature as a form's `signature` field stores it ({signer, signed_at, meaning,
    values}); (signer, signed_at, reference, canonical JSON). The reference is the SHA-256 of
    the canonical JSON: whoever holds the record (the task's audit history keeps it) can show
    that it is the one that was signed."""
    if not isinstance(signature, Mapping):
        raise ValidationFailed(f"{what}: expected the value of a form's signature field "
                               "({signer, signed_at, meaning, values})",
                               details={what: "not a signature"})  # fmt: skip
    signer, signed_at = signature.get("signer"), signature.get("signed_at")
    problems = []
    if not isinstance(signer, str) or not signer.strip():
        problems.append("signer is missing")
    if not isinstance(signature.get("meaning"), str) or not signature["meaning"].strip():
        problems.append("meaning is missing")
    if not isinstance(signature.get("values"), Mapping):
        problems.append("values (what was signed) are missing")
    when = None
    try:
        when = datetime.fromisoformat(str(signed_at))
        if when.tzinfo is None:
            problems.append(f"signed_at {signed_at!r} has no time zone")
    except ValueError:
        problems.append(f"signed_at {signed_at!r} is not a date and time")
    if problems:
        raise ValidationFailed(f"{what}: " + "; ".join(problems), details={what: problems})
    assert when is not None and isinstance(signer, str)
    canonical = json.dumps(signature, sort_keys=True, separators=(",", ":"), default=str)
    reference = "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return signer, when, reference, canonical


# ---------------------------------------------------------------------- inspections
def _order_and_item(
    session: Session, order_number: str | None, item: str
) -> tuple[ProductionOrder | None, Item]:
    order = None
    if order_number is not None:
        order = session.get(ProductionOrder, order_number)
        if order is None:
            raise NotFound(f"production order {order_number!r} does not exist")
    found = session.get(Item, item)
    if found is None:
        raise NotFound(f"item {item!r} does not exist")
    if order is not None and order.item != item:
        raise ValidationFailed(f"production order {order_number} makes {order.item}, not {item}",
                               details={"item": "not the order's item"})  # fmt: skip
    return order, found


def _lot(found: Item, lot: str | None) -> str:
    lot = (lot or "").strip()
    if found.tracking == "lot" and not lot:
        raise ValidationFailed(f"{found.code} is tracked by lot: give the lot",
                               details={"lot": "missing"})  # fmt: skip
    if len(lot) > 60:
        raise ValidationFailed("a lot is at most 60 characters", details={"lot": "too long"})
    return lot


def record_inspection(
    session: Session,
    *,
    plan: str,
    item: str,
    lot: str | None,
    quantity: Any,
    measurements: Mapping[str, Any],
    now: datetime,
    order_number: str | None = None,
    sequence: int | None = None,
    inspected_by: str | None = None,
    signature: Mapping[str, Any] | None = None,
    remarks: str | None = None,
    instance_id: int | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Record an inspection of a lot against a plan; its outcome (see `inspection_outcome`).

    `measurements` maps each characteristic to its sampled values (a list; a single value is
    a list of one; None or "" marks a value that could not be measured). Refused, naming the
    characteristic and value, when a name is not in the plan or a value is not a number or
    has more decimals than the gauge resolves. Fewer values than the sample size count as
    missing. With `idempotency_key`, recording again returns the first inspection."""
    if idempotency_key is not None:
        existing = session.scalar(
            select(Inspection.id).where(Inspection.idempotency_key == idempotency_key)
        )
        if existing is not None:
            return inspection_outcome(session, existing)
    found_plan = _plan(session, plan)
    order, found = _order_and_item(session, order_number, item)
    lot = _lot(found, lot)
    amount = scaled(found, quantity)
    if amount <= 0:
        raise ValidationFailed(f"quantity {quantity} of lot {lot or '-'} must be positive",
                               details={"quantity": "not positive"})  # fmt: skip
    if not isinstance(measurements, Mapping):
        raise ValidationFailed("measurements: expected {characteristic: [values]}",
                               details={"measurements": "not a mapping"})  # fmt: skip
    rows = _characteristics(session, found_plan)
    names = {c.name for c in rows}
    unknown = sorted(set(measurements) - names)
    if unknown:
        raise ValidationFailed(
            f"measurements: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
            f"in plan {plan} (its characteristics: {', '.join(c.name for c in rows)})",
            details={"measurements": f"unknown characteristics {unknown}"},
        )
    sampled: dict[str, list[tuple[int, int]]] = {}
    problems: dict[str, str] = {}
    for c in rows:
        raw = measurements.get(c.name)
        values = [] if raw is None else list(raw) if isinstance(raw, list | tuple) else [raw]
        sampled[c.name] = []
        for sample, value in enumerate(values, 1):
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            try:
                sampled[c.name].append(
                    (sample, scaled(_gauge(c.name, c.unit, c.decimals), value, "value"))
                )
            except ValidationFailed as exc:
                problems[c.name] = f"sample {sample}: {exc.message}"
    if problems:
        raise ValidationFailed(
            "measurements refused: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
            details=problems,
        )
    signer = signed_at = reference = None
    if signature is not None:
        signer, signed_at, reference, _ = signature_record(signature, "signature")
    inspection = Inspection(
        plan_id=found_plan.id, order_number=order.number if order else None, sequence=sequence,
        item=item, lot=lot, quantity=amount, result="in_spec", status="recorded",
        out_of_spec=0, missing=0, worst_excess_bp=0, remarks=(remarks or None),
        inspected_by=inspected_by, inspected_at=now, signed_by=signer, signed_at=signed_at,
        signature_ref=reference, instance_id=instance_id, idempotency_key=idempotency_key,
    )  # fmt: skip
    session.add(inspection)
    session.flush()
    out = missing = worst_bp = 0
    for c in rows:
        values = sampled[c.name]
        excesses = [_excess_bp(v, c.lower, c.upper) for _, v in values]
        short = max(0, c.sample_size - len(values))
        out += sum(1 for e in excesses if e > 0)
        missing += short
        worst_bp = max([worst_bp, *excesses])
        verdict = "out" if any(excesses) else "missing" if short else "in"
        result = InspectionResult(
            inspection_id=inspection.id, characteristic=c.name, position=c.position,
            unit=c.unit, decimals=c.decimals, nominal=c.nominal, lower=c.lower, upper=c.upper,
            sample_size=c.sample_size, verdict=verdict,
        )  # fmt: skip
        session.add(result)
        session.flush()
        session.add_all(InspectionValue(result_id=result.id, sample=s, value=v)
                        for s, v in values)  # fmt: skip
    inspection.out_of_spec, inspection.missing, inspection.worst_excess_bp = out, missing, worst_bp
    inspection.result = "out_of_spec" if out else "incomplete" if missing else "in_spec"
    session.flush()
    return inspection_outcome(session, inspection.id)


def _excess_bp(value: int, lower: int, upper: int) -> int:
    """How far `value` lies outside [lower, upper], in hundredths of a percent of the band,
    rounded up: a value just outside never reads as 0 (in spec)."""
    beyond = max(lower - value, value - upper, 0)
    return -(-beyond * 10_000 // (upper - lower))


def inspection_outcome(session: Session, inspection_id: int) -> dict[str, Any]:
    """What the gate and the inspector need: the spec result (in_spec, out_of_spec,
    incomplete), counts of values out of spec and missing, the worst value (the one farthest
    outside its limits, else the one farthest from nominal relative to its band) with its
    deviation from nominal and excess beyond the limit, `worst_excess_pct` (a number, 0 when
    all values are in spec), the verdict per characteristic, the defect code a failure would
    carry, and a one-line summary."""
    view = inspection_view(session, inspection_id)
    worst: dict[str, Any] | None = None
    worst_key: tuple[int, Fraction] = (-1, Fraction(0))
    for c in view["characteristics"]:
        band = Fraction(c["upper"] - c["lower"])
        for sample, value in c["samples"]:
            excess = max(c["lower"] - value, value - c["upper"], Decimal(0))
            # Ranked by excess beyond the limits, then by distance from nominal (both relative
            # to the band, so that millimetres and degrees compare).
            key = (math.ceil(Fraction(excess) * 10_000 / band),
                   Fraction(abs(value - c["nominal"])) / band)  # fmt: skip
            if key > worst_key:
                worst_key = key
                worst = {"characteristic": c["name"], "sample": sample, "value": value,
                         "unit": c["unit"], "deviation": value - c["nominal"], "excess": excess,
                         "excess_pct": key[0] / 100}  # fmt: skip
    inspection = session.get(Inspection, inspection_id)
    assert inspection is not None
    plan = session.get(InspectionPlan, inspection.plan_id)
    assert plan is not None
    codes = {c.name: c.defect_code for c in session.scalars(
        select(PlanCharacteristic).where(PlanCharacteristic.plan_id == plan.id))}  # fmt: skip
    out_names = [c["name"] for c in view["characteristics"] if c["verdict"] == "out"]
    code = None
    if worst is not None and worst["excess"] > 0:
        code = codes.get(worst["characteristic"])
    code = code or next((codes[n] for n in out_names if codes.get(n)), None) or plan.defect_code
    summary = _summary(view, worst)
    return {
        "inspection": view["id"], "plan": view["plan"], "result": view["result"],
        "status": view["status"], "out_of_spec": view["out_of_spec"],
        "missing": view["missing"], "worst_excess_pct": view["worst_excess_pct"],
        "worst": worst, "verdicts": {c["name"]: c["verdict"] for c in view["characteristics"]},
        "defect_code": code, "summary": summary,
    }  # fmt: skip


def _summary(view: dict[str, Any], worst: dict[str, Any] | None) -> str:
    total = sum(c["sample_size"] for c in view["characteristics"])
    parts = [f"plan {view['plan']}, lot {view['lot'] or '-'}: {view['out_of_spec']} of {total} "
             "values out of spec"]  # fmt: skip
    if view["missing"]:
        parts.append(f"{view['missing']} missing")
    if worst is not None and worst["excess"] > 0:
        c = next(c for c in view["characteristics"] if c["name"] == worst["characteristic"])
        parts.append(f"worst {worst['characteristic']} {worst['value']} {worst['unit']} "
                     f"(limits {c['lower']}..{c['upper']}, {worst['excess_pct']}% of the "
                     "band beyond)")  # fmt: skip
    return ", ".join(parts)


def inspection_view(session: Session, inspection_id: int) -> dict[str, Any]:
    """An inspection with its characteristics, limits, sampled values and verdicts."""
    inspection = session.get(Inspection, inspection_id)
    if inspection is None:
        raise NotFound(f"inspection {inspection_id!r} does not exist")
    plan = session.get(InspectionPlan, inspection.plan_id)
    item = session.get(Item, inspection.item)
    assert plan is not None and item is not None
    characteristics = []
    for r in session.scalars(select(InspectionResult).where(
            InspectionResult.inspection_id == inspection.id)
            .order_by(InspectionResult.position)):  # fmt: skip
        samples = [(v.sample, _dec(v.value, r.decimals)) for v in session.scalars(
            select(InspectionValue).where(InspectionValue.result_id == r.id)
            .order_by(InspectionValue.sample))]  # fmt: skip
        characteristics.append({
            "name": r.characteristic, "unit": r.unit, "decimals": r.decimals,
            "nominal": _dec(r.nominal, r.decimals), "lower": _dec(r.lower, r.decimals),
            "upper": _dec(r.upper, r.decimals), "sample_size": r.sample_size,
            "values": [v for _, v in samples], "samples": samples, "verdict": r.verdict,
        })  # fmt: skip
    when = lambda moment: moment.isoformat() if moment else None  # noqa: E731
    return {
        "id": inspection.id, "plan": plan.name, "order_number": inspection.order_number,
        "sequence": inspection.sequence, "item": inspection.item, "lot": inspection.lot,
        "quantity": unscaled(item, inspection.quantity), "uom": item.uom,
        "result": inspection.result, "status": inspection.status,
        "out_of_spec": inspection.out_of_spec, "missing": inspection.missing,
        "worst_excess_pct": inspection.worst_excess_bp / 100,
        "characteristics": characteristics, "remarks": inspection.remarks,
        "inspected_by": inspection.inspected_by, "inspected_at": when(inspection.inspected_at),
        "signed_by": inspection.signed_by, "signed_at": when(inspection.signed_at),
        "signature_ref": inspection.signature_ref, "held_at": when(inspection.held_at),
        "decided_by": inspection.decided_by, "decided_at": when(inspection.decided_at),
        "decision_reason": inspection.decision_reason,
    }  # fmt: skip


#: The gate decides a recorded inspection; a hold is decided again by a review.
_DECISIONS = {"recorded": ("pass", "hold", "fail"), "hold": ("pass", "fail"),
              "pass": (), "fail": ()}  # fmt: skip


def decide_inspection(
    session: Session,
    inspection_id: int,
    decision: str,
    *,
    now: datetime,
    decided_by: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Record the gate's decision about the lot: pass, hold or fail; a held lot is then
    passed or failed by a review, which needs a reason. Deciding what is already decided is
    a no-op (a retried step); anything else after pass or fail is refused."""
    inspection = session.get(Inspection, inspection_id)
    if inspection is None:
        raise NotFound(f"inspection {inspection_id!r} does not exist")
    if decision not in ("pass", "hold", "fail"):
        raise ValidationFailed(f"decision {decision!r} is not one of pass, hold, fail",
                               details={"decision": "unknown"})  # fmt: skip
    if inspection.status == decision:
        return inspection_view(session, inspection_id)
    allowed = _DECISIONS[inspection.status]
    if decision not in allowed:
        who = inspection.decided_by or "the gate"
        raise Conflict(f"inspection {inspection_id} is decided already ({inspection.status} by "
                       f"{who}): it cannot become {decision}")  # fmt: skip
    if inspection.status == "hold" and not (reason or "").strip():
        raise ValidationFailed(f"inspection {inspection_id} is held: releasing or failing it "
                               "needs a reason", details={"reason": "missing"})  # fmt: skip
    if decision == "hold":
        inspection.held_at = now
    inspection.status = decision
    inspection.decided_by, inspection.decided_at = decided_by, now
    inspection.decision_reason = (reason or "").strip() or None
    session.flush()
    return inspection_view(session, inspection_id)


# ---------------------------------------------------------------------- nonconformances
def raise_nonconformance(
    session: Session,
    *,
    item: str,
    lot: str | None,
    quantity: Any,
    defect_code: str,
    description: str,
    now: datetime,
    order_number: str | None = None,
    sequence: int | None = None,
    inspection_id: int | None = None,
    raised_by: str | None = None,
    instance_id: int | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Open a nonconformance; its view. Refused, naming the field, for an unknown order, item,
    inspection or defect code, a quantity that is not positive, a lot-tracked item without a
    lot, or an empty description. With `idempotency_key`, raising again returns the first."""
    if idempotency_key is not None:
        existing = session.scalar(
            select(Nonconformance.id).where(Nonconformance.idempotency_key == idempotency_key)
        )
        if existing is not None:
            return nonconformance_view(session, existing)
    order, found = _order_and_item(session, order_number, item)
    lot = _lot(found, lot)
    amount = scaled(found, quantity)
    if amount <= 0:
        raise ValidationFailed(f"quantity {quantity} of {item} must be positive",
                               details={"quantity": "not positive"})  # fmt: skip
    code = session.get(DefectCode, defect_code)
    if code is None or not code.active:
        raise ValidationFailed(f"defect code {defect_code!r} does not exist",
                               details={"defect_code": "unknown"})  # fmt: skip
    if not isinstance(description, str) or not description.strip():
        raise ValidationFailed("a nonconformance needs a description of what is wrong",
                               details={"description": "missing"})  # fmt: skip
    if inspection_id is not None and session.get(Inspection, inspection_id) is None:
        raise NotFound(f"inspection {inspection_id!r} does not exist")
    nc = Nonconformance(
        order_number=order.number if order else None, sequence=sequence, item=item, lot=lot,
        defect_code=defect_code, quantity=amount, description=description.strip(),
        inspection_id=inspection_id, status="open", raised_by=raised_by, raised_at=now,
        instance_id=instance_id, idempotency_key=idempotency_key,
    )  # fmt: skip
    session.add(nc)
    session.flush()
    return nonconformance_view(session, nc.id)


def _nc(session: Session, nc_id: int) -> Nonconformance:
    nc = session.get(Nonconformance, nc_id)
    if nc is None:
        raise NotFound(f"nonconformance {nc_id!r} does not exist")
    return nc


def disposition_nonconformance(
    session: Session,
    nc_id: int,
    disposition: str,
    *,
    signature: Mapping[str, Any],
    now: datetime,
    quantity: Any = None,
    note: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Approve what is done with an open nonconformance (use_as_is, rework, scrap, return),
    with the approver's e-signature (a form's signature field, which must have signed this
    disposition). With a `quantity` below the nonconformance's, that much is dispositioned
    and the rest stays open as a new nonconformance (`remainder` in the view). Refused for a
    closed or already dispositioned one; the same step retried (same key) is a no-op."""
    nc = _nc(session, nc_id)
    if idempotency_key is not None and nc.disposition_key == idempotency_key:
        return nonconformance_view(session, nc_id)
    if nc.status == "closed":
        raise Conflict(f"nonconformance {nc_id} is closed: its disposition ({nc.disposition}) "
                       "cannot change; raise a new nonconformance")  # fmt: skip
    if nc.status != "open":
        raise Conflict(f"nonconformance {nc_id} is dispositioned already ({nc.disposition}, "
                       f"approved by {nc.approved_by}): it cannot be dispositioned "
                       "again")  # fmt: skip
    if disposition not in DISPOSITIONS:
        raise ValidationFailed(f"disposition {disposition!r} is not one of "
                               f"{', '.join(DISPOSITIONS)}",
                               details={"disposition": "unknown"})  # fmt: skip
    signer, signed_at, reference, canonical = signature_record(signature)
    signed = signature["values"].get("disposition")
    if signed != disposition:
        raise ValidationFailed(
            f"the signature of {signer} signs disposition {signed!r}, not {disposition!r}: "
            "the disposition recorded must be the one signed",
            details={"signature": "does not sign this disposition"},
        )
    item = session.get(Item, nc.item)
    assert item is not None
    if quantity is not None:
        amount = scaled(item, quantity)
        if amount <= 0 or amount > nc.quantity:
            raise ValidationFailed(
                f"quantity {quantity} must be positive and at most the nonconformance's "
                f"{unscaled(item, nc.quantity)} {item.uom}",
                details={"quantity": "out of range"},
            )
        if amount < nc.quantity:
            rest = Nonconformance(
                order_number=nc.order_number, sequence=nc.sequence, item=nc.item, lot=nc.lot,
                defect_code=nc.defect_code, quantity=nc.quantity - amount,
                description=f"{nc.description} (remainder of nonconformance {nc.id})",
                inspection_id=nc.inspection_id, split_from=nc.id, status="open", raised_by=signer,
                raised_at=now, instance_id=nc.instance_id,
            )  # fmt: skip
            session.add(rest)
            nc.quantity = amount
    nc.status, nc.disposition = "dispositioned", disposition
    nc.disposition_note = (note or "").strip() or None
    nc.approved_by, nc.approved_at, nc.signature_ref = signer, signed_at, reference
    nc.signature, nc.disposition_key = canonical, idempotency_key
    session.flush()
    return nonconformance_view(session, nc_id)


def close_nonconformance(
    session: Session,
    nc_id: int,
    *,
    now: datetime,
    closed_by: str | None = None,
    note: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Close a dispositioned nonconformance once its disposition is carried out (reworked,
    scrapped, returned). Refused while it has no disposition, and when it is closed already
    (except for the same step retried)."""
    nc = _nc(session, nc_id)
    if idempotency_key is not None and nc.close_key == idempotency_key:
        return nonconformance_view(session, nc_id)
    if nc.status == "open":
        raise Conflict(f"nonconformance {nc_id} has no disposition yet: it cannot be closed")
    if nc.status == "closed":
        raise Conflict(f"nonconformance {nc_id} is closed already (by {nc.closed_by})")
    nc.status, nc.closed_by, nc.closed_at = "closed", closed_by, now
    nc.close_note, nc.close_key = (note or "").strip() or None, idempotency_key
    session.flush()
    return nonconformance_view(session, nc_id)


def nonconformance_view(session: Session, nc_id: int) -> dict[str, Any]:
    nc = _nc(session, nc_id)
    item = session.get(Item, nc.item)
    assert item is not None
    when = lambda moment: moment.isoformat() if moment else None  # noqa: E731
    return {
        "id": nc.id, "order_number": nc.order_number, "sequence": nc.sequence,
        "item": nc.item, "lot": nc.lot, "defect_code": nc.defect_code,
        "quantity": unscaled(item, nc.quantity), "uom": item.uom,
        "description": nc.description, "inspection": nc.inspection_id, "status": nc.status,
        "split_from": nc.split_from,
        "remainder": session.scalar(select(Nonconformance.id)
                                    .where(Nonconformance.split_from == nc.id)),
        "raised_by": nc.raised_by, "raised_at": when(nc.raised_at),
        "disposition": nc.disposition, "disposition_note": nc.disposition_note,
        "approved_by": nc.approved_by, "approved_at": when(nc.approved_at),
        "signature_ref": nc.signature_ref, "closed_by": nc.closed_by,
        "closed_at": when(nc.closed_at), "close_note": nc.close_note,
    }  # fmt: skip


def open_quality(session: Session, now: datetime) -> dict[str, Any]:
    """What the dashboard shows: lots on quality hold and nonconformances not yet closed
    (open or dispositioned), oldest first, each with its age in seconds."""
    holds = []
    for inspection, plan in session.execute(
        select(Inspection, InspectionPlan.name)
        .join(InspectionPlan, InspectionPlan.id == Inspection.plan_id)
        .where(Inspection.status == "hold").order_by(Inspection.held_at, Inspection.id)
    ):  # fmt: skip
        since = inspection.held_at or inspection.inspected_at
        holds.append({"inspection": inspection.id, "plan": plan,
                      "order_number": inspection.order_number, "sequence": inspection.sequence,
                      "item": inspection.item, "lot": inspection.lot,
                      "since": since.isoformat(),
                      "age_seconds": int((now - since).total_seconds())})  # fmt: skip
    ncs = []
    for nc in session.scalars(select(Nonconformance)
                              .where(Nonconformance.status.in_(("open", "dispositioned")))
                              .order_by(Nonconformance.raised_at, Nonconformance.id)):  # fmt: skip
        item = session.get(Item, nc.item)
        assert item is not None
        ncs.append({"id": nc.id, "order_number": nc.order_number, "sequence": nc.sequence,
                    "item": nc.item, "lot": nc.lot, "defect_code": nc.defect_code,
                    "quantity": unscaled(item, nc.quantity), "uom": item.uom,
                    "status": nc.status, "disposition": nc.disposition,
                    "since": nc.raised_at.isoformat(),
                    "age_seconds": int((now - nc.raised_at).total_seconds())})  # fmt: skip
    return {"holds": holds, "nonconformances": ncs}
