"""Form definitions, deployed and versioned like workflows.

Revision ID: 0003_forms
Revises: 0002_accounts
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_forms"
down_revision = "0002_accounts"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "form_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=400), nullable=True),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("deployed_at", sa.DateTime(), nullable=False),
        sa.Column("deployed_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_version")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_form_version_name")),
    )
    with op.batch_alter_table("form_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_form_version_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_form_version_is_latest"), ["is_latest"], unique=False)


def downgrade():
    op.drop_table("form_version")
