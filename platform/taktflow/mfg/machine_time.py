"""Machine time: the shift calendar, machine state intervals and counts, and OEE.

Machine signals reach taktflow as connector events in the durable inbox (`machine_state`,
`parts_produced`, `parts_rejected`, correlated by `machine_id`). They are not taken from the
workflows: a message is handed to the workflows that wait for it, and the routing execution
waits for `parts_produced`. Instead a projector reads the inbox, where every event stays with
its name, correlation, payload and time, in id order from a cursor, and turns the events into
state intervals and per-minute count buckets. The cursor moves in the same transaction as the
rows it produced, so after a crash nothing is counted twice and nothing is lost.

On PostgreSQL inbox ids come from a sequence and are taken when a row is inserted, not when it
commits: a slow transaction can commit id 41 after id 42 was committed and read. The projector
therefore remembers the ids it skipped (gaps) and looks for them again on later passes for
`GAP_WAIT`; a gap that never fills (a rolled-back insert, an ON CONFLICT duplicate) is then
forgotten. A late event is put into the timeline where its time belongs, so the result does not
depend on the order events are read in.

Functions take the caller's Session and never commit, except `project_machine_events`, which is
a unit of work of its own (the worker runs it). Durations are integer microseconds inside and
leave as Decimal seconds; OEE ratios leave as Decimal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.db import WRITE_OPTION
from taktflow.engine.models import WAIT_MESSAGE, InboxMessage, MachineContext
from taktflow.errors import NotFound, ValidationFailed
from taktflow.mfg.execution import count_on_machine
from taktflow.mfg.machine_models import (
    RUNNING,
    Downtime,
    Holiday,
    MachineCount,
    MachineIdeal,
    MachineProjection,
    MachineState,
    ReasonSignal,
    Shift,
    ShiftBreak,
)
from taktflow.mfg.models import (
    Machine,
    OrderOperation,
    ProductionOrder,
    Routing,
    RoutingOperation,
)

#: The inbox events the projector reads (message names).
STATE_EVENT, PRODUCED_EVENT, REJECTED_EVENT = "machine_state", "parts_produced", "parts_rejected"
PROJECTED = (STATE_EVENT, PRODUCED_EVENT, REJECTED_EVENT)
PROJECTOR = "machine_time"
#: How long an inbox id that was skipped may still commit (longer than any transaction).
GAP_WAIT = timedelta(minutes=5)
BUCKET = timedelta(minutes=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_US = timedelta(microseconds=1)
RATIO = Decimal("0.000001")
PERCENT = Decimal("0.01")
SECONDS = Decimal("0.001")

Segment = tuple[datetime, datetime]


# ---------------------------------------------------------------------- the calendar file
def load_calendar(session: Session, path: str | Path) -> dict[str, int]:
    """Add or update the shifts, holidays and machine ideal cycle times of a calendar file:

    `timezone: Europe/Berlin`, `shifts: [{code, name, start: "06:00", end: "14:00", days:
    [mon, ...], breaks: [{name, start, end}], timezone?, active?}]`, `holidays: [{date, name}]`,
    `machines: [{machine, ideal_cycle_s}]`. A listed shift's breaks become exactly those of the
    file; shifts and holidays are never deleted (retire a shift with `active: false`). Each
    problem names the file and the entry. Counts of each section."""
    from taktflow.yamlflow.loader import YamlProblem, load

    path = Path(path)
    try:
        doc = load(path.read_text(encoding="utf-8"), kind="shift calendar")
    except YamlProblem as exc:
        raise ValidationFailed(f"{path}: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ValidationFailed(f"{path}: expected `timezone:`, `shifts:` and `holidays:`")
    unknown = set(doc) - {"timezone", "shifts", "holidays", "machines"}
    if unknown:
        raise ValidationFailed(f"{path}: unknown keys {sorted(unknown)} (expected timezone, "
                               "shifts, holidays, machines)")  # fmt: skip
    default_zone = doc.get("timezone", "UTC")
    shifts = _list(doc, "shifts", path)
    for number, raw in enumerate(shifts, 1):
        _load_shift(session, raw, default_zone, f"{path}: shift {number}")
    holidays = _list(doc, "holidays", path)
    for number, raw in enumerate(holidays, 1):
        where = f"{path}: holiday {number}"
        if not isinstance(raw, Mapping) or set(raw) - {"date", "name"}:
            raise ValidationFailed(f"{where}: expected {{date, name}}")
        try:
            day = date.fromisoformat(str(raw.get("date")))
        except ValueError:
            raise ValidationFailed(f"{where}: date {raw.get('date')!r} is not a date like "
                                   "2026-12-25") from None  # fmt: skip
        holiday = session.get(Holiday, day) or Holiday(day=day)
        holiday.name = str(raw.get("name") or day.isoformat())
        session.add(holiday)
    machines = _list(doc, "machines", path)
    for number, raw in enumerate(machines, 1):
        where = f"{path}: machine {number}"
        code = str(raw.get("machine", "")) if isinstance(raw, Mapping) else ""
        if not isinstance(raw, Mapping) or set(raw) - {"machine", "ideal_cycle_s"}:
            raise ValidationFailed(f"{where}: expected {{machine, ideal_cycle_s}}")
        if session.get(Machine, code) is None:
            raise ValidationFailed(f"{where} ({code or '?'}): machine {code!r} does not exist "
                                   "(load the master data first)")  # fmt: skip
        ideal_ms = _positive_ms(raw.get("ideal_cycle_s"))
        if ideal_ms is None:
            raise ValidationFailed(f"{where} ({code}): ideal_cycle_s must be a positive number "
                                   "of seconds with at most 3 decimals")  # fmt: skip
        ideal = session.get(MachineIdeal, code) or MachineIdeal(machine=code)
        ideal.ideal_cycle_ms = ideal_ms
        session.add(ideal)
    session.flush()
    return {"shifts": len(shifts), "holidays": len(holidays), "ideal_cycle_times": len(machines)}


def _list(doc: Mapping[str, Any], key: str, path: Path) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise ValidationFailed(f"{path}: `{key}:` must be a list")
    return value


def _load_shift(session: Session, raw: Any, default_zone: Any, where: str) -> None:
    allowed = {"code", "name", "start", "end", "days", "breaks", "timezone", "active"}
    code = str(raw.get("code", "")) if isinstance(raw, Mapping) else ""
    if not isinstance(raw, Mapping) or not code or len(code) > 40:
        raise ValidationFailed(f"{where}: expected {{code, name, start, end, days, breaks}} "
                               "with a code of 1 to 40 characters")  # fmt: skip
    where = f"{where} ({code})"
    problems = []
    if set(raw) - allowed:
        problems.append(f"unknown keys {sorted(set(raw) - allowed)}")
    zone = str(raw.get("timezone", default_zone))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"timezone {zone!r} is not a time zone like Europe/Berlin")
    start, end = _minute(raw.get("start")), _minute(raw.get("end"))
    if start is None:
        problems.append(f'start {raw.get("start")!r} is not a time like "06:00"')
    if end is None:
        problems.append(f'end {raw.get("end")!r} is not a time like "14:00"')
    if start is not None and start == end:
        problems.append("start and end are the same time")
    days = raw.get("days", list(WEEKDAYS[:5]))
    if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
        problems.append(f"days must be a list of {', '.join(WEEKDAYS)}")
    active = raw.get("active", True)
    if not isinstance(active, bool):
        problems.append("active must be true or false")
    breaks: list[tuple[str, int, int]] = []
    if start is not None and end is not None and start != end:
        span_end = end if end > start else end + 1440
        for number, pause in enumerate(raw.get("breaks") or [], 1):
            b_start = _minute(pause.get("start")) if isinstance(pause, Mapping) else None
            b_end = _minute(pause.get("end")) if isinstance(pause, Mapping) else None
            if b_start is None or b_end is None:
                problems.append(f'break {number}: needs start and end times like "09:00"')
                continue
            # A break of a shift that passes midnight may lie on the next day.
            b_start += 1440 if b_start < start else 0
            b_end += 1440 if b_end < start else 0
            if not start <= b_start < b_end <= span_end:
                problems.append(f"break {number}: {pause.get('start')}-{pause.get('end')} "
                                "does not lie inside the shift")  # fmt: skip
                continue
            breaks.append((str(pause.get("name") or f"break {number}"), b_start, b_end))
    if problems:
        raise ValidationFailed(f"{where}: " + "; ".join(problems))
    assert start is not None and end is not None
    shift = session.get(Shift, code) or Shift(code=code)
    shift.name, shift.timezone = str(raw.get("name") or code), zone
    shift.start_min, shift.end_min, shift.active = start, end, active
    shift.weekdays = ",".join(str(WEEKDAYS.index(d) + 1) for d in days)
    session.add(shift)
    session.flush()
    # A shift's breaks are configuration, not history: the file's list replaces them.
    for old in session.scalars(select(ShiftBreak).where(ShiftBreak.shift == code)):
        session.delete(old)
    for name, b_start, b_end in breaks:
        session.add(ShiftBreak(shift=code, name=name, start_min=b_start, end_min=b_end))


def _minute(value: Any) -> int | None:
    """Minutes after midnight of "HH:MM" ("24:00" is the end of the day); None if not one."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        return None
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit()):
        return None
    total = int(hours) * 60 + int(minutes)
    return total if int(minutes) < 60 and total <= 1440 else None


