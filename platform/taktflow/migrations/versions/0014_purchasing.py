"""Purchasing: suppliers, requisitions, approvals, purchase orders, receipts.

Revision ID: 0014_purchasing
Revises: 0013_quality
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_purchasing"
down_revision = "0013_quality"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str, key: str = "code") -> sa.ForeignKeyConstraint:
    """A foreign key named as the naming convention in taktflow/db.py names it."""
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.{key}"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def upgrade():
    op.create_table(
        "mfg_supplier",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_mfg_supplier")),
    )
    op.create_table(
        "mfg_supplier_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("supplier", sa.String(length=40), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        _fk("mfg_supplier_item", "item", "mfg_item"),
        _fk("mfg_supplier_item", "supplier", "mfg_supplier"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_supplier_item")),
        sa.UniqueConstraint("supplier", "item", name=op.f("uq_mfg_supplier_item_supplier")),
    )
    op.create_index(op.f("ix_mfg_supplier_item_supplier"), "mfg_supplier_item", ["supplier"])
    op.create_index(op.f("ix_mfg_supplier_item_item"), "mfg_supplier_item", ["item"])
    op.create_table(
        "mfg_purchase_requisition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("supplier", sa.String(length=40), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("needed_by", sa.Date(), nullable=True),
        sa.Column("order_number", sa.String(length=40), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("approval_roles", sa.String(length=200), nullable=True),
        sa.Column("approval_deadlines", sa.String(length=400), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        _fk("mfg_purchase_requisition", "item", "mfg_item"),
        sa.ForeignKeyConstraint(
            ["order_number"],
            ["mfg_production_order.number"],
            name=op.f("fk_mfg_purchase_requisition_order_number_mfg_production_order"),
        ),  # fmt: skip
        _fk("mfg_purchase_requisition", "supplier", "mfg_supplier"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_purchase_requisition")),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_mfg_purchase_requisition_idempotency_key")
        ),
    )
    for column in ("item", "supplier", "order_number", "status"):
        op.create_index(
            op.f(f"ix_mfg_purchase_requisition_{column}"), "mfg_purchase_requisition", [column]
        )
    op.create_table(
        "mfg_purchase_approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requisition_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("escalated_from", sa.String(length=40), nullable=True),
        sa.Column("escalated_at", sa.DateTime(), nullable=True),
        sa.Column("decision", sa.String(length=10), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        # Names longer than PostgreSQL's 63 characters: shortened as SQLAlchemy shortens them.
        sa.ForeignKeyConstraint(
            ["requisition_id"],
            ["mfg_purchase_requisition.id"],
            name=op.f("fk_mfg_purchase_approval_requisition_id_mfg_purchase_re_c311"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_purchase_approval")),
        sa.UniqueConstraint(
            "requisition_id", "level", name=op.f("uq_mfg_purchase_approval_requisition_id")
        ),
    )
    op.create_index(
        op.f("ix_mfg_purchase_approval_requisition_id"),
        "mfg_purchase_approval",
        ["requisition_id"],
    )
    op.create_index(
        op.f("ix_mfg_purchase_approval_decision"), "mfg_purchase_approval", ["decision"]
    )
    op.create_table(
        "mfg_purchase_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("supplier", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("expected_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        _fk("mfg_purchase_order", "supplier", "mfg_supplier"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_purchase_order")),
    )
    op.create_index(op.f("ix_mfg_purchase_order_supplier"), "mfg_purchase_order", ["supplier"])
    op.create_index(op.f("ix_mfg_purchase_order_status"), "mfg_purchase_order", ["status"])
    op.create_table(
        "mfg_purchase_order_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("requisition_id", sa.Integer(), nullable=True),
        _fk("mfg_purchase_order_line", "item", "mfg_item"),
        _fk("mfg_purchase_order_line", "order_id", "mfg_purchase_order", "id"),
        sa.ForeignKeyConstraint(
            ["requisition_id"],
            ["mfg_purchase_requisition.id"],
            name=op.f("fk_mfg_purchase_order_line_requisition_id_mfg_purchase__b2a4"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_purchase_order_line")),
        sa.UniqueConstraint("order_id", "line", name=op.f("uq_mfg_purchase_order_line_order_id")),
        sa.UniqueConstraint(
            "requisition_id", name=op.f("uq_mfg_purchase_order_line_requisition_id")
        ),
    )
    op.create_index(
        op.f("ix_mfg_purchase_order_line_order_id"), "mfg_purchase_order_line", ["order_id"]
    )
    op.create_table(
        "mfg_goods_receipt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("lot", sa.String(length=60), nullable=False),
        sa.Column("location", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("received_by", sa.String(length=200), nullable=True),
        sa.Column("delivery_note", sa.String(length=100), nullable=True),
        sa.Column("movement_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        _fk("mfg_goods_receipt", "entry_id", "journal_entry", "id"),
        _fk("mfg_goods_receipt", "item", "mfg_item"),
        _fk("mfg_goods_receipt", "line_id", "mfg_purchase_order_line", "id"),
        _fk("mfg_goods_receipt", "location", "mfg_location"),
        _fk("mfg_goods_receipt", "movement_id", "mfg_stock_movement", "id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_goods_receipt")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_mfg_goods_receipt_idempotency_key")),
    )
    op.create_index(op.f("ix_mfg_goods_receipt_line_id"), "mfg_goods_receipt", ["line_id"])


def downgrade():
    op.drop_table("mfg_goods_receipt")
    op.drop_table("mfg_purchase_order_line")
    op.drop_table("mfg_purchase_order")
    op.drop_table("mfg_purchase_approval")
    op.drop_table("mfg_purchase_requisition")
    op.drop_table("mfg_supplier_item")
    op.drop_table("mfg_supplier")
