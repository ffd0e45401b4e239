"""Downtime: reason codes, downtime records (open, reason, repair, close) and their Pareto.

A downtime record is a stop that lasted longer than the threshold of the machine downtime
workflow (workflows/machine_downtime.yaml). It opens with what the machine reported (state,
alarm code) and the reason that signal names by itself, if any; the operator then gives the
reason (it must be an active downtime reason code); it closes when the machine runs again,
with its duration. The reason is also written onto the machine's state intervals inside the
downtime, so run-time losses can be read by reason.

Functions take the caller's Session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.machine_models import (
    DOWNTIME_CATEGORIES,
    RUNNING,
    Downtime,
    MachineState,
    ReasonCode,
    ReasonSignal,
)
from taktflow.mfg.machine_time import require_aware, signal_reason
from taktflow.mfg.models import Machine

#: Pareto rows of downtimes that have no reason (yet).
UNASSIGNED = "UNASSIGNED"


def load_reason_codes(session: Session, path: str | Path) -> dict[str, int]:
    """Add or update the downtime reasons of a reason-code file: `downtime: [{code, name,
    category, alarm_codes: [101, ...], states: [setup, ...], active?}]`. Reasons are never
    deleted (downtimes refer to them): retire one with `active: false`. An alarm code or state
    names its reason automatically; each belongs to one reason. Count of reasons."""
    from taktflow.yamlflow.loader import YamlProblem, load

    path = Path(path)
    try:
        doc = load(path.read_text(encoding="utf-8"), kind="reason codes")
    except YamlProblem as exc:
        raise ValidationFailed(f"{path}: {exc}") from None
    items = doc.get("downtime") if isinstance(doc, Mapping) else None
    if not isinstance(items, list) or not items or set(doc) - {"downtime"}:
        raise ValidationFailed(f"{path}: expected `downtime:` with a list of reasons")
    signals: dict[str, str] = {}
    allowed = {"code", "name", "category", "alarm_codes", "states", "active"}
    for number, raw in enumerate(items, 1):
        code = str(raw.get("code", "")) if isinstance(raw, Mapping) else ""
        where = f"{path}: reason {number} ({code or '?'})"
        if not isinstance(raw, Mapping) or not code or len(code) > 40:
            raise ValidationFailed(f"{where}: expected {{code, name, category}} with a code of "
                                   "1 to 40 characters")  # fmt: skip
        problems = []
        if set(raw) - allowed:
            problems.append(f"unknown keys {sorted(set(raw) - allowed)}")
        if raw.get("category") not in DOWNTIME_CATEGORIES:
            problems.append(f"category must be one of {', '.join(DOWNTIME_CATEGORIES)}")
        if not isinstance(raw.get("active", True), bool):
            problems.append("active must be true or false")
        alarms = raw.get("alarm_codes") or []
        states = raw.get("states") or []
        if not isinstance(alarms, list) or any(
            not isinstance(a, int) or isinstance(a, bool) or a <= 0 for a in alarms
        ):
            problems.append("alarm_codes must be a list of positive whole numbers")
            alarms = []
        if not isinstance(states, list) or any(not isinstance(s, str) or not s for s in states):
            problems.append("states must be a list of state names")
            states = []
        if RUNNING in states:
            problems.append("running is no stop: it cannot name a downtime reason")
        for signal in [f"alarm:{a}" for a in alarms] + [f"state:{s}" for s in states]:
            if signal in signals:
                problems.append(f"{signal.replace(':', ' ')} already belongs to {signals[signal]}")
            signals[signal] = code
        if problems:
            raise ValidationFailed(f"{where}: " + "; ".join(problems))
        reason = session.get(ReasonCode, code) or ReasonCode(code=code)
        reason.name, reason.category = str(raw.get("name") or code), raw["category"]
        reason.active = raw.get("active", True)
        session.add(reason)
    session.flush()
    # The file says which signals name which reason: the mapping is replaced as a whole.
    for old in session.scalars(select(ReasonSignal)):
        session.delete(old)
    session.flush()
    for signal, code in signals.items():
        session.add(ReasonSignal(signal=signal, reason=code))
    session.flush()
    return len(items)


def downtime_reasons(session: Session) -> list[dict[str, Any]]:
    """The active downtime reasons as select options: [{value, label, category}]."""
    return [{"value": r.code, "label": f"{r.name} [{r.category}]", "category": r.category}
            for r in session.scalars(select(ReasonCode).where(ReasonCode.active.is_(True))
                                     .order_by(ReasonCode.category, ReasonCode.code))]  # fmt: skip


def open_downtime(
    session: Session,
    *,
    machine: str,
    started_at: datetime,
    now: datetime,
    state: str | None = None,
    alarm_code: int | None = None,
    idempotency_key: str | None = None,
    instance_id: int | None = None,
) -> dict[str, Any]:
    """Open a downtime of `machine` from `started_at`, with the reason its alarm code or state
    names (if mapped). Refused while another downtime of the machine is open; with
    `idempotency_key`, opening again returns the first record."""
    if idempotency_key is not None:
        existing = session.scalar(select(Downtime).where(
            Downtime.idempotency_key == idempotency_key))  # fmt: skip
        if existing is not None:
            return downtime_view(session, existing.id)
    require_aware(started_at, "started_at")
    if session.get(Machine, machine) is None:
        raise NotFound(f"machine {machine!r} does not exist")
    if state == RUNNING:
        raise ValidationFailed(f"{machine} is running: a downtime opens for a stop",
                               details={"state": "running"})  # fmt: skip
    if started_at > now:
        raise ValidationFailed(f"started_at {started_at.isoformat()} lies in the future",
                               details={"started_at": "in the future"})  # fmt: skip
    already = session.scalar(select(Downtime).where(Downtime.machine == machine,
                                                    Downtime.ended_at.is_(None)))  # fmt: skip
    if already is not None:
        raise Conflict(f"{machine} has downtime {already.id} open since "
                       f"{already.started_at.isoformat()}: close it first")  # fmt: skip
    reason = signal_reason(session, state, alarm_code)
    record = Downtime(
        machine=machine, started_at=started_at, state=state, alarm_code=alarm_code or None,
        reason=reason, reason_source="signal" if reason else None,
        idempotency_key=idempotency_key, instance_id=instance_id, created_at=now,
    )  # fmt: skip
    session.add(record)
    session.flush()
    return downtime_view(session, record.id)


def set_reason(
    session: Session,
    downtime_id: int,
    reason: str,
    *,
    by: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Give a downtime its reason (open or already closed): an active downtime reason code,
    else ValidationFailed naming the reasons there are. The machine's stop intervals inside
    the downtime take the reason too."""
    record = _downtime(session, downtime_id)
    found = session.get(ReasonCode, reason) if isinstance(reason, str) else None
    if found is None or not found.active:
        known = ", ".join(r["value"] for r in downtime_reasons(session))
        what = "is retired" if found is not None else "is not a downtime reason"
        raise ValidationFailed(f"reason {reason!r} {what} (reasons: {known})",
                               details={"reason": what})  # fmt: skip
    record.reason, record.reason_source, record.reason_by = found.code, "operator", by
    if note is not None:
        record.note = note
    intervals = update(MachineState).where(
        MachineState.machine == record.machine, MachineState.state != RUNNING,
        MachineState.started_at >= record.started_at)  # fmt: skip
    end = record.ended_at or now
    if end is not None:
        intervals = intervals.where(MachineState.started_at < end)
    session.execute(intervals.values(reason=found.code))
    # The interval the stop began in may have started a moment earlier than the record.
    session.execute(update(MachineState).where(
        MachineState.machine == record.machine, MachineState.state != RUNNING,
        MachineState.started_at < record.started_at,
        or_(MachineState.ended_at.is_(None), MachineState.ended_at > record.started_at),
    ).values(reason=found.code))  # fmt: skip
    session.flush()
    return downtime_view(session, downtime_id)


