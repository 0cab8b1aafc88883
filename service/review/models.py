"""The review store's tables (SQLAlchemy 2.0 ORM). The schema is created and changed only by
the Alembic migrations in `service/review/migrations/`; these classes must match them
(tests/unit/test_review_store.py compares them with the migrated schema).

| table | one row per |
|---|---|
| `served_predictions` | prediction a merchant gave feedback on: the prediction and the product as served |
| `feedback` | merchant action (accept, correct, delete) on a prediction; unique per (prediction, shop, action) |
| `review_items` | feedback the vetting policy routed (or auto-vetted): its state and why it was routed |
| `decisions` | annotator decision on an item (approve, reject, skip): the audit trail, append-only |
| `annotators` | account of a person who reviews (role annotator or admin) |
| `ratings` | blind rating of a recent prediction by an annotator (continuous human evaluation) |
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Annotator", "Base", "Decision", "Feedback", "Rating", "ReviewItem", "ServedPrediction"]


class Base(DeclarativeBase):
    pass


class ServedPrediction(Base):
    __tablename__ = "served_predictions"

    prediction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(256), index=True)
    shop_id: Mapped[str] = mapped_column(String(256), index=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    taxonomy_version: Mapped[str] = mapped_column(String(32))
    category_id: Mapped[str | None] = mapped_column(String(128))
    vertical: Mapped[str | None] = mapped_column(String(128), index=True)
    prediction: Mapped[dict] = mapped_column(JSON)  # the Prediction as served
    product: Mapped[dict] = mapped_column(JSON)  # the Product as the merchant sent it
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("prediction_id", "shop_id", "action", name="uq_feedback_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("served_predictions.prediction_id"), index=True)
    shop_id: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(16))  # accept | correct | delete
    corrected_category_id: Mapped[str | None] = mapped_column(String(128))
    # The corrected category's full path when it was validated (for display and export).
    corrected_category_path: Mapped[str | None] = mapped_column(Text)
    corrected_attributes: Mapped[dict | None] = mapped_column(JSON)  # {handle: [value ids]}
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    served: Mapped[ServedPrediction] = relationship()
    item: Mapped[ReviewItem | None] = relationship(back_populates="feedback", uselist=False)


class ReviewItem(Base):
    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), unique=True)
    # pending (waits for people) | approved | rejected | auto_vetted | not_sampled
    status: Mapped[str] = mapped_column(String(16), index=True)
    # Why it was routed: sensitive | correction | disagreement | audit_sample | subjective | delete
    reasons: Mapped[list] = mapped_column(JSON)
    # The reasons as ",a,b," so the queue can filter by one with LIKE on any database.
    reasons_key: Mapped[str] = mapped_column(String(256), default=",", index=True)
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    vertical: Mapped[str | None] = mapped_column(String(128), index=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    # The model's opinion of the merchant's choice: {"merchant_score", "model_category_id", "agrees"}
    second_opinion: Mapped[dict | None] = mapped_column(JSON)
    # Annotator approvals needed before the label is vetted (k of n for subjective attributes).
    approvals_needed: Mapped[int] = mapped_column(Integer, default=1)
    # Attribute handles (subjective ones) whose values the approving annotators must agree on.
    agree_on: Mapped[list] = mapped_column(JSON, default=list)
    # The proposed label, then the vetted one once approved:
    # {"category_id", "category_path", "attributes": {handle: [value ids]}}
    label: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    feedback: Mapped[Feedback] = relationship(back_populates="item")
    decisions: Mapped[list[Decision]] = relationship(back_populates="item", order_by="Decision.id")


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    annotator: Mapped[str] = mapped_column(ForeignKey("annotators.username"))
    action: Mapped[str] = mapped_column(String(16))  # approve | reject | skip
    category_id: Mapped[str | None] = mapped_column(String(128))
    attributes: Mapped[dict | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    item: Mapped[ReviewItem] = relationship(back_populates="decisions")


class Annotator(Base):
    __tablename__ = "annotators"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # annotator | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("prediction_id", "annotator", name="uq_rating_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("served_predictions.prediction_id"), index=True)
    annotator: Mapped[str] = mapped_column(ForeignKey("annotators.username"))
    # correct | partly | wrong: the category (and its attributes) of a blind sample
    verdict: Mapped[str] = mapped_column(String(16))
    rated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Unused by the verdict but kept for the dashboard's slices.
    score: Mapped[float | None] = mapped_column(Float)
