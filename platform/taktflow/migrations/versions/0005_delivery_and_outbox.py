"""Ordered delivery with back-off, the outbox for machine writes, and the machine context.

- inbox_message.next_attempt_at: a row that failed waits until then (and so do the later rows
  of its source, which keeps a connector's events in order).
- outbox_message: MQTT publishes and Modbus writes a workflow step asked for, committed with
  the step and sent by the connector runtime.
- machine_context: each machine's current work order / operation, kept by workflows and read
  by connector rules.

Revision ID: 0005_delivery_and_outbox
Revises: 0004_connector_state
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_delivery_and_outbox"
down_revision = "0004_connector_state"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("inbox_message") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(), nullable=True))
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_message")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_message_idempotency_key")),
    )
    op.create_index(
        "ix_outbox_message_status_target", "outbox_message", ["status", "target"], unique=False
    )
    op.create_table(
        "machine_context",
        sa.Column("machine", sa.String(length=200), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("machine", name=op.f("pk_machine_context")),
    )


def downgrade():
    op.drop_table("machine_context")
    op.drop_index("ix_outbox_message_status_target", table_name="outbox_message")
    op.drop_table("outbox_message")
    with op.batch_alter_table("inbox_message") as batch:
        batch.drop_column("next_attempt_at")
