"""The double-entry ledger: accounts, journal entries (immutable; reversals point back), lines.

Revision ID: 0007_ledger
Revises: 0006_wait_correlation_key
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_ledger"
down_revision = "0006_wait_correlation_key"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ledger_account",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ledger_account")),
    )
    op.create_table(
        "journal_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("posted_at", sa.DateTime(), nullable=False),
        sa.Column("description", sa.String(length=400), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("posted_by", sa.String(length=200), nullable=True),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("reverses", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reverses"],
            ["journal_entry.id"],
            name=op.f("fk_journal_entry_reverses_journal_entry"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entry")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_journal_entry_idempotency_key")),
        sa.UniqueConstraint("reverses", name=op.f("uq_journal_entry_reverses")),
    )
    op.create_index(op.f("ix_journal_entry_posted_at"), "journal_entry", ["posted_at"])
    op.create_index(op.f("ix_journal_entry_reference"), "journal_entry", ["reference"])
    op.create_table(
        "journal_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=20), nullable=False),
        sa.Column("debit_cents", sa.BigInteger(), nullable=False),
        sa.Column("credit_cents", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account"],
            ["ledger_account.code"],
            name=op.f("fk_journal_line_account_ledger_account"),
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entry.id"],
            name=op.f("fk_journal_line_entry_id_journal_entry"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_line")),
    )
    op.create_index(op.f("ix_journal_line_entry_id"), "journal_line", ["entry_id"])
    op.create_index("ix_journal_line_account_reference", "journal_line", ["account", "reference"])


def downgrade():
    op.drop_table("journal_line")
    op.drop_table("journal_entry")
    op.drop_table("ledger_account")
