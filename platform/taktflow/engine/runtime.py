"""The workflow engine service: start, complete, deliver, fire timers, persist.

Every public method is one unit of work: it opens a transaction, does its work, and commits
or rolls back as a whole. Callers (CLI, API, worker, tests) never commit. Nothing here knows
about HTTP or about manufacturing: manufacturing reaches the engine only as registered actions.

Persistence per instance: one row holding SpiffWorkflow's serialized workflow without its
spec (the spec is stored once per version), plus side tables — ready human tasks, waits
(messages with correlation, signals, timers with due times) — that inbox queries, correlation
and the timer scan read without deserializing anything. An optimistic lock counter on the row
makes two writers on one instance end with exactly one winner.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time as time_module
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from SpiffWorkflow import TaskState
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import (
    ErrorEventDefinition as BaseErrorEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import (
    SignalEventDefinition as BaseSignalEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.message import (
    MessageEventDefinition as BaseMessageEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.spiff.specs.event_definitions import (
    MessageEventDefinition,
    SignalEventDefinition,
)
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from taktflow.db import WRITE_OPTION
from taktflow.engine import models as m
from taktflow.engine import store as q
from taktflow.engine.actions import ActionRegistry, builtin_actions, to_json
from taktflow.engine.cache import LRU, WorkflowCache
from taktflow.engine.clock import Clock, SystemClock, using_clock
from taktflow.engine.definitions import Compiler
from taktflow.engine.deployment import DeploymentMixin
from taktflow.engine.outbox import OutboxMixin
from taktflow.engine.sandbox import Limits
from taktflow.engine.scripting import (
    StepContext,
    TaktflowScriptEngine,
    render_instructions,
    step_context,
)
from taktflow.engine.serialization import SERIALIZER_VERSION, WorkflowSerializer
from taktflow.engine.store import InstanceRow, audit_dict, flat_correlation, task_dict, wait_dict
from taktflow.errors import BadRequest, Conflict, NotFound, PermissionDenied, ValidationFailed

log = logging.getLogger(__name__)

#: Safety net against a workflow that keeps making automatic progress without ever waiting.
MAX_STEP_ROUNDS = 1000
#: Attempts before an inbox row that keeps failing for reasons other than conflicts is failed.
MAX_DISPATCH_ATTEMPTS = 5
#: Wait before the first retry of a failed row; it doubles with each attempt, up to the cap.
RETRY_FIRST_DELAY = timedelta(seconds=1)
RETRY_MAX_DELAY = timedelta(minutes=5)
#: The longest pause of a worker whose passes keep failing.
WORKER_MAX_PAUSE_S = 60.0
#: connector_state key of the runtime's own status, and after how many seconds without a
#: report the runtime counts as not running (it reports every few seconds).
RUNTIME_KEY = "runtime"
RUNTIME_STALE_S = 15.0
#: Inbox rows delivered in one transaction by dispatch (one by one again if one fails), and
#: the time after which the transaction is committed anyway: the first event of a batch waits
#: for the whole batch's commit (measured at 500 events/s: 3 ms budget p99 ~80-120 ms, 15-20 ms
#: ~50-60 ms, 50 ms ~110-130 ms: a commit per workflow step costs more than it saves).
DISPATCH_BATCH = 50
DISPATCH_BUDGET_S = 0.015
#: Buffered messages handed over to one instance in one step at most (a loop that counts
#: parts takes one per round; the rest wait for the next step).
MAX_BUFFERED_CHAIN = 1000
#: SpiffWorkflow's task iterators silently stop at this tree depth (TaskIterator max_depth):
#: deeper tasks would vanish from task lists and completion checks. Stop before that.
SPIFF_MAX_DEPTH = 1000
MAX_TREE_DEPTH = SPIFF_MAX_DEPTH - 20

CONFLICT_MESSAGE = "the instance was changed by someone else meanwhile; reload it and try again"


class _KeyReused(Conflict):
    """An idempotency key came back with another event: the caller's mistake, not a race."""


class _StaleInstance(Exception):
    """The optimistic lock check failed: another writer saved the instance first."""


def _dumps(value: Any) -> str:
    return to_json(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _task_key(task_id: str) -> str:
    try:
        return str(uuid.UUID(str(task_id)))
    except ValueError:
        raise NotFound(f"task {task_id!r} does not exist (not a task id)") from None


def correlation_matches(wanted: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """True when every property the wait needs is present in the message with an equal value.

    Values compare as equal when they are equal or have the same text, because correlation
    values typed on a command line or in a URL are always strings.
    """
    for prop, value in wanted.items():
        if prop not in given:
            return False
        other = given[prop]
        if other != value and str(other) != str(value):
            return False
    return True


def check_data(data: Any, what: str = "data") -> dict[str, Any]:
    """Task and start data must be a JSON object with text keys; returns a copy as a dict."""
    return _checked(data, what)[0]


def _checked(data: Any, what: str) -> tuple[dict[str, Any], str]:
    """check_data, and the data's JSON text (events are stored as that text)."""
    if data is None:
        return {}, "{}"
    if not isinstance(data, Mapping):
        raise BadRequest(f"{what} must be a JSON object, got {_json_type(data)}")
    data = dict(data)
    for key in data:
        if not isinstance(key, str) or not key:
            raise ValidationFailed(f"{what}: keys must be non-empty text, got {key!r}")
    try:
        text = _ENCODER.encode(data)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"{what}: {exc}") from None
    return data, text


def _json_type(value: Any) -> str:
    names = {
        list: "an array",
        str: "a string",
        bool: "true/false",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), type(value).__name__)


def _reject(obj: Any) -> Any:
    raise TypeError(f"value of type {type(obj).__name__} is not JSON data")


#: json.dumps(data, default=_reject), without building an encoder for every event.
_ENCODER = json.JSONEncoder(default=_reject)


@dataclass
class _Loaded:
    """An instance taken into a unit of work: its row, its workflow and its side-table rows.

    `tasks` (task id -> task dict) and `waits` (wait key -> wait row id) mirror the instance's
    human_task and instance_wait rows. They travel with the workflow through the cache, which
    checks the lock version, so a step need not read them back. None means "read them".
    """

    row: InstanceRow
    wf: BpmnWorkflow
    tasks: dict[str, dict[str, Any]] | None = None
    waits: dict[tuple, tuple[int, dict[str, Any]]] | None = None
    #: lock version as read (or last written in this unit); the UPDATE must still find it.
    read_lock: int = 0


@dataclass
class _Unit:
    """State of one unit of work: an SQLAlchemy connection in a transaction, the DBAPI cursor
    of that connection for the hot-path SQL, and an ORM session on the same connection,
    created only when something (an action, deployment) asks for it."""

    conn: Connection
    cur: Any
    hot: q.HotPath
    now: datetime
    _session: Session | None = None
    loaded: dict[int, _Loaded] = field(default_factory=dict)
    #: instance ids whose workflow was saved in this unit.
    saved: set[int] = field(default_factory=set)
    #: inbox ids created in this unit, dispatched after commit.
    routed: list[int] = field(default_factory=list)
    #: message waits added by the last sync, per instance (candidates for buffered messages).
    new_message_waits: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: instances that took a message in this step: a wait they return to (a loop) may have
    #: buffered messages waiting for it, although the wait itself is not new.
    consumed: set[int] = field(default_factory=set)
    #: instances whose buffered messages are being handed over (no nested hand-over).
    handing_over: set[int] = field(default_factory=set)
    audit: list[dict[str, Any]] = field(default_factory=list)
    #: received_at and expires_at of the inbox rows this unit inserts, as the database
    #: stores them (converted once: a connector's batch inserts hundreds of rows).
    inbox_times: tuple[Any, Any] | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(bind=self.conn, expire_on_commit=False, autoflush=True)
        return self._session

    def flush_audit(self) -> None:
        if self.audit:
            self.hot.insert_audit(self.cur, self.audit)
            self.audit = []


@dataclass
class DeliveryResult:
    message_id: int
    delivered_to: list[int]
    started: list[int]
    buffered: bool
    duplicate: bool = False
    status: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "delivered_to": self.delivered_to,
            "started": self.started,
            "buffered": self.buffered,
            "duplicate": self.duplicate,
            "status": self.status,
        }


