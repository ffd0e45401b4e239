"""Operation execution: reservations, material use per order, genealogy.

Revision ID: 0011_execution
Revises: 0010_routings_and_orders
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0011_execution"
down_revision = "0010_routings_and_orders"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
