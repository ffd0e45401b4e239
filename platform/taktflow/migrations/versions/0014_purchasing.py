"""Purchasing: suppliers, requisitions, approvals, purchase orders, receipts.

Revision ID: 0014_purchasing
Revises: 0013_quality
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0014_purchasing"
down_revision = "0013_quality"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
