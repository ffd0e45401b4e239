"""The demo plant's simulated week (`taktflow scenario week`, docs/scenario.md).

The real engine runs the real workflows, forms, connector rules and machine-time projector on
a manual clock, from Monday 2 March 2026, 06:00 in the plant's time zone. Production orders
arrive from the "ERP" over the first days; scripted people (the demo accounts) work the tasks
during their shifts through the same forms service the task pages use; the presses and the
laser are the simulator's machine models (seed_data/simulation.yaml at real speed), read by
their connector files' rules at every change of a counter or state, as a PLC poll would; the
worker passes every minute (dispatch, timers, projector). The week is made to contain what
the plant must cope with: material that is out of stock and bought through procurement with
an escalation, a lot that fails its gate and is reworked, a lot that is scrapped, and machine
stops. Then `scenario_checks.reconcile` compares the books, the stock and the machine counts.

Everything is decided by the seed: the same seed gives the same week.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.auth.service import AccountService
from taktflow.config import DEFAULT_ROLES
from taktflow.connectors.runtime import record_sample
from taktflow.connectors.simulator import (
    MachineSettings,
    SimulatedPress,
    load_simulation,
)
from taktflow.engine.clock import ManualClock
from taktflow.engine.models import ProcessInstance
from taktflow.engine.runtime import WorkflowEngine
from taktflow.errors import TaktflowError
from taktflow.forms.service import TaskForms
from taktflow.mfg.execution import operation_view
from taktflow.mfg.ledger import post_entry
from taktflow.mfg.machine_time import shift_spans, signal_reason
from taktflow.mfg.models import (
    BOM_DECIMALS,
    Bom,
    BomLine,
    Item,
    OrderOperation,
    ProductionOrder,
    Routing,
    RoutingOperation,
)
from taktflow.mfg.quality import plan_view
from taktflow.mfg.sales import SalesOrder
from taktflow.mfg.seed import load_plant
from taktflow.mfg.stock import move_stock, unscaled
from taktflow.yamlflow.loader import load as load_yaml

#: The demo plant's time zone (seed_data/shifts.yaml), for progress lines.
PLANT_ZONE = ZoneInfo("Europe/Berlin")
#: The roles of the demo accounts.
ROLES = DEFAULT_ROLES.split(",")
#: Monday 2 March 2026, 06:00 in Berlin (UTC+1): the early shift begins.
START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
#: The working week the machines' OEE is reconciled over: Monday 06:00 to Saturday 06:00.
WEEK = timedelta(days=5)
#: Orders still open after this are reported as unfinished.
HORIZON = timedelta(days=7)
#: Between worker passes at night, when nobody works and no machine runs a job.
NIGHT_STEP = timedelta(minutes=10)
#: The week's one scripted breakdown: a die jam on the first press job, a while after its
#: set-up, long enough to open a downtime with a repair task (random alarms come on top).
BREAKDOWN_CODE, BREAKDOWN_AFTER, BREAKDOWN_FOR = 102, timedelta(minutes=5), timedelta(minutes=25)
#: Opening stock is posted against equity; stores are valued at standard cost.
STORES, STORES_ACCOUNT, EQUITY_ACCOUNT = "RM-STORES", "1400", "3000"

FINISHED_GATED = ("BRACKET-A", "BRACKET-B", "PLATE-P2")
FINISHED_PLAIN = ("HINGE-H1", "CLAMP-C1", "SHELF-S1")
BLANKS = ("BRACKET-BLANK", "HINGE-BLANK", "PLATE-BLANK", "SHELF-BLANK")
#: Out of stock when the week starts: every order that needs it buys it.
STOCKED_OUT = "WASHER-M8"

#: Who does what (seed_data/users.yaml).
PLANNER, OPERATOR, INSPECTOR, MANAGER = "paul", "olga", "quinn", "mia"
SUPERVISOR, DIRECTOR, MAINTENANCE = "sam", "dora", "max"


class ScenarioError(TaktflowError):
    """The scenario cannot run here (a database that is not fresh, missing files)."""

    code = "scenario_failed"
    exit_status = 2


@dataclass
class WeekSettings:
    orders: int = 20
    seed: int = 1
    #: Seconds between worker passes (and chances for people to act) during the shifts.
    tick_s: int = 60
    root: Path = Path(".")

    def __post_init__(self) -> None:
        if self.orders < 4:
            raise ScenarioError(
                f"--orders {self.orders}: the week needs at least 4 orders (a shortage, a "
                "reworked lot, a scrapped lot and a plain one)"
            )
        if self.orders > 60:
            raise ScenarioError(
                f"--orders {self.orders}: at most 60 orders fit into the plant's week"
            )


@dataclass
class PlannedOrder:
    number: str
    item: str
    quantity: int
    arrives_at: datetime
    #: "shortage" (bought with an escalation), "rework" or "scrap" (fails its gate), "".
    role: str = ""


@dataclass
class Job:
    """An operation on a machine, from the operator's start to the machine's last part."""

    order: str
    sequence: int
    machine: str
    instance_id: int
    target: int
    started_at: datetime
    done_at: datetime | None = None
    rework: bool = False


@dataclass
class SimMachine:
    """A press or the laser: the simulator's model, read by its connector file's rules."""

    settings: MachineSettings
    model: SimulatedPress
    rule_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The raw signals: every reading (time, register values) the connector took.
    readings: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    job: Job | None = None

    @property
    def code(self) -> str:
        return self.settings.connector.machine or self.settings.id


@dataclass
class WeekLog:
    """What happened, for the report and for the reconciliation's coverage checks."""

    orders: list[PlannedOrder] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    unexpected_tasks: list[str] = field(default_factory=list)
    skipped_approvals: list[str] = field(default_factory=list)
    gate_failures: list[str] = field(default_factory=list)
    #: Orders whose cost was beyond tolerance: a manager signed their variances.
    variance_reviews: list[str] = field(default_factory=list)
    opening_stock: dict[str, int] = field(default_factory=dict)
    finished_at: datetime | None = None