def _positive_ms(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        return None
    if not seconds.is_finite() or seconds <= 0 or (seconds * 1000) % 1:
        return None
    return int(seconds * 1000)


# ---------------------------------------------------------------------- shifts and planned time
@dataclass
class ShiftSpan:
    """One occurrence of a shift: when it starts and ends, and its breaks (UTC)."""

    code: str
    name: str
    day: date
    start: datetime
    end: datetime
    breaks: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        shift_us = _us(self.end - self.start)
        stop_us = sum(_us(e - s) for _, s, e in self.breaks)
        return {"shift": self.code, "name": self.name, "day": self.day.isoformat(),
                "start": self.start.isoformat(), "end": self.end.isoformat(),
                "breaks": [{"name": n, "start": s.isoformat(), "end": e.isoformat()}
                           for n, s, e in self.breaks],
                "shift_s": _seconds(shift_us), "planned_stop_s": _seconds(stop_us),
                "planned_s": _seconds(shift_us - stop_us)}  # fmt: skip


def shift_spans(session: Session, start: datetime, end: datetime) -> list[ShiftSpan]:
    """The shifts (active, not on a holiday) that overlap [start, end), in time order."""
    require_aware(start, "start")
    require_aware(end, "end")
    holidays = set(session.scalars(select(Holiday.day)))
    breaks: dict[str, list[ShiftBreak]] = {}
    for pause in session.scalars(select(ShiftBreak).order_by(ShiftBreak.start_min)):
        breaks.setdefault(pause.shift, []).append(pause)
    spans = []
    for shift in session.scalars(select(Shift).where(Shift.active.is_(True))):
        zone = ZoneInfo(shift.timezone)
        weekdays = {int(d) for d in shift.weekdays.split(",")}
        # A shift that started the day before may still run into the window.
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        while day <= last:
            if day.isoweekday() in weekdays and day not in holidays:
                span = _span(shift, day, zone, breaks.get(shift.code, []))
                if span.start < end and span.end > start:
                    spans.append(span)
            day += timedelta(days=1)
    return sorted(spans, key=lambda s: (s.start, s.code))


def _span(shift: Shift, day: date, zone: ZoneInfo, breaks: list[ShiftBreak]) -> ShiftSpan:
    midnight = datetime.combine(day, time(0), tzinfo=zone)

    def at(minutes: int) -> datetime:
        # Wall-clock arithmetic: 06:00 stays 06:00 local on the days clocks change.
        local = midnight + timedelta(minutes=minutes)
        local = datetime.combine(local.date(), local.time(), tzinfo=zone)
        return local.astimezone(UTC)

    end_min = shift.end_min if shift.end_min > shift.start_min else shift.end_min + 1440
    return ShiftSpan(shift.code, shift.name, day, at(shift.start_min), at(end_min),
                     [(b.name, at(b.start_min), at(b.end_min)) for b in breaks])  # fmt: skip


def shifts_of_day(session: Session, day: date) -> list[dict[str, Any]]:
    """The shifts that start on a (local) day, with their breaks and planned time."""
    start = datetime.combine(day, time(0), tzinfo=UTC) - timedelta(days=1)
    return [s.view() for s in shift_spans(session, start, start + timedelta(days=3))
            if s.day == day]  # fmt: skip


def planned_segments(session: Session, start: datetime, end: datetime) -> list[Segment]:
    """Planned production time in [start, end): shift time minus planned stops (breaks), as
    sorted, non-overlapping (start, end) pairs."""
    segments: list[Segment] = []
    for span in shift_spans(session, start, end):
        segments += _subtract((span.start, span.end), [(s, e) for _, s, e in span.breaks])
    return _intersect(_merge(segments), [(start, end)])


def planned_time(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Shift time, planned stops and planned production time of a window, in seconds."""
    spans = shift_spans(session, start, end)
    shift_us = _total(_intersect(_merge([(s.start, s.end) for s in spans]), [(start, end)]))
    planned = planned_segments(session, start, end)
    planned_us = _total(planned)
    return {"shift_s": _seconds(shift_us), "planned_stop_s": _seconds(shift_us - planned_us),
            "planned_s": _seconds(planned_us),
            "shifts": [s.view() for s in spans]}  # fmt: skip


# ---------------------------------------------------------------------- segment arithmetic
def _merge(segments: Iterable[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for s, e in sorted(seg for seg in segments if seg[1] > seg[0]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _intersect(a: list[Segment], b: list[Segment]) -> list[Segment]:
    """Intersection of two sorted, non-overlapping segment lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract(segment: Segment, holes: Iterable[Segment]) -> list[Segment]:
    pieces = [segment]
    for hs, he in holes:
        pieces = [p for s, e in pieces for p in ((s, min(e, hs)), (max(s, he), e)) if p[1] > p[0]]
    return pieces


def _us(delta: timedelta) -> int:
    return delta // _US


def _total(segments: Iterable[Segment]) -> int:
    return sum(_us(e - s) for s, e in segments)


def _seconds(us: int) -> Decimal:
    return (Decimal(us) / 1_000_000).quantize(SECONDS, ROUND_HALF_UP)


def require_aware(moment: datetime, what: str) -> datetime:
    """`moment` if it is a datetime with a time zone; ValidationFailed naming `what`."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValidationFailed(f"{what} {moment!r} needs a time zone (e.g. +00:00)",
                               details={what: "no time zone"})  # fmt: skip
    return moment


def parse_moment(value: Any, what: str) -> datetime:
    """An ISO 8601 date and time with a time zone (a datetime passes); ValidationFailed."""
    if isinstance(value, datetime):
        return require_aware(value, what)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed(
            f"{what} {value!r} is not a date and time like 2026-03-02T06:00:00+00:00",
            details={what: "not a time"},
        ) from None
    return require_aware(moment, what)


# ---------------------------------------------------------------------- recording
def project_machine_events(bind: Engine, *, now: datetime, limit: int = 2000) -> dict[str, Any]:
    """One unit of work: project the inbox's new machine events (see `project`) and commit.
    The worker calls it every pass; two projectors queue on the cursor row."""
    with Session(bind=bind.execution_options(**{WRITE_OPTION: True})) as session:
        with session.begin():
            return project(session, now=now, limit=limit)


def project(session: Session, *, now: datetime, limit: int = 2000) -> dict[str, Any]:
    """Turn machine events of the inbox that the cursor has not passed yet (up to `limit`
    new rows, plus rows that filled earlier gaps) into state intervals and counts, and move
    the cursor, all in the caller's transaction. Events of unknown machines and events whose
    data cannot be read are skipped (counted). Returns what it did."""
    cursor = _cursor(session, now)
    gaps: list[list[Any]] = json.loads(cursor.gaps)
    ids = list(session.scalars(select(InboxMessage.id).where(InboxMessage.id > cursor.last_id)
                               .order_by(InboxMessage.id).limit(limit)))  # fmt: skip
    filled: list[int] = []
    if gaps:
        filled = list(session.scalars(select(InboxMessage.id).where(
            or_(*(InboxMessage.id.between(lo, hi) for lo, hi, _ in gaps)))))  # fmt: skip
    expected = cursor.last_id + 1
    for found in ids:
        if found > expected:
            gaps.append([expected, found - 1, now.isoformat()])
        expected = found + 1
    for found in filled:
        gaps = _fill(gaps, found)
    # Forget gaps that waited long enough: nothing will commit there any more.
    gaps = [g for g in gaps if datetime.fromisoformat(g[2]) > now - GAP_WAIT]
    projected = skipped = 0
    wanted = sorted(set(ids) | set(filled))
    known_machines: dict[str, bool] = {}
    ideal: dict[str, int | None] = {}
    buckets: dict[tuple[str, datetime], MachineCount] = {}
    for chunk in (wanted[i : i + 500] for i in range(0, len(wanted), 500)):
        rows = session.execute(
            select(InboxMessage.id, InboxMessage.name, InboxMessage.correlation,
                   InboxMessage.payload, InboxMessage.source, InboxMessage.received_at)
            .where(InboxMessage.id.in_(chunk), InboxMessage.kind == WAIT_MESSAGE,
                   InboxMessage.name.in_(PROJECTED))
            .order_by(InboxMessage.id)
        ).all()  # fmt: skip
        for row in rows:
            done = _project_row(session, row, known_machines, ideal, buckets)
            projected += done
            skipped += 1 - done
    if ids:
        cursor.last_id = ids[-1]
    cursor.gaps = json.dumps(gaps)
    cursor.projected += projected
    cursor.skipped += skipped
    cursor.updated_at = now
    session.flush()
    return {"read": len(wanted), "projected": projected, "skipped": skipped,
            "last_id": cursor.last_id, "gaps": sum(hi - lo + 1 for lo, hi, _ in gaps)}  # fmt: skip


def _cursor(session: Session, now: datetime) -> MachineProjection:
    query = select(MachineProjection).where(MachineProjection.name == PROJECTOR)
    if session.get_bind().dialect.name == "postgresql":
        # Two workers would otherwise both read the same rows and count them twice.
        query = query.with_for_update()
    cursor = session.scalar(query)
    if cursor is None:
        cursor = MachineProjection(name=PROJECTOR, last_id=0, gaps="[]", projected=0, skipped=0,
                                   updated_at=now)  # fmt: skip
        session.add(cursor)
        session.flush()
    return cursor


def _fill(gaps: list[list[Any]], found: int) -> list[list[Any]]:
    out = []
    for lo, hi, seen in gaps:
        if lo <= found <= hi:
            out += [[a, b, seen] for a, b in ((lo, found - 1), (found + 1, hi)) if a <= b]
        else:
            out.append([lo, hi, seen])
    return out


def _project_row(
    session: Session,
    row: Any,
    known_machines: dict[str, bool],
    ideal: dict[str, int | None],
    buckets: dict[tuple[str, datetime], MachineCount],
) -> int:
    """1 when the event became an interval or a count, 0 when it was skipped."""
    try:
        correlation, payload = json.loads(row.correlation), json.loads(row.payload)
    except ValueError:
        return 0
    machine = correlation.get("machine_id") if isinstance(correlation, dict) else None
    if not isinstance(machine, str) or not isinstance(payload, dict):
        return 0
    if machine not in known_machines:
        known_machines[machine] = session.get(Machine, machine) is not None
    if not known_machines[machine]:
        return 0
    at = _event_time(payload, row.received_at)
    if row.name == STATE_EVENT:
        state = payload.get("state")
        if not isinstance(state, str) or not state or len(state) > 40:
            return 0
        alarm = payload.get("alarm_code")
        alarm_code = alarm if isinstance(alarm, int) and not isinstance(alarm, bool) else None
        record_state(session, machine, at, state, alarm_code=alarm_code or None,
                     source=row.source, inbox_id=row.id)  # fmt: skip
        return 1
    keys = ("count", "good") if row.name == PRODUCED_EVENT else ("count", "scrap")
    count = next((payload[k] for k in keys if k in payload), None)
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    # The connector's increase rule already turns a counter reset into the parts counted
    # since; a negative count can only be a wrong message and must not lower the totals.
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return 0
    if row.name == PRODUCED_EVENT and machine not in ideal:
        ideal[machine] = ideal_cycle_ms(session, machine)
    total, reject = (count, 0) if row.name == PRODUCED_EVENT else (0, count)
    bucket = record_count(session, machine, at, total=total, reject=reject,
                          ideal_ms=ideal.get(machine), cache=buckets)  # fmt: skip
    # The same counts advance the operation running on the machine (its counted quantities).
    count_on_machine(session, machine, total=total, reject=reject)
    return 1 if bucket is not None else 0


def _event_time(payload: Mapping[str, Any], received_at: datetime) -> datetime:
    """The signal's own time (payload `at` or `timestamp`) when it has one, else when the
    inbox received it; a time without zone is UTC."""
    for key in ("at", "timestamp"):
        value = payload.get(key)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return received_at


def record_state(
    session: Session,
    machine: str,
    at: datetime,
    state: str,
    *,
    alarm_code: int | None = None,
    source: str | None = None,
    inbox_id: int | None = None,
) -> MachineState:
    """The machine is in `state` from `at` on: the interval that holds `at` ends there and a
    new one begins, lasting until the next known event (or open). Works for late events too:
    they are put where their time belongs. A repeated state at a later time still starts an
    interval: a connector reports changes only, so "running" after "running" means a change
    in between has not been read yet, and the boundary is where it will end."""
    require_aware(at, "at")
    reason = _reason_at(session, machine, at, state, alarm_code)
    holding = session.scalars(
        select(MachineState)
        .where(MachineState.machine == machine, MachineState.started_at <= at,
               or_(MachineState.ended_at.is_(None), MachineState.ended_at > at))
        .order_by(MachineState.started_at.desc(), MachineState.id.desc())
    ).first()  # fmt: skip
    if holding is not None and holding.started_at == at:
        if (holding.state, holding.alarm_code) == (state, alarm_code):
            return holding  # the same event again
        holding.state, holding.alarm_code, holding.reason = state, alarm_code, reason
        holding.source, holding.inbox_id = source, inbox_id
        session.flush()
        return holding
    if holding is not None:
        until = holding.ended_at
        holding.ended_at = at
    else:
        until = session.scalar(select(MachineState.started_at)
                               .where(MachineState.machine == machine,
                                      MachineState.started_at > at)
                               .order_by(MachineState.started_at))  # fmt: skip
    interval = MachineState(machine=machine, state=state, alarm_code=alarm_code, reason=reason,
                            source=source, started_at=at, ended_at=until,
                            inbox_id=inbox_id)  # fmt: skip
    session.add(interval)
    session.flush()
    return interval


def _reason_at(
    session: Session, machine: str, at: datetime, state: str, alarm_code: int | None
) -> str | None:
    """A stop's reason: the one given for the downtime it belongs to, else the reason its
    alarm code or state names by itself (reason_codes.yaml)."""
    if state == RUNNING:
        return None
    given = session.scalar(
        select(Downtime.reason)
        .where(Downtime.machine == machine, Downtime.reason.is_not(None),
               Downtime.started_at <= at,
               or_(Downtime.ended_at.is_(None), Downtime.ended_at > at))
        .order_by(Downtime.started_at.desc())
    )  # fmt: skip
    return given or signal_reason(session, state, alarm_code)


def signal_reason(session: Session, state: str | None, alarm_code: int | None) -> str | None:
    """The reason an alarm code (first) or a state names by itself, if the reason codes map it."""
    for signal in ([f"alarm:{alarm_code}"] if alarm_code else []) + [f"state:{state}"]:
        found = session.get(ReasonSignal, signal)
        if found is not None:
            return found.reason
    return None


def record_count(
    session: Session,
    machine: str,
    at: datetime,
    *,
    total: int = 0,
    reject: int = 0,
    ideal_ms: int | None = None,
    cache: dict[tuple[str, datetime], MachineCount] | None = None,
) -> MachineCount:
    """Add parts to the machine's bucket of the minute `at` falls in: `total` parts made
    (good and rejected), `reject` of them rejected, each taking `ideal_ms` ideally."""
    require_aware(at, "at")
    if total < 0 or reject < 0:
        raise ValidationFailed("counts cannot be negative", details={"count": "negative"})
    start = at.astimezone(UTC).replace(second=0, microsecond=0)
    key = (machine, start)
    bucket = (cache or {}).get(key) or session.scalar(
        select(MachineCount).where(MachineCount.machine == machine,
                                   MachineCount.bucket_start == start))  # fmt: skip
    if bucket is None:
        bucket = MachineCount(machine=machine, bucket_start=start, total=0, reject=0, ideal_ms=0)
        session.add(bucket)
    bucket.total += total
    bucket.reject += reject
    bucket.ideal_ms += total * (ideal_ms or 0)
    if cache is not None:
        cache[key] = bucket
    session.flush()
    return bucket


def ideal_cycle_ms(session: Session, machine: str) -> int | None:
    """The ideal cycle time of what `machine` makes now: the machine context's `ideal_cycle_ms`,
    else the routing operation it runs (context `order` or `work_order`, and `operation`),
    else the machine's own ideal cycle time (shifts.yaml), else None."""
    context = session.get(MachineContext, machine)
    data: dict[str, Any] = {}
    if context is not None:
        try:
            loaded = json.loads(context.data)
            data = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            data = {}
    given = data.get("ideal_cycle_ms")
    if isinstance(given, int) and not isinstance(given, bool) and given > 0:
        return given
    order, sequence = data.get("order", data.get("work_order")), data.get("operation")
    if isinstance(order, str) and str(sequence).isdigit():
        cycle = session.scalar(
            select(RoutingOperation.cycle_ms)
            .join(Routing, Routing.id == RoutingOperation.routing_id)
            .join(ProductionOrder, (ProductionOrder.item == Routing.item)
                  & (ProductionOrder.routing_version == Routing.version))
            .join(OrderOperation, (OrderOperation.order_number == ProductionOrder.number)
                  & (OrderOperation.sequence == RoutingOperation.sequence))
            .where(ProductionOrder.number == order, OrderOperation.sequence == int(sequence))
        )  # fmt: skip
        if cycle:
            return int(cycle)
    own = session.get(MachineIdeal, machine)
    return own.ideal_cycle_ms if own is not None else None


# ---------------------------------------------------------------------- reading
def state_intervals(
    session: Session, machine: str, start: datetime, end: datetime, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The machine's state intervals overlapping [start, end), clipped to it; the current one
    ends at `now` (or `end`)."""
    rows = _intervals(session, [machine], start, end)
    until = min(end, now) if now else end
    out = []
    for r in rows:
        s, e = max(r.started_at, start), min(r.ended_at or until, end)
        if e > s:
            out.append({"state": r.state, "reason": r.reason, "alarm_code": r.alarm_code,
                        "source": r.source, "start": s.isoformat(), "end": e.isoformat(),
                        "open": r.ended_at is None, "seconds": _seconds(_us(e - s))})  # fmt: skip
    return out


def current_state(session: Session, machine: str) -> dict[str, Any] | None:
    """The machine's latest known state (None before its first signal)."""
    row = session.scalars(select(MachineState).where(MachineState.machine == machine)
                          .order_by(MachineState.started_at.desc(), MachineState.id.desc())
                          ).first()  # fmt: skip
    if row is None:
        return None
    return {"machine": machine, "state": row.state, "reason": row.reason,
            "alarm_code": row.alarm_code, "since": row.started_at.isoformat(),
            "until": row.ended_at.isoformat() if row.ended_at else None}  # fmt: skip


def _intervals(
    session: Session, machines: list[str], start: datetime, end: datetime
) -> list[MachineState]:
    return list(session.scalars(
        select(MachineState)
        .where(MachineState.machine.in_(machines), MachineState.started_at < end,
               or_(MachineState.ended_at.is_(None), MachineState.ended_at > start))
        .order_by(MachineState.started_at, MachineState.id)
    ))  # fmt: skip


@dataclass
class _Inputs:
    planned_us: int = 0
    shift_us: int = 0
    run_us: int = 0
    total: int = 0
    reject: int = 0
    ideal_ms: int = 0

    def __iadd__(self, other: _Inputs) -> _Inputs:
        for name in ("planned_us", "shift_us", "run_us", "total", "reject", "ideal_ms"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def oee(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    machine: str | None = None,
    work_center: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """OEE of a machine or a work center over [start, end) (up to `now` when the window has
    not ended yet), with every input it is computed from:

    - planned production time = shift time - planned stops (calendar), within the window;
    - run time = time in state `running` within planned production time;
    - total and reject counts of the minutes within planned production time; good = total -
      reject; ideal time = the sum of each part's ideal cycle time;
    - availability = run / planned; performance = ideal time / run (ideal cycle time x total
      count / run time); quality = good / total; OEE = A x P x Q = good x ideal cycle time /
      planned production time.

    A ratio whose divisor is zero is None (no planned time, no run time, no parts); OEE is 0
    when there was planned time but no part. A work center's figures are the sums of its
    machines' inputs, with each machine's figures under `machines`."""
    require_aware(start, "start")
    require_aware(end, "end")
    if (machine is None) == (work_center is None):
        raise ValidationFailed("give a machine or a work center (one of them)",
                               details={"machine": "machine or work_center"})  # fmt: skip
    if end <= start:
        raise ValidationFailed(
            f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})",
            details={"end": "before start"},
        )
    until = min(end, now) if now is not None else end
    if machine is not None:
        if session.get(Machine, machine) is None:
            raise NotFound(f"machine {machine!r} does not exist")
        machines = [machine]
    else:
        machines = list(session.scalars(select(Machine.code).where(
            Machine.work_center == work_center).order_by(Machine.code)))  # fmt: skip
        if not machines:
            raise NotFound(f"work center {work_center!r} does not exist or has no machines")
    planned = planned_segments(session, start, until) if until > start else []
    spans = shift_spans(session, start, until) if until > start else []
    shift_us = _total(_intersect(_merge([(s.start, s.end) for s in spans]), [(start, until)]))
    per_machine: dict[str, _Inputs] = {
        m: _Inputs(planned_us=_total(planned), shift_us=shift_us) for m in machines}  # fmt: skip
    for row in _intervals(session, machines, start, until):
        if row.state == RUNNING:
            running = [(max(row.started_at, start), min(row.ended_at or until, until))]
            per_machine[row.machine].run_us += _total(_intersect(_merge(running), planned))
    if planned:
        buckets = session.scalars(select(MachineCount).where(
            MachineCount.machine.in_(machines), MachineCount.bucket_start >= planned[0][0],
            MachineCount.bucket_start < planned[-1][1]))  # fmt: skip
        for bucket in buckets:
            if any(s <= bucket.bucket_start < e for s, e in planned):
                inputs = per_machine[bucket.machine]
                inputs.total += bucket.total
                inputs.reject += bucket.reject
                inputs.ideal_ms += bucket.ideal_ms
    total = _Inputs()
    for inputs in per_machine.values():
        total += inputs
    view = {"machine": machine, "work_center": work_center or _center(session, machine),
            "start": start.isoformat(), "end": until.isoformat()} | _figures(total)  # fmt: skip
    if work_center is not None:
        view["machines"] = [{"machine": m} | _figures(i) for m, i in per_machine.items()]
    return view


def _center(session: Session, machine: str | None) -> str | None:
    found = session.get(Machine, machine) if machine else None
    return found.work_center if found else None


def _figures(i: _Inputs) -> dict[str, Any]:
    good = max(i.total - i.reject, 0)
    planned_ms, run_ms = Fraction(i.planned_us, 1000), Fraction(i.run_us, 1000)
    availability = Fraction(i.run_us, i.planned_us) if i.planned_us else None
    performance = Fraction(i.ideal_ms) / run_ms if i.run_us else None
    quality = Fraction(good, i.total) if i.total else None
    if not i.planned_us:
        overall = None
    elif not i.total:
        overall = Fraction(0)
    else:
        # good x ideal cycle time / planned time, the ideal time of the good parts taken in
        # proportion when the parts had different ideal cycle times.
        overall = Fraction(i.ideal_ms) * Fraction(good, i.total) / planned_ms
    return {
        "shift_s": _seconds(i.shift_us), "planned_stop_s": _seconds(i.shift_us - i.planned_us),
        "planned_s": _seconds(i.planned_us), "run_s": _seconds(i.run_us),
        "down_s": _seconds(i.planned_us - i.run_us),
        "total": i.total, "good": good, "reject": i.reject,
        "ideal_s": _seconds(i.ideal_ms * 1000),
        "ideal_cycle_s": (Decimal(i.ideal_ms) / 1000 / i.total).quantize(SECONDS, ROUND_HALF_UP)
        if i.total else None,
        "availability": _ratio(availability), "performance": _ratio(performance),
        "quality": _ratio(quality), "oee": _ratio(overall),
        "availability_pct": _pct(availability), "performance_pct": _pct(performance),
        "quality_pct": _pct(quality), "oee_pct": _pct(overall),
    }  # fmt: skip


def _ratio(value: Fraction | None) -> Decimal | None:
    if value is None:
        return None
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(RATIO, ROUND_HALF_UP)


def _pct(value: Fraction | None) -> Decimal | None:
    if value is None:
        return None
    return (Decimal(value.numerator) * 100 / Decimal(value.denominator)).quantize(
        PERCENT, ROUND_HALF_UP)  # fmt: skip
