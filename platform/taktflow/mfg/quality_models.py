"""Quality: inspection plans and results, nonconformances, dispositions.

Tables. Measured values and limits are integers scaled by 10 ** the characteristic's
`decimals` (the gauge's resolution), quantities by 10 ** the item's decimals, as everywhere in
the manufacturing model: exact on SQLite and PostgreSQL alike.

An inspection copies the limits it was judged against, so a plan changed later does not
change what an old inspection says.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from taktflow.db import Base
from taktflow.engine.models import UTCDateTime

#: What the spec limits say about the values of an inspection.
SPEC_RESULTS = ("in_spec", "out_of_spec", "incomplete")
#: An inspection's state: recorded, then the gate's decision; a hold is decided by a review.
INSPECTION_STATUSES = ("recorded", "pass", "hold", "fail")
#: A characteristic's verdict: every sampled value in spec, one or more out, or values missing.
VERDICTS = ("in", "out", "missing")
#: What is done with nonconforming material (ISO 9001 8.7).
DISPOSITIONS = ("use_as_is", "rework", "scrap", "return")
NC_STATUSES = ("open", "dispositioned", "closed")


class DefectCode(Base):
    __tablename__ = "quality_defect_code"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: dimensional, surface, assembly, inspection, other (for the Pareto by category).
    category: Mapped[str] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class InspectionPlan(Base):
    """What to measure on a lot; a routing operation names it in its `inspection:` field."""

    __tablename__ = "quality_inspection_plan"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    item: Mapped[str | None] = mapped_column(ForeignKey("mfg_item.code"))
    #: When to inspect, in words for the inspector ("every lot, after assembly").
    frequency: Mapped[str | None] = mapped_column(String(200))
    #: The defect code of a failure that no out-of-spec characteristic explains.
    defect_code: Mapped[str | None] = mapped_column(ForeignKey("quality_defect_code.code"))


class PlanCharacteristic(Base):
    """One measured characteristic of a plan. Never deleted: one dropped from the plans file
    becomes inactive (new inspections no longer ask for it)."""

    __tablename__ = "quality_plan_characteristic"
    __table_args__ = (UniqueConstraint("plan_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("quality_inspection_plan.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    position: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(20))
    decimals: Mapped[int] = mapped_column(Integer)
    nominal: Mapped[int] = mapped_column(BigInteger)
    lower: Mapped[int] = mapped_column(BigInteger)
    upper: Mapped[int] = mapped_column(BigInteger)
    sample_size: Mapped[int] = mapped_column(Integer)
    defect_code: Mapped[str | None] = mapped_column(ForeignKey("quality_defect_code.code"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Inspection(Base):
    """One inspection of one lot against a plan, with the gate's decision about the lot."""

    __tablename__ = "quality_inspection"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("quality_inspection_plan.id"), index=True)
    order_number: Mapped[str | None] = mapped_column(
        ForeignKey("mfg_production_order.number"), index=True
    )
    sequence: Mapped[int | None] = mapped_column(Integer)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    lot: Mapped[str] = mapped_column(String(60), index=True)
    #: The lot's quantity, scaled by 10 ** item.decimals.
    quantity: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    out_of_spec: Mapped[int] = mapped_column(Integer)
    missing: Mapped[int] = mapped_column(Integer)
    #: How far the worst value lies outside its limits, in hundredths of a percent of its
    #: tolerance band (0 when every value is in spec): what the gate's decision table reads.
    worst_excess_bp: Mapped[int] = mapped_column(Integer)
    remarks: Mapped[str | None] = mapped_column(Text)
    inspected_by: Mapped[str | None] = mapped_column(String(200))
    inspected_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    signed_by: Mapped[str | None] = mapped_column(String(200))
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: "sha256:<hex>" of the signature record (see quality.signature_record).
    signature_ref: Mapped[str | None] = mapped_column(String(100))
    #: Since when the lot is held (the dashboard shows the age of open holds).
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)


class InspectionResult(Base):
    """One characteristic of one inspection: the limits it was judged against, its verdict."""

    __tablename__ = "quality_inspection_result"
    __table_args__ = (UniqueConstraint("inspection_id", "characteristic"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("quality_inspection.id"), index=True)
    characteristic: Mapped[str] = mapped_column(String(60))
    position: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(20))
    decimals: Mapped[int] = mapped_column(Integer)
    nominal: Mapped[int] = mapped_column(BigInteger)
    lower: Mapped[int] = mapped_column(BigInteger)
    upper: Mapped[int] = mapped_column(BigInteger)
    sample_size: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(10))


class InspectionValue(Base):
    """One sampled value (scaled by 10 ** the result's decimals)."""

    __tablename__ = "quality_inspection_value"
    __table_args__ = (UniqueConstraint("result_id", "sample"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("quality_inspection_result.id"), index=True)
    sample: Mapped[int] = mapped_column(Integer)
    value: Mapped[int] = mapped_column(BigInteger)


class Nonconformance(Base):
    """Material that does not conform: what, how much, why, and what is done with it."""

    __tablename__ = "quality_nonconformance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_number: Mapped[str | None] = mapped_column(
        ForeignKey("mfg_production_order.number"), index=True
    )
    sequence: Mapped[int | None] = mapped_column(Integer)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    lot: Mapped[str] = mapped_column(String(60))
    defect_code: Mapped[str] = mapped_column(ForeignKey("quality_defect_code.code"))
    #: Scaled by 10 ** item.decimals.
    quantity: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text)
    inspection_id: Mapped[int | None] = mapped_column(ForeignKey("quality_inspection.id"))
    #: The nonconformance this one is the undispositioned remainder of (a partial disposition).
    split_from: Mapped[int | None] = mapped_column(ForeignKey("quality_nonconformance.id"))
    status: Mapped[str] = mapped_column(String(20), index=True)
    raised_by: Mapped[str | None] = mapped_column(String(200))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    disposition: Mapped[str | None] = mapped_column(String(20))
    disposition_note: Mapped[str | None] = mapped_column(Text)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signature_ref: Mapped[str | None] = mapped_column(String(100))
    #: The signature record as signed (JSON): signer, time, meaning and the signed values.
    signature: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    close_note: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    #: The key of the step that dispositioned it, so that a retried step is a no-op.
    disposition_key: Mapped[str | None] = mapped_column(String(300))
    close_key: Mapped[str | None] = mapped_column(String(300))
