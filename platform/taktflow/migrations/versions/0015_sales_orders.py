"""Sales orders: what customers ordered; production orders point at them by erp_reference.

Revision ID: 0015_sales_orders
Revises: 0014_purchasing
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_sales_orders"
down_revision = "0014_purchasing"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "mfg_sales_order",
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("customer", sa.String(length=200), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item"], ["mfg_item.code"], name=op.f("fk_mfg_sales_order_item_mfg_item")
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_mfg_sales_order")),
    )
    op.create_index(op.f("ix_mfg_sales_order_item"), "mfg_sales_order", ["item"])
    op.create_index(op.f("ix_mfg_sales_order_status"), "mfg_sales_order", ["status"])


def downgrade():
    op.drop_table("mfg_sales_order")
