"""Work centers, machines, routings (versioned) and production orders with their operations.

Revision ID: 0010_routings_and_orders
Revises: 0009_boms
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_routings_and_orders"
down_revision = "0009_boms"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "mfg_work_center",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("labour_rate_cents", sa.BigInteger(), nullable=False),
        sa.Column("machine_rate_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_mfg_work_center")),
    )
    op.create_table(
        "mfg_machine",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("work_center", sa.String(length=40), nullable=False),
        sa.Column("connector", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["work_center"],
            ["mfg_work_center.code"],
            name=op.f("fk_mfg_machine_work_center_mfg_work_center"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("code", name=op.f("pk_mfg_machine")),
    )
    op.create_index(op.f("ix_mfg_machine_work_center"), "mfg_machine", ["work_center"])
    op.create_table(
        "mfg_routing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item"], ["mfg_item.code"], name=op.f("fk_mfg_routing_item_mfg_item")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_routing")),
        sa.UniqueConstraint("item", "version", name=op.f("uq_mfg_routing_item")),
    )
    op.create_index(op.f("ix_mfg_routing_item"), "mfg_routing", ["item"])
    op.create_table(
        "mfg_routing_operation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("routing_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("work_center", sa.String(length=40), nullable=False),
        sa.Column("setup_min", sa.Integer(), nullable=False),
        sa.Column("cycle_ms", sa.Integer(), nullable=False),
        sa.Column("inspection", sa.String(length=200), nullable=True),
        sa.Column("form", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["routing_id"],
            ["mfg_routing.id"],
            name=op.f("fk_mfg_routing_operation_routing_id_mfg_routing"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["work_center"],
            ["mfg_work_center.code"],
            name=op.f("fk_mfg_routing_operation_work_center_mfg_work_center"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_routing_operation")),
        sa.UniqueConstraint(
            "routing_id", "sequence", name=op.f("uq_mfg_routing_operation_routing_id")
        ),
    )
    op.create_index(
        op.f("ix_mfg_routing_operation_routing_id"), "mfg_routing_operation", ["routing_id"]
    )
    op.create_table(
        "mfg_production_order",
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("bom_version", sa.Integer(), nullable=False),
        sa.Column("routing_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("erp_reference", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item"], ["mfg_item.code"], name=op.f("fk_mfg_production_order_item_mfg_item")
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_mfg_production_order")),
    )
    op.create_index(op.f("ix_mfg_production_order_item"), "mfg_production_order", ["item"])
    op.create_index(op.f("ix_mfg_production_order_status"), "mfg_production_order", ["status"])
    op.create_table(
        "mfg_order_operation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_number", sa.String(length=40), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("work_center", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("planned", sa.BigInteger(), nullable=False),
        sa.Column("good", sa.BigInteger(), nullable=False),
        sa.Column("scrap", sa.BigInteger(), nullable=False),
        sa.Column("rework", sa.BigInteger(), nullable=False),
        sa.Column("machine", sa.String(length=40), nullable=True),
        sa.Column("operator", sa.String(length=100), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_number"],
            ["mfg_production_order.number"],
            name=op.f("fk_mfg_order_operation_order_number_mfg_production_order"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["work_center"],
            ["mfg_work_center.code"],
            name=op.f("fk_mfg_order_operation_work_center_mfg_work_center"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_order_operation")),
        sa.UniqueConstraint(
            "order_number", "sequence", name=op.f("uq_mfg_order_operation_order_number")
        ),
    )
    op.create_index(
        op.f("ix_mfg_order_operation_order_number"), "mfg_order_operation", ["order_number"]
    )


def downgrade():
    op.drop_table("mfg_order_operation")
    op.drop_table("mfg_production_order")
    op.drop_table("mfg_routing_operation")
    op.drop_table("mfg_routing")
    op.drop_table("mfg_machine")
    op.drop_table("mfg_work_center")
