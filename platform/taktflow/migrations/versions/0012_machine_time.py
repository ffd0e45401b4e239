"""Machine time: state intervals, counts, shifts, reason codes, downtime.

Revision ID: 0012_machine_time
Revises: 0011_execution
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_machine_time"
down_revision = "0011_execution"
branch_labels = None
depends_on = None


def _machine_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["machine"], ["mfg_machine.code"],
                                   name=op.f(f"fk_{table}_machine_mfg_machine"))  # fmt: skip


def _reason_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["reason"], ["mfg_reason_code.code"],
                                   name=op.f(f"fk_{table}_reason_mfg_reason_code"))  # fmt: skip


def upgrade():
    op.create_table(
        "mfg_shift",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=60), nullable=False),
        sa.Column("start_min", sa.Integer(), nullable=False),
        sa.Column("end_min", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_mfg_shift")),
    )
    op.create_table(
        "mfg_shift_break",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shift", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("start_min", sa.Integer(), nullable=False),
        sa.Column("end_min", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["shift"], ["mfg_shift.code"],
                                name=op.f("fk_mfg_shift_break_shift_mfg_shift")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_shift_break")),
    )  # fmt: skip
    op.create_index(op.f("ix_mfg_shift_break_shift"), "mfg_shift_break", ["shift"])
    op.create_table(
        "mfg_holiday",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_mfg_holiday")),
    )
    op.create_table(
        "mfg_reason_code",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_mfg_reason_code")),
    )
    op.create_table(
        "mfg_reason_signal",
        sa.Column("signal", sa.String(length=60), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        _reason_fk("mfg_reason_signal"),
        sa.PrimaryKeyConstraint("signal", name=op.f("pk_mfg_reason_signal")),
    )
    op.create_table(
        "mfg_machine_ideal",
        sa.Column("machine", sa.String(length=40), nullable=False),
        sa.Column("ideal_cycle_ms", sa.Integer(), nullable=False),
        _machine_fk("mfg_machine_ideal"),
        sa.PrimaryKeyConstraint("machine", name=op.f("pk_mfg_machine_ideal")),
    )
    op.create_table(
        "mfg_machine_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("alarm_code", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("inbox_id", sa.Integer(), nullable=True),
        _machine_fk("mfg_machine_state"),
        _reason_fk("mfg_machine_state"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_machine_state")),
    )
    op.create_index("ix_mfg_machine_state_machine_started", "mfg_machine_state",
                    ["machine", "started_at"])  # fmt: skip
    op.create_table(
        "mfg_machine_count",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine", sa.String(length=40), nullable=False),
        sa.Column("bucket_start", sa.DateTime(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("reject", sa.BigInteger(), nullable=False),
        sa.Column("ideal_ms", sa.BigInteger(), nullable=False),
        _machine_fk("mfg_machine_count"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_machine_count")),
        sa.UniqueConstraint("machine", "bucket_start", name=op.f("uq_mfg_machine_count_machine")),
    )
    op.create_table(
        "mfg_machine_projection",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.Text(), nullable=False),
        sa.Column("projected", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_mfg_machine_projection")),
    )
    op.create_table(
        "mfg_downtime",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("machine", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=40), nullable=True),
        sa.Column("alarm_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("reason_source", sa.String(length=20), nullable=True),
        sa.Column("reason_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("repair_note", sa.Text(), nullable=True),
        sa.Column("repaired_by", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _machine_fk("mfg_downtime"),
        _reason_fk("mfg_downtime"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_downtime")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_mfg_downtime_idempotency_key")),
    )
    op.create_index(op.f("ix_mfg_downtime_machine"), "mfg_downtime", ["machine"])
    op.create_index(op.f("ix_mfg_downtime_started_at"), "mfg_downtime", ["started_at"])


def downgrade():
    op.drop_table("mfg_downtime")
    op.drop_table("mfg_machine_projection")
    op.drop_table("mfg_machine_count")
    op.drop_index("ix_mfg_machine_state_machine_started", table_name="mfg_machine_state")
    op.drop_table("mfg_machine_state")
    op.drop_table("mfg_machine_ideal")
    op.drop_table("mfg_reason_signal")
    op.drop_table("mfg_reason_code")
    op.drop_table("mfg_holiday")
    op.drop_table("mfg_shift_break")
    op.drop_table("mfg_shift")
