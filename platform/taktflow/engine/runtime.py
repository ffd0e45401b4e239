"""The workflow engine service: deploy, start, complete, deliver, fire timers, persist.

Every public method is one unit of work: it opens a session, does its work, and commits or
rolls back as a whole. Callers (CLI, API, worker, tests) never commit. Nothing here knows about
HTTP or about manufacturing: manufacturing reaches the engine only as registered actions.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from SpiffWorkflow import TaskState
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
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
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from taktflow.db import WRITE_OPTION
from taktflow.engine import models as m
from taktflow.engine.actions import ActionRegistry, builtin_actions, to_json
from taktflow.engine.cache import LRU, WorkflowCache
from taktflow.engine.clock import Clock, SystemClock, using_clock
from taktflow.engine.definitions import (
    Compiler,
    DefinitionParser,
    ParsedProcess,
    SourceFile,
    read_paths,
    sources_from_text,
)
from taktflow.engine.sandbox import Limits
from taktflow.engine.scripting import (
    StepContext,
    TaktflowScriptEngine,
    render_instructions,
    step_context,
)
from taktflow.engine.serialization import SERIALIZER_VERSION, WorkflowSerializer
from taktflow.errors import BadRequest, Conflict, NotFound, ValidationFailed

log = logging.getLogger(__name__)

#: Safety net against a workflow that keeps making automatic progress without ever waiting.
MAX_STEP_ROUNDS = 1000
#: Attempts before an inbox row that keeps failing for reasons other than conflicts is failed.
MAX_DISPATCH_ATTEMPTS = 5


def _dumps(value: Any) -> str:
    return to_json(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _flat_correlation(structured: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{'po_key': {'po_number': 'PO-42'}} -> {'po_number': 'PO-42'}."""
    flat: dict[str, Any] = {}
    for props in structured.values():
        flat.update(props)
    return flat


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
    """Task and start data must be a JSON object with text keys."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadRequest(f"{what} must be a JSON object, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or not key:
            raise ValidationFailed(f"{what}: keys must be non-empty text, got {key!r}")
    try:
        json.dumps(data, default=_reject)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"{what}: {exc}") from None
    return data


def _reject(obj: Any) -> Any:
    raise TypeError(f"value of type {type(obj).__name__} is not JSON data")


@dataclass
class _Loaded:
    """An instance taken into a unit of work: its row, its workflow and what its side tables hold.

    `tasks`/`waits` mirror the instance's human_task and instance_wait rows; they travel with
    the workflow through the cache (verified by lock version) so a step need not read them.
    None means unknown (read them from the database).
    """

    inst: m.ProcessInstance
    wf: BpmnWorkflow
    tasks: dict[str, dict[str, Any]] | None = None
    waits: dict[tuple, m.InstanceWait] | None = None


@dataclass
class _Unit:
    """State of one unit of work."""

    session: Session
    now: datetime
    #: instance id -> what this unit loaded (taken out of the cache).
    loaded: dict[int, _Loaded] = field(default_factory=dict)
    #: instance ids whose workflow was saved in this unit.
    saved: set[int] = field(default_factory=set)
    #: inbox rows created in this unit, dispatched after commit.
    routed: list[m.InboxMessage] = field(default_factory=list)
    #: message waits computed by the last sync, per instance.
    message_waits: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    depth: int = 0


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


class WorkflowEngine:
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
        self._write = sessionmaker(
            bind=bind.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
        self._read = sessionmaker(bind=bind, expire_on_commit=False)
        self._pg = bind.dialect.name == "postgresql"
        self._stop = threading.Event()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _unit(self) -> Iterator[_Unit]:
        session = self._write()
        unit = _Unit(session=session, now=self.clock.now())
        try:
            yield unit
            session.commit()
        except StaleDataError as exc:
            session.rollback()
            raise Conflict(
                "the instance was changed by someone else meanwhile; reload it and try again"
            ) from exc
        except IntegrityError as exc:
            session.rollback()
            raise Conflict(f"conflicting write: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
        else:
            for instance_id in unit.saved:
                loaded = unit.loaded[instance_id]
                self.workflows.put(instance_id, loaded.inst.lock_version, loaded)
        finally:
            session.close()
        if unit.routed:
            self.dispatch([row.id for row in unit.routed])

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        session = self._read()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    # ------------------------------------------------------------------ deployment
    def read_files(self, paths: Iterable[str]) -> list[SourceFile]:
        """Read definition files and folders (compiling YAML etc. where a compiler exists)."""
        return read_paths(paths, self.compilers)

    def deploy_paths(self, paths: Iterable[str], *, actor: str | None = None) -> list[dict]:
        """Deploy files and folders as one batch."""
        return self.deploy(self.read_files(paths), actor=actor)

    def deploy_text(self, name: str, text: str, *, actor: str | None = None) -> list[dict]:
        """Deploy one uploaded file."""
        return self.deploy(sources_from_text(name, text, self.compilers), actor=actor)

    def deploy(self, files: list[SourceFile], *, actor: str | None = None) -> list[dict]:
        """Deploy a batch: all of it or, if any file has a problem, none of it.

        Returns one entry per process and decision: {kind, process_id | decision_id, version,
        file, changed}. Identical content deploys nothing new (changed False).
        """
        with self._unit() as unit:
            s = unit.session
            parser = self._parser(s)
            processes, decisions = parser.parse(files)
            results: list[dict] = []
            changed_decisions: set[str] = set()
            for d in decisions:
                latest = s.scalar(
                    select(m.DecisionVersion).where(
                        m.DecisionVersion.decision_id == d.decision_id,
                        m.DecisionVersion.is_latest.is_(True),
                    )
                )
                if latest is not None and latest.content_hash == d.file.sha256:
                    results.append(
                        _deployed("decision", d.decision_id, latest.version, d.file, False)
                    )
                    continue
                version = (latest.version + 1) if latest else 1
                if latest is not None:
                    latest.is_latest = False
                    s.flush()
                s.add(
                    m.DecisionVersion(
                        decision_id=d.decision_id,
                        version=version,
                        name=d.name,
                        file_name=d.file.name,
                        content_hash=d.file.sha256,
                        source=d.file.text,
                        is_latest=True,
                        deployed_at=unit.now,
                    )
                )
                changed_decisions.add(d.decision_id)
                results.append(_deployed("decision", d.decision_id, version, d.file, True))
            s.flush()
            batch_ids = {p.process_id for p in processes}
            processes = processes + self._dependents(s, changed_decisions, batch_ids)
            for p in processes:
                results.append(self._store_version(unit, p, actor))
            if any(r["changed"] for r in results):
                self._audit(
                    unit,
                    "deployed",
                    None,
                    actor,
                    details={"deployed": [r for r in results if r["changed"]]},
                )
        return results

    def _parser(self, s: Session) -> DefinitionParser:
        def deployed_decisions(ids: set[str]) -> dict[str, SourceFile]:
            if not ids:
                return {}
            rows = s.execute(
                select(
                    m.DecisionVersion.decision_id,
                    m.DecisionVersion.file_name,
                    m.DecisionVersion.source,
                ).where(
                    m.DecisionVersion.decision_id.in_(ids), m.DecisionVersion.is_latest.is_(True)
                )
            )
            return {r[0]: SourceFile(r[1], r[2], "dmn") for r in rows}

        def deployed_processes(ids: set[str]) -> set[str]:
            if not ids:
                return set()
            return set(
                s.scalars(
                    select(m.ProcessVersion.process_id).where(
                        m.ProcessVersion.process_id.in_(ids), m.ProcessVersion.is_latest.is_(True)
                    )
                )
            )

        return DefinitionParser(
            actions=self.actions,
            deployed_decisions=deployed_decisions,
            deployed_processes=deployed_processes,
        )

    def _dependents(self, s: Session, changed: set[str], exclude: set[str]) -> list[ParsedProcess]:
        """Processes outside the batch whose latest version uses a decision that changed."""
        if not changed:
            return []
        rows = s.execute(
            select(
                m.ProcessVersion.process_id,
                m.ProcessVersion.file_name,
                m.ProcessVersion.source,
                m.ProcessVersion.decisions,
            ).where(m.ProcessVersion.is_latest.is_(True))
        ).all()
        wanted: dict[str, SourceFile] = {}
        pids: set[str] = set()
        for pid, file_name, source, decisions in rows:
            if pid in exclude or not changed & set(json.loads(decisions)):
                continue
            pids.add(pid)
            wanted.setdefault(file_name, SourceFile(file_name, source, "bpmn"))
        if not wanted:
            return []
        parsed, _ = self._parser(s).parse(list(wanted.values()))
        return [p for p in parsed if p.process_id in pids]

    def _store_version(self, unit: _Unit, p: ParsedProcess, actor: str | None) -> dict:
        s = unit.session
        latest = s.scalar(
            select(m.ProcessVersion).where(
                m.ProcessVersion.process_id == p.process_id, m.ProcessVersion.is_latest.is_(True)
            )
        )
        content_hash = p.content_hash
        if latest is not None and latest.content_hash == content_hash:
            return _deployed("process", p.process_id, latest.version, p.file, False)
        version = latest.version + 1 if latest else 1
        if latest is not None:
            latest.is_latest = False
            s.flush()
        s.add(
            m.ProcessVersion(
                process_id=p.process_id,
                version=version,
                name=p.name,
                file_name=p.file.name,
                content_hash=content_hash,
                source=p.file.text,
                spec=self.serializer.dumps_spec(p.spec, p.embedded),
                called_processes=json.dumps(p.called),
                decisions=json.dumps(p.decisions),
                message_starts=json.dumps(p.starts),
                is_latest=True,
                deployed_at=unit.now,
                deployed_by=actor,
            )
        )
        s.flush()
        return _deployed("process", p.process_id, version, p.file, True)

    # ------------------------------------------------------------------ process models
    def processes(self) -> list[dict]:
        """Deployed processes with their latest version."""
        with self._reading() as s:
            rows = s.scalars(
                select(m.ProcessVersion)
                .where(m.ProcessVersion.is_latest.is_(True))
                .order_by(m.ProcessVersion.process_id)
            ).all()
            return [_version_dict(v) for v in rows]

    def process(self, process_id: str) -> dict:
        """One process with all its versions, newest first."""
        with self._reading() as s:
            rows = s.scalars(
                select(m.ProcessVersion)
                .where(m.ProcessVersion.process_id == process_id)
                .order_by(m.ProcessVersion.version.desc())
            ).all()
            if not rows:
                raise NotFound(f"process {process_id!r} is not deployed")
            latest = _version_dict(rows[0])
            latest["versions"] = [_version_dict(v) for v in rows]
            return latest

    def process_source(self, process_id: str, version: int | None = None) -> str:
        """The BPMN XML a version was deployed from."""
        with self._reading() as s:
            pv = self._version(s, process_id, version)
            return pv.source

    def _version(self, s: Session, process_id: str, version: int | None) -> m.ProcessVersion:
        query = select(m.ProcessVersion).where(m.ProcessVersion.process_id == process_id)
        if version is None:
            query = query.where(m.ProcessVersion.is_latest.is_(True))
        else:
            query = query.where(m.ProcessVersion.version == version)
        pv = s.scalar(query)
        if pv is None:
            if version is not None:
                raise NotFound(f"process {process_id!r} has no version {version}")
            known = s.scalars(
                select(m.ProcessVersion.process_id)
                .where(m.ProcessVersion.is_latest.is_(True))
                .order_by(m.ProcessVersion.process_id)
            ).all()
            hint = f" (deployed: {', '.join(known)})" if known else " (nothing is deployed yet)"
            raise NotFound(f"process {process_id!r} is not deployed{hint}")
        return pv

    # ------------------------------------------------------------------ specs
    def _resolve_called(self, s: Session, pv: m.ProcessVersion) -> dict[str, int]:
        """Bind every process reachable through call activities to its latest version."""
        bound: dict[str, int] = {}
        todo = set(json.loads(pv.called_processes))
        while todo:
            rows = s.execute(
                select(
                    m.ProcessVersion.process_id,
                    m.ProcessVersion.id,
                    m.ProcessVersion.called_processes,
                ).where(m.ProcessVersion.process_id.in_(todo), m.ProcessVersion.is_latest.is_(True))
            ).all()
            found = {r[0] for r in rows}
            missing = todo - found
            if missing:
                raise Conflict(
                    f"process {pv.process_id!r} calls {', '.join(sorted(missing))}, "
                    "which is not deployed"
                )
            todo = set()
            for pid, vid, called in rows:
                bound[pid] = vid
                todo |= set(json.loads(called)) - bound.keys() - {pv.process_id}
        return bound

    def _specs_for(
        self, s: Session, version_id: int, called: Mapping[str, int]
    ) -> tuple[Any, dict[str, Any]]:
        key = (version_id, *sorted(called.items()))

        def load() -> tuple[Any, dict[str, Any]]:
            ids = {version_id, *called.values()}
            texts = dict(
                s.execute(
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

    # ------------------------------------------------------------------ instances
    def start(
        self,
        process_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
        version: int | None = None,
    ) -> dict:
        """Start an instance of the latest (or the given) version; run it to its first wait."""
        start_data = check_data(dict(data) if data is not None else None, "start data")
        with self._unit() as unit:
            pv = self._version(unit.session, process_id, version)
            inst = self._create_instance(unit, pv, start_data, actor)
            return _summary(inst, pv.version)

    def _create_instance(
        self,
        unit: _Unit,
        pv: m.ProcessVersion,
        data: Mapping[str, Any],
        actor: str | None,
        *,
        start_event: m.InboxMessage | None = None,
    ) -> m.ProcessInstance:
        s = unit.session
        called = self._resolve_called(s, pv)
        spec, subs = self._specs_for(s, pv.id, called)
        wf = BpmnWorkflow(spec, subs, script_engine=self.script_engine)
        wf.task_tree.data.update(copy.deepcopy(dict(data)))
        inst = m.ProcessInstance(
            process_id=pv.process_id,
            version_id=pv.id,
            status=m.ACTIVE,
            state="",
            serializer_version=SERIALIZER_VERSION,
            called_versions=json.dumps(called),
            started_by=actor,
            created_at=unit.now,
            updated_at=unit.now,
        )
        s.add(inst)
        s.flush()
        unit.loaded[inst.id] = _Loaded(inst, wf, tasks={}, waits={})
        details: dict[str, Any] = {"version": pv.version, "data": data}
        if start_event is not None:
            details["message"] = start_event.name
            details["message_id"] = start_event.id
        self._audit(unit, "started", inst.id, actor, details=details)
        self._advance(unit, inst, wf, actor)
        if start_event is not None and inst.status == m.ACTIVE:
            self._send(unit, inst, wf, start_event, actor, persist=False)
        self._persist(unit, inst, wf, new=True)
        return inst

    def _load(self, unit: _Unit, instance_id: int) -> tuple[m.ProcessInstance, BpmnWorkflow]:
        if instance_id in unit.loaded:
            loaded = unit.loaded[instance_id]
            return loaded.inst, loaded.wf
        s = unit.session
        inst = s.get(m.ProcessInstance, instance_id)
        if inst is None:
            raise NotFound(f"instance {instance_id} does not exist")
        cached = self.workflows.take(instance_id, inst.lock_version)
        if cached is not None:
            loaded = _Loaded(inst, cached.wf, cached.tasks, cached.waits)
        else:
            called = json.loads(inst.called_versions)
            spec, subs = self._specs_for(s, inst.version_id, called)
            wf = self.serializer.loads(inst.state, spec, subs, self.script_engine)
            loaded = _Loaded(inst, wf)
        unit.loaded[instance_id] = loaded
        return loaded.inst, loaded.wf

    @contextmanager
    def _scope(self, unit: _Unit, inst: m.ProcessInstance, actor: str | None) -> Iterator[None]:
        context = StepContext(unit.session, inst.id, inst.process_id, unit.now, actor)
        with using_clock(self.clock), step_context(context):
            yield

    def _advance(
        self,
        unit: _Unit,
        inst: m.ProcessInstance,
        wf: BpmnWorkflow,
        actor: str | None,
        before: Any = None,
    ) -> bool:
        """Run `before` (e.g. completing a task) and the engine steps after it.

        An exception from a script or action puts the instance in status error, recording the
        task, the element and the message; the work before the failing task is kept.
        """
        with self._scope(unit, inst, actor):
            try:
                if before is not None:
                    before()
                for _ in range(MAX_STEP_ROUNDS):
                    wf.do_engine_steps()
                    if not any(not t.task_spec.manual for t in wf.get_tasks(state=TaskState.READY)):
                        break
                else:
                    raise WorkflowException(
                        f"the workflow made automatic progress {MAX_STEP_ROUNDS} times without "
                        "waiting: endless loop?"
                    )
            except Exception as exc:  # noqa: BLE001 - any failure becomes the instance's error
                self._record_error(unit, inst, wf, exc, actor)
                return False
        return True

    def _record_error(
        self,
        unit: _Unit,
        inst: m.ProcessInstance,
        wf: BpmnWorkflow,
        exc: Exception,
        actor: str | None,
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
        inst.status = m.ERROR
        inst.error = _dumps(info)
        self._audit(
            unit,
            "error",
            inst.id,
            actor,
            task_id=info["task_id"],
            element_id=info["element_id"],
            details=info,
        )
        log.warning("instance %s failed at %s: %s", inst.id, info["element_id"], info["message"])

    def _persist(
        self, unit: _Unit, inst: m.ProcessInstance, wf: BpmnWorkflow, *, new: bool = False
    ) -> None:
        """Save the workflow and bring the side tables in line with it."""
        if inst.status == m.ACTIVE and wf.is_completed():
            inst.status = m.COMPLETED
            self._audit(unit, "completed", inst.id, None)
        inst.state = self.serializer.dumps(wf)
        inst.updated_at = unit.now
        active = inst.status == m.ACTIVE
        self._sync_tasks(unit, inst, wf if active else None, new)
        self._sync_waits(unit, inst, wf if active else None, new)
        self._route_events(unit, inst, wf)
        unit.saved.add(inst.id)
        if active and unit.depth < 20:
            unit.depth += 1
            try:
                self._deliver_buffered(unit, inst, wf)
            finally:
                unit.depth -= 1

    def _sync_tasks(
        self, unit: _Unit, inst: m.ProcessInstance, wf: BpmnWorkflow | None, new: bool
    ) -> None:
        s = unit.session
        loaded = unit.loaded[inst.id]
        desired = (
            {str(t.id): t for t in wf.get_tasks(state=TaskState.READY, manual=True)}
            if wf is not None
            else {}
        )
        if loaded.tasks is None:
            rows = s.scalars(select(m.HumanTask).where(m.HumanTask.instance_id == inst.id))
            loaded.tasks = {row.task_id: _task_dict(row) for row in rows}
        existing = loaded.tasks
        gone = existing.keys() - desired.keys()
        if gone:
            s.execute(delete(m.HumanTask).where(m.HumanTask.task_id.in_(gone)))
            for task_id in gone:
                del existing[task_id]
        for task_id in desired.keys() - existing.keys():
            task = desired[task_id]
            ts = task.task_spec
            extensions = getattr(ts, "extensions", None) or {}
            properties = extensions.get("properties") or {}
            row = m.HumanTask(
                task_id=task_id,
                instance_id=inst.id,
                process_id=inst.process_id,
                element_id=ts.bpmn_id,
                kind="manual" if type(ts).__name__ == "ManualTask" else "user",
                title=ts.bpmn_name or ts.bpmn_id,
                lane=ts.lane,
                form=properties.get("formName"),
                instructions=render_instructions(
                    extensions.get("instructionsForEndUser"), task.data
                ),
                created_at=unit.now,
            )
            s.add(row)
            existing[task_id] = _task_dict(row)

    def _sync_waits(
        self, unit: _Unit, inst: m.ProcessInstance, wf: BpmnWorkflow | None, new: bool
    ) -> None:
        s = unit.session
        loaded = unit.loaded[inst.id]
        desired = _waits_of(wf) if wf is not None else []
        unit.message_waits[inst.id] = [w for w in desired if w["kind"] == m.WAIT_MESSAGE]
        if loaded.waits is None:
            rows = s.scalars(select(m.InstanceWait).where(m.InstanceWait.instance_id == inst.id))
            loaded.waits = {_wait_key(row): row for row in rows}
        existing = loaded.waits
        wanted = {_wait_key(w): w for w in desired}
        gone = [key for key in existing if key not in wanted]
        if gone:
            s.flush()  # rows added earlier in this unit need their ids
            ids = [existing[key].id for key in gone]
            s.execute(delete(m.InstanceWait).where(m.InstanceWait.id.in_(ids)))
            for key in gone:
                del existing[key]
        for key, w in wanted.items():
            if key not in existing:
                row = m.InstanceWait(instance_id=inst.id, **w)
                s.add(row)
                existing[key] = row

    def _route_events(self, unit: _Unit, inst: m.ProcessInstance, wf: BpmnWorkflow) -> None:
        """Messages and signals thrown by the instance and not caught inside it go to the inbox."""
        for event in wf.get_events():
            definition = event.event_definition
            if isinstance(definition, BaseMessageEventDefinition):
                kind = m.WAIT_MESSAGE
            elif isinstance(definition, BaseSignalEventDefinition):
                kind = m.WAIT_SIGNAL
            else:
                continue
            payload = event.payload if isinstance(event.payload, dict) else {"value": event.payload}
            correlation = _flat_correlation(event.correlations or {})
            row = m.InboxMessage(
                idempotency_key=f"instance:{inst.id}:{uuid.uuid4()}",
                kind=kind,
                name=definition.name,
                correlation=_dumps(correlation),
                payload=_dumps(payload),
                status=m.INBOX_PENDING,
                source=f"instance:{inst.id}",
                received_at=unit.now,
                expires_at=unit.now + self.message_ttl,
            )
            unit.session.add(row)
            unit.session.flush()
            unit.routed.append(row)
            self._audit(
                unit,
                f"{kind}_sent",
                inst.id,
                None,
                details={"name": definition.name, "correlation": correlation, "message_id": row.id},
            )

    # ------------------------------------------------------------------ tasks
    def tasks(self, instance_id: int | None = None) -> list[dict]:
        """Ready human tasks (all, or of one instance), oldest first."""
        with self._reading() as s:
            query = select(m.HumanTask).order_by(m.HumanTask.created_at, m.HumanTask.task_id)
            if instance_id is not None:
                query = query.where(m.HumanTask.instance_id == instance_id)
            return [_task_dict(t) for t in s.scalars(query)]

    def complete_task(
        self,
        task_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> dict:
        """Complete a ready user or manual task with `data`; run to the next wait."""
        submitted = check_data(dict(data) if data is not None else None, "task data")
        try:
            task_uuid = uuid.UUID(str(task_id))
        except ValueError:
            raise NotFound(f"task {task_id!r} does not exist (not a task id)") from None
        with self._unit() as unit:
            s = unit.session
            row = s.get(m.HumanTask, str(task_uuid))
            if row is None:
                self._task_not_ready(s, str(task_uuid))
            assert row is not None
            inst, wf = self._load(unit, row.instance_id)
            if inst.status != m.ACTIVE:
                raise Conflict(
                    f"instance {inst.id} is {inst.status}; its tasks cannot be completed"
                )
            task = wf.get_task_from_id(task_uuid)
            if task is None or task.state != TaskState.READY:
                raise Conflict(f"task {task_id} is no longer ready")

            def complete() -> None:
                task.data.update(copy.deepcopy(submitted))
                task.run()

            self._audit(
                unit,
                "task_completed",
                inst.id,
                actor,
                task_id=str(task_uuid),
                element_id=task.task_spec.bpmn_id,
                details={"data": submitted, "title": row.title, "lane": row.lane},
            )
            self._advance(unit, inst, wf, actor, before=complete)
            self._persist(unit, inst, wf)
            return self._view_of(unit, inst.id)

    def _task_not_ready(self, s: Session, task_id: str) -> None:
        completed_by = s.execute(
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

    # ------------------------------------------------------------------ instance control
    def instance(self, instance_id: int, *, history: bool = True) -> dict:
        """Everything about one instance: status, data, error, ready tasks, waits, history."""
        with self._reading() as s:
            inst = s.get(m.ProcessInstance, instance_id)
            if inst is None:
                raise NotFound(f"instance {instance_id} does not exist")
            called = json.loads(inst.called_versions)
            spec, subs = self._specs_for(s, inst.version_id, called)
            wf = self.serializer.loads(inst.state, spec, subs, self.script_engine)
            tasks = [
                _task_dict(t)
                for t in s.scalars(
                    select(m.HumanTask)
                    .where(m.HumanTask.instance_id == inst.id)
                    .order_by(m.HumanTask.created_at, m.HumanTask.task_id)
                )
            ]
            waits = s.scalars(
                select(m.InstanceWait)
                .where(m.InstanceWait.instance_id == inst.id)
                .order_by(m.InstanceWait.id)
            ).all()
            return self._view(s, inst, wf, tasks, waits, history)

    def _view_of(self, unit: _Unit, instance_id: int) -> dict:
        """The instance view from what a unit of work holds in memory (no deserializing)."""
        loaded = unit.loaded[instance_id]
        tasks = sorted((loaded.tasks or {}).values(), key=lambda t: (t["created_at"], t["task_id"]))
        waits = list((loaded.waits or {}).values())
        return self._view(unit.session, loaded.inst, loaded.wf, tasks, waits, True)

    def _view(
        self,
        s: Session,
        inst: m.ProcessInstance,
        wf: BpmnWorkflow,
        tasks: list[dict],
        waits: Iterable[m.InstanceWait],
        history: bool,
    ) -> dict:
        view = _summary(inst, self._version_number(s, inst.version_id))
        view.update(
            data=_workflow_data(wf),
            error=json.loads(inst.error) if inst.error else None,
            ready_tasks=tasks,
            waiting=[_wait_dict(w) for w in waits],
            created_at=inst.created_at.isoformat(),
            updated_at=inst.updated_at.isoformat(),
        )
        if history:
            view["history"] = self._history(s, inst.id)
        return view

    def _version_number(self, s: Session, version_id: int) -> int:
        number = self._version_numbers.get(version_id)
        if number is None:
            number = s.scalar(
                select(m.ProcessVersion.version).where(m.ProcessVersion.id == version_id)
            )
            self._version_numbers[version_id] = number
        return number

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
        with self._reading() as s:
            query = (
                select(m.ProcessInstance, m.ProcessVersion.version)
                .join(m.ProcessVersion, m.ProcessVersion.id == m.ProcessInstance.version_id)
                .order_by(m.ProcessInstance.id.desc())
                .limit(limit)
                .offset(offset)
            )
            if process_id is not None:
                query = query.where(m.ProcessInstance.process_id == process_id)
            if status is not None:
                query = query.where(m.ProcessInstance.status == status)
            return [_summary(inst, version) for inst, version in s.execute(query)]

    def history(self, instance_id: int) -> list[dict]:
        """The audit events of one instance, oldest first."""
        with self._reading() as s:
            if s.get(m.ProcessInstance, instance_id) is None:
                raise NotFound(f"instance {instance_id} does not exist")
            return self._history(s, instance_id)

    def _history(self, s: Session, instance_id: int) -> list[dict]:
        rows = s.scalars(
            select(m.AuditEvent)
            .where(m.AuditEvent.instance_id == instance_id)
            .order_by(m.AuditEvent.id)
        )
        return [_audit_dict(a) for a in rows]

    def terminate(self, instance_id: int, *, actor: str | None = None, reason: str = "") -> dict:
        """Cancel an unfinished instance; its tasks and waits disappear."""
        with self._unit() as unit:
            inst, wf = self._load(unit, instance_id)
            if inst.status in (m.COMPLETED, m.TERMINATED):
                raise Conflict(f"instance {instance_id} is already {inst.status}")
            wf.cancel()
            inst.status = m.TERMINATED
            inst.resume_status = None
            self._audit(unit, "terminated", inst.id, actor, details={"reason": reason})
            self._persist(unit, inst, wf)
            return self._view_of(unit, inst.id)

    def suspend(self, instance_id: int, *, actor: str | None = None) -> dict:
        """Pause an instance: no task completion, message or timer reaches it until resumed."""
        with self._unit() as unit:
            inst, wf = self._load(unit, instance_id)
            if inst.status not in (m.ACTIVE, m.ERROR):
                raise Conflict(f"instance {instance_id} is {inst.status} and cannot be suspended")
            inst.resume_status = inst.status
            inst.status = m.SUSPENDED
            self._audit(unit, "suspended", inst.id, actor)
            self._persist(unit, inst, wf)
            return self._view_of(unit, inst.id)

    def resume(self, instance_id: int, *, actor: str | None = None) -> dict:
        """Undo suspend. Messages buffered meanwhile are delivered; due timers fire next pass."""
        with self._unit() as unit:
            inst, wf = self._load(unit, instance_id)
            if inst.status != m.SUSPENDED:
                raise Conflict(f"instance {instance_id} is {inst.status}, not suspended")
            inst.status = inst.resume_status or m.ACTIVE
            inst.resume_status = None
            self._audit(unit, "resumed", inst.id, actor)
            self._persist(unit, inst, wf)
            return self._view_of(unit, inst.id)

    def retry(
        self,
        instance_id: int,
        data: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> dict:
        """Run the failed task again (after merging `data` into it) and continue from there."""
        fix = check_data(dict(data) if data is not None else None, "retry data")
        with self._unit() as unit:
            inst, wf = self._load(unit, instance_id)
            if inst.status != m.ERROR:
                raise Conflict(f"instance {instance_id} is {inst.status}, not in error")
            error = json.loads(inst.error or "{}")
            task = None
            if error.get("task_id"):
                task = wf.get_task_from_id(uuid.UUID(error["task_id"]))
            inst.status = m.ACTIVE
            inst.error = None
            self._audit(
                unit,
                "retried",
                inst.id,
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

            self._advance(unit, inst, wf, actor, before=rerun)
            self._persist(unit, inst, wf)
            return self._view_of(unit, inst.id)

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
        """Store a message durably, then deliver it (or keep it for a later matching wait)."""
        row_id, duplicate = self.store_event(
            m.WAIT_MESSAGE,
            name,
            correlation=correlation,
            data=data,
            idempotency_key=idempotency_key,
            source=source,
        )
        result = None if duplicate else self._dispatch_now(row_id)
        if result is None:
            result = self.delivery(row_id)
        result.duplicate = duplicate
        return result

    def send_signal(
        self,
        name: str,
        *,
        data: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> DeliveryResult:
        """Broadcast a signal to every instance waiting for it (signals are not buffered)."""
        row_id, duplicate = self.store_event(
            m.WAIT_SIGNAL, name, data=data, idempotency_key=idempotency_key, source=source
        )
        result = None if duplicate else self._dispatch_now(row_id)
        if result is None:
            result = self.delivery(row_id)
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
        """Write an event to the inbox. Returns (inbox id, True if the key was already there)."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed("a message needs a name")
        payload = check_data(dict(data) if data is not None else None, "message data")
        corr = check_data(dict(correlation) if correlation is not None else None, "correlation")
        key = idempotency_key or f"auto:{uuid.uuid4()}"
        if len(key) > 300:
            raise ValidationFailed("idempotency key is longer than 300 characters")
        now = self.clock.now()
        values = {
            "idempotency_key": key,
            "kind": kind,
            "name": name,
            "correlation": _dumps(corr),
            "payload": _dumps(payload),
            "status": m.INBOX_PENDING,
            "source": source,
            "received_at": now,
            "expires_at": now + self.message_ttl,
            "processed_at": None,
            "delivered_to": "[]",
            "started": "[]",
            "attempts": 0,
        }
        insert = pg_insert if self._pg else sqlite_insert
        with self._unit() as unit:
            s = unit.session
            statement = (
                insert(m.InboxMessage)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(m.InboxMessage.id)
            )
            new_id = s.execute(statement).scalar()
            if new_id is not None:
                return new_id, False
            existing = s.scalar(select(m.InboxMessage).where(m.InboxMessage.idempotency_key == key))
            assert existing is not None
            if existing.kind != kind or existing.name != name:
                raise Conflict(
                    f"idempotency key {key!r} was already used for {existing.kind} "
                    f"{existing.name!r}"
                )
            return existing.id, True

    def delivery(self, message_id: int) -> DeliveryResult:
        """What happened to an inbox row so far."""
        with self._reading() as s:
            row = s.get(m.InboxMessage, message_id)
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
        """Deliver pending inbox rows (the given ones, or the oldest pending). Returns count."""
        if message_ids is None:
            with self._reading() as s:
                message_ids = list(
                    s.scalars(
                        select(m.InboxMessage.id)
                        .where(m.InboxMessage.status == m.INBOX_PENDING)
                        .order_by(m.InboxMessage.id)
                        .limit(limit)
                    )
                )
        done = 0
        for message_id in message_ids:
            try:
                if self._dispatch_one(message_id) is not None:
                    done += 1
            except Conflict:
                log.info("message %s met a concurrent change; it stays pending", message_id)
            except Exception as exc:  # noqa: BLE001 - keep the dispatcher alive, record it
                log.exception("dispatching message %s failed", message_id)
                self._dispatch_failed(message_id, exc)
        return done

    def _dispatch_now(self, message_id: int) -> DeliveryResult | None:
        """Dispatch one row right after storing it; None if it stays pending (conflict)."""
        try:
            return self._dispatch_one(message_id)
        except Conflict:
            log.info("message %s met a concurrent change; the worker retries it", message_id)
        except Exception as exc:  # noqa: BLE001 - the message is stored; the worker retries
            log.exception("dispatching message %s failed", message_id)
            self._dispatch_failed(message_id, exc)
        return None

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

    def _dispatch_one(self, message_id: int) -> DeliveryResult | None:
        with self._unit() as unit:
            s = unit.session
            query = select(m.InboxMessage).where(
                m.InboxMessage.id == message_id, m.InboxMessage.status == m.INBOX_PENDING
            )
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            row = s.scalar(query)
            if row is None:
                return None
            row.attempts += 1
            delivered, started = self._deliver_row(unit, row)
            row.delivered_to = json.dumps(delivered)
            row.started = json.dumps(started)
            row.processed_at = unit.now
            if delivered or started or row.kind == m.WAIT_SIGNAL:
                row.status = m.INBOX_DELIVERED
            else:
                row.status = m.INBOX_BUFFERED
            return DeliveryResult(
                message_id=row.id,
                delivered_to=delivered,
                started=started,
                buffered=row.status == m.INBOX_BUFFERED,
                status=row.status,
            )

    def _deliver_row(self, unit: _Unit, row: m.InboxMessage) -> tuple[list[int], list[int]]:
        s = unit.session
        given = json.loads(row.correlation)
        waits = s.execute(
            select(m.InstanceWait.instance_id, m.InstanceWait.correlation)
            .join(m.ProcessInstance, m.ProcessInstance.id == m.InstanceWait.instance_id)
            .where(
                m.InstanceWait.kind == row.kind,
                m.InstanceWait.name == row.name,
                m.ProcessInstance.status == m.ACTIVE,
            )
            .order_by(m.InstanceWait.instance_id)
        ).all()
        candidates: list[int] = []
        for instance_id, corr in waits:
            wanted = _flat_correlation(json.loads(corr)) if corr else {}
            if correlation_matches(wanted, given) and instance_id not in candidates:
                candidates.append(instance_id)
        delivered = []
        for instance_id in candidates:
            inst, wf = self._load(unit, instance_id)
            if self._send(unit, inst, wf, row, row.source):
                delivered.append(instance_id)
        started: list[int] = []
        if delivered and row.kind == m.WAIT_MESSAGE:
            return delivered, started
        for pv in s.scalars(select(m.ProcessVersion).where(m.ProcessVersion.is_latest.is_(True))):
            starts = json.loads(pv.message_starts)
            if {"kind": row.kind, "name": row.name} in starts:
                inst = self._create_instance(unit, pv, {}, row.source, start_event=row)
                started.append(inst.id)
        return delivered, started

    def _send(
        self,
        unit: _Unit,
        inst: m.ProcessInstance,
        wf: BpmnWorkflow,
        row: m.InboxMessage,
        actor: str | None,
        *,
        persist: bool = True,
    ) -> bool:
        """Deliver one inbox row to one instance; False if the instance does not take it."""
        payload = json.loads(row.payload)
        given = json.loads(row.correlation)
        if row.kind == m.WAIT_SIGNAL:
            event = BpmnEvent(SignalEventDefinition(row.name), payload)
        else:
            structured = self._structured_correlation(wf, row.name, given)
            # The catch evaluates correlation retrieval expressions on the payload.
            for prop, value in given.items():
                payload.setdefault(prop, value)
            event = BpmnEvent(MessageEventDefinition(row.name), payload, correlations=structured)
        with self._scope(unit, inst, actor):
            try:
                wf.send_event(event)
            except Exception as exc:  # noqa: BLE001 - not waiting, or a correlation mismatch
                log.info("instance %s did not take %s %r: %s", inst.id, row.kind, row.name, exc)
                return False
        self._audit(
            unit,
            f"{row.kind}_received",
            inst.id,
            actor,
            details={
                "name": row.name,
                "message_id": row.id,
                "correlation": given,
                "data": json.loads(row.payload),
            },
        )
        self._advance(unit, inst, wf, actor)
        if persist:
            self._persist(unit, inst, wf)
        return True

    @staticmethod
    def _structured_correlation(
        wf: BpmnWorkflow, name: str, given: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """The correlation keys the instance expects for `name`, filled from the message."""
        for pending in wf.waiting_events():
            if pending.name == name and pending.correlations:
                # SpiffWorkflow compares these dicts for equality with the instance's own
                # correlations, so pass the instance's values for the keys the message matches.
                return {
                    key: dict(props)
                    for key, props in pending.correlations.items()
                    if correlation_matches(props, given)
                }
        return {}

    def _deliver_buffered(self, unit: _Unit, inst: m.ProcessInstance, wf: BpmnWorkflow) -> None:
        """A wait appeared: hand it the oldest unexpired buffered message that matches."""
        waits = unit.message_waits.get(inst.id) or []
        if not waits:
            return
        names = {w["name"] for w in waits}
        rows = unit.session.scalars(
            select(m.InboxMessage)
            .where(
                m.InboxMessage.status == m.INBOX_BUFFERED,
                m.InboxMessage.kind == m.WAIT_MESSAGE,
                m.InboxMessage.name.in_(names),
                m.InboxMessage.expires_at > unit.now,
            )
            .order_by(m.InboxMessage.id)
        ).all()
        for row in rows:
            given = json.loads(row.correlation)
            for w in waits:
                wanted = _flat_correlation(json.loads(w["correlation"])) if w["correlation"] else {}
                if w["name"] == row.name and correlation_matches(wanted, given):
                    row.status = m.INBOX_DELIVERED
                    row.delivered_to = json.dumps([*json.loads(row.delivered_to), inst.id])
                    row.processed_at = unit.now
                    if self._send(unit, inst, wf, row, row.source):
                        return
                    row.status = m.INBOX_BUFFERED

    # ------------------------------------------------------------------ timers and worker
    def fire_due_timers(self, limit: int = 200) -> int:
        """Fire every timer whose due time has passed on the engine clock. Returns count."""
        now = self.clock.now()
        with self._reading() as s:
            instance_ids = list(
                dict.fromkeys(
                    s.scalars(
                        select(m.InstanceWait.instance_id)
                        .join(m.ProcessInstance, m.ProcessInstance.id == m.InstanceWait.instance_id)
                        .where(
                            m.InstanceWait.kind == m.WAIT_TIMER,
                            m.InstanceWait.due_at <= now,
                            m.ProcessInstance.status == m.ACTIVE,
                        )
                        .order_by(m.InstanceWait.due_at)
                        .limit(limit)
                    )
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
            s = unit.session
            query = select(m.InstanceWait).where(
                m.InstanceWait.instance_id == instance_id,
                m.InstanceWait.kind == m.WAIT_TIMER,
                m.InstanceWait.due_at <= unit.now,
            )
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            due = s.scalars(query).all()
            if not due:
                return 0  # another worker took them, or they are gone
            inst, wf = self._load(unit, instance_id)
            if inst.status != m.ACTIVE:
                return 0
            for wait in due:
                self._audit(
                    unit,
                    "timer_fired",
                    inst.id,
                    None,
                    element_id=wait.element_id,
                    details={"name": wait.name, "due_at": wait.due_at.isoformat()},
                )
            due_elements = {wait.element_id for wait in due}

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

            self._advance(unit, inst, wf, None, before=fire)
            self._persist(unit, inst, wf)
            return len(due)

    def expire_messages(self) -> int:
        """Buffered messages whose time to live has passed become expired."""
        with self._unit() as unit:
            result = unit.session.execute(
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
        return {
            "dispatched": self.dispatch(),
            "timers_fired": self.fire_due_timers(),
            "expired": self.expire_messages(),
        }

    def run_worker(self, interval: float = 1.0, stop: threading.Event | None = None) -> None:
        """Loop worker passes until `stop` is set; errors are logged, never fatal."""
        stop = stop or self._stop
        while not stop.is_set():
            try:
                self.worker_pass()
            except Exception:  # noqa: BLE001 - a worker must survive a bad pass
                log.exception("worker pass failed")
            stop.wait(interval)

    # ------------------------------------------------------------------ audit
    def _audit(
        self,
        unit: _Unit,
        kind: str,
        instance_id: int | None,
        actor: str | None,
        *,
        task_id: str | None = None,
        element_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        unit.session.add(
            m.AuditEvent(
                instance_id=instance_id,
                at=unit.now,
                kind=kind,
                actor=actor,
                task_id=task_id,
                element_id=element_id,
                details=_dumps(dict(details or {})),
            )
        )


# ---------------------------------------------------------------------- helpers
def _deployed(kind: str, ident: str, version: int, file: SourceFile, changed: bool) -> dict:
    return {
        "kind": kind,
        "process_id": ident if kind == "process" else None,
        "decision_id": ident if kind == "decision" else None,
        "version": version,
        "file": file.origin or file.name,
        "changed": changed,
    }


def _version_dict(v: m.ProcessVersion) -> dict:
    return {
        "process_id": v.process_id,
        "name": v.name,
        "version": v.version,
        "file": v.file_name,
        "content_hash": v.content_hash,
        "deployed_at": v.deployed_at.isoformat(),
        "deployed_by": v.deployed_by,
        "calls": json.loads(v.called_processes),
        "decisions": json.loads(v.decisions),
        "starts": json.loads(v.message_starts),
    }


def _summary(inst: m.ProcessInstance, version: int | None) -> dict:
    return {
        "instance_id": inst.id,
        "process_id": inst.process_id,
        "version": version,
        "status": inst.status,
    }


def _task_dict(t: m.HumanTask) -> dict:
    return {
        "task_id": t.task_id,
        "instance_id": t.instance_id,
        "process_id": t.process_id,
        "name": t.element_id,
        "title": t.title,
        "kind": t.kind,
        "lane": t.lane,
        "form": t.form,
        "instructions": t.instructions,
        "created_at": t.created_at.isoformat(),
    }


def _wait_dict(w: m.InstanceWait) -> dict:
    entry: dict[str, Any] = {"kind": w.kind, "name": w.name, "element_id": w.element_id}
    if w.kind == m.WAIT_TIMER:
        entry["due"] = w.due_at.isoformat() if w.due_at else None
    if w.kind == m.WAIT_MESSAGE:
        entry["correlation"] = _flat_correlation(json.loads(w.correlation)) if w.correlation else {}
    return entry


def _audit_dict(a: m.AuditEvent) -> dict:
    return {
        "id": a.id,
        "at": a.at.isoformat(),
        "kind": a.kind,
        "actor": a.actor,
        "task_id": a.task_id,
        "element_id": a.element_id,
        "details": json.loads(a.details),
    }


def _workflow_data(wf: BpmnWorkflow) -> dict:
    """The data a user thinks of as the instance's: the final data, or else the data of the
    task completed last anywhere in it (subprocesses and call activities included)."""
    if wf.is_completed():
        data = wf.data
    else:
        done = wf.get_tasks(state=TaskState.COMPLETED)
        latest = max(done, key=lambda t: t.last_state_change, default=None)
        data = latest.data if latest is not None else wf.task_tree.data
    return json.loads(_dumps({k: v for k, v in data.items() if not k.startswith("_")}))


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


def _wait_key(w: Any) -> tuple:
    """Identity of a wait, for a dict from _waits_of or an InstanceWait row alike."""
    if isinstance(w, dict):
        return (w["kind"], w["name"], w["element_id"], w["correlation"], w["due_at"])
    return (w.kind, w.name, w.element_id, w.correlation, w.due_at)


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


def _error_message(exc: Exception) -> str:
    message = str(exc.args[0]) if exc.args else type(exc).__name__
    if isinstance(exc, WorkflowTaskException) and exc.error_line and exc.line_number:
        message += f" (line {exc.line_number}: {exc.error_line.strip()})"
    return message
