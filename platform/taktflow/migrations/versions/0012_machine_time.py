"""Machine time: state intervals, counts, shifts, reason codes, downtime.

Revision ID: 0012_machine_time
Revises: 0011_execution
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0012_machine_time"
down_revision = "0011_execution"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