def plan_orders(settings: WeekSettings, rng: random.Random) -> list[PlannedOrder]:
    """The week's orders: the three with a role first thing on Monday, then the others at
    random times of the first two and a half working days, sized to fit the week."""
    fixed = [
        ("CLAMP-C1", "shortage"),
        (rng.choice(FINISHED_GATED), "rework"),
        (rng.choice(FINISHED_GATED), "scrap"),
    ]
    others = [
        rng.choice(FINISHED_GATED + FINISHED_PLAIN * 2 + BLANKS)
        for _ in range(settings.orders - len(fixed))
    ]
    # Working minutes after Monday 06:00 at which the others arrive: Monday, Tuesday and
    # Wednesday morning (16 working hours a day); later orders would not finish by Friday.
    minutes = sorted(rng.uniform(60, 40 * 60) for _ in others)
    orders = []
    for n, (item, role) in enumerate(fixed, 1):
        orders.append(
            PlannedOrder(
                f"WK-{n:03d}", item, _quantity(item, rng), START + timedelta(minutes=5 * n), role
            )
        )
    for n, (item, at) in enumerate(zip(others, minutes, strict=True), len(fixed) + 1):
        day, minute = divmod(at, 16 * 60)
        arrives = START + timedelta(days=int(day), minutes=minute)
        orders.append(PlannedOrder(f"WK-{n:03d}", item, _quantity(item, rng), arrives))
    return orders


