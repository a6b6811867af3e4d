"""Training marks: feedback an admin chose as training data (read by a later `kefu data from-logs` export).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kefu_training_marks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("feedback_id", sa.Integer, sa.ForeignKey("kefu_feedback.id"), nullable=False, unique=True),
        sa.Column("conversation_id", sa.String(128), nullable=False, index=True),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("marked_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kefu_training_marks")