def record_repair(
    session: Session, downtime_id: int, note: str, *, by: str | None = None
) -> dict[str, Any]:
    """What maintenance did about a downtime (kept with the record)."""
    record = _downtime(session, downtime_id)
    if not isinstance(note, str) or not note.strip():
        raise ValidationFailed("say what was done (the repair note is empty)",
                               details={"note": "missing"})  # fmt: skip
    record.repair_note, record.repaired_by = note.strip(), by
    session.flush()
    return downtime_view(session, downtime_id)


def close_downtime(
    session: Session, downtime_id: int, *, ended_at: datetime, now: datetime
) -> dict[str, Any]:
    """Close a downtime when the machine runs again, with its duration. Closing a closed
    downtime changes nothing (a retried step, a second restart message): the first close
    stands, and the view says `already_closed`."""
    record = _downtime(session, downtime_id)
    if record.ended_at is not None:
        return downtime_view(session, downtime_id) | {"already_closed": True}
    require_aware(ended_at, "ended_at")
    if ended_at < record.started_at:
        raise ValidationFailed(
            f"downtime {downtime_id} began at {record.started_at.isoformat()}; it cannot end "
            f"before, at {ended_at.isoformat()}",
            details={"ended_at": "before the start"},
        )
    if ended_at > now:
        raise ValidationFailed(f"ended_at {ended_at.isoformat()} lies in the future",
                               details={"ended_at": "in the future"})  # fmt: skip
    record.ended_at = ended_at
    record.duration_ms = (ended_at - record.started_at) // _MS
    session.flush()
    return downtime_view(session, downtime_id) | {"already_closed": False}


