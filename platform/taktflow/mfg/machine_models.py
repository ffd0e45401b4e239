"""Machine time: state intervals, counts, shifts, reason codes, downtime.

Times are aware UTC datetimes (UTCDateTime); durations are integer milliseconds, so sums of
intervals are exact. Shift times are minutes after local midnight in the shift's time zone.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from taktflow.db import Base
from taktflow.engine.models import UTCDateTime

#: The OEE loss a downtime reason stands for (planned stops are no loss).
DOWNTIME_CATEGORIES = ("availability", "performance", "planned")
#: The state name that counts as run time (OEE availability).
RUNNING = "running"


class Shift(Base):
    """A recurring shift of the plant calendar: local start and end on some weekdays."""

    __tablename__ = "mfg_shift"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: IANA time zone the times are in (e.g. Europe/Berlin): shifts follow daylight saving.
    timezone: Mapped[str] = mapped_column(String(60))
    #: Minutes after local midnight. An end at or before the start ends on the next day.
    start_min: Mapped[int] = mapped_column(Integer)
    end_min: Mapped[int] = mapped_column(Integer)
    #: ISO weekdays the shift starts on, comma-separated ("1,2,3,4,5" = Monday to Friday).
    weekdays: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ShiftBreak(Base):
    """A planned stop inside a shift (a break): not planned production time."""

    __tablename__ = "mfg_shift_break"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shift: Mapped[str] = mapped_column(ForeignKey("mfg_shift.code"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: Minutes after the local midnight of the day the shift starts (may pass 1440).
    start_min: Mapped[int] = mapped_column(Integer)
    end_min: Mapped[int] = mapped_column(Integer)


class Holiday(Base):
    """A local date on which no shift starts."""

    __tablename__ = "mfg_holiday"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class ReasonCode(Base):
    """Why a machine stood: a downtime reason. (Defect codes are quality's: quality_models.)"""

    __tablename__ = "mfg_reason_code"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: availability, performance or planned (a planned stop is no OEE loss).
    category: Mapped[str] = mapped_column(String(20))
    #: Never deleted (downtimes refer to them); a retired reason is inactive.
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ReasonSignal(Base):
    """A machine signal that names its downtime reason by itself: "alarm:103", "state:setup"."""

    __tablename__ = "mfg_reason_signal"

    signal: Mapped[str] = mapped_column(String(60), primary_key=True)
    reason: Mapped[str] = mapped_column(ForeignKey("mfg_reason_code.code"))


class MachineIdeal(Base):
    """A machine's ideal cycle time, used when the operation it runs does not give one."""

    __tablename__ = "mfg_machine_ideal"

    machine: Mapped[str] = mapped_column(ForeignKey("mfg_machine.code"), primary_key=True)
    ideal_cycle_ms: Mapped[int] = mapped_column(Integer)


class MachineState(Base):
    """One interval in which a machine was in one state; the current one has no end."""

    __tablename__ = "mfg_machine_state"
    __table_args__ = (Index("ix_mfg_machine_state_machine_started", "machine", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine: Mapped[str] = mapped_column(ForeignKey("mfg_machine.code"))
    #: The connector's state name: running, idle, alarm, setup, ...
    state: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(ForeignKey("mfg_reason_code.code"))
    alarm_code: Mapped[int | None] = mapped_column(Integer)
    #: Where the signal came from (the inbox source, e.g. "connector:press_1").
    source: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The inbox event that started it (traceability back to the raw signal).
    inbox_id: Mapped[int | None] = mapped_column(Integer)


class MachineCount(Base):
    """What a machine counted in one minute: every part (total), the rejected ones, and the
    ideal time those parts take (sum of their ideal cycle times: OEE performance)."""

    __tablename__ = "mfg_machine_count"
    __table_args__ = (UniqueConstraint("machine", "bucket_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine: Mapped[str] = mapped_column(ForeignKey("mfg_machine.code"))
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    reject: Mapped[int] = mapped_column(BigInteger, default=0)
    ideal_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class MachineProjection(Base):
    """How far the machine-time projector has read the inbox: the highest id it has handled
    and the lower ids it has not seen yet (gaps), which may still commit."""

    __tablename__ = "mfg_machine_projection"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    #: JSON [[id, first noticed (ISO)], ...]: ids below last_id not seen yet.
    gaps: Mapped[str] = mapped_column(Text, default="[]")
    #: Events turned into intervals or counts, and events skipped (unknown machine, bad data).
    projected: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Downtime(Base):
    """A stop longer than the threshold: when it began and ended, and why."""

    __tablename__ = "mfg_downtime"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine: Mapped[str] = mapped_column(ForeignKey("mfg_machine.code"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    #: What the machine reported when it stopped.
    state: Mapped[str | None] = mapped_column(String(40))
    alarm_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(ForeignKey("mfg_reason_code.code"))
    #: "signal" (from the alarm code or state) or "operator".
    reason_source: Mapped[str | None] = mapped_column(String(20))
    reason_by: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    repair_note: Mapped[str | None] = mapped_column(Text)
    repaired_by: Mapped[str | None] = mapped_column(String(200))
    #: Set when a workflow step opened it, so a retried step opens one record.
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
