"""Engine tables: deployed versions, instances, and the side tables that keep inbox queries,
correlation and the timer scan from ever deserializing a workflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from taktflow.db import Base


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (same on SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: taktflow stores aware UTC datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Instance statuses.
ACTIVE = "active"
COMPLETED = "completed"
ERROR = "error"
TERMINATED = "terminated"
SUSPENDED = "suspended"
STATUSES = (ACTIVE, COMPLETED, ERROR, TERMINATED, SUSPENDED)

# Wait kinds.
WAIT_MESSAGE = "message"
WAIT_SIGNAL = "signal"
WAIT_TIMER = "timer"

# Inbox statuses: pending (stored, not yet dispatched), buffered (dispatched, nothing waited:
# kept until it expires or a matching wait appears), delivered, expired, failed.
INBOX_PENDING = "pending"
INBOX_BUFFERED = "buffered"
INBOX_DELIVERED = "delivered"
INBOX_EXPIRED = "expired"
INBOX_FAILED = "failed"

#: Inbox kind of an event that starts a process (its name is the process id).
EVENT_START = "start"

# Outbox statuses: pending (committed with its step, not yet sent), sent, failed (gave up after
# its attempts: a dead letter an engineer can replay).
OUTBOX_PENDING = "pending"
OUTBOX_SENT = "sent"
OUTBOX_FAILED = "failed"


class ProcessVersion(Base):
    """One deployed version of one process. The spec is stored once here, never per instance."""

    __tablename__ = "process_version"
    __table_args__ = (UniqueConstraint("process_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(400))
    file_name: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    #: The BPMN XML of the file the process came from (kept for viewing and re-parsing).
    source: Mapped[str] = mapped_column(Text, deferred=True)
    #: SpiffWorkflow's serialized spec plus the specs of its embedded subprocesses (JSON).
    spec: Mapped[str] = mapped_column(Text, deferred=True)
    #: JSON lists: processes named by call activities, decision ids, message start names.
    called_processes: Mapped[str] = mapped_column(Text, default="[]")
    decisions: Mapped[str] = mapped_column(Text, default="[]")
    message_starts: Mapped[str] = mapped_column(Text, default="[]")
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str | None] = mapped_column(String(200))


class DecisionVersion(Base):
    """One deployed version of one DMN decision (the whole DMN file is kept as its source)."""

    __tablename__ = "decision_version"
    __table_args__ = (UniqueConstraint("decision_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(400))
    file_name: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text, deferred=True)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FormVersion(Base):
    """One deployed version of one form definition (forms/<name>.yaml), kept as its YAML.

    A task names its form; the screen and the API use the latest version, so a corrected form
    reaches open tasks too.
    """

    __tablename__ = "form_version"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(String(400))
    file_name: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text, deferred=True)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str | None] = mapped_column(String(200))


class ConnectorState(Base):
    """What a connector remembers between runs: each point's last value and each rule's state.

    Written in the same transaction as the events the values produced, so after a crash the
    connector neither repeats an event nor misses an edge that happened while it was down.
    """

    __tablename__ = "connector_state"

    connector: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessInstance(Base):
    """One running (or finished) workflow: its serialized state and an optimistic-lock counter."""

    __tablename__ = "process_instance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    #: Status to return to on resume (suspend keeps the instance's real status here).
    resume_status: Mapped[str | None] = mapped_column(String(20))
    #: SpiffWorkflow's serialized workflow without its spec. Text, never JSONB: a store that
    #: reorders keys corrupts SpiffWorkflow's task data deltas.
    state: Mapped[str] = mapped_column(Text, deferred=True)
    serializer_version: Mapped[str] = mapped_column(String(20))
    #: JSON {process_id: process_version.id} of the call-activity targets bound at start.
    called_versions: Mapped[str] = mapped_column(Text, default="{}")
    #: JSON {task_id, element_id, message, ...} while status is error.
    error: Mapped[str | None] = mapped_column(Text)
    lock_version: Mapped[int] = mapped_column(Integer, nullable=False)
    started_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __mapper_args__ = {"version_id_col": lock_version}


class HumanTask(Base):
    """A ready user or manual task, indexed for inbox queries."""

    __tablename__ = "human_task"

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instance.id", ondelete="CASCADE"), index=True
    )
    process_id: Mapped[str] = mapped_column(String(200), index=True)
    element_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str | None] = mapped_column(String(400))
    lane: Mapped[str | None] = mapped_column(String(200), index=True)
    form: Mapped[str | None] = mapped_column(String(200))
    instructions: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Who has claimed the task (only they may complete it; a manager may reassign it).
    claimed_by: Mapped[str | None] = mapped_column(String(100), index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InstanceWait(Base):
    """What an instance waits for: a message (with correlation), a signal, or a timer."""

    __tablename__ = "instance_wait"
    __table_args__ = (
        Index("ix_instance_wait_kind_name", "kind", "name"),
        Index("ix_instance_wait_kind_due_at", "kind", "due_at"),
        Index("ix_instance_wait_kind_name_key", "kind", "name", "correlation_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instance.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    element_id: Mapped[str | None] = mapped_column(String(200))
    #: Canonical JSON {property: value} that a message must match (messages only).
    correlation: Mapped[str | None] = mapped_column(Text)
    #: Hash of the flat correlation (store.correlation_key): finds a message's waits by index.
    correlation_key: Mapped[str | None] = mapped_column(String(40))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InboxMessage(Base):
    """A durable external or routed event, stored before it is dispatched."""

    __tablename__ = "inbox_message"
    __table_args__ = (
        Index("ix_inbox_message_status_name", "status", "name"),
        # The dispatcher's queue: pending rows in order. Partial, so that on PostgreSQL a
        # scan does not wade through the index entries of rows already handled (a status
        # change leaves one dead entry per row in an index on status until VACUUM runs).
        Index(
            "ix_inbox_message_pending",
            "id",
            postgresql_where=text(f"status = '{INBOX_PENDING}'"),
            sqlite_where=text(f"status = '{INBOX_PENDING}'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    correlation: Mapped[str] = mapped_column(Text, default="{}")
    payload: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_to: Mapped[str] = mapped_column(Text, default="[]")
    started: Mapped[str] = mapped_column(Text, default="[]")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    #: After a failed attempt: not before then (later rows of the same source wait too).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """Something a workflow step asked to send to a machine (MQTT publish, Modbus write).

    Written in the step's own transaction, so a step that rolls back sends nothing and a step
    that commits is sent even if the process crashes right after; the connector runtime sends
    the rows of each target in order.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_message_status_target", "status", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    #: The action that wrote it: mqtt.publish or modbus.write.
    kind: Mapped[str] = mapped_column(String(40))
    #: Who sends it: the connector (modbus.write) or the broker URL (mqtt.publish).
    target: Mapped[str] = mapped_column(String(200))
    #: JSON: {topic, payload, qos, retain} or {connector, point, value}.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    instance_id: Mapped[int | None] = mapped_column(Integer)
    task_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class MachineContext(Base):
    """What a machine is working on (work order, operation, ...), kept by workflows through
    the machine.set_context action and offered to connector rules as `machine`."""

    __tablename__ = "machine_context"

    machine: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class AuditEvent(Base):
    """Append-only history: every start, completion, message, timer, error, retry, terminate."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(36), index=True)
    element_id: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="{}")
