"""The outbox (what workflows send to machines) and each machine's current context.

A workflow step that publishes to MQTT or writes a PLC register does not talk to the machine
itself: its action adds an outbox row in the step's own transaction. The connector runtime
sends the rows of each target in order and marks them; a row that keeps failing is kept as a
dead letter an engineer can replay. So a step that rolls back sends nothing, and a step that
commits is sent even if the process dies right after (at least once: a crash between sending
and marking sends the row again; the payload carries its outbox id for receivers that care).

The machine context (work order, operation, ... of each machine) is kept by workflows through
the machine.set_context action and read by connector rules as `machine`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taktflow.engine import models as m
from taktflow.engine.actions import to_json
from taktflow.errors import Conflict, NotFound

if TYPE_CHECKING:
    from taktflow.engine.runtime import WorkflowEngine

    _Base = WorkflowEngine
else:
    _Base = object

#: Attempts before an outbox row that keeps failing is given up (dead-lettered).
MAX_SEND_ATTEMPTS = 5


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    target: str
    body: dict[str, Any]
    attempts: int


def add_outbox(
    session: Session,
    *,
    kind: str,
    target: str,
    body: Any,
    idempotency_key: str,
    instance_id: int | None,
    task_id: str | None,
    now: datetime,
) -> int:
    """Add an outbox row in the caller's transaction; the id of the row with this key if a
    retried step adds it again."""
    existing = session.scalar(
        select(m.OutboxMessage.id).where(m.OutboxMessage.idempotency_key == idempotency_key)
    )
    if existing is not None:
        return existing
    row = m.OutboxMessage(
        idempotency_key=idempotency_key, kind=kind, target=target, body=to_json(body),
        status=m.OUTBOX_PENDING, instance_id=instance_id, task_id=task_id, created_at=now,
        attempts=0,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def set_machine_context(
    session: Session, machine: str, data: dict[str, Any], *, actor: str | None, now: datetime
) -> None:
    """Replace what `machine` is working on (an empty dict clears it)."""
    row = session.get(m.MachineContext, machine)
    text = to_json(data)
    if row is None:
        session.add(m.MachineContext(machine=machine, data=text, updated_at=now,
                                     updated_by=actor))  # fmt: skip
    else:
        row.data, row.updated_at, row.updated_by = text, now, actor


class OutboxMixin(_Base):
    """The connector runtime's side of the outbox, and machine context reads."""

    def outbox_due(self, limit: int = 100) -> list[OutboxRow]:
        """Pending rows to send now, oldest first: not waiting for a retry, and not behind a
        row of the same target that is (a target's rows are sent in order)."""
        out = m.OutboxMessage
        now = self.clock.now()
        waiting = (
            select(out.target)
            .where(out.status == m.OUTBOX_PENDING, out.next_attempt_at > now)
            .distinct()
        )
        query = (
            select(out.id, out.kind, out.target, out.body, out.attempts)
            .where(
                out.status == m.OUTBOX_PENDING,
                or_(out.next_attempt_at.is_(None), out.next_attempt_at <= now),
                out.target.not_in(waiting),
            )
            .order_by(out.id)
            .limit(limit)
        )
        with self.bind.connect() as conn:
            return [
                OutboxRow(r.id, r.kind, r.target, json.loads(r.body), r.attempts)
                for r in conn.execute(query)
            ]

    def outbox_sent(self, outbox_id: int) -> None:
        with self._unit() as unit:
            row = unit.session.get(m.OutboxMessage, outbox_id)
            if row is not None and row.status == m.OUTBOX_PENDING:
                row.status, row.sent_at, row.attempts = m.OUTBOX_SENT, unit.now, row.attempts + 1
                row.error = None

    def outbox_failed(self, outbox_id: int, error: str) -> bool:
        """Record a failed send; True if the row is now dead-lettered."""
        from taktflow.engine.runtime import retry_delay

        with self._unit() as unit:
            row = unit.session.get(m.OutboxMessage, outbox_id)
            if row is None or row.status != m.OUTBOX_PENDING:
                return False
            row.attempts += 1
            row.error = error
            if row.attempts >= MAX_SEND_ATTEMPTS:
                row.status, row.next_attempt_at = m.OUTBOX_FAILED, None
                return True
            row.next_attempt_at = unit.now + retry_delay(row.attempts)
            return False

    def replay_outbox(self, outbox_id: int, *, actor: str | None = None) -> dict[str, Any]:
        """Send a dead-lettered outbox row again (after the machine or its file was fixed)."""
        with self._unit() as unit:
            row = unit.session.get(m.OutboxMessage, outbox_id)
            if row is None:
                raise NotFound(f"outbox message {outbox_id} does not exist")
            if row.status != m.OUTBOX_FAILED:
                raise Conflict(
                    f"outbox message {outbox_id} is {row.status}: only failed ones are replayed"
                )
            previous = row.error
            row.status, row.attempts, row.error, row.next_attempt_at = (
                m.OUTBOX_PENDING, 0, None, None)  # fmt: skip
            self._audit(unit, "outbox_replayed", row.instance_id, actor,
                        details={"outbox_id": outbox_id, "kind": row.kind,
                                 "target": row.target, "previous_error": previous})  # fmt: skip
            return _outbox_dict(row)

    def outbox(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Outbox rows, newest first (optionally of one status)."""
        query = select(m.OutboxMessage)
        if status is not None:
            query = query.where(m.OutboxMessage.status == status)
        with self._reading() as s:
            rows = s.scalars(query.order_by(m.OutboxMessage.id.desc()).limit(limit))
            return [_outbox_dict(r) for r in rows]

    def outbox_counts(self, target: str) -> dict[str, int]:
        with self._reading() as s:
            counts = dict(
                s.execute(
                    select(m.OutboxMessage.status, func.count())
                    .where(m.OutboxMessage.target == target)
                    .group_by(m.OutboxMessage.status)
                ).all()
            )
        return {status: counts.get(status, 0)
                for status in (m.OUTBOX_PENDING, m.OUTBOX_SENT, m.OUTBOX_FAILED)}  # fmt: skip

    def machine_context(self, machine: str) -> dict[str, Any]:
        """What `machine` works on now, as workflows last set it ({} when nothing is set)."""
        with self.bind.connect() as conn:
            text = conn.execute(
                select(m.MachineContext.data).where(m.MachineContext.machine == machine)
            ).scalar()
        return json.loads(text) if text else {}

    def set_machine_context(
        self, machine: str, data: dict[str, Any], *, actor: str | None = None
    ) -> None:
        """Set a machine's context outside a workflow (tools, tests, the simulator)."""
        try:
            with self._unit() as unit:
                set_machine_context(unit.session, machine, data, actor=actor, now=unit.now)
        except IntegrityError as exc:  # two first writers at once
            raise Conflict(f"machine {machine!r} context changed meanwhile: {exc}") from exc


def _outbox_dict(row: m.OutboxMessage) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind, "target": row.target, "body": json.loads(row.body),
        "status": row.status, "instance_id": row.instance_id, "task_id": row.task_id,
        "created_at": row.created_at.isoformat(), "attempts": row.attempts, "error": row.error,
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
    }  # fmt: skip