def downtime_view(session: Session, downtime_id: int) -> dict[str, Any]:
    record = _downtime(session, downtime_id)
    reason = session.get(ReasonCode, record.reason) if record.reason else None
    return {
        "id": record.id, "machine": record.machine,
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "duration_s": None if record.duration_ms is None else _seconds(record.duration_ms),
        "open": record.ended_at is None, "state": record.state, "alarm_code": record.alarm_code,
        "reason": record.reason, "reason_name": reason.name if reason else None,
        "category": reason.category if reason else None, "reason_source": record.reason_source,
        "reason_by": record.reason_by, "note": record.note, "repair_note": record.repair_note,
        "repaired_by": record.repaired_by, "instance_id": record.instance_id,
    }  # fmt: skip


def downtimes(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    machine: str | None = None,
    work_center: str | None = None,
) -> list[dict[str, Any]]:
    """Downtimes overlapping [start, end) (still open ones included), oldest first."""
    return [downtime_view(session, r.id) for r in _overlapping(session, start, end, machine,
                                                               work_center)]  # fmt: skip


def pareto(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    machine: str | None = None,
    work_center: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Downtime by reason within [start, end), longest first, with each reason's share and the
    cumulative share (the Pareto chart). Only the part of a downtime inside the window counts;
    an open one counts up to `now` (or the window's end). Downtimes without a reason are
    UNASSIGNED."""
    until = min(end, now) if now is not None else end
    totals: dict[str, list[int]] = {}
    for record in _overlapping(session, start, until, machine, work_center):
        s, e = max(record.started_at, start), min(record.ended_at or until, until)
        if e <= s:
            continue
        entry = totals.setdefault(record.reason or UNASSIGNED, [0, 0])
        entry[0] += 1
        entry[1] += (e - s) // _MS
    overall = sum(ms for _, ms in totals.values())
    names = {r.code: r for r in session.scalars(select(ReasonCode))}
    rows, running = [], 0
    for code, (count, ms) in sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0])):
        running += ms
        reason = names.get(code)
        rows.append({"reason": code, "name": reason.name if reason else "No reason given",
                     "category": reason.category if reason else None, "count": count,
                     "duration_s": _seconds(ms), "share_pct": _percent(ms, overall),
                     "cumulative_pct": _percent(running, overall)})  # fmt: skip
    return {"start": start.isoformat(), "end": until.isoformat(), "machine": machine,
            "work_center": work_center, "duration_s": _seconds(overall),
            "count": sum(c for c, _ in totals.values()), "reasons": rows}  # fmt: skip


def _overlapping(
    session: Session,
    start: datetime,
    end: datetime,
    machine: str | None,
    work_center: str | None,
) -> list[Downtime]:
    require_aware(start, "start")
    require_aware(end, "end")
    query = select(Downtime).where(
        Downtime.started_at < end, or_(Downtime.ended_at.is_(None), Downtime.ended_at > start)
    )
    if machine is not None:
        query = query.where(Downtime.machine == machine)
    if work_center is not None:
        query = query.join(Machine, Machine.code == Downtime.machine).where(
            Machine.work_center == work_center)  # fmt: skip
    return list(session.scalars(query.order_by(Downtime.started_at, Downtime.id)))


def _downtime(session: Session, downtime_id: Any) -> Downtime:
    if not isinstance(downtime_id, int) or isinstance(downtime_id, bool):
        raise ValidationFailed(f"downtime id {downtime_id!r} is not a number",
                               details={"downtime_id": "not a number"})  # fmt: skip
    record = session.get(Downtime, downtime_id)
    if record is None:
        raise NotFound(f"downtime {downtime_id} does not exist")
    return record


_MS = timedelta(milliseconds=1)


def _seconds(ms: int) -> Decimal:
    return (Decimal(ms) / 1000).quantize(Decimal("0.001"))


def _percent(part: int, whole: int) -> Decimal:
    if not whole:
        return Decimal("0.0")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP)