def _quantity(item: str, rng: random.Random) -> int:
    low, high = (150, 450) if item in BLANKS else (150, 450)
    return 10 * rng.randint(low // 10, high // 10)


class Week:
    """One run of the simulated week on `engine` (whose clock must be a ManualClock)."""

    def __init__(
        self,
        engine: WorkflowEngine,
        settings: WeekSettings,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(engine.clock, ManualClock):
            raise ScenarioError("the scenario needs an engine on a manual clock")
        self.engine, self.settings, self.clock = engine, settings, engine.clock
        self.bind = engine.bind
        self.progress = progress or (lambda line: None)
        self.rng = random.Random(settings.seed)
        self.log = WeekLog()
        self.accounts = AccountService(self.bind, ROLES)
        self.forms = TaskForms(engine, self.accounts)
        self.passwords = _demo_passwords(settings.root / "seed_data" / "users.yaml")
        simulation = load_simulation(
            settings.root / "seed_data" / "simulation.yaml", settings.root / "connectors"
        )
        self.machines = {
            m.code: m
            for m in (
                SimMachine(
                    s,
                    SimulatedPress(
                        cycle_s=s.cycle_s,
                        cycle_noise=s.cycle_noise,
                        reject_rate=s.reject_rate,
                        alarms_per_hour=s.alarms_per_hour,
                        alarm_s=s.alarm_s,
                        setup_s=s.setup_s,
                        speed=1.0,
                        seed=settings.seed * 1000 + (s.seed or 0),
                        start=0.0,
                    ),
                )
                for s in simulation.machines
            )
        }
        self.busy: dict[str, Job] = {}
        self.jobs_by_instance: dict[int, Job] = {}
        self.seen: dict[str, datetime] = {}
        self.task_data: dict[str, dict[str, Any]] = {}
        self.delays: dict[str, timedelta] = {}
        self.arrived = 0
        with Session(self.bind) as session:
            # The earliest due open sales order of each item.
            self.sales_orders: dict[str, str] = {}
            for sale in session.scalars(
                select(SalesOrder).where(SalesOrder.status == "open").order_by(SalesOrder.due_on)
            ):
                self.sales_orders.setdefault(sale.item, sale.number)
        self.sales_lines: dict[str, int] = {}
        self.spans: list[tuple[datetime, datetime]] = []
        #: (seconds since the start, machine) of the scripted breakdown, once planned.
        self.breakdown: tuple[float, str] | None = None
        self.broke_down = False

    # ------------------------------------------------------------------ the week
    def run(self) -> WeekLog:
        self.log.orders = plan_orders(self.settings, self.rng)
        self.clock.set(START)
        self._open_stock()
        with Session(self.bind) as session:
            self.spans = [(s.start, s.end) for s in shift_spans(session, START, START + HORIZON)]
        for machine in self.machines.values():
            machine.model.stop(0.0)  # the week starts with every machine idle
            self._read(machine, START)
        now, last_day = START, None
        while now < START + HORIZON:
            self._machines_until(now)
            self.clock.set(now)
            self.engine.worker_pass()
            self._arrivals(now)
            if self._present(now):
                self._people(now)
            if now.date() != last_day:
                last_day = now.date()
                self.progress(self._status(now))
            if self.log.finished_at is None and self._all_closed():
                self.log.finished_at = now
            if self.log.finished_at is not None and now >= START + WEEK:
                break
            present = self._present(now) or any(m.job for m in self.machines.values())
            now += timedelta(seconds=self.settings.tick_s) if present else NIGHT_STEP
        # Messages nobody waits for (machine signals only projected) expire after their
        # time to live: let it pass, so the inbox shows what is really left over.
        self._machines_until(now)
        self.clock.set(now + self.engine.message_ttl + timedelta(minutes=5))
        self.engine.worker_pass()
        self.engine.worker_pass()
        return self.log

    def _status(self, now: datetime) -> str:
        with Session(self.bind) as session:
            counts = dict(
                session.execute(
                    select(ProductionOrder.status, func.count()).group_by(ProductionOrder.status)
                ).all()
            )
        done = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no orders yet"
        return f"{now.astimezone(PLANT_ZONE).strftime('%a %d %b %H:%M')}: {done}"

    def _all_closed(self) -> bool:
        if self.arrived < len(self.log.orders):
            return False
        with Session(self.bind) as session:
            open_ = session.scalar(
                select(func.count())
                .select_from(ProductionOrder)
                .where(ProductionOrder.status.not_in(("closed", "cancelled")))
            )
        return not open_ and not self.engine.tasks()

    def _present(self, now: datetime) -> bool:
        return any(start <= now < end for start, end in self.spans)

    # ------------------------------------------------------------------ stock
    def _open_stock(self) -> None:
        """Stores hold what the week's orders need and a fifth more, in two lots for
        lot-tracked material (so that issues go first in, first out) — except the washers."""
        need: dict[str, Decimal] = {}
        with Session(self.bind) as session, session.begin():
            for order in self.log.orders:
                for line, component in _bom(session, order.item):
                    per = Decimal(line.quantity) / Decimal(10) ** BOM_DECIMALS
                    need[component.code] = need.get(component.code, Decimal(0)) + (
                        per * order.quantity * Decimal("1.2")
                    )
            value = 0
            for code, amount in sorted(need.items()):
                if code == STOCKED_OUT:
                    continue
                item = session.get(Item, code)
                assert item is not None
                whole = int(amount) + 20
                lots = [None] if item.tracking != "lot" else [f"OPEN-{code}-1", f"OPEN-{code}-2"]
                for n, lot in enumerate(lots):
                    part = whole // len(lots) + (whole % len(lots) if n == 0 else 0)
                    move_stock(
                        session,
                        item=code,
                        quantity=part,
                        reason="receipt",
                        now=START,
                        to_location=STORES,
                        lot=lot,
                        reference="opening stock",
                        idempotency_key=f"opening:{code}:{lot}",
                    )
                self.log.opening_stock[code] = whole
                value += whole * (
                    item.std_material_cents + item.std_labour_cents + item.std_overhead_cents
                )
            if value:
                money = str((Decimal(value) / 100).quantize(Decimal("0.01"), ROUND_HALF_UP))
                post_entry(
                    session,
                    [
                        {"account": STORES_ACCOUNT, "debit": money},
                        {"account": EQUITY_ACCOUNT, "credit": money},
                    ],
                    description="Opening stock of the simulated week",
                    now=START,
                    reference="opening stock",
                    idempotency_key="opening-stock",
                )

    # ------------------------------------------------------------------ machines
    def _machines_until(self, until: datetime) -> None:
        """Every counter and state change of every machine up to `until`, in time order,
        each read by its connector's rules at the moment it happens."""
        limit = (until - START).total_seconds()
        while True:
            due = [(m.model.next_change(), m.code) for m in self.machines.values()]
            at, code = min(due)
            if self.breakdown is not None and self.breakdown[0] <= min(at, limit):
                at, code = self.breakdown
                self.breakdown = None
                machine = self.machines[code]
                if machine.job is not None:
                    machine.model.fault(BREAKDOWN_CODE, BREAKDOWN_FOR.total_seconds(), now=at)
                    self._read(machine, START + timedelta(seconds=at))
                continue
            if at > limit:
                break
            machine = self.machines[code]
            machine.model.step(at)
            job = machine.job
            moment = START + timedelta(seconds=at)
            if job is not None and job.done_at is None and machine.model.parts >= job.target:
                machine.model.stop()  # the operator stops the press at the last part
                job.done_at = moment
                machine.job = None
            self._read(machine, moment)
        for machine in self.machines.values():
            machine.model.step(limit)

    def _read(self, machine: SimMachine, moment: datetime) -> None:
        self.clock.set(moment)
        values = machine.model.registers()
        _, machine.rule_states, _ = record_sample(
            self.engine, machine.settings.connector, machine.rule_states, values, moment
        )
        machine.readings.append((moment, values))

    # ------------------------------------------------------------------ orders
    def _arrivals(self, now: datetime) -> None:
        while (
            self.arrived < len(self.log.orders) and self.log.orders[self.arrived].arrives_at <= now
        ):
            order = self.log.orders[self.arrived]
            due = (order.arrives_at + timedelta(days=4)).isoformat()
            # Finished goods are made for the demo's open sales orders (a line each); blanks
            # and items nobody ordered replenish stock.
            sales_order = self.sales_orders.get(order.item)
            lines = self.sales_lines.setdefault(sales_order, 0) + 1 if sales_order else 0
            if sales_order:
                self.sales_lines[sales_order] = lines
            self.engine.start(
                "order_release",
                {
                    "order_number": order.number,
                    "item": order.item,
                    "quantity": order.quantity,
                    "priority": 3,
                    "erp_reference": f"{sales_order}/{lines}" if sales_order else None,
                    "due_at": due,
                },
                actor=PLANNER,
            )
            self.arrived += 1

    # ------------------------------------------------------------------ people
    def _people(self, now: datetime) -> None:
        # By element id: a called process's tasks belong to the calling instance.
        handlers: dict[str, Callable[[dict, dict, datetime], bool]] = {
            "approve_release": self._approve_release,
            "start_operation": self._start_operation,
            "complete_operation": self._complete_operation,
            "inspect_bracket_lot": self._inspect,
            "fill_in_measurement_sheet": self._inspect,
            "approve_disposition": self._dispose,
            "supervisor_approval": self._approve_requisition,
            "supervisor_escalated": self._approve_requisition,
            "manager_approval": self._approve_requisition,
            "manager_escalated": self._approve_requisition,
            "director_approval": self._approve_requisition,
            "goods_receipt": self._receive_goods,
            "give_reason": self._give_reason,
            "repair_machine": self._repair,
            "review_the_variances": self._review_variances,
            "issue_material": self._issue_material,
        }
        for task in self.engine.tasks():
            key = task["task_id"]
            seen = self.seen.setdefault(key, now)
            # People react within minutes, not at the very tick a task appears.
            delay = self.delays.setdefault(key, timedelta(minutes=self.rng.randint(1, 8)))
            if now < seen + delay:
                continue
            handler = handlers.get(task["name"])
            if key not in self.task_data:
                # What the task's form shows; while the task waits its data stays the same.
                self.task_data[key] = self.forms.view(key, html=False)["data"]
            data = self.task_data[key]
            if handler is None:
                self.log.unexpected_tasks.append(f"{task['process_id']}: {task['title']}")
                self._submit(task, PLANNER, {})
                continue
            handler(task, data, now)

    def _submit(self, task: dict, user: str, values: dict[str, Any]) -> None:
        self.forms.submit(
            task["task_id"],
            values,
            actor=user,
            display_name=user,
            strict=True,
            history=False,
            check_password=lambda given: self.accounts.verify_password(user, given),
        )

    def _approve_release(self, task: dict, data: dict, now: datetime) -> bool:
        self._submit(task, PLANNER, {"decision": "release", "release_comment": "released"})
        return True

    def _start_operation(self, task: dict, data: dict, now: datetime) -> bool:
        op, number = data["op"], data["order_number"]
        # A press or the laser runs one job at a time; assembly has several benches.
        free = [
            m["value"]
            for m in op["machines"]
            if m["value"] not in self.busy or m["value"] not in self.machines
        ]
        if not free:
            return False
        machine = self.rng.choice(free)
        with Session(self.bind) as session:
            target = _reaching(session, number, op["sequence"])
            rework = operation_view(session, number, op["sequence"])["status"] == "rework"
        self._submit(task, OPERATOR, {"machine": machine, "operator_badge": "op-7"})
        job = Job(number, op["sequence"], machine, task["instance_id"], target, now, rework=rework)
        if machine in self.machines:
            self.busy[machine] = job
        self.jobs_by_instance[task["instance_id"]] = job
        self.log.jobs.append(job)
        simulated = self.machines.get(machine)
        with Session(self.bind) as session:
            cycle = routing_cycle_s(session, number, op["sequence"]) or 30.0
        if simulated is not None:
            # Order change: the counters go to zero and the machine is set up, then runs a
            # little slower than the routing's ideal cycle, as real machines do.
            simulated.model.cycle_s = cycle * self.rng.uniform(1.03, 1.12)
            simulated.model.reset((now - START).total_seconds())
            if not self.broke_down and simulated.settings.connector.id.startswith("press"):
                self.broke_down = True
                after = simulated.model.setup_s + BREAKDOWN_AFTER.total_seconds()
                self.breakdown = ((now - START).total_seconds() + after, machine)
            simulated.job = job
            self._read(simulated, now)
        else:
            # A manual station (assembly): set-up, then the routing's pace with some spread.
            minutes = 5 + target * cycle * self.rng.uniform(0.9, 1.3) / 60
            job.done_at = now + timedelta(minutes=minutes)
        return True

    def _complete_operation(self, task: dict, data: dict, now: datetime) -> bool:
        job = self.jobs_by_instance.get(task["instance_id"])
        if job is None or job.done_at is None or job.done_at > now:
            return False
        simulated = self.machines.get(job.machine)
        if simulated is not None:
            # The operator reports what the machine's counters show.
            scrap = int(simulated.model.rejects)
            good = int(simulated.model.parts) - scrap
        elif job.rework:
            good, scrap = job.target, 0
        else:
            scrap = sum(1 for _ in range(job.target) if self.rng.random() < 0.015)
            good = job.target - scrap
        values: dict[str, Any] = {"good": good, "scrap": scrap}
        if scrap:
            values["scrap_reason"] = self.rng.choice(["burr", "crack", "dimension", "surface"])
        self._submit(task, OPERATOR, values)
        self.busy.pop(job.machine, None)
        del self.jobs_by_instance[task["instance_id"]]
        return True

    def _issue_material(self, task: dict, data: dict, now: datetime) -> bool:
        # The operator takes what the form proposes: what the parts took, with the allowance.
        self._submit(task, OPERATOR, {"issued_quantity": data["issue"]["quantity"]})
        return True

    def _inspect(self, task: dict, data: dict, now: datetime) -> bool:
        number = data["order_number"]
        planned = next(o for o in self.log.orders if o.number == number)
        fail = planned.role in ("rework", "scrap") and number not in self.log.gate_failures
        if fail:
            self.log.gate_failures.append(number)
        with Session(self.bind) as session:
            plan = plan_view(session, data["plan"])
        rows = {}
        for n, c in enumerate(plan["characteristics"]):
            low, high, step = c["lower"], c["upper"], Decimal(1).scaleb(-c["decimals"])
            values = [
                (low + (high - low) * Decimal(str(self.rng.uniform(0.35, 0.65)))).quantize(step)
                for _ in range(c["sample_size"])
            ]
            if fail and n == 0:
                values[0] = high + (high - low)  # far beyond the upper limit: the gate fails
            rows[c["name"]] = [str(v) for v in values]
        password = self.passwords[INSPECTOR]
        if task["name"] == "inspect_bracket_lot":
            values = {f"{name}_{n}": v for name, row in rows.items() for n, v in enumerate(row, 1)}
        else:
            values = {
                "measurement_sheet": "".join(
                    f"{name}: {' '.join(row)}\n" for name, row in rows.items()
                )
            }
        self._submit(task, INSPECTOR, values | {"inspector_signature": password})
        return True

    def _dispose(self, task: dict, data: dict, now: datetime) -> bool:
        planned = next(o for o in self.log.orders if o.number == data["order_number"])
        disposition = planned.role if planned.role in ("rework", "scrap") else "use_as_is"
        if disposition == "use_as_is":
            self.log.unexpected_tasks.append(f"disposition of {planned.number}")
        self._submit(
            task,
            MANAGER,
            {
                "disposition": disposition,
                "disposition_note": f"{disposition}: agreed with quality",
                "disposition_signature": self.passwords[MANAGER],
            },
        )
        return True

    def _approve_requisition(self, task: dict, data: dict, now: datetime) -> bool:
        order = data.get("order_number") or ""
        planned = next((o for o in self.log.orders if o.number == order), None)
        if task["name"] == "supervisor_approval" and planned and planned.role == "shortage":
            # The supervisor is at a supplier audit: the deadline hands this one on.
            if order not in self.log.skipped_approvals:
                self.log.skipped_approvals.append(order)
            return False
        user = {"supervisor": SUPERVISOR, "manager": MANAGER, "director": DIRECTOR}[task["lane"]]
        self._submit(task, user, {"decision": "approve", "comment": "needed for production"})
        return True

    def _receive_goods(self, task: dict, data: dict, now: datetime) -> bool:
        # The supplier delivers by express the next morning.
        ordered = datetime.fromisoformat(task["created_at"])
        if ordered.tzinfo is None:
            ordered = ordered.replace(tzinfo=UTC)
        if now < ordered + timedelta(hours=18):
            return False
        po = data["purchase_order"]["number"]
        self._submit(
            task,
            OPERATOR,
            {
                "received_quantity": data["receipt"]["remaining"],
                "received_lot": f"LOT-{po}",
                "delivery_note": f"DN-{po}",
            },
        )
        return True

    def _give_reason(self, task: dict, data: dict, now: datetime) -> bool:
        with Session(self.bind) as session:
            reason = signal_reason(session, data.get("state"), data.get("alarm_code"))
        # A machine stopped at the end of its order and waiting for the next one.
        reason = reason or ("NO-ORDER" if data.get("state") == "idle" else "OTHER")
        self._submit(task, OPERATOR, {"reason": reason, "note": "scenario week"})
        return True

    def _review_variances(self, task: dict, data: dict, now: datetime) -> bool:
        values = {
            "variance_decision": "post",
            "variance_signature": self.passwords[MANAGER],
            "variance_comment": "reviewed: set-up and learning time of the week",
        }
        self._submit(task, MANAGER, values)
        self.log.variance_reviews.append(data["order_number"])
        return True

    def _repair(self, task: dict, data: dict, now: datetime) -> bool:
        self._submit(task, MAINTENANCE, {"repair_note": "cleared and checked"})
        return True


# ---------------------------------------------------------------------- entry point
def run_week(
    bind: Any,
    config: Any,
    settings: WeekSettings,
    progress: Callable[[str], None] | None = None,
) -> tuple[Week, list[Any]]:
    """The command's and the test's way in: on a fresh database, prepare the demo plant, run
    the week on an engine of `config` with a manual clock, and reconcile. (week, checks)."""
    # Lazily: the application imports the model, and the checks import this module.
    from taktflow.app import build_engine
    from taktflow.mfg.scenario_checks import reconcile

    with Session(bind) as session:
        orders = session.scalar(select(func.count()).select_from(ProductionOrder)) or 0
        instances = session.scalar(select(func.count()).select_from(ProcessInstance)) or 0
    if orders or instances:
        raise ScenarioError(
            f"the database already holds {orders} production orders and {instances} workflow "
            "instances: the week needs a fresh database, e.g. "
            "TAKTFLOW_DATABASE_URL=sqlite:////tmp/week.db (then `taktflow db upgrade`)"
        )
    for needed in ("seed_data/simulation.yaml", "seed_data/users.yaml", "workflows", "forms"):
        if not (settings.root / needed).exists():
            raise ScenarioError(
                f"{settings.root / needed} does not exist: run the scenario "
                "from the taktflow checkout"
            )
    engine = build_engine(config, bind)
    engine.clock = ManualClock(START)
    prepare_plant(engine, settings.root)
    week = Week(engine, settings, progress)
    week.run()
    return week, reconcile(week)


# ---------------------------------------------------------------------- helpers
def prepare_plant(engine: WorkflowEngine, root: Path) -> dict[str, Any]:
    """What `make run` prepares: the demo plant's master data, its accounts (people sign
    with their passwords) and the workflows and forms, deployed."""
    counts = load_plant(engine.bind, root / "seed_data")
    accounts = AccountService(engine.bind, ROLES)
    existing = {u["username"] for u in accounts.users()}
    data = load_yaml((root / "seed_data" / "users.yaml").read_text(encoding="utf-8"))
    for user in data.get("users", []):
        if user["name"] not in existing:
            accounts.create_user(
                user["name"], user["roles"], user["password"], user.get("display_name")
            )
    engine.deploy_paths([str(root / "forms"), str(root / "workflows")], actor="scenario")
    return counts


def bom_need(line: BomLine, component: Item, parents: int) -> int:
    """Scaled quantity of `component` that `parents` units take, scrap allowance included,
    rounded up to what the component's unit can hold (docs/manufacturing.md)."""
    per_unit = Decimal(line.quantity) / Decimal(10) ** BOM_DECIMALS
    need = per_unit * parents * (1 + Decimal(line.scrap_bp) / Decimal(10_000))
    scaled = need * Decimal(10) ** component.decimals
    whole = int(scaled)
    return whole + (1 if scaled > whole else 0)


def _bom(session: Session, item: str, version: int | None = None) -> list[tuple[BomLine, Item]]:
    query = select(Bom).where(Bom.item == item)
    query = query.where(Bom.version == version) if version else query.order_by(Bom.version.desc())
    bom = session.scalars(query).first()
    if bom is None:
        return []
    lines = session.scalars(select(BomLine).where(BomLine.bom_id == bom.id).order_by(BomLine.id))
    out = []
    for line in lines:
        component = session.get(Item, line.component)
        assert component is not None
        out.append((line, component))
    return out


def _reaching(session: Session, number: str, sequence: int) -> int:
    """Units that reach an operation: those sent back for rework, else the previous
    operation's good, else the order quantity."""
    view = operation_view(session, number, sequence)
    if view["status"] == "rework":
        return int(view["in_rework"])
    order = session.get(ProductionOrder, number)
    assert order is not None
    previous = session.scalars(
        select(OrderOperation)
        .where(OrderOperation.order_number == number, OrderOperation.sequence < sequence)
        .order_by(OrderOperation.sequence.desc())
    ).first()
    item = session.get(Item, order.item)
    assert item is not None
    return int(unscaled(item, previous.good if previous else order.quantity))


def routing_cycle_s(session: Session, number: str, sequence: int) -> float:
    """The routing's ideal cycle time (seconds) of an order's operation; 0 when it has none."""
    order = session.get(ProductionOrder, number)
    assert order is not None
    cycle = session.scalar(
        select(RoutingOperation.cycle_ms)
        .join(Routing, Routing.id == RoutingOperation.routing_id)
        .where(
            Routing.item == order.item,
            Routing.version == order.routing_version,
            RoutingOperation.sequence == sequence,
        )
    )
    return (cycle or 0) / 1000


def _demo_passwords(path: Path) -> dict[str, str]:
    """The demo accounts' passwords: people sign inspections and dispositions with them."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    return {u["name"]: u["password"] for u in data.get("users", [])}
