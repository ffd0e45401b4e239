"""Quality: inspection plans and results, nonconformances.

Revision ID: 0013_quality
Revises: 0012_machine_time
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_quality"
down_revision = "0012_machine_time"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    """A foreign key named by the naming convention (taktflow/db.py)."""
    referred = target.split(".")[0]
    return sa.ForeignKeyConstraint([column], [target], name=op.f(f"fk_{table}_{column}_{referred}"))


def upgrade():
    op.create_table(
        "quality_defect_code",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_quality_defect_code")),
    )
    table = "quality_inspection_plan"
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=True),
        sa.Column("frequency", sa.String(length=200), nullable=True),
        sa.Column("defect_code", sa.String(length=40), nullable=True),
        _fk(table, "item", "mfg_item.code"),
        _fk(table, "defect_code", "quality_defect_code.code"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("name", name=op.f(f"uq_{table}_name")),
    )
    table = "quality_plan_characteristic"
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("nominal", sa.BigInteger(), nullable=False),
        sa.Column("lower", sa.BigInteger(), nullable=False),
        sa.Column("upper", sa.BigInteger(), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("defect_code", sa.String(length=40), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        _fk(table, "plan_id", "quality_inspection_plan.id"),
        _fk(table, "defect_code", "quality_defect_code.code"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("plan_id", "name", name=op.f(f"uq_{table}_plan_id")),
    )
    op.create_index(op.f(f"ix_{table}_plan_id"), table, ["plan_id"])
    table = "quality_inspection"
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("order_number", sa.String(length=40), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("lot", sa.String(length=60), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("result", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("out_of_spec", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("worst_excess_bp", sa.Integer(), nullable=False),
        sa.Column("remarks", sa.Text(), nullable=True),
        sa.Column("inspected_by", sa.String(length=200), nullable=True),
        sa.Column("inspected_at", sa.DateTime(), nullable=False),
        sa.Column("signed_by", sa.String(length=200), nullable=True),
        sa.Column("signed_at", sa.DateTime(), nullable=True),
        sa.Column("signature_ref", sa.String(length=100), nullable=True),
        sa.Column("held_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        _fk(table, "plan_id", "quality_inspection_plan.id"),
        _fk(table, "order_number", "mfg_production_order.number"),
        _fk(table, "item", "mfg_item.code"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("idempotency_key", name=op.f(f"uq_{table}_idempotency_key")),
    )
    for column in ("plan_id", "order_number", "lot", "status", "inspected_at"):
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])
    table = "quality_inspection_result"
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("characteristic", sa.String(length=60), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("nominal", sa.BigInteger(), nullable=False),
        sa.Column("lower", sa.BigInteger(), nullable=False),
        sa.Column("upper", sa.BigInteger(), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        _fk(table, "inspection_id", "quality_inspection.id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint(
            "inspection_id", "characteristic", name=op.f(f"uq_{table}_inspection_id")
        ),
    )
    op.create_index(op.f(f"ix_{table}_inspection_id"), table, ["inspection_id"])
    table = "quality_inspection_value"
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("sample", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        _fk(table, "result_id", "quality_inspection_result.id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("result_id", "sample", name=op.f(f"uq_{table}_result_id")),
    )
    op.create_index(op.f(f"ix_{table}_result_id"), table, ["result_id"])
    table = "quality_nonconformance"
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_number", sa.String(length=40), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("lot", sa.String(length=60), nullable=False),
        sa.Column("defect_code", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=True),
        sa.Column("split_from", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("raised_by", sa.String(length=200), nullable=True),
        sa.Column("raised_at", sa.DateTime(), nullable=False),
        sa.Column("disposition", sa.String(length=20), nullable=True),
        sa.Column("disposition_note", sa.Text(), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("approved_at", sa.DateTime(), nullable=True),
        sa.Column("signature_ref", sa.String(length=100), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("close_note", sa.Text(), nullable=True),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("disposition_key", sa.String(length=300), nullable=True),
        sa.Column("close_key", sa.String(length=300), nullable=True),
        _fk(table, "order_number", "mfg_production_order.number"),
        _fk(table, "item", "mfg_item.code"),
        _fk(table, "defect_code", "quality_defect_code.code"),
        _fk(table, "inspection_id", "quality_inspection.id"),
        _fk(table, "split_from", "quality_nonconformance.id"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("idempotency_key", name=op.f(f"uq_{table}_idempotency_key")),
    )
    for column in ("order_number", "status", "raised_at"):
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def downgrade():
    for table in ("quality_nonconformance", "quality_inspection_value",
                  "quality_inspection_result", "quality_inspection",
                  "quality_plan_characteristic", "quality_inspection_plan",
                  "quality_defect_code"):  # fmt: skip
        op.drop_table(table)
