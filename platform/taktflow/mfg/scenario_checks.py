"""The reconciliation after the simulated week (docs/scenario.md): each check states what it
expected, what the database holds, and whether they agree.

The OEE check does not trust the platform's own arithmetic: it recomputes each machine's
OEE by hand from the raw signals (every register reading the connector took), the shift
calendar file read afresh, and the routing's ideal cycle time of the job that made each part.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.engine.models import (
    INBOX_BUFFERED,
    INBOX_EXPIRED,
    INBOX_FAILED,
    INBOX_PENDING,
    InboxMessage,
)
from taktflow.mfg.ledger import balance, trial_balance
from taktflow.mfg.machine_models import Downtime, MachineProjection
from taktflow.mfg.machine_time import PROJECTED, oee
from taktflow.mfg.models import (
    Item,
    OrderOperation,
    ProductionOrder,
    StockMovement,
)
from taktflow.mfg.purchasing_models import PurchaseApproval, PurchaseRequisition
from taktflow.mfg.quality_models import Nonconformance
from taktflow.mfg.scenario import START, STORES, WEEK, Week, _bom, bom_need, routing_cycle_s
from taktflow.mfg.stock import on_hand, unscaled
from taktflow.yamlflow.loader import load as load_yaml

#: Signals only the projector reads: nobody waits for them, so they expire, as they should.
SIGNALS = frozenset(PROJECTED) | {"machine_running", "machine_warning"}
#: How far the hand-calculated OEE may be from the platform's, in percentage points.
OEE_TOLERANCE_PP = Decimal("0.1")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Check:
    name: str
    expected: Any
    actual: Any
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reconcile(week: Week) -> list[Check]:
    bind, log = week.bind, week.log
    numbers = [o.number for o in log.orders]
    with Session(bind) as s:
        orders = {
            o.number: o
            for o in s.scalars(select(ProductionOrder).where(ProductionOrder.number.in_(numbers)))
        }
        ops = list(
            s.scalars(
                select(OrderOperation)
                .where(OrderOperation.order_number.in_(numbers))
                .order_by(OrderOperation.order_number, OrderOperation.sequence)
            )
        )
        checks = [
            _closed(orders, numbers),
            _counted(s, ops, set(week.machines)),
            _finished_goods(s, orders),
            _material(s, orders, ops),
            _wip(s, orders),
            _trial_balance(s),
        ]
        end = START + WEEK
        calendar = planned_segments_from_file(
            week.settings.root / "seed_data" / "shifts.yaml", START, end
        )
        for code, machine in sorted(week.machines.items()):
            checks.append(_oee(s, code, machine.readings, log.jobs, calendar, end))
        checks += [
            _inbox(s),
            _shortage(s, log),
            _gate(s, log, "rework"),
            _gate(s, log, "scrap"),
            _downtimes(s, set(week.machines)),
            Check(
                "no task outside the script",
                0,
                len(log.unexpected_tasks),
                not log.unexpected_tasks,
                "; ".join(log.unexpected_tasks[:5]),
            ),
        ]
    return checks


# ---------------------------------------------------------------------- the books and stock
def _closed(orders: dict[str, ProductionOrder], numbers: list[str]) -> Check:
    closed = [n for n in numbers if n in orders and orders[n].status == "closed"]
    open_ = sorted(set(numbers) - set(closed))
    return Check(
        "orders closed",
        len(numbers),
        len(closed),
        not open_,
        f"still open: {', '.join(open_)}" if open_ else "",
    )


def _counted(s: Session, ops: list[OrderOperation], machines: set[str]) -> Check:
    """Where a machine counts (presses, laser), the operator confirms what it counted."""
    counted = confirmed = 0
    wrong = []
    for op in ops:
        if op.machine not in machines:
            continue
        item = _item(s, op.order_number)
        by_machine = int(unscaled(item, op.counted_good + op.counted_reject))
        by_operator = int(unscaled(item, op.good + op.scrap))
        counted, confirmed = counted + by_machine, confirmed + by_operator
        if by_machine != by_operator or op.counted_reject != op.scrap:
            wrong.append(
                f"{op.order_number}/{op.sequence} counted {by_machine} "
                f"({unscaled(item, op.counted_reject)} rejected), confirmed "
                f"{by_operator} ({unscaled(item, op.scrap)} scrap)"
            )
    return Check(
        "units counted by machines = units confirmed by operators",
        counted,
        confirmed,
        not wrong and counted > 0,
        "; ".join(wrong[:5]),
    )


def _finished_goods(s: Session, orders: dict[str, ProductionOrder]) -> Check:
    expected = actual = Decimal(0)
    wrong = []
    for number, order in sorted(orders.items()):
        item = s.get(Item, order.item)
        assert item is not None
        if item.type != "finished":
            continue
        received = unscaled(item, order.received)
        stocked = on_hand(s, order.item, "FG", order.lot) if order.lot else Decimal(0)
        expected, actual = expected + received, actual + stocked
        if stocked != received:
            wrong.append(f"{number}: received {received}, lot {order.lot} holds {stocked}")
    return Check(
        "finished-goods stock = good quantities received",
        expected,
        actual,
        not wrong,
        "; ".join(wrong[:5]),
    )


def _material(s: Session, orders: dict[str, ProductionOrder], ops: list[OrderOperation]) -> Check:
    """Each component taken from stores for an order = BOM quantity x (good + scrap) of the
    operation that uses it, plus the line's scrap allowance."""
    made = {(op.order_number, op.sequence): op.good + op.scrap for op in ops}
    expected: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    wrong = []
    for number, order in sorted(orders.items()):
        product = s.get(Item, order.item)
        assert product is not None
        for line, component in _bom(s, order.item, order.bom_version):
            units = int(unscaled(product, made.get((number, line.operation), 0)))
            need = unscaled(component, bom_need(line, component, units))
            taken = unscaled(
                component,
                s.scalar(
                    select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
                        StockMovement.reference == number,
                        StockMovement.item == component.code,
                        StockMovement.from_location == STORES,
                    )
                )
                or 0,
            )
            expected[f"{component.code} ({component.uom})"] += need
            actual[f"{component.code} ({component.uom})"] += taken
            if need != taken:
                wrong.append(f"{number} {component.code}: BOM says {need}, issued {taken}")
    return Check(
        "material issued = BOM x produced + scrap allowance",
        {k: str(v) for k, v in sorted(expected.items())},
        {k: str(v) for k, v in sorted(actual.items())},
        not wrong and bool(expected),
        "; ".join(wrong[:5]),
    )


