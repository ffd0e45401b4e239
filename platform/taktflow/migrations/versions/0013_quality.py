"""Quality: inspection plans and results, nonconformances.

Revision ID: 0013_quality
Revises: 0012_machine_time
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0013_quality"
down_revision = "0012_machine_time"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
