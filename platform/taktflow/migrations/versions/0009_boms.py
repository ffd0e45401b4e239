"""Bills of materials: versions per item and their lines.

Revision ID: 0009_boms
Revises: 0008_items_and_stock
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_boms"
down_revision = "0008_items_and_stock"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "mfg_bom",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["item"], ["mfg_item.code"], name=op.f("fk_mfg_bom_item_mfg_item")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_bom")),
        sa.UniqueConstraint("item", "version", name=op.f("uq_mfg_bom_item")),
    )
    op.create_index(op.f("ix_mfg_bom_item"), "mfg_bom", ["item"])
    op.create_table(
        "mfg_bom_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bom_id", sa.Integer(), nullable=False),
        sa.Column("component", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("scrap_bp", sa.Integer(), nullable=False),
        sa.Column("issue_method", sa.String(length=20), nullable=False),
        sa.Column("operation", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bom_id"], ["mfg_bom.id"], name=op.f("fk_mfg_bom_line_bom_id_mfg_bom")
        ),
        sa.ForeignKeyConstraint(
            ["component"], ["mfg_item.code"], name=op.f("fk_mfg_bom_line_component_mfg_item")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfg_bom_line")),
    )
    op.create_index(op.f("ix_mfg_bom_line_bom_id"), "mfg_bom_line", ["bom_id"])


def downgrade():
    op.drop_table("mfg_bom_line")
    op.drop_table("mfg_bom")