def _wip(s: Session, orders: dict[str, ProductionOrder]) -> Check:
    left = {n: balance(s, "1410", n) for n, o in orders.items() if o.status == "closed"}
    nonzero = {n: v for n, v in left.items() if v}
    return Check(
        "WIP of every closed order is zero",
        "0.00",
        str(sum(left.values(), Decimal("0.00"))),
        not nonzero,
        ", ".join(f"{n}: {v}" for n, v in sorted(nonzero.items())),
    )


def _trial_balance(s: Session) -> Check:
    tb = trial_balance(s)
    return Check(
        "trial balance balances",
        f"debits = credits ({tb['debit']})",
        f"credits {tb['credit']}",
        tb["balanced"] and tb["debit"] > 0,
    )


# ---------------------------------------------------------------------- OEE by hand
def planned_segments_from_file(
    path: Path, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Planned production time in [start, end) from a shifts file: each shift of each
    working day that is not a holiday, less its breaks, in the file's time zone."""
    doc = load_yaml(path.read_text(encoding="utf-8"))
    zone = ZoneInfo(doc.get("timezone", "UTC"))
    holidays = {date.fromisoformat(str(h["date"])) for h in doc.get("holidays", [])}
    segments = []
    day = start.astimezone(zone).date() - timedelta(days=1)
    while datetime.combine(day, time(), zone) < end:
        if day not in holidays:
            for shift in doc.get("shifts", []):
                if _DAYS[day.weekday()] not in shift.get("days", _DAYS):
                    continue
                s, e = _at(day, shift["start"], zone), _at(day, shift["end"], zone)
                e = e if e > s else e + timedelta(days=1)  # a night shift ends tomorrow
                holes = []
                for pause in shift.get("breaks", []):
                    b, f = _at(day, pause["start"], zone), _at(day, pause["end"], zone)
                    b, f = (b, f) if b >= s else (b + timedelta(days=1), f + timedelta(days=1))
                    holes.append((b, f))
                cursor = s
                for b, f in sorted(holes):
                    if b > cursor:
                        segments.append((cursor, b))
                    cursor = max(cursor, f)
                if e > cursor:
                    segments.append((cursor, e))
        day += timedelta(days=1)
    clipped = [(max(a, start), min(b, end)) for a, b in segments]
    return sorted((a, b) for a, b in clipped if b > a)


def _at(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    hours, minutes = (int(x) for x in str(hhmm).split(":"))
    return datetime.combine(day, time(hours, minutes), zone).astimezone(UTC)


def hand_oee(
    readings: list[tuple[datetime, dict[str, Any]]],
    cycle_at: Any,
    planned: list[tuple[datetime, datetime]],
    end: datetime,
) -> dict[str, Any]:
    """OEE from register readings: run time = time between readings whose state code is
    1 (running) inside planned time; parts = counter increases (a drop is a reset: the new
    value) read within planned time, each worth the ideal cycle of the job that made it."""
    planned_s = sum((b - a).total_seconds() for a, b in planned)

    def inside(moment: datetime) -> bool:
        minute = moment.replace(second=0, microsecond=0)  # counts are kept per minute
        return any(a <= minute < b for a, b in planned)

    run_s = 0.0
    total = reject = 0
    ideal_s = 0.0
    for n, (moment, values) in enumerate(readings):
        following = readings[n + 1][0] if n + 1 < len(readings) else end
        if values["state_code"] == 1:
            for a, b in planned:
                run_s += max(0.0, (min(b, following, end) - max(a, moment)).total_seconds())
        if n == 0:
            continue
        before = readings[n - 1][1]
        parts = _increase(before["part_counter"], values["part_counter"])
        rejects = _increase(before["reject_counter"], values["reject_counter"])
        if inside(moment):
            total, reject = total + parts, reject + rejects
            ideal_s += parts * cycle_at(moment)
    good = total - reject
    figures = {
        "planned_s": round(planned_s, 3),
        "run_s": round(run_s, 3),
        "total": total,
        "reject": reject,
        "ideal_s": round(ideal_s, 3),
    }
    figures["availability_pct"] = _pct(run_s, planned_s)
    figures["performance_pct"] = _pct(ideal_s, run_s)
    figures["quality_pct"] = _pct(good, total)
    figures["oee_pct"] = _pct(ideal_s * good / total, planned_s) if total else Decimal(0)
    return figures


def _increase(before: int, after: int) -> int:
    return after - before if after >= before else after


def _pct(part: float, whole: float) -> Decimal | None:
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.01")) if whole else None


def _oee(
    s: Session, machine: str, readings: list, jobs: list, planned: list, end: datetime
) -> Check:
    cycles: dict[tuple[str, int], float] = {}
    mine = [j for j in jobs if j.machine == machine]
    for job in mine:
        cycles[(job.order, job.sequence)] = routing_cycle_s(s, job.order, job.sequence)

    def cycle_at(moment: datetime) -> float:
        for job in mine:
            if job.started_at <= moment and (job.done_at is None or moment <= job.done_at):
                return cycles[(job.order, job.sequence)]
        return 0.0

    by_hand = hand_oee(readings, cycle_at, planned, end)
    platform = oee(s, machine=machine, start=START, end=end)
    ours = platform["oee_pct"] or Decimal(0)
    theirs = by_hand["oee_pct"] or Decimal(0)
    detail = (
        f"platform A {platform['availability_pct']} P {platform['performance_pct']} "
        f"Q {platform['quality_pct']} from {platform['total']} parts; by hand A "
        f"{by_hand['availability_pct']} P {by_hand['performance_pct']} Q "
        f"{by_hand['quality_pct']} from {by_hand['total']} parts"
    )
    return Check(
        f"OEE of {machine} (%) = hand calculation from its signals",
        str(theirs),
        str(ours),
        abs(ours - theirs) <= OEE_TOLERANCE_PP,
        detail,
    )


# ---------------------------------------------------------------------- the inbox
def _inbox(s: Session) -> Check:
    by_status = Counter(
        dict(
            s.execute(select(InboxMessage.status, func.count()).group_by(InboxMessage.status)).all()
        )
    )
    expired = Counter(
        dict(
            s.execute(
                select(InboxMessage.name, func.count())
                .where(InboxMessage.status == INBOX_EXPIRED)
                .group_by(InboxMessage.name)
            ).all()
        )
    )
    lost = {n: c for n, c in expired.items() if n not in SIGNALS}
    cursor = s.scalar(select(MachineProjection.last_id))
    last_signal = s.scalar(
        select(func.max(InboxMessage.id)).where(InboxMessage.name.in_(PROJECTED))
    )
    actual = {
        "pending": by_status[INBOX_PENDING],
        "waiting": by_status[INBOX_BUFFERED],
        "dead letters": by_status[INBOX_FAILED],
        "expired other than machine signals": sum(lost.values()),
        "machine signals not projected": (last_signal or 0) > (cursor or 0),
    }
    expected = {k: (False if isinstance(v, bool) else 0) for k, v in actual.items()}
    return Check(
        "nothing left in the inbox or dead letters",
        expected,
        actual,
        actual == expected,
        ", ".join(f"{n} expired" for n in sorted(lost)),
    )


# ---------------------------------------------------------------------- the story
def _shortage(s: Session, log: Any) -> Check:
    order = next(o.number for o in log.orders if o.role == "shortage")
    requisitions = list(
        s.scalars(select(PurchaseRequisition).where(PurchaseRequisition.order_number == order))
    )
    escalated = [
        a
        for r in requisitions
        for a in s.scalars(
            select(PurchaseApproval).where(
                PurchaseApproval.requisition_id == r.id, PurchaseApproval.escalated.is_(True)
            )
        )
    ]
    statuses = sorted({r.status for r in requisitions})
    done = s.get(ProductionOrder, order)
    actual = {
        "requisitions": len(requisitions),
        "escalated approvals": len(escalated),
        "requisition status": statuses,
        "order": done.status if done else None,
    }
    passed = (
        bool(requisitions)
        and bool(escalated)
        and statuses == ["received"]
        and (done is not None and done.status == "closed")
    )
    return Check(
        f"shortage of {order} bought through procurement with an escalation",
        {
            "requisitions": ">= 1",
            "escalated approvals": ">= 1",
            "requisition status": ["received"],
            "order": "closed",
        },
        actual,
        passed,
    )


def _gate(s: Session, log: Any, role: str) -> Check:
    order = next(o.number for o in log.orders if o.role == role)
    ncs = list(s.scalars(select(Nonconformance).where(Nonconformance.order_number == order)))
    dispositions = sorted(nc.disposition or "none" for nc in ncs)
    reworked = sum(
        op.rework
        for op in s.scalars(select(OrderOperation).where(OrderOperation.order_number == order))
    )
    found = s.get(ProductionOrder, order)
    item = _item(s, order)
    actual = {
        "nonconformances": dispositions,
        "order": found.status if found else None,
        "received": str(unscaled(item, found.received)) if found else None,
        "units reworked": str(unscaled(item, reworked)),
    }
    if role == "rework":
        passed = (
            dispositions == ["rework"]
            and reworked > 0
            and actual["order"] == "closed"
            and found is not None
            and found.received > 0
        )
        expected = {
            "nonconformances": ["rework"],
            "order": "closed",
            "received": "> 0",
            "units reworked": "> 0",
        }
        name = f"lot of {order} failed its gate, was reworked and passed"
    else:
        # Nothing received against all the cost: financial posting must have asked a manager.
        actual["variances reviewed"] = order in log.variance_reviews
        passed = (
            dispositions == ["scrap"]
            and actual["order"] == "closed"
            and (found is not None and found.received == 0)
            and actual["variances reviewed"]
        )
        expected = {
            "nonconformances": ["scrap"],
            "order": "closed",
            "received": "0",
            "units reworked": "0",
            "variances reviewed": True,
        }
        name = f"lot of {order} failed its gate and was scrapped"
    return Check(name, expected, actual, passed)


def _downtimes(s: Session, machines: set[str]) -> Check:
    rows = list(s.scalars(select(Downtime).where(Downtime.machine.in_(machines))))
    closed = [d for d in rows if d.ended_at is not None]
    unexplained = [d.id for d in closed if not d.reason]
    reasons = Counter(d.reason for d in closed)
    alarms = sum(1 for d in closed if d.alarm_code)
    return Check(
        "machine downtimes recorded, explained and closed",
        "alarm stops among them, each with a reason",
        {
            "closed": len(closed),
            "from alarms": alarms,
            "without reason": len(unexplained),
            "by reason": dict(sorted(reasons.items(), key=lambda kv: str(kv[0]))),
        },
        alarms > 0 and not unexplained,
    )


def _item(s: Session, number: str) -> Item:
    order = s.get(ProductionOrder, number)
    assert order is not None
    item = s.get(Item, order.item)
    assert item is not None
    return item
