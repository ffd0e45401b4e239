"""Message waits get an indexed correlation key, so delivering a message reads only the waits
it can match instead of every wait for its name (thousands, with many open orders).

Revision ID: 0006_wait_correlation_key
Revises: 0005_delivery_and_outbox
"""

import json

import sqlalchemy as sa
from alembic import op

from taktflow.engine.store import correlation_key, flat_correlation

revision = "0006_wait_correlation_key"
down_revision = "0005_delivery_and_outbox"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("instance_wait") as batch:
        batch.add_column(sa.Column("correlation_key", sa.String(length=40), nullable=True))
    op.create_index(
        "ix_instance_wait_kind_name_key",
        "instance_wait",
        ["kind", "name", "correlation_key"],
        unique=False,
    )
    conn = op.get_bind()
    waits = sa.table(
        "instance_wait",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("correlation", sa.Text),
        sa.column("correlation_key", sa.String),
    )
    rows = conn.execute(
        sa.select(waits.c.id, waits.c.correlation).where(waits.c.kind == "message")
    ).all()
    for wait_id, correlation in rows:
        wanted = json.loads(correlation) if correlation else {}
        conn.execute(
            waits.update()
            .where(waits.c.id == wait_id)
            .values(correlation_key=correlation_key(flat_correlation(wanted)))
        )


def downgrade():
    op.drop_index("ix_instance_wait_kind_name_key", table_name="instance_wait")
    with op.batch_alter_table("instance_wait") as batch:
        batch.drop_column("correlation_key")
