"""Operation execution: reservations, lot genealogy, what operations and orders report.

Revision ID: 0011_execution
Revises: 0010_routings_and_orders
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_execution"
down_revision = "0010_routings_and_orders"
branch_labels = None
depends_on = None

ZERO = sa.text("0")
OPERATION_COUNTS = ("counted_good", "counted_reject", "labour_s", "machine_s", "in_rework")


def upgrade():
    op.add_column(
        "mfg_item",
        sa.Column("scrap_value_cents", sa.BigInteger(), nullable=False, server_default=ZERO),
    )
    op.add_column("mfg_production_order", sa.Column("lot", sa.String(length=60), nullable=True))
    op.add_column(
        "mfg_production_order",
        sa.Column("received", sa.BigInteger(), nullable=False, server_default=ZERO),
    )
    op.add_column(
        "mfg_order_operation", sa.Column("scrap_reason", sa.String(length=100), nullable=True)
    )
    for name in OPERATION_COUNTS:
        op.add_column(
            "mfg_order_operation",
            sa.Column(name, sa.BigInteger(), nullable=False, server_default=ZERO),
        )
    op.create_table(
        "mfg_reservation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_number", sa.String(length=40), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("location", sa.String(length=40), nullable=False),
        sa.Column("required", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("issued", sa.BigInteger(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_number"],
            ["mfg_production_order.number"],
            name=op.f("fk_mfg_reservation_order_number_mfg_production_order"),
        ),
        sa.ForeignKeyConstraint(
            ["item"], ["mfg_item.code"], name=op.f("fk_mfg_reservation_item_mfg_item")
        ),
        sa.ForeignKeyConstraint(
            ["location"],
            ["mfg_location.code"],
            name=op.f("fk_mfg_reservation_location_mfg_location"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_reservation")),
        sa.UniqueConstraint(
            "order_number", "item", "location", name=op.f("uq_mfg_reservation_order_number")
        ),
    )
    op.create_index(op.f("ix_mfg_reservation_order_number"), "mfg_reservation", ["order_number"])
    op.create_index(op.f("ix_mfg_reservation_item"), "mfg_reservation", ["item"])
    op.create_table(
        "mfg_genealogy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_number", sa.String(length=40), nullable=False),
        sa.Column("parent_item", sa.String(length=40), nullable=False),
        sa.Column("parent_lot", sa.String(length=60), nullable=False),
        sa.Column("child_item", sa.String(length=40), nullable=False),
        sa.Column("child_lot", sa.String(length=60), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_number"],
            ["mfg_production_order.number"],
            name=op.f("fk_mfg_genealogy_order_number_mfg_production_order"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_item"], ["mfg_item.code"], name=op.f("fk_mfg_genealogy_parent_item_mfg_item")
        ),
        sa.ForeignKeyConstraint(
            ["child_item"], ["mfg_item.code"], name=op.f("fk_mfg_genealogy_child_item_mfg_item")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_genealogy")),
        sa.UniqueConstraint(
            "order_number",
            "parent_item",
            "parent_lot",
            "child_item",
            "child_lot",
            name=op.f("uq_mfg_genealogy_order_number"),
        ),
    )
    op.create_index("ix_mfg_genealogy_child", "mfg_genealogy", ["child_item", "child_lot"])
    op.create_index("ix_mfg_genealogy_parent", "mfg_genealogy", ["parent_item", "parent_lot"])


def downgrade():
    op.drop_table("mfg_genealogy")
    op.drop_table("mfg_reservation")
    for name in (*OPERATION_COUNTS, "scrap_reason"):
        op.drop_column("mfg_order_operation", name)
    op.drop_column("mfg_production_order", "received")
    op.drop_column("mfg_production_order", "lot")
    op.drop_column("mfg_item", "scrap_value_cents")
