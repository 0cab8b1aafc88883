"""The review store's first schema: served predictions, feedback, review items, decisions,
annotators and ratings (service/review/models.py describes each table).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "served_predictions",
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("product_id", sa.String(256), nullable=False),
        sa.Column("shop_id", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("taxonomy_version", sa.String(32), nullable=False),
        sa.Column("category_id", sa.String(128), nullable=True),
        sa.Column("vertical", sa.String(128), nullable=True),
        sa.Column("prediction", sa.JSON(), nullable=False),
        sa.Column("product", sa.JSON(), nullable=False),
        sa.Column("served_at", TZ, nullable=False),
    )
    for column in ("product_id", "shop_id", "model_version", "vertical"):
        op.create_index(f"ix_served_predictions_{column}", "served_predictions", [column])

    op.create_table(
        "annotators",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(64), sa.ForeignKey("served_predictions.prediction_id"), nullable=False),
        sa.Column("shop_id", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("corrected_category_id", sa.String(128), nullable=True),
        sa.Column("corrected_category_path", sa.Text(), nullable=True),
        sa.Column("corrected_attributes", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received_at", TZ, nullable=False),
        sa.UniqueConstraint("prediction_id", "shop_id", "action", name="uq_feedback_once"),
    )
    op.create_index("ix_feedback_prediction_id", "feedback", ["prediction_id"])
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])

    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("feedback_id", sa.Integer(), sa.ForeignKey("feedback.id"), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("reasons_key", sa.String(256), nullable=False),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.Column("vertical", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("second_opinion", sa.JSON(), nullable=True),
        sa.Column("approvals_needed", sa.Integer(), nullable=False),
        sa.Column("agree_on", sa.JSON(), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    for column in ("status", "reasons_key", "sensitive", "vertical", "model_version", "created_at"):
        op.create_index(f"ix_review_items_{column}", "review_items", [column])

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("review_items.id"), nullable=False),
        sa.Column("annotator", sa.String(64), sa.ForeignKey("annotators.username"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("category_id", sa.String(128), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("decided_at", TZ, nullable=False),
    )
    op.create_index("ix_decisions_item_id", "decisions", ["item_id"])

    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(64), sa.ForeignKey("served_predictions.prediction_id"), nullable=False),
        sa.Column("annotator", sa.String(64), sa.ForeignKey("annotators.username"), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("rated_at", TZ, nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.UniqueConstraint("prediction_id", "annotator", name="uq_rating_once"),
    )
    op.create_index("ix_ratings_prediction_id", "ratings", ["prediction_id"])


def downgrade() -> None:
    for table in ("ratings", "decisions", "review_items", "feedback", "annotators", "served_predictions"):
        op.drop_table(table)
