"""Ledger tables. Amounts are integer cents: exact on SQLite and PostgreSQL alike (SQLite has
no decimal type, and a float would make a balanced entry unbalanced by a rounding error)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from taktflow.db import Base
from taktflow.engine.models import UTCDateTime

#: Account types and the side on which their balance normally stands.
ACCOUNT_TYPES = {"asset": "debit", "expense": "debit", "liability": "credit",
                 "equity": "credit", "revenue": "credit"}  # fmt: skip


class Account(Base):
    __tablename__ = "ledger_account"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class JournalEntry(Base):
    """One posting. Never changed once written: a correction is a reversal (a new entry
    with the lines swapped) that points back at it."""

    __tablename__ = "journal_entry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    description: Mapped[str] = mapped_column(String(400))
    #: What it belongs to, e.g. a production order "PO-1001" (reports group by it).
    reference: Mapped[str | None] = mapped_column(String(100), index=True)
    #: Set when a workflow step posted it, so a retried step posts once.
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    posted_by: Mapped[str | None] = mapped_column(String(200))
    instance_id: Mapped[int | None] = mapped_column(Integer)
    reverses: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"), unique=True)


class JournalLine(Base):
    __tablename__ = "journal_line"
    __table_args__ = (Index("ix_journal_line_account_reference", "account", "reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), index=True)
    account: Mapped[str] = mapped_column(ForeignKey("ledger_account.code"))
    debit_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The entry's reference, repeated on each line so balances per order are one query.
    reference: Mapped[str | None] = mapped_column(String(100))
    memo: Mapped[str | None] = mapped_column(Text)


#: Item types and how an item's stock is tracked.
ITEM_TYPES = ("raw", "semi", "finished", "consumable")
TRACKING = ("none", "lot")
#: Location kinds (ISA-95 storage zones a plant needs).
LOCATION_KINDS = ("stores", "wip", "finished_goods", "scrap", "quarantine", "receiving")


class Item(Base):
    """Something the plant buys, makes or sells. Quantities are in its unit of measure, with
    at most `decimals` decimals (stored scaled as integers, like money)."""

    __tablename__ = "mfg_item"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    uom: Mapped[str] = mapped_column(String(20))
    decimals: Mapped[int] = mapped_column(Integer, default=0)
    tracking: Mapped[str] = mapped_column(String(10), default="none")
    #: Standard cost per unit in cents, split as the postings need it.
    std_material_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    std_labour_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    std_overhead_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    #: What a scrapped unit is still worth (recovered as scrap), in cents.
    scrap_value_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class Location(Base):
    __tablename__ = "mfg_location"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    #: The ledger account that values its stock (e.g. 1400 raw materials, 1410 WIP).
    account: Mapped[str | None] = mapped_column(ForeignKey("ledger_account.code"))


class StockMovement(Base):
    """One movement of stock, never changed: stock on hand is the sum of movements. A receipt
    has no source location, a consumption or scrap write-off no destination."""

    __tablename__ = "mfg_stock_movement"
    __table_args__ = (
        Index("ix_mfg_stock_movement_item_to", "item", "to_location", "lot"),
        Index("ix_mfg_stock_movement_item_from", "item", "from_location", "lot"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    lot: Mapped[str] = mapped_column(String(60), default="")
    #: Quantity scaled by 10 ** item.decimals.
    quantity: Mapped[int] = mapped_column(BigInteger)
    from_location: Mapped[str | None] = mapped_column(ForeignKey("mfg_location.code"))
    to_location: Mapped[str | None] = mapped_column(ForeignKey("mfg_location.code"))
    #: receipt, issue, transfer, produce, scrap, adjust, ...
    reason: Mapped[str] = mapped_column(String(40))
    reference: Mapped[str | None] = mapped_column(String(100), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    moved_by: Mapped[str | None] = mapped_column(String(200))


#: How a BOM line's material leaves stock: issued by an operator, or backflushed (consumed
#: automatically when the operation reports its good quantity).
ISSUE_METHODS = ("manual", "backflush")
#: BOM quantities per parent unit keep this many decimals (stored scaled).
BOM_DECIMALS = 6


class Bom(Base):
    """One version of an item's bill of materials. A new version is a new row: orders keep
    the version they were released with."""

    __tablename__ = "mfg_bom"
    __table_args__ = (UniqueConstraint("item", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class BomLine(Base):
    __tablename__ = "mfg_bom_line"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bom_id: Mapped[int] = mapped_column(ForeignKey("mfg_bom.id"), index=True)
    component: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    #: Quantity per parent unit, scaled by 10 ** BOM_DECIMALS.
    quantity: Mapped[int] = mapped_column(BigInteger)
    #: Expected scrap in hundredths of a percent (250 = 2.5 %), added to the requirement.
    scrap_bp: Mapped[int] = mapped_column(Integer, default=0)
    issue_method: Mapped[str] = mapped_column(String(20), default="manual")
    #: The routing operation that consumes it (its sequence number), if any.
    operation: Mapped[int | None] = mapped_column(Integer)


class WorkCenter(Base):
    """A group of machines and people that does one kind of work (ISA-95 work center)."""

    __tablename__ = "mfg_work_center"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: Hourly rates in cents, for labour and machine (overhead) absorption.
    labour_rate_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    machine_rate_cents: Mapped[int] = mapped_column(BigInteger, default=0)


class Machine(Base):
    """A work unit of a work center, linked to the connector that reads it."""

    __tablename__ = "mfg_machine"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    work_center: Mapped[str] = mapped_column(ForeignKey("mfg_work_center.code"), index=True)
    #: The connector file whose `machine:` is this machine (connectors/<id>.yaml).
    connector: Mapped[str | None] = mapped_column(String(200))


class Routing(Base):
    """One version of how an item is made: its operations in sequence."""

    __tablename__ = "mfg_routing"
    __table_args__ = (UniqueConstraint("item", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class RoutingOperation(Base):
    __tablename__ = "mfg_routing_operation"
    __table_args__ = (UniqueConstraint("routing_id", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    routing_id: Mapped[int] = mapped_column(ForeignKey("mfg_routing.id"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    work_center: Mapped[str] = mapped_column(ForeignKey("mfg_work_center.code"))
    setup_min: Mapped[int] = mapped_column(Integer, default=0)
    #: Ideal cycle time per unit in milliseconds (OEE's performance uses it).
    cycle_ms: Mapped[int] = mapped_column(Integer)
    #: The inspection plan and operator form names (forms/<name>.yaml), if any.
    inspection: Mapped[str | None] = mapped_column(String(200))
    form: Mapped[str | None] = mapped_column(String(200))


#: Production order states (ISA-95 request states that the plant uses) and the moves allowed.
ORDER_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "planned": ("released", "cancelled"),
    "released": ("running", "held", "cancelled"),
    "running": ("held", "completed"),
    "held": ("released", "running", "cancelled"),
    "completed": ("closed",),
    "closed": (),
    "cancelled": (),
}


class ProductionOrder(Base):
    """An order to make a quantity of an item, bound at creation to the BOM and routing
    versions it will be made with."""

    __tablename__ = "mfg_production_order"

    number: Mapped[str] = mapped_column(String(40), primary_key=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"), index=True)
    #: Scaled by 10 ** item.decimals.
    quantity: Mapped[int] = mapped_column(BigInteger)
    bom_version: Mapped[int] = mapped_column(Integer)
    routing_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    priority: Mapped[int] = mapped_column(Integer, default=5)
    erp_reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The lot its output is received under (set when the order is released).
    lot: Mapped[str | None] = mapped_column(String(60))
    #: Good quantity received into stock so far (scaled like `quantity`).
    received: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class OrderOperation(Base):
    """One routing operation of one order, with what the shop floor reported."""

    __tablename__ = "mfg_order_operation"
    __table_args__ = (UniqueConstraint("order_number", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_number: Mapped[str] = mapped_column(ForeignKey("mfg_production_order.number"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    work_center: Mapped[str] = mapped_column(ForeignKey("mfg_work_center.code"))
    status: Mapped[str] = mapped_column(String(20), default="waiting")
    planned: Mapped[int] = mapped_column(BigInteger)
    good: Mapped[int] = mapped_column(BigInteger, default=0)
    scrap: Mapped[int] = mapped_column(BigInteger, default=0)
    rework: Mapped[int] = mapped_column(BigInteger, default=0)
    machine: Mapped[str | None] = mapped_column(String(40))
    operator: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scrap_reason: Mapped[str | None] = mapped_column(String(100))
    #: What the machine counted while the operation ran (connector events), beside what the
    #: operator confirmed (good, scrap): a report compares the two.
    counted_good: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    counted_reject: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    #: Booked labour and machine time, in seconds (over all passes, rework included).
    labour_s: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    machine_s: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    #: Units sent back to this operation for rework and not yet reported again.
    in_rework: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class Reservation(Base):
    """Stock set aside for an order at release: others see it as unavailable until it is
    issued or the order closes."""

    __tablename__ = "mfg_reservation"
    __table_args__ = (UniqueConstraint("order_number", "item", "location"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_number: Mapped[str] = mapped_column(ForeignKey("mfg_production_order.number"), index=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"), index=True)
    location: Mapped[str] = mapped_column(ForeignKey("mfg_location.code"))
    #: Scaled by 10 ** item.decimals: what the order needs, and how much of it is issued.
    required: Mapped[int] = mapped_column(BigInteger)
    reserved: Mapped[int] = mapped_column(BigInteger)
    issued: Mapped[int] = mapped_column(BigInteger, default=0)
    open: Mapped[bool] = mapped_column(Boolean, default=True)


class GenealogyLink(Base):
    """Lot genealogy: this much of an input lot went into an output lot of an order."""

    __tablename__ = "mfg_genealogy"
    __table_args__ = (
        UniqueConstraint("order_number", "parent_item", "parent_lot", "child_item", "child_lot"),
        Index("ix_mfg_genealogy_child", "child_item", "child_lot"),
        Index("ix_mfg_genealogy_parent", "parent_item", "parent_lot"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_number: Mapped[str] = mapped_column(ForeignKey("mfg_production_order.number"))
    #: The output lot (what was made) ...
    parent_item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    parent_lot: Mapped[str] = mapped_column(String(60))
    #: ... and an input lot consumed to make it, with the quantity (scaled by its item).
    child_item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    child_lot: Mapped[str] = mapped_column(String(60))
    quantity: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