class WorkflowEngine(DeploymentMixin, OutboxMixin):
    """Deploys definitions and runs persisted workflow instances."""

    def __init__(
        self,
        bind: Engine,
        *,
        clock: Clock | None = None,
        actions: ActionRegistry | None = None,
        message_ttl: timedelta = timedelta(hours=1),
        script_limits: Limits | None = None,
        cache_size: int = 512,
        compilers: Mapping[str, Compiler] | None = None,
    ) -> None:
        self.bind = bind
        self.clock: Clock = clock or SystemClock()
        #: More work for each worker pass: name -> function(engine) returning a count. The
        #: application adds what the modules it assembles need (the plant's machine time);
        #: the engine itself knows nothing of them.
        self.pass_hooks: dict[str, Callable[[WorkflowEngine], int]] = {}
        if actions is None:
            actions = ActionRegistry()
            builtin_actions(actions)
        self.actions = actions
        self.message_ttl = message_ttl
        self.compilers: dict[str, Compiler] = dict(compilers or {})
        self.serializer = WorkflowSerializer()
        self.script_engine = TaktflowScriptEngine(actions, limits=script_limits)
        self.workflows = WorkflowCache(cache_size)
        self._specs: LRU[tuple[Any, ...], tuple[Any, dict[str, Any]]] = LRU(256)
        # Deployed versions never change: process_version.id -> version number.
        self._version_numbers: dict[int, int] = {}
        self._write_bind = bind.execution_options(**{WRITE_OPTION: True})
        self._read = sessionmaker(bind=bind, expire_on_commit=False)
        self._pg = bind.dialect.name == "postgresql"
        self._hot = q.HotPath(bind.dialect.name)
        dbapi = bind.dialect.dbapi
        self._integrity_errors = (IntegrityError, dbapi.IntegrityError)
        self._operational_errors = (OperationalError, dbapi.OperationalError)
        self._stop = threading.Event()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _unit(self) -> Iterator[_Unit]:
        conn = self._write_bind.connect()
        transaction = conn.begin()
        unit = _Unit(conn=conn, cur=conn.connection.cursor(), hot=self._hot, now=self.clock.now())
        try:
            yield unit
            unit.flush_audit()
            if unit._session is not None:
                unit._session.flush()
            transaction.commit()
        except _StaleInstance as exc:
            transaction.rollback()
            raise Conflict(CONFLICT_MESSAGE) from exc
        except self._integrity_errors as exc:
            transaction.rollback()
            raise Conflict(f"conflicting write: {getattr(exc, 'orig', exc)}") from exc
        except self._operational_errors as exc:
            transaction.rollback()
            if _is_serialization_failure(exc):
                raise Conflict(CONFLICT_MESSAGE) from exc
            raise
        except BaseException:
            transaction.rollback()
            raise
        else:
            for instance_id in unit.saved:
                loaded = unit.loaded[instance_id]
                self.workflows.put(instance_id, loaded.row.lock_version, loaded)
        finally:
            if unit._session is not None:
                unit._session.close()
            unit.cur.close()
            conn.close()
        if unit.routed:
            self.dispatch(unit.routed)

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        session = self._read()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    # ------------------------------------------------------------------ specs
    def _resolve_called(self, conn: Connection, process_id: str, called: list[str]) -> dict:
        """Bind every process reachable through call activities to its latest version."""
        bound: dict[str, int] = {}
        todo = set(called)
        while todo:
            rows = conn.execute(
                select(
                    m.ProcessVersion.process_id,
                    m.ProcessVersion.id,
                    m.ProcessVersion.called_processes,
                ).where(m.ProcessVersion.process_id.in_(todo), m.ProcessVersion.is_latest.is_(True))
            ).all()
            missing = todo - {r[0] for r in rows}
            if missing:
                raise Conflict(
                    f"process {process_id!r} calls {', '.join(sorted(missing))}, "
                    "which is not deployed"
                )
            todo = set()
            for pid, vid, more in rows:
                bound[pid] = vid
                todo |= set(json.loads(more)) - bound.keys() - {process_id}
        return bound

    def _specs_for(
        self, conn: Connection | Session, version_id: int, called: Mapping[str, int]
    ) -> tuple[Any, dict[str, Any]]:
        key = (version_id, *sorted(called.items()))

        def load() -> tuple[Any, dict[str, Any]]:
            ids = {version_id, *called.values()}
            texts = dict(
                conn.execute(
                    select(m.ProcessVersion.id, m.ProcessVersion.spec).where(
                        m.ProcessVersion.id.in_(ids)
                    )
                ).all()
            )
            spec, subs = self.serializer.loads_spec(texts[version_id])
            combined = dict(subs)
            for pid, vid in called.items():
                called_spec, called_subs = self.serializer.loads_spec(texts[vid])
                combined[pid] = called_spec
                for name, sub in called_subs.items():
                    combined.setdefault(name, sub)
            return spec, combined

        return self._specs.get_or_create(key, load)

    def _version_number(self, conn: Connection | Session, version_id: int) -> int:
        number = self._version_numbers.get(version_id)
        if number is None:
            number = conn.execute(
                select(m.ProcessVersion.version).where(m.ProcessVersion.id == version_id)
            ).scalar_one()
            self._version_numbers[version_id] = number
        return number

    # ------------------------------------------------------------------ instances
    def start(
        self,
        process_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        version: int | None = None,
    ) -> dict:
        """Start an instance of the latest (or the given) version; run it to its first wait.

        Returns {instance_id, process_id, version, status, ready_tasks}.
        """
        start_data = check_data(data, "start data")
        if "\x00" in process_id:
            # No deployable id holds NUL, and PostgreSQL refuses it in a query: not found.
            raise NotFound(f"process {process_id!r} is not deployed")
        with self._unit() as unit:
            if version is None:
                latest = unit.hot.latest_version(unit.cur, process_id)
                if latest is None:
                    self._version(unit.session, process_id, None)  # raises NotFound with hints
                version_id, number, called = latest
            else:
                pv = self._version(unit.session, process_id, version)
                version_id, number, called = pv.id, pv.version, pv.called_processes
            self._version_numbers[version_id] = number
            row = self._create_instance(
                unit, process_id, version_id, json.loads(called), start_data, actor
            )
            summary = _summary(row, number)
            summary["ready_tasks"] = _sorted_tasks(unit.loaded[row.id])
            return summary

    def _create_instance(
        self,
        unit: _Unit,
        process_id: str,
        version_id: int,
        called: list[str],
        data: Mapping[str, Any],
        actor: str | None,
        *,
        start_event: m.InboxMessage | None = None,
    ) -> InstanceRow:
        bound = self._resolve_called(unit.conn, process_id, called) if called else {}
        spec, subs = self._specs_for(unit.conn, version_id, bound)
        wf = BpmnWorkflow(spec, subs, script_engine=self.script_engine)
        wf.task_tree.data.update(copy.deepcopy(dict(data)))
        values = {
            "process_id": process_id,
            "version_id": version_id,
            "status": m.ACTIVE,
            "resume_status": None,
            "state": "",
            "serializer_version": SERIALIZER_VERSION,
            "called_versions": json.dumps(bound),
            "error": None,
            "lock_version": 1,
            "started_by": actor,
            "created_at": unit.now,
            "updated_at": unit.now,
        }
        instance_id = unit.hot.insert_instance(unit.cur, values)
        row = InstanceRow(
            id=instance_id,
            process_id=process_id,
            version_id=version_id,
            status=m.ACTIVE,
            resume_status=None,
            error=None,
            lock_version=1,
            called_versions=values["called_versions"],
            started_by=actor,
            created_at=unit.now,
            updated_at=unit.now,
        )
        unit.loaded[instance_id] = _Loaded(row, wf, tasks={}, waits={}, read_lock=1)
        details: dict[str, Any] = {"version": self._version_numbers.get(version_id), "data": data}
        if start_event is not None:
            details["message"] = start_event.name
            details["message_id"] = start_event.id
        self._audit(unit, "started", instance_id, actor, details=details)
        self._advance(unit, row, wf, actor)
        if start_event is not None and row.status == m.ACTIVE:
            self._send(unit, row, wf, start_event, actor, persist=False)
        self._persist(unit, row, wf)
        return row

    def _load(
        self, unit: _Unit, instance_id: int, row: InstanceRow | None = None
    ) -> tuple[InstanceRow, BpmnWorkflow]:
        """The instance's row and workflow; `row` when the caller has just read it."""
        if instance_id in unit.loaded:
            loaded = unit.loaded[instance_id]
            return loaded.row, loaded.wf
        if row is None:
            row = unit.hot.load_instance(unit.cur, instance_id)
        if row is None:
            raise NotFound(f"instance {instance_id} does not exist")
        cached = self.workflows.take(instance_id, row.lock_version)
        if cached is not None:
            loaded = _Loaded(row, cached.wf, cached.tasks, cached.waits, row.lock_version)
        else:
            spec, subs = self._specs_for(unit.conn, row.version_id, row.called)
            state = unit.hot.load_state(unit.cur, instance_id)
            wf = self.serializer.loads(state, spec, subs, self.script_engine)
            loaded = _Loaded(row, wf, read_lock=row.lock_version)
        unit.loaded[instance_id] = loaded
        return row, loaded.wf

    @contextmanager
    def _scope(self, unit: _Unit, row: InstanceRow, actor: str | None) -> Iterator[None]:
        context = StepContext(lambda: unit.session, row.id, row.process_id, unit.now, actor)
        with using_clock(self.clock), step_context(context):
            yield

    def _advance(
        self,
        unit: _Unit,
        row: InstanceRow,
        wf: BpmnWorkflow,
        actor: str | None,
        before: Callable[[], Any] | None = None,
    ) -> bool:
        """Run `before` (e.g. completing a task) and the engine steps after it.

        An exception from a script or action puts the instance in status error, recording the
        task, the element and the message; the work before the failing task is kept.
        """
        with self._scope(unit, row, actor):
            try:
                if before is not None:
                    before()
                for _ in range(MAX_STEP_ROUNDS):
                    wf.do_engine_steps()
                    # do_engine_steps ends by refreshing timers, which can make a timer event
                    # READY again; only then is another round needed.
                    if not _has_timer_waits(wf) or not any(
                        not t.task_spec.manual for t in wf.get_tasks(state=TaskState.READY)
                    ):
                        break
                else:
                    raise WorkflowException(
                        f"the workflow made automatic progress {MAX_STEP_ROUNDS} times without "
                        "waiting: endless loop?"
                    )
            except Exception as exc:  # noqa: BLE001 - any failure becomes the instance's error
                self._record_error(unit, row, wf, exc, actor)
                return False
        return True

    def _record_error(
        self, unit: _Unit, row: InstanceRow, wf: BpmnWorkflow, exc: Exception, actor: str | None
    ) -> None:
        task = next(iter(wf.get_tasks(state=TaskState.ERROR)), None)
        if task is None and isinstance(exc, WorkflowTaskException):
            task = exc.task
        info = {
            "task_id": str(task.id) if task is not None else None,
            "element_id": task.task_spec.bpmn_id if task is not None else None,
            "element_name": task.task_spec.bpmn_name if task is not None else None,
            "message": _error_message(exc),
            "type": getattr(exc, "error_type", None) or type(exc).__name__,
            "line": getattr(exc, "line_number", None) or None,
        }
        row.status = m.ERROR
        row.error = _dumps(info)
        self._audit(
            unit,
            "error",
            row.id,
            actor,
            task_id=info["task_id"],
            element_id=info["element_id"],
            details=info,
        )
        log.warning("instance %s failed at %s: %s", row.id, info["element_id"], info["message"])

    def _persist(self, unit: _Unit, row: InstanceRow, wf: BpmnWorkflow) -> None:
        """Save the workflow (checking the lock) and bring the side tables in line with it."""
        loaded = unit.loaded[row.id]
        if row.status == m.ACTIVE and (depth := _frontier_depth(wf)) >= MAX_TREE_DEPTH:
            self._record_error(
                unit,
                row,
                wf,
                WorkflowException(
                    f"the instance's history is {depth} tasks deep; SpiffWorkflow cannot follow "
                    f"more than {SPIFF_MAX_DEPTH} (a loop ran too many times). Terminate it and "
                    "model the repetition as a new instance per round (e.g. a call activity)."
                ),
                None,
            )
        if row.status == m.ACTIVE and wf.is_completed():
            row.status = m.COMPLETED
            self._audit(unit, "completed", row.id, None)
        row.updated_at = unit.now
        new_lock = loaded.read_lock + 1
        state = self.serializer.dumps(wf)
        if not unit.hot.update_instance(unit.cur, row, state, loaded.read_lock, new_lock):
            raise _StaleInstance(row.id)
        loaded.read_lock = row.lock_version = new_lock
        active = row.status == m.ACTIVE
        self._sync_tasks(unit, loaded, wf if active else None)
        self._sync_waits(unit, loaded, wf if active else None)
        self._route_events(unit, row, wf)
        unit.saved.add(row.id)
        if active and row.id not in unit.handing_over and unit.new_message_waits.get(row.id):
            unit.handing_over.add(row.id)
            try:
                # One at a time, each after the step the previous one caused (a loop that
                # waits again takes the next): iteratively, not by recursion.
                for _ in range(MAX_BUFFERED_CHAIN):
                    if row.status != m.ACTIVE or not self._deliver_buffered(unit, row, wf):
                        break
            finally:
                unit.handing_over.discard(row.id)

    def _sync_tasks(self, unit: _Unit, loaded: _Loaded, wf: BpmnWorkflow | None) -> None:
        row = loaded.row
        desired = (
            {str(t.id): t for t in wf.get_tasks(state=TaskState.READY, manual=True)}
            if wf is not None
            else {}
        )
        if loaded.tasks is None:
            rows = unit.hot.tasks_of(unit.cur, row.id)
            loaded.tasks = {t["task_id"]: task_dict(t) for t in rows}
        existing = loaded.tasks
        gone = [task_id for task_id in existing if task_id not in desired]
        if gone:
            unit.hot.delete_tasks(unit.cur, gone)
            for task_id in gone:
                del existing[task_id]
        added = []
        for task_id, task in desired.items():
            if task_id in existing:
                continue
            ts = task.task_spec
            extensions = getattr(ts, "extensions", None) or {}
            properties = extensions.get("properties") or {}
            values = {
                "task_id": task_id,
                "instance_id": row.id,
                "process_id": row.process_id,
                "element_id": ts.bpmn_id,
                "kind": "manual" if type(ts).__name__ == "ManualTask" else "user",
                "title": ts.bpmn_name or ts.bpmn_id,
                "lane": ts.lane,
                "form": properties.get("formName"),
                "instructions": render_instructions(
                    extensions.get("instructionsForEndUser"), task.data
                ),
                "created_at": unit.now,
            }
            added.append(values)
            existing[task_id] = task_dict(values)
        if added:
            unit.hot.insert_tasks(unit.cur, added)

    def _sync_waits(self, unit: _Unit, loaded: _Loaded, wf: BpmnWorkflow | None) -> None:
        row = loaded.row
        desired = {_wait_key(w): w for w in (_waits_of(wf) if wf is not None else [])}
        if loaded.waits is None:
            loaded.waits = {
                _wait_key(values): (wait_id, values)
                for wait_id, values in unit.hot.waits_of(unit.cur, row.id)
            }
        existing = loaded.waits
        gone = [key for key in existing if key not in desired]
        if gone:
            unit.hot.delete_waits(unit.cur, [existing[key][0] for key in gone])
            for key in gone:
                del existing[key]
        new_messages = []
        renewed = row.id in unit.consumed
        unit.consumed.discard(row.id)
        for key, values in desired.items():
            if key in existing:
                if renewed and values["kind"] == m.WAIT_MESSAGE:
                    new_messages.append(values)
                continue
            wait_id = unit.hot.insert_wait(unit.cur, row.id, values)
            existing[key] = (wait_id, values)
            if values["kind"] == m.WAIT_MESSAGE:
                new_messages.append(values)
        unit.new_message_waits[row.id] = new_messages

    def _route_events(self, unit: _Unit, row: InstanceRow, wf: BpmnWorkflow) -> None:
        """Messages and signals thrown by the instance and not caught inside it go to the inbox,
        in the same transaction as the step that threw them; they are dispatched after commit."""
        for event in wf.get_events():
            definition = event.event_definition
            if isinstance(definition, BaseMessageEventDefinition):
                kind = m.WAIT_MESSAGE
            elif isinstance(definition, BaseSignalEventDefinition):
                kind = m.WAIT_SIGNAL
            elif isinstance(definition, BaseErrorEventDefinition):
                # An error end event nothing caught ended its path; keep it in the history so
                # a "completed" instance still shows that it ended with an error.
                self._audit(
                    unit,
                    "error_uncaught",
                    row.id,
                    None,
                    details={"code": definition.code, "name": definition.name},
                )
                continue
            else:
                continue
            payload = event.payload if isinstance(event.payload, dict) else {"value": event.payload}
            correlation = flat_correlation(event.correlations or {})
            message_id = self._insert_inbox(
                unit,
                idempotency_key=f"instance:{row.id}:{uuid.uuid4()}",
                kind=kind,
                name=definition.name,
                correlation=correlation,
                payload=payload,
                source=f"instance:{row.id}",
            )
            unit.routed.append(message_id)
            self._audit(
                unit,
                f"{kind}_sent",
                row.id,
                None,
                details={
                    "name": definition.name,
                    "correlation": correlation,
                    "message_id": message_id,
                },
            )

    # ------------------------------------------------------------------ tasks
    def tasks(self, instance_id: int | None = None) -> list[dict]:
        """Ready human tasks (all, or of one instance), oldest first."""
        with self.bind.connect() as conn:
            if instance_id is None:
                rows = conn.execute(q.SELECT_ALL_TASKS)
            else:
                rows = conn.execute(q.SELECT_TASKS_OF, {"b_id": instance_id})
            return [task_dict(t) for t in rows]

    def complete_task(
        self,
        task_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        history: bool = True,
    ) -> dict:
        """Complete a ready user or manual task with `data`; run to the next wait.

        Returns the instance view; `history=False` leaves out the audit history (one query
        less, for callers such as an operator screen that only need the next task).
        """
        submitted = check_data(data, "task data")
        key = _task_key(task_id)
        task_uuid = uuid.UUID(key)
        with self._unit() as unit:
            found = unit.hot.task_with_instance(unit.cur, key)
            if found is None:
                self._task_not_ready(unit.conn, key)
            assert found is not None
            title, lane, claimed_by, task_row = found
            if claimed_by is not None and actor is not None and claimed_by != actor:
                raise PermissionDenied(
                    f"task {key} is claimed by {claimed_by}; only they can complete it (a "
                    "manager can reassign it)"
                )
            row, wf = self._load(unit, task_row.id, task_row)
            if row.status != m.ACTIVE:
                raise Conflict(f"instance {row.id} is {row.status}; its tasks cannot be completed")
            task = wf.get_task_from_id(task_uuid)
            if task is None or task.state != TaskState.READY:
                raise Conflict(f"task {task_id} is no longer ready")

            def complete() -> None:
                task.data.update(copy.deepcopy(submitted))
                task.run()

            self._audit(
                unit,
                "task_completed",
                row.id,
                actor,
                task_id=key,
                element_id=task.task_spec.bpmn_id,
                details={"data": submitted, "title": title, "lane": lane},
            )
            self._advance(unit, row, wf, actor, before=complete)
            self._persist(unit, row, wf)
            return self._view_of(unit, row.id, history)

    def record(
        self,
        kind: str,
        actor: str | None,
        details: Mapping[str, Any],
        *,
        instance_id: int | None = None,
        task_id: str | None = None,
    ) -> None:
        """Add an event to the audit that no engine step produced (e.g. a refused request)."""
        with self._unit() as unit:
            self._audit(unit, kind, instance_id, actor, task_id=task_id, details=details)

    # ------------------------------------------------------------------ claims
    def task(self, task_id: str) -> dict:
        """One ready task (with who has claimed it)."""
        key = _task_key(task_id)
        with self.bind.connect() as conn:
            found = conn.execute(select(m.HumanTask).where(m.HumanTask.task_id == key)).first()
            if found is None:
                self._task_not_ready(conn, key)
            return task_dict(found)

    def claim_task(self, task_id: str, user: str) -> dict:
        """`user` takes the task: from now on only they may complete it."""
        return self._set_claim(task_id, user, actor=user, kind="task_claimed", only_if_free=True)

    def unclaim_task(self, task_id: str, user: str, *, force: bool = False) -> dict:
        """Give the task back to the lane; only its claimant may, unless `force` (a manager)."""
        key = _task_key(task_id)
        with self._unit() as unit:
            task = self._claimable(unit, key)
            if task.claimed_by is None:
                return task_dict(task)
            if task.claimed_by != user and not force:
                raise PermissionDenied(
                    f"task {key} is claimed by {task.claimed_by}; only they (or a manager) can "
                    "release it"
                )
            self._audit(
                unit, "task_unclaimed", task.instance_id, user, task_id=key,
                element_id=task.element_id, details={"was": task.claimed_by},
            )  # fmt: skip
            task.claimed_by, task.claimed_at = None, None
            return task_dict(task)

    def assign_task(self, task_id: str, user: str, *, actor: str) -> dict:
        """Give the task to `user` whoever holds it (a manager reassigning work)."""
        return self._set_claim(task_id, user, actor=actor, kind="task_assigned", only_if_free=False)

    def _set_claim(
        self, task_id: str, user: str, *, actor: str, kind: str, only_if_free: bool
    ) -> dict:
        key = _task_key(task_id)
        with self._unit() as unit:
            task = self._claimable(unit, key)
            if only_if_free and task.claimed_by not in (None, user):
                raise Conflict(f"task {key} is already claimed by {task.claimed_by}")
            if task.claimed_by == user:
                return task_dict(task)
            self._audit(
                unit, kind, task.instance_id, actor, task_id=key, element_id=task.element_id,
                details={"user": user, "was": task.claimed_by},
            )  # fmt: skip
            task.claimed_by, task.claimed_at = user, unit.now
            return task_dict(task)

    def _claimable(self, unit: _Unit, key: str) -> m.HumanTask:
        # Lock the row so two people claiming at once cannot both win; the changes made to
        # it are flushed with the unit of work.
        found = unit.session.scalar(
            select(m.HumanTask).where(m.HumanTask.task_id == key).with_for_update()
        )
        if found is None:
            self._task_not_ready(unit.conn, key)
        return found

    def _task_not_ready(self, conn: Connection, task_id: str) -> None:
        completed_by = conn.execute(
            select(m.AuditEvent.actor, m.AuditEvent.at).where(
                m.AuditEvent.task_id == task_id, m.AuditEvent.kind == "task_completed"
            )
        ).first()
        if completed_by is not None:
            who = f" by {completed_by.actor}" if completed_by.actor else ""
            raise Conflict(
                f"task {task_id} is already completed{who} at {completed_by.at.isoformat()}"
            )
        raise NotFound(
            f"task {task_id} is not ready: unknown, or its instance is not active "
            "(terminated, suspended or in error)"
        )

    # ------------------------------------------------------------------ instance views
    def instance(self, instance_id: int, *, history: bool = True) -> dict:
        """Everything about one instance: status, data, error, ready tasks, waits, history."""
        with self.bind.connect() as conn:
            found = conn.execute(q.SELECT_INSTANCE, {"b_id": instance_id}).first()
            if found is None:
                raise NotFound(f"instance {instance_id} does not exist")
            row = InstanceRow(*found)
            spec, subs = self._specs_for(conn, row.version_id, row.called)
            state = conn.execute(q.SELECT_STATE, {"b_id": instance_id}).scalar_one()
            wf = self.serializer.loads(state, spec, subs, self.script_engine)
            tasks = [task_dict(t) for t in conn.execute(q.SELECT_TASKS_OF, {"b_id": row.id})]
            waits = [wait_dict(w) for w in conn.execute(q.SELECT_WAITS_OF, {"b_id": row.id})]
            return self._view(conn, row, wf, tasks, waits, history)

    def _view_of(self, unit: _Unit, instance_id: int, history: bool = True) -> dict:
        """The instance view from what a unit of work holds in memory (no deserializing)."""
        loaded = unit.loaded[instance_id]
        waits = [
            wait_dict(values)
            for _, values in sorted((loaded.waits or {}).values(), key=lambda w: w[0])
        ]
        if history:
            unit.flush_audit()
        return self._view(unit.conn, loaded.row, loaded.wf, _sorted_tasks(loaded), waits, history)

    def _view(
        self,
        conn: Connection,
        row: InstanceRow,
        wf: BpmnWorkflow,
        tasks: list[dict],
        waits: list[dict],
        history: bool,
    ) -> dict:
        view = _summary(row, self._version_number(conn, row.version_id))
        view.update(
            data=_workflow_data(wf),
            error=json.loads(row.error) if row.error else None,
            ready_tasks=tasks,
            waiting=waits,
            created_at=row.created_at.isoformat(),
            updated_at=row.updated_at.isoformat(),
        )
        if history:
            view["history"] = self._history(conn, row.id)
        return view

    def instances(
        self,
        *,
        process_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict]:
        """Instances, newest first, without deserializing any workflow."""
        if status is not None and status not in m.STATUSES:
            raise ValidationFailed(
                f"unknown status {status!r} (expected one of {', '.join(m.STATUSES)})"
            )
        query = (
            select(*q.INSTANCE_COLUMNS, m.ProcessVersion.version)
            .join(m.ProcessVersion, m.ProcessVersion.id == m.ProcessInstance.version_id)
            .order_by(m.ProcessInstance.id.desc())
            .limit(limit)
            .offset(offset)
        )
        if process_id is not None:
            query = query.where(m.ProcessInstance.process_id == process_id)
        if status is not None:
            query = query.where(m.ProcessInstance.status == status)
        with self.bind.connect() as conn:
            return [_summary(InstanceRow(*r[:-1]), r[-1]) for r in conn.execute(query)]

    def history(self, instance_id: int) -> list[dict]:
        """The audit events of one instance, oldest first."""
        with self.bind.connect() as conn:
            if conn.execute(q.SELECT_STATE, {"b_id": instance_id}).first() is None:
                raise NotFound(f"instance {instance_id} does not exist")
            return self._history(conn, instance_id)

    def _history(self, conn: Connection, instance_id: int) -> list[dict]:
        return [audit_dict(a) for a in conn.execute(q.SELECT_HISTORY, {"b_id": instance_id})]

    # ------------------------------------------------------------------ instance control
    def terminate(self, instance_id: int, *, actor: str | None = None, reason: str = "") -> dict:
        """Cancel an unfinished instance; its tasks and waits disappear."""
        with self._unit() as unit:
            row, wf = self._load(unit, instance_id)
            if row.status in (m.COMPLETED, m.TERMINATED):
                raise Conflict(f"instance {instance_id} is already {row.status}")
            wf.cancel()
            row.status = m.TERMINATED
            row.resume_status = None
            self._audit(unit, "terminated", row.id, actor, details={"reason": reason})
            self._persist(unit, row, wf)
            return self._view_of(unit, row.id)

    def suspend(self, instance_id: int, *, actor: str | None = None) -> dict:
        """Pause an instance: no task completion, message or timer reaches it until resumed."""
        with self._unit() as unit:
            row, wf = self._load(unit, instance_id)
            if row.status not in (m.ACTIVE, m.ERROR):
                raise Conflict(f"instance {instance_id} is {row.status} and cannot be suspended")
            row.resume_status = row.status
            row.status = m.SUSPENDED
            self._audit(unit, "suspended", row.id, actor)
            self._persist(unit, row, wf)
            return self._view_of(unit, row.id)

    def resume(self, instance_id: int, *, actor: str | None = None) -> dict:
        """Undo suspend. Messages buffered meanwhile are delivered; due timers fire next pass."""
        with self._unit() as unit:
            row, wf = self._load(unit, instance_id)
            if row.status != m.SUSPENDED:
                raise Conflict(f"instance {instance_id} is {row.status}, not suspended")
            row.status = row.resume_status or m.ACTIVE
            row.resume_status = None
            self._audit(unit, "resumed", row.id, actor)
            self._persist(unit, row, wf)
            return self._view_of(unit, row.id)

    def retry(
        self,
        instance_id: int,
        data: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> dict:
        """Run the failed task again (after merging `data` into it) and continue from there."""
        fix = check_data(data, "retry data")
        with self._unit() as unit:
            row, wf = self._load(unit, instance_id)
            if row.status != m.ERROR:
                raise Conflict(f"instance {instance_id} is {row.status}, not in error")
            error = json.loads(row.error or "{}")
            task = None
            if error.get("task_id"):
                task = wf.get_task_from_id(uuid.UUID(error["task_id"]))
            row.status = m.ACTIVE
            row.error = None
            self._audit(
                unit,
                "retried",
                row.id,
                actor,
                task_id=error.get("task_id"),
                element_id=error.get("element_id"),
                details={"data": fix},
            )

            def rerun() -> None:
                if task is not None:
                    task.data.update(copy.deepcopy(fix))
                    if task.state == TaskState.ERROR:
                        task.run()
                elif fix:
                    for ready in wf.get_tasks(state=TaskState.READY):
                        ready.data.update(copy.deepcopy(fix))

            self._advance(unit, row, wf, actor, before=rerun)
            self._persist(unit, row, wf)
            return self._view_of(unit, row.id)

    # ------------------------------------------------------------------ messages and signals
    def send_message(
        self,
        name: str,
        *,
        correlation: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> DeliveryResult:
        """Store a message in the inbox and deliver it (or keep it for a later matching wait).

        Storing and delivering share one transaction, so the message is never delivered
        without being recorded, nor recorded twice. If delivery fails (a concurrent change,
        an engine error), the message is stored on its own and the worker delivers it later:
        once send_message returns, the message is durable.
        """
        return self._send_event(m.WAIT_MESSAGE, name, correlation, data, idempotency_key, source)

    def record_connector_events(
        self,
        connector: str,
        state: Mapping[str, Any],
        events: Iterable[Mapping[str, Any]],
        *,
        deliver: bool = True,
    ) -> list[int | None]:
        """Store a connector's new state and the message events it produced, together.

        `state` maps keys (e.g. "point:part_counter", "rule:produced") to JSON values; each
        event is {name, correlation, variables, idempotency_key} and optionally kind "start"
        (name is then the process to start, with the variables as its data). One transaction
        holds both, so a crash leaves either the old state and no events, or the new state and
        all of them; a repeated key is a duplicate and stored once. Delivery follows the commit
        (with `deliver`; otherwise the caller's dispatcher or the worker delivers). Returns
        the inbox id of each event (None for a duplicate).
        """
        rows = [
            self._event_values(m.EVENT_START if e.get("kind") == "start" else m.WAIT_MESSAGE,
                               e["name"], e.get("correlation"), e.get("variables"),
                               e["idempotency_key"], f"connector:{connector}")
            for e in events
        ]  # fmt: skip
        with self._unit() as unit:
            s = unit.session
            for key, value in state.items():
                text = _dumps(value)
                row = s.get(m.ConnectorState, (connector, key))
                if row is None:
                    s.add(m.ConnectorState(connector=connector, key=key, value=text,
                                           updated_at=unit.now))  # fmt: skip
                else:
                    row.value, row.updated_at = text, unit.now
            s.flush()
            ids = [self._insert_inbox(unit, **values) for values in rows]
            if deliver:
                unit.routed.extend(i for i in ids if i is not None)
        return ids

    def connector_overview(self, connector: str) -> dict[str, Any]:
        """A connector's stored point values, when it last stored them, and its messages in
        the inbox by status (failed ones are the dead letters an engineer looks at)."""
        with self._reading() as s:
            rows = s.scalars(
                select(m.ConnectorState).where(m.ConnectorState.connector == connector)
            ).all()
            counts = dict(
                s.execute(
                    select(m.InboxMessage.status, func.count())
                    .where(m.InboxMessage.source == f"connector:{connector}")
                    .group_by(m.InboxMessage.status)
                ).all()
            )
            updated = max((r.updated_at for r in rows if r.key != RUNTIME_KEY), default=None)
            runtime = next((r for r in rows if r.key == RUNTIME_KEY), None)
            return {
                "points": {r.key.removeprefix("point:"): json.loads(r.value) for r in rows
                           if r.key.startswith("point:")},
                "updated_at": updated.isoformat() if updated else None,
                "runtime": self._runtime_status(runtime),
                "messages": {status: counts.get(status, 0) for status in
                             (m.INBOX_PENDING, m.INBOX_BUFFERED, m.INBOX_DELIVERED,
                              m.INBOX_EXPIRED, m.INBOX_FAILED)},
            }  # fmt: skip

    def _runtime_status(self, row: m.ConnectorState | None) -> dict[str, Any]:
        """What `connectors run` last reported; "not running" once its reports stop."""
        if row is None:
            return {"state": "not running", "last_error": None, "reported_at": None}
        status = json.loads(row.value)
        age = (self.clock.now() - row.updated_at).total_seconds()
        if age > RUNTIME_STALE_S and status.get("state") != "stopped":
            status["state"] = "not running"
        status["reported_at"] = row.updated_at.isoformat()
        return status

    def record_connector_status(self, statuses: Mapping[str, Mapping[str, Any]]) -> None:
        """Store the runtime's status of each connector (connected, last error, counters), so
        that the page, the API and `connectors status` in other processes can show it."""
        with self._unit() as unit:
            s = unit.session
            for connector, status in statuses.items():
                text = _dumps(dict(status))
                row = s.get(m.ConnectorState, (connector, RUNTIME_KEY))
                if row is None:
                    s.add(m.ConnectorState(connector=connector, key=RUNTIME_KEY, value=text,
                                           updated_at=unit.now))  # fmt: skip
                else:
                    row.value, row.updated_at = text, unit.now

    def connector_state(self, connector: str) -> dict[str, Any]:
        """A connector's stored state (empty before its first run)."""
        with self._reading() as s:
            rows = s.scalars(
                select(m.ConnectorState).where(m.ConnectorState.connector == connector)
            ).all()
            return {row.key: json.loads(row.value) for row in rows}

    def send_signal(
        self,
        name: str,
        *,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> DeliveryResult:
        """Broadcast a signal to every instance waiting for it (signals are not buffered)."""
        return self._send_event(m.WAIT_SIGNAL, name, None, data, idempotency_key, source)

    def _send_event(
        self,
        kind: str,
        name: str,
        correlation: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        idempotency_key: str | None,
        source: str | None,
    ) -> DeliveryResult:
        values = self._event_values(kind, name, correlation, data, idempotency_key, source)
        try:
            with self._unit() as unit:
                message_id = self._insert_inbox(unit, **values)
                if message_id is None:
                    duplicate_of = self._existing_event(unit.conn, values)
                else:
                    result = self._dispatch_row(unit, message_id)
                    assert result is not None  # inserted in this very transaction
                    return result
        except _KeyReused:
            raise
        except Conflict:
            log.info("%s %r met a concurrent change; stored for the worker", kind, name)
        except Exception:  # noqa: BLE001 - store it alone; the worker retries the delivery
            log.exception("delivering %s %r failed; stored for the worker", kind, name)
        else:
            result = self.delivery(duplicate_of)
            result.duplicate = True
            return result
        message_id, duplicate = self._store(values)
        result = self.delivery(message_id)
        result.duplicate = duplicate
        return result

    def store_event(
        self,
        kind: str,
        name: str,
        *,
        correlation: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> tuple[int, bool]:
        """Only write an event to the inbox (the worker dispatches it).

        Returns (inbox id, True if the idempotency key was already there). Connectors use this
        to make an event durable before they acknowledge it to their source.
        """
        return self._store(
            self._event_values(kind, name, correlation, data, idempotency_key, source)
        )

    def _store(self, values: Mapping[str, Any]) -> tuple[int, bool]:
        with self._unit() as unit:
            message_id = self._insert_inbox(unit, **values)
            if message_id is not None:
                return message_id, False
            return self._existing_event(unit.conn, values), True

    def _event_values(
        self,
        kind: str,
        name: str,
        correlation: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        idempotency_key: str | None,
        source: str | None,
    ) -> dict[str, Any]:
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed(f"a {kind} needs a name")
        _, payload_text = _checked(data, f"{kind} data")
        _, corr_text = _checked(correlation, "correlation")
        key = idempotency_key or f"auto:{uuid.uuid4()}"
        if len(key) > 300:
            raise ValidationFailed("idempotency key is longer than 300 characters")
        return {
            "idempotency_key": key,
            "kind": kind,
            "name": name,
            # Stored as the text that validated them (they are serialised once).
            "correlation": corr_text,
            "payload": payload_text,
            "source": source,
        }

    def _insert_inbox(
        self,
        unit: _Unit,
        *,
        idempotency_key: str,
        kind: str,
        name: str,
        correlation: Mapping[str, Any] | str,
        payload: Mapping[str, Any] | str,
        source: str | None,
    ) -> int | None:
        """Insert an inbox row (correlation and payload as data or as their JSON text); None
        if the idempotency key exists already."""
        if unit.inbox_times is None:
            unit.inbox_times = (unit.hot.ts(unit.now), unit.hot.ts(unit.now + self.message_ttl))
        return unit.hot.insert_inbox(
            unit.cur,
            {
                "idempotency_key": idempotency_key,
                "kind": kind,
                "name": name,
                "correlation": correlation if isinstance(correlation, str) else _dumps(correlation),
                "payload": payload if isinstance(payload, str) else _dumps(payload),
                "source": source,
            },
            *unit.inbox_times,
        )

    @staticmethod
    def _existing_event(conn: Connection, values: Mapping[str, Any]) -> int:
        existing = conn.execute(
            select(m.InboxMessage.id, m.InboxMessage.kind, m.InboxMessage.name).where(
                m.InboxMessage.idempotency_key == values["idempotency_key"]
            )
        ).one()
        if existing.kind != values["kind"] or existing.name != values["name"]:
            raise _KeyReused(
                f"idempotency key {values['idempotency_key']!r} was already used for "
                f"{existing.kind} {existing.name!r}"
            )
        return existing.id

    def delivery(self, message_id: int) -> DeliveryResult:
        """What happened to an inbox row so far."""
        with self.bind.connect() as conn:
            row = conn.execute(
                select(
                    m.InboxMessage.id,
                    m.InboxMessage.delivered_to,
                    m.InboxMessage.started,
                    m.InboxMessage.status,
                ).where(m.InboxMessage.id == message_id)
            ).first()
            if row is None:
                raise NotFound(f"message {message_id} does not exist")
            return DeliveryResult(
                message_id=row.id,
                delivered_to=json.loads(row.delivered_to),
                started=json.loads(row.started),
                buffered=row.status in (m.INBOX_BUFFERED, m.INBOX_PENDING),
                status=row.status,
            )

    def dispatch(self, message_ids: Iterable[int] | None = None, limit: int = 200) -> int:
        """Deliver pending inbox rows (the given ones, or the oldest due). Returns the count.

        Events of one source (a connector) are delivered in the order they were stored: a row
        that failed holds back the later rows of its source until its retry succeeds or it is
        dead-lettered, and a row another dispatcher is busy with holds them for this pass.
        """
        with self.bind.connect() as conn:
            if message_ids is None:
                cur = conn.connection.cursor()
                try:
                    rows = self._hot.due_rows(cur, self.clock.now(), limit)
                finally:
                    cur.close()
                # Ends the read with COMMIT: psycopg drops its prepared statements on every
                # ROLLBACK, and this runs before each delivery pass.
                conn.connection.commit()
            else:
                rows = self._rows_in_turn(conn, list(message_ids))
        done = 0
        held: set[str] = set()
        while rows:
            batch = rows[:DISPATCH_BATCH]
            if len(batch) > 1:
                taken, delivered = self._dispatch_batch(batch, held)
                if delivered is not None:
                    done += delivered
                    rows = rows[taken:]
                    continue
            done += self._dispatch_each(batch, held)
            rows = rows[len(batch) :]
        return done

    def _dispatch_batch(
        self, rows: list[tuple[int, str | None]], held: set[str]
    ) -> tuple[int, int | None]:
        """Deliver rows in one transaction (one commit for many machine events), as many as
        fit in DISPATCH_BUDGET_S (each waits for the commit to be seen). Returns (rows taken,
        delivered); delivered is None, with nothing kept, when one failed: the caller then
        takes them one by one."""
        skipped: set[str] = set()
        taken = 0
        deadline = time_module.monotonic() + DISPATCH_BUDGET_S
        try:
            with self._unit() as unit:
                done = 0
                # Messages nothing waits for, and no process starts with, are only marked
                # buffered: all of them first, so that a wait a later delivery of this batch
                # creates is still handed its buffered message.
                buffered = set(self._buffer_untaken(unit, rows, held))
                done += len(buffered)
                for message_id, source in rows:
                    if taken and time_module.monotonic() > deadline:
                        break
                    taken += 1
                    if message_id in buffered:
                        continue
                    if source is not None and (source in held or source in skipped):
                        continue
                    if self._dispatch_row(unit, message_id) is not None:
                        done += 1
                    elif source is not None:
                        skipped.add(source)  # another dispatcher has it: keep its order
        except Exception:  # noqa: BLE001 - retried row by row, where failures are recorded
            log.debug("batch delivery failed; delivering one by one", exc_info=True)
            return len(rows), None
        held |= skipped
        return taken, done

    def _buffer_untaken(
        self, unit: _Unit, rows: list[tuple[int, str | None]], held: set[str]
    ) -> list[int]:
        candidates = [message_id for message_id, source in rows if source not in held]
        if len(candidates) < 2:
            return []
        pending = unit.hot.pending_kinds(unit.cur, candidates)
        names = sorted({name for _, kind, name in pending if kind == m.WAIT_MESSAGE})
        if not names:
            return []
        taken = unit.hot.names_taken(unit.cur, m.WAIT_MESSAGE, names)
        for _, _, starts, _ in unit.hot.latest_starting(unit.cur):
            taken |= {s["name"] for s in json.loads(starts) if s["kind"] == m.WAIT_MESSAGE}
        untaken = [i for i, kind, name in pending if kind == m.WAIT_MESSAGE and name not in taken]
        return unit.hot.buffer_untaken(unit.cur, untaken, unit.now) if untaken else []

    def _dispatch_each(self, rows: list[tuple[int, str | None]], held: set[str]) -> int:
        done = 0
        for message_id, source in rows:
            if source is not None and source in held:
                continue
            try:
                if self._dispatch_one(message_id) is not None:
                    done += 1
                    continue
            except Conflict:
                log.info("message %s met a concurrent change; it stays pending", message_id)
            except Exception as exc:  # noqa: BLE001 - keep the dispatcher alive, record it
                log.exception("dispatching message %s failed", message_id)
                self._dispatch_failed(message_id, exc)
            if source is not None:
                held.add(source)
        return done

    @staticmethod
    def _rows_in_turn(conn: Connection, ids: list[int]) -> list[tuple[int, str | None]]:
        """The given rows, minus those an older pending row of their source must precede
        (that row waits for a retry; the worker delivers them after it, in order)."""
        if not ids:
            return []
        inbox = m.InboxMessage
        rows = conn.execute(
            select(inbox.id, inbox.source).where(inbox.id.in_(ids)).order_by(inbox.id)
        ).all()
        sources = {row.source for row in rows if row.source is not None}
        first: dict[str, int] = {}
        if sources:
            first = dict(
                conn.execute(
                    select(inbox.source, func.min(inbox.id))
                    .where(inbox.status == m.INBOX_PENDING, inbox.source.in_(sources))
                    .group_by(inbox.source)
                ).all()
            )
        ahead = {src for src in sources if first.get(src, 0) < min(
            row.id for row in rows if row.source == src)}  # fmt: skip
        return [(row.id, row.source) for row in rows if row.source not in ahead]

    def _dispatch_failed(self, message_id: int, exc: Exception) -> None:
        with self._unit() as unit:
            row = unit.session.get(m.InboxMessage, message_id)
            if row is None:
                return
            row.attempts += 1
            row.error = f"{type(exc).__name__}: {exc}"
            if row.attempts >= MAX_DISPATCH_ATTEMPTS:
                row.status = m.INBOX_FAILED
                row.processed_at = unit.now
                row.next_attempt_at = None
                log.error("message %s (%s %r) is dead-lettered after %s attempts: %s",
                          row.id, row.kind, row.name, row.attempts, row.error)  # fmt: skip
            else:
                row.next_attempt_at = unit.now + retry_delay(row.attempts)

    def replay_message(self, message_id: int, *, actor: str | None = None) -> DeliveryResult:
        """Give a dead-lettered message another round of attempts (after its cause was fixed:
        a process deployed, a workflow corrected). It is delivered by the next dispatch."""
        with self._unit() as unit:
            row = unit.session.get(m.InboxMessage, message_id)
            if row is None:
                raise NotFound(f"message {message_id} does not exist")
            if row.status != m.INBOX_FAILED:
                raise Conflict(
                    f"message {message_id} is {row.status}: only failed messages are replayed"
                )
            previous = row.error
            row.status, row.attempts, row.error = m.INBOX_PENDING, 0, None
            row.next_attempt_at, row.processed_at = None, None
            self._audit(unit, "message_replayed", None, actor,
                        details={"message_id": message_id, "name": row.name,
                                 "source": row.source, "previous_error": previous})  # fmt: skip
        self.dispatch([message_id])
        return self.delivery(message_id)

    def dead_letters(self, source: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Failed inbox rows, newest first, with their error (optionally of one source)."""
        inbox = m.InboxMessage
        query = select(inbox).where(inbox.status == m.INBOX_FAILED)
        if source is not None:
            query = query.where(inbox.source == source)
        with self._reading() as s:
            return [
                {"id": r.id, "kind": r.kind, "name": r.name, "source": r.source,
                 "correlation": json.loads(r.correlation), "payload": json.loads(r.payload),
                 "attempts": r.attempts, "error": r.error,
                 "received_at": r.received_at.isoformat(),
                 "failed_at": r.processed_at.isoformat() if r.processed_at else None}
                for r in s.scalars(query.order_by(inbox.id.desc()).limit(limit))
            ]  # fmt: skip

    def _dispatch_one(self, message_id: int) -> DeliveryResult | None:
        with self._unit() as unit:
            return self._dispatch_row(unit, message_id)

    def _dispatch_row(self, unit: _Unit, message_id: int) -> DeliveryResult | None:
        """Deliver one pending inbox row inside `unit`; None if it is not pending (any more)."""
        message = unit.hot.pending_inbox_row(unit.cur, message_id)
        if message is None:
            return None
        delivered, started = self._deliver_row(unit, message)
        if delivered or started or message.kind == m.WAIT_SIGNAL:
            status = m.INBOX_DELIVERED
        else:
            status = m.INBOX_BUFFERED
        unit.hot.finish_inbox(
            unit.cur, message.id, status, delivered, started, unit.now, message.attempts + 1
        )
        return DeliveryResult(
            message_id=message.id,
            delivered_to=delivered,
            started=started,
            buffered=status == m.INBOX_BUFFERED,
            status=status,
        )

    def _deliver_row(self, unit: _Unit, message: q.InboxRow) -> tuple[list[int], list[int]]:
        if message.kind == m.EVENT_START:
            return [], [self._start_from_event(unit, message).id]
        given = json.loads(message.correlation)
        candidates: list[int] = []
        waiting = unit.hot.waiting_for(unit.cur, message.kind, message.name, given)
        for instance_id, corr in waiting:
            wanted = flat_correlation(json.loads(corr)) if corr else {}
            if correlation_matches(wanted, given) and instance_id not in candidates:
                candidates.append(instance_id)
        delivered = []
        for instance_id in candidates:
            row, wf = self._load(unit, instance_id)
            if self._send(unit, row, wf, message, message.source):
                delivered.append(instance_id)
        started: list[int] = []
        if delivered and message.kind == m.WAIT_MESSAGE:
            return delivered, started
        wanted_start = {"kind": message.kind, "name": message.name}
        for version_id, process_id, starts, called in unit.hot.latest_starting(unit.cur):
            if wanted_start in json.loads(starts):
                self._version_number(unit.conn, version_id)
                row = self._create_instance(
                    unit,
                    process_id,
                    version_id,
                    json.loads(called),
                    {},
                    message.source,
                    start_event=message,
                )
                started.append(row.id)
        return delivered, started

    def _start_from_event(self, unit: _Unit, message: q.InboxRow) -> InstanceRow:
        """Start the latest version of the process the event names, with its data. The inbox
        row's idempotency key makes a repeated event start nothing more."""
        latest = unit.hot.latest_version(unit.cur, message.name)
        if latest is None:
            self._version(unit.session, message.name, None)  # raises NotFound with hints
        version_id, number, called = latest
        self._version_numbers[version_id] = number
        data = json.loads(message.payload)
        return self._create_instance(
            unit, message.name, version_id, json.loads(called), data, message.source
        )

    def start_event(
        self,
        process_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> DeliveryResult:
        """Start a process from an outside event, exactly once per idempotency key (stored in
        the inbox like a message: a repeated key starts nothing; a failure is retried)."""
        return self._send_event(m.EVENT_START, process_id, None, data, idempotency_key, source)

    def _send(
        self,
        unit: _Unit,
        row: InstanceRow,
        wf: BpmnWorkflow,
        message: q.InboxRow,
        actor: str | None,
        *,
        persist: bool = True,
    ) -> bool:
        """Deliver one inbox row to one instance; False if the instance does not take it."""
        payload = json.loads(message.payload)
        given = json.loads(message.correlation)
        if message.kind == m.WAIT_SIGNAL:
            event = BpmnEvent(SignalEventDefinition(message.name), payload)
        else:
            structured = _structured_correlation(wf, message.name, given)
            # The catch evaluates correlation retrieval expressions on the payload.
            for prop, value in given.items():
                payload.setdefault(prop, value)
            event = BpmnEvent(
                MessageEventDefinition(message.name), payload, correlations=structured
            )
        with self._scope(unit, row, actor):
            try:
                wf.send_event(event)
            except Exception as exc:  # noqa: BLE001 - not waiting, or a correlation mismatch
                log.info(
                    "instance %s did not take %s %r: %s", row.id, message.kind, message.name, exc
                )
                return False
        unit.consumed.add(row.id)
        self._audit(
            unit,
            f"{message.kind}_received",
            row.id,
            actor,
            details={
                "name": message.name,
                "message_id": message.id,
                "correlation": given,
                "data": json.loads(message.payload),
            },
        )
        self._advance(unit, row, wf, actor)
        if persist:
            self._persist(unit, row, wf)
        return True

    def _deliver_buffered(self, unit: _Unit, row: InstanceRow, wf: BpmnWorkflow) -> bool:
        """New (or renewed) message waits: hand over the oldest unexpired buffered message
        that matches one of them (a buffered message always predates every older wait).
        True if one was handed over."""
        waits = unit.new_message_waits.pop(row.id, None) or []
        names = sorted({w["name"] for w in waits})
        if not names:
            return False
        for message_id, name, correlation in unit.hot.buffered_for(unit.cur, names, unit.now):
            given = json.loads(correlation)
            for w in waits:
                wanted = flat_correlation(json.loads(w["correlation"])) if w["correlation"] else {}
                if w["name"] != name or not correlation_matches(wanted, given):
                    continue
                message = unit.hot.inbox_row(unit.cur, message_id)
                handed = json.dumps([*json.loads(message.delivered_to), row.id])
                if not unit.hot.claim_buffered(unit.cur, message_id, handed, unit.now):
                    continue  # another unit took it meanwhile
                if self._send(unit, row, wf, message, message.source):
                    return True
                # SpiffWorkflow refused it after all: leave it buffered for another wait.
                unit.hot.unclaim_buffered(unit.cur, message_id, message.delivered_to)
        return False

    # ------------------------------------------------------------------ timers and worker
    def fire_due_timers(self, limit: int = 200) -> int:
        """Fire every timer whose due time has passed on the engine clock. Returns count."""
        now = self.clock.now()
        with self.bind.connect() as conn:
            instance_ids = list(
                dict.fromkeys(
                    conn.execute(
                        select(m.InstanceWait.instance_id)
                        .join(m.ProcessInstance, m.ProcessInstance.id == m.InstanceWait.instance_id)
                        .where(
                            m.InstanceWait.kind == m.WAIT_TIMER,
                            m.InstanceWait.due_at <= now,
                            m.ProcessInstance.status == m.ACTIVE,
                        )
                        .order_by(m.InstanceWait.due_at)
                        .limit(limit)
                    ).scalars()
                )
            )
        fired = 0
        for instance_id in instance_ids:
            try:
                fired += self._fire_instance_timers(instance_id)
            except Conflict:
                log.info("timer of instance %s: concurrent change, retried next pass", instance_id)
        return fired

    def _fire_instance_timers(self, instance_id: int) -> int:
        with self._unit() as unit:
            query = select(
                m.InstanceWait.element_id, m.InstanceWait.name, m.InstanceWait.due_at
            ).where(
                m.InstanceWait.instance_id == instance_id,
                m.InstanceWait.kind == m.WAIT_TIMER,
                m.InstanceWait.due_at <= unit.now,
            )
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            due = unit.conn.execute(query).all()
            if not due:
                return 0  # another worker took them, or they are gone
            row, wf = self._load(unit, instance_id)
            if row.status != m.ACTIVE:
                return 0
            due_elements = {element_id for element_id, _, _ in due}

            def fire() -> None:
                # The persisted due time decides, as the timer scan did: SpiffWorkflow itself
                # fires only once "now" is strictly after the due time.
                for task in list(wf.event_manager.tasks.values()):
                    definition = task.task_spec.event_definition
                    if task.task_spec.bpmn_id in due_elements and isinstance(
                        definition, DurationTimerEventDefinition | TimeDateEventDefinition
                    ):
                        task._set_internal_data(event_fired=True)
                wf.refresh_timers()

            self._advance(unit, row, wf, None, before=fire)
            # A timer fired if its wait is gone (or, for a cycle, moved to a later time).
            still = {(w["element_id"], w["due_at"]) for w in _waits_of(wf)}
            fired = [d for d in due if (d[0], d[2]) not in still]
            for element_id, name, due_at in fired:
                self._audit(
                    unit,
                    "timer_fired",
                    row.id,
                    None,
                    element_id=element_id,
                    details={"name": name, "due_at": due_at.isoformat()},
                )
            self._persist(unit, row, wf)
            return len(fired)

    def expire_messages(self) -> int:
        """Buffered messages whose time to live has passed become expired."""
        with self._unit() as unit:
            result = unit.conn.execute(
                update(m.InboxMessage)
                .where(
                    m.InboxMessage.status == m.INBOX_BUFFERED,
                    m.InboxMessage.expires_at <= unit.now,
                )
                .values(status=m.INBOX_EXPIRED, processed_at=unit.now)
            )
            return result.rowcount or 0

    def worker_pass(self) -> dict[str, int]:
        """One pass of the worker: dispatch pending events, fire due timers, expire messages."""
        done = {
            "dispatched": self.dispatch(),
            "timers_fired": self.fire_due_timers(),
            "expired": self.expire_messages(),
        }
        for name, hook in self.pass_hooks.items():
            done[name] = hook(self)
        return done

    def run_worker(self, interval: float = 1.0, stop: threading.Event | None = None) -> None:
        """Loop worker passes until `stop` is set; errors are logged, never fatal.

        While passes keep failing (the database is away), the worker backs off as a whole,
        doubling its pause up to a minute, rather than hammering it or skipping ahead.
        """
        stop = stop or self._stop
        pause = interval
        while not stop.is_set():
            try:
                self.worker_pass()
                pause = interval
            except Exception:  # noqa: BLE001 - a worker must survive a bad pass
                log.exception("worker pass failed; next attempt in %.0f s", pause)
                stop.wait(pause)
                pause = min(pause * 2, WORKER_MAX_PAUSE_S)
                continue
            stop.wait(interval)

    # ------------------------------------------------------------------ audit
    def _audit(
        self,
        unit: Any,
        kind: str,
        instance_id: int | None,
        actor: str | None,
        *,
        task_id: str | None = None,
        element_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue an audit event; all of a unit's events are written in one statement."""
        unit.audit.append(
            {
                "instance_id": instance_id,
                "at": unit.now,
                "kind": kind,
                "actor": actor,
                "task_id": task_id,
                "element_id": element_id,
                "details": _dumps(dict(details or {})),
            }
        )


# ---------------------------------------------------------------------- helpers
def retry_delay(attempts: int) -> timedelta:
    """How long a row that failed `attempts` times waits before its next attempt."""
    return min(RETRY_FIRST_DELAY * 2 ** max(attempts - 1, 0), RETRY_MAX_DELAY)


def _is_serialization_failure(exc: OperationalError) -> bool:
    """PostgreSQL refused a write that raced another transaction (treat as a conflict)."""
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01")


def _summary(row: InstanceRow, version: int | None) -> dict:
    return {
        "instance_id": row.id,
        "process_id": row.process_id,
        "version": version,
        "status": row.status,
    }


def _sorted_tasks(loaded: _Loaded) -> list[dict]:
    return sorted((loaded.tasks or {}).values(), key=lambda t: (t["created_at"], t["task_id"]))


def _structured_correlation(
    wf: BpmnWorkflow, name: str, given: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The correlation keys the instance expects for `name`, for the keys the message matches.

    SpiffWorkflow compares these dicts for equality with the instance's own correlations, so
    they carry the instance's values (equal to the message's as text).
    """
    for pending in wf.waiting_events():
        if pending.name == name and pending.correlations:
            return {
                key: dict(props)
                for key, props in pending.correlations.items()
                if correlation_matches(props, given)
            }
    return {}


_VIEW_STATES = TaskState.COMPLETED | TaskState.READY | TaskState.STARTED | TaskState.WAITING


def _workflow_data(wf: BpmnWorkflow) -> dict:
    """The data a user thinks of as the instance's: the final data, or else the data of the
    task completed last anywhere in it (subprocesses and call activities included)."""
    if wf.is_completed():
        data = wf.data
    else:
        # Where the instance stands (ready, waiting, running tasks) plus the last completed
        # modelled task of each (sub)workflow, merged oldest first: parallel branches each
        # show what they did, and an error or timeout path shows its own data. SpiffWorkflow's
        # bookkeeping tasks (joins after boundary events, End) are skipped: they can finish
        # after such a path has moved on, with the data from before it.
        shown: list[Any] = []
        for w in (wf, *wf.subprocesses.values()):
            latest_done = None
            for task in w.get_tasks(state=_VIEW_STATES):
                if getattr(task.task_spec, "bpmn_id", None) is None:
                    continue
                if task.state != TaskState.COMPLETED:
                    shown.append(task)
                elif latest_done is None or task.last_state_change > latest_done.last_state_change:
                    latest_done = task
            if latest_done is not None:
                shown.append(latest_done)
        data = {}
        for task in sorted(shown, key=lambda t: t.last_state_change) or [wf.task_tree]:
            data.update(task.data)
    visible = {k: v for k, v in data.items() if not k.startswith("_")}
    return json.loads(json.dumps(visible, default=_view_default))


def _view_default(obj: Any) -> Any:
    """Show any value scripts can put in task data; a view must never fail to render."""
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    return str(obj)


def _frontier_depth(wf: BpmnWorkflow) -> int:
    """Depth of the deepest unfinished task of the top workflow (0 when all are finished)."""
    deepest = 0
    for task in wf.tasks.values():
        if not task.has_state(TaskState.FINISHED_MASK) and task.children == []:
            deepest = max(deepest, task.depth)
    return deepest


def _has_timer_waits(wf: BpmnWorkflow) -> bool:
    return any(
        isinstance(t.task_spec.event_definition, TimerEventDefinition | MultipleEventDefinition)
        for t in wf.event_manager.tasks.values()
    )


def _waits_of(wf: BpmnWorkflow) -> list[dict[str, Any]]:
    """The waits an instance has now, from SpiffWorkflow's event manager."""
    waits: list[dict[str, Any]] = []
    for task in list(wf.event_manager.tasks.values()):
        definition = task.task_spec.event_definition
        definitions = (
            definition.event_definitions
            if isinstance(definition, MultipleEventDefinition)
            else [definition]
        )
        for d in definitions:
            element_id = task.task_spec.bpmn_id
            if isinstance(d, TimerEventDefinition):
                value = d.details(task).value
                if isinstance(value, dict):  # cycle timers
                    value = value.get("next")
                if not value:
                    continue
                due = TimerEventDefinition.get_datetime(str(value))
                waits.append(_wait(m.WAIT_TIMER, d.name or element_id, element_id, None, due))
            elif isinstance(d, BaseMessageEventDefinition):
                pending = d.details(task)
                corr = _canonical(pending.correlations) if pending.correlations else None
                waits.append(_wait(m.WAIT_MESSAGE, d.name, element_id, corr, None))
            elif isinstance(d, BaseSignalEventDefinition):
                waits.append(_wait(m.WAIT_SIGNAL, d.name, element_id, None, None))
    return waits


def _wait(
    kind: str, name: str, element_id: str, correlation: str | None, due: datetime | None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "element_id": element_id,
        "correlation": correlation,
        "due_at": due,
    }


def _wait_values(row: Any) -> dict[str, Any]:
    return _wait(row.kind, row.name, row.element_id, row.correlation, row.due_at)


def _wait_key(w: Mapping[str, Any]) -> tuple:
    return (w["kind"], w["name"], w["element_id"], w["correlation"], w["due_at"])


def _error_message(exc: Exception) -> str:
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    if isinstance(exc, WorkflowTaskException) and exc.error_line and exc.line_number:
        message += f" (line {exc.line_number}: {exc.error_line.strip()})"
    return message
