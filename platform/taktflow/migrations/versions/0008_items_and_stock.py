"""Items, locations and stock movements (stock on hand is their sum).

Revision ID: 0008_items_and_stock
Revises: 0007_ledger
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_items_and_stock"
down_revision = "0007_ledger"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "mfg_item",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("uom", sa.String(length=20), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("tracking", sa.String(length=10), nullable=False),
        sa.Column("std_material_cents", sa.BigInteger(), nullable=False),
        sa.Column("std_labour_cents", sa.BigInteger(), nullable=False),
        sa.Column("std_overhead_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_mfg_item")),
    )
    op.create_table(
        "mfg_location",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["account"],
            ["ledger_account.code"],
            name=op.f("fk_mfg_location_account_ledger_account"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("code", name=op.f("pk_mfg_location")),
    )
    op.create_table(
        "mfg_stock_movement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("lot", sa.String(length=60), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("from_location", sa.String(length=40), nullable=True),
        sa.Column("to_location", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("moved_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["from_location"],
            ["mfg_location.code"],
            name=op.f("fk_mfg_stock_movement_from_location_mfg_location"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["item"], ["mfg_item.code"], name=op.f("fk_mfg_stock_movement_item_mfg_item")
        ),
        sa.ForeignKeyConstraint(
            ["to_location"],
            ["mfg_location.code"],
            name=op.f("fk_mfg_stock_movement_to_location_mfg_location"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_stock_movement")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_mfg_stock_movement_idempotency_key")),
    )
    op.create_index(op.f("ix_mfg_stock_movement_at"), "mfg_stock_movement", ["at"])
    op.create_index(op.f("ix_mfg_stock_movement_reference"), "mfg_stock_movement", ["reference"])
    op.create_index(
        "ix_mfg_stock_movement_item_to", "mfg_stock_movement", ["item", "to_location", "lot"]
    )
    op.create_index(
        "ix_mfg_stock_movement_item_from", "mfg_stock_movement", ["item", "from_location", "lot"]
    )


def downgrade():
    op.drop_table("mfg_stock_movement")
    op.drop_table("mfg_location")
    op.drop_table("mfg_item")
