"""Connector state: each point's last value and each rule's state, kept with its events.

Revision ID: 0004_connector_state
Revises: 0003_forms
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_connector_state"
down_revision = "0003_forms"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "connector_state",
        sa.Column("connector", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("connector", "key", name=op.f("pk_connector_state")),
    )


def downgrade():
    op.drop_table("connector_state")
