"""Purchasing tables: suppliers and what they sell, purchase requisitions with their approval
decisions, purchase orders with their lines, goods receipts.

Quantities are scaled integers (10 ** item.decimals) and money is integer cents, as in
mfg/models.py. Requisitions and purchase orders are numbered from their row id (PR-00001,
PUR-00001): a number taken from a counter or from max() would collide when two workflow steps
create one at the same moment on PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from taktflow.db import Base
from taktflow.engine.models import UTCDateTime

#: Requisition states: approvals move open -> approved | rejected; the purchase order moves
#: approved -> ordered; the last receipt ordered -> received. Open and approved ones can be
#: cancelled.
REQUISITION_STATUSES = ("open", "approved", "rejected", "ordered", "received", "cancelled")
#: Purchase order states, moved by the receipts (partial: something, not all, received).
PURCHASE_ORDER_STATUSES = ("open", "partial", "received", "cancelled")
DECISIONS = ("approve", "reject")


class Supplier(Base):
    __tablename__ = "mfg_supplier"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    #: Inactive suppliers are kept (requisitions refer to them) but no longer chosen.
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class SupplierItem(Base):
    """An item a supplier sells: its price per unit of the item's unit of measure (cents)
    and how many days delivery takes."""

    __tablename__ = "mfg_supplier_item"
    __table_args__ = (UniqueConstraint("supplier", "item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    supplier: Mapped[str] = mapped_column(ForeignKey("mfg_supplier.code"), index=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"), index=True)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    lead_time_days: Mapped[int] = mapped_column(Integer)


class PurchaseRequisition(Base):
    """A request to buy a quantity of one item from one supplier, at the price it had when
    the requisition was made (a later price list does not change what was approved)."""

    __tablename__ = "mfg_purchase_requisition"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"), index=True)
    #: Scaled by 10 ** item.decimals.
    quantity: Mapped[int] = mapped_column(BigInteger)
    supplier: Mapped[str] = mapped_column(ForeignKey("mfg_supplier.code"), index=True)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    #: quantity x unit price, rounded half up to the cent: what the approval levels go by.
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    lead_time_days: Mapped[int] = mapped_column(Integer)
    needed_by: Mapped[date | None] = mapped_column(Date)
    #: The production order whose shortage it covers (none for a stand-alone requisition).
    order_number: Mapped[str | None] = mapped_column(
        ForeignKey("mfg_production_order.number"), index=True
    )
    requested_by: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    #: The approval route the amount gave, e.g. "supervisor,manager" (set when routed).
    approval_roles: Mapped[str | None] = mapped_column(String(200))
    #: The deadline of each role's level, ISO 8601 durations, e.g. "supervisor=PT4H,...".
    approval_deadlines: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Set when a workflow step created it, so a retried step creates one requisition.
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer)


class PurchaseApproval(Base):
    """One approval level of one requisition: opened when the level is reached (decision
    empty: waiting), decided approve or reject. `escalated` marks a level whose deadline
    passed, so that the next role up (`role`) decided in place of `escalated_from`."""

    __tablename__ = "mfg_purchase_approval"
    __table_args__ = (UniqueConstraint("requisition_id", "level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requisition_id: Mapped[int] = mapped_column(
        ForeignKey("mfg_purchase_requisition.id"), index=True
    )
    level: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(40))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_from: Mapped[str | None] = mapped_column(String(40))
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str | None] = mapped_column(String(10), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(Text)


class PurchaseOrder(Base):
    __tablename__ = "mfg_purchase_order"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    supplier: Mapped[str] = mapped_column(ForeignKey("mfg_supplier.code"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    #: When the goods should arrive: the order date plus the longest lead time of its lines.
    expected_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(200))


class PurchaseOrderLine(Base):
    __tablename__ = "mfg_purchase_order_line"
    __table_args__ = (UniqueConstraint("order_id", "line"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("mfg_purchase_order.id"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    #: Ordered and received so far, scaled by 10 ** item.decimals.
    quantity: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    #: The requisition it orders (one line per requisition; a requisition is ordered once).
    requisition_id: Mapped[int | None] = mapped_column(
        ForeignKey("mfg_purchase_requisition.id"), unique=True
    )


class GoodsReceipt(Base):
    """What arrived against one purchase order line: the stock movement it made and the
    journal entry that valued it."""

    __tablename__ = "mfg_goods_receipt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("mfg_purchase_order_line.id"), index=True)
    item: Mapped[str] = mapped_column(ForeignKey("mfg_item.code"))
    #: Scaled by 10 ** item.decimals.
    quantity: Mapped[int] = mapped_column(BigInteger)
    lot: Mapped[str] = mapped_column(String(60), default="")
    location: Mapped[str] = mapped_column(ForeignKey("mfg_location.code"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_by: Mapped[str | None] = mapped_column(String(200))
    delivery_note: Mapped[str | None] = mapped_column(String(100))
    movement_id: Mapped[int] = mapped_column(ForeignKey("mfg_stock_movement.id"))
    #: None when the receipt's value rounds to 0.00 (nothing to post).
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
