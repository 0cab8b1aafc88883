"""Merchant feedback on a served prediction: the API body, its validation against the
taxonomy, and the one function the service calls to store and route it.

Feedback is untrusted input (DESIGN.md "Untrusted input"): every field is bounded, the
category and every attribute handle and value must exist in the taxonomy (and the
handles must belong to the corrected category), and a refusal names the field and the
unknown value so a merchant can act on it (the service answers 422). Values are stored
as taxonomy value ids, so a label survives renames of a value's display name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from service.review.policy import VettingPolicy
    from service.review.second_opinion import Opinion, SecondOpinion
    from service.review.store import FeedbackResult, ReviewStore
    from taxonomy.model import Taxonomy

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_REASON_CHARS",
    "MAX_VALUES_PER_ATTRIBUTE",
    "FeedbackAction",
    "FeedbackError",
    "FeedbackIn",
    "ServedRecord",
    "normalise_category_id",
    "process_feedback",
    "validate_feedback",
]

FeedbackAction = Literal["accept", "correct", "delete"]
MAX_REASON_CHARS = 2000
MAX_ATTRIBUTES = 100
MAX_VALUES_PER_ATTRIBUTE = 50
GID_PREFIX = "gid://shopify/TaxonomyCategory/"
_SHORT_ID = re.compile(r"^[a-z]{2}(-\d+)*$")


class FeedbackError(ValueError):
    """Feedback that does not fit the taxonomy: `field` is where (e.g. `category_id`,
    `attributes.color`), `message` what is wrong, naming the unknown value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class FeedbackIn(BaseModel):
    """`POST /v1/feedback` body. `category_id` is required for `correct` and refused for
    the other actions; `attributes` (`{handle: [value names or ids]}`) only for `correct`."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    prediction_id: str = Field(min_length=1, max_length=64)
    shop_id: str = Field(min_length=1, max_length=256)
    action: FeedbackAction
    category_id: str | None = Field(default=None, min_length=1, max_length=128)
    attributes: dict[str, list[str]] | None = None
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)

    @field_validator("attributes")
    @classmethod
    def _bounded(cls, v: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if v is None:
            return v
        if len(v) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes allowed, got {len(v)}")
        for handle, values in v.items():
            if not handle or len(handle) > 128:
                raise ValueError(f"attribute handle {handle[:40]!r} must have 1 to 128 characters")
            if len(values) > MAX_VALUES_PER_ATTRIBUTE:
                raise ValueError(f"attributes[{handle!r}]: at most {MAX_VALUES_PER_ATTRIBUTE} values allowed")
            if any(not isinstance(x, str) or not x.strip() or len(x) > 255 for x in values):
                raise ValueError(f"attributes[{handle!r}]: values must be non-empty strings of at most 255 characters")
        return v

    @model_validator(mode="after")
    def _fits_action(self) -> FeedbackIn:
        if self.action == "correct" and not self.category_id:
            raise ValueError("a correction needs category_id")
        if self.action != "correct" and self.category_id is not None:
            raise ValueError(f"category_id is only for a correction, not for {self.action}")
        if self.action != "correct" and self.attributes:
            raise ValueError(f"attributes are only for a correction, not for {self.action}")
        return self


def normalise_category_id(category_id: str) -> str:
    """`aa-1-4` -> `gid://shopify/TaxonomyCategory/aa-1-4`; a full GID is kept."""
    text = category_id.strip()
    if _SHORT_ID.match(text):
        return GID_PREFIX + text
    return text


def validate_feedback(feedback: FeedbackIn, taxonomy: Taxonomy) -> FeedbackIn:
    """The feedback with its category as a full GID and its attribute values as value ids;
    `FeedbackError` naming the first unknown category, handle or value."""
    if feedback.action != "correct":
        return feedback
    assert feedback.category_id is not None  # the model validator requires it
    gid = normalise_category_id(feedback.category_id)
    category = taxonomy.get(gid)
    if category is None:
        raise FeedbackError("category_id", f"unknown category {feedback.category_id!r} in taxonomy {taxonomy.version}")
    attributes: dict[str, list[str]] | None = None
    if feedback.attributes:
        attributes = {}
        allowed = set(category.attribute_handles)
        for handle, values in feedback.attributes.items():
            attribute = taxonomy.attributes.get(handle)
            if attribute is None:
                raise FeedbackError(f"attributes.{handle}", f"unknown attribute handle {handle!r}")
            if handle not in allowed:
                raise FeedbackError(
                    f"attributes.{handle}", f"attribute {handle!r} does not belong to category {category.full_name!r}"
                )
            by_id = {v.id: v for v in attribute.values}
            by_name = {v.name.casefold(): v for v in attribute.values}
            by_handle = {v.handle.casefold(): v for v in attribute.values}
            # Metaobject handles as Shopify exports them: "navy-blazer" for "color__navy-blazer".
            by_handle.update({h.split("__", 1)[1]: v for h, v in list(by_handle.items()) if "__" in h})
            ids: list[str] = []
            for raw in values:
                key = raw.strip()
                value = by_id.get(key) or by_name.get(key.casefold()) or by_handle.get(key.casefold())
                if value is None:
                    raise FeedbackError(
                        f"attributes.{handle}", f"unknown value {raw!r} for attribute {handle!r} ({attribute.name})"
                    )
                if value.id not in ids:
                    ids.append(value.id)
            attributes[handle] = ids
    return feedback.model_copy(update={"category_id": category.id, "attributes": attributes})


@dataclass(frozen=True)
class ServedRecord:
    """A prediction as the service served it: `prediction` is `Prediction.model_dump(mode="json")`,
    `product` the `Product` as the merchant sent it (`model_dump(mode="json")`)."""

    prediction: Mapping[str, Any]
    product: Mapping[str, Any]
    served_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def prediction_id(self) -> str:
        return str(self.prediction["prediction_id"])

    @property
    def product_id(self) -> str:
        return str(self.prediction.get("product_id", ""))

    @property
    def shop_id(self) -> str:
        return str(self.prediction.get("shop_id", ""))

    @property
    def model_version(self) -> str:
        return str(self.prediction.get("model_version", ""))

    @property
    def taxonomy_version(self) -> str:
        return str(self.prediction.get("taxonomy_version", ""))

    @property
    def category(self) -> Mapping[str, Any] | None:
        return self.prediction.get("category") or None

    @property
    def category_id(self) -> str | None:
        c = self.category
        return str(c["id"]) if c and c.get("id") else None

    @property
    def category_path(self) -> str | None:
        c = self.category
        return str(c["full_name"]) if c and c.get("full_name") else None

    @property
    def vertical(self) -> str | None:
        """The root category's name (the first part of the predicted path)."""
        path = self.category_path
        return path.split(" > ")[0] if path else None

    @property
    def attributes(self) -> dict[str, list[str]]:
        """The predicted attributes as `{handle: [value ids]}`."""
        out: dict[str, list[str]] = {}
        for a in self.prediction.get("attributes") or ():
            out[str(a["handle"])] = [str(v["id"]) for v in a.get("values") or ()]
        return out


def process_feedback(
    store: ReviewStore,
    policy: VettingPolicy,
    opinion: SecondOpinion | None,
    taxonomy: Taxonomy,
    served: ServedRecord,
    feedback: FeedbackIn,
    now: datetime | None = None,
) -> FeedbackResult:
    """Validate, take a second opinion on a correction, route by the policy, store (one
    transaction, idempotent per prediction, shop and action). `FeedbackError` for feedback
    the taxonomy refuses or from a shop the prediction was not served to; a replay returns
    the stored result with `created=False` (no second model call)."""
    from service.review.policy import route

    now = now or datetime.now(UTC)
    if feedback.prediction_id != served.prediction_id:
        raise FeedbackError("prediction_id", f"feedback on {feedback.prediction_id!r} given with another prediction")
    if served.shop_id and feedback.shop_id != served.shop_id:
        # A shop gives feedback on what was served to it, never on another shop's products.
        raise FeedbackError(
            "shop_id", f"prediction {feedback.prediction_id!r} was not served to shop {feedback.shop_id!r}"
        )
    feedback = validate_feedback(feedback, taxonomy)
    existing = store.feedback_result(feedback.prediction_id, feedback.shop_id, feedback.action)
    if existing is not None:  # a replay: no second model call, the stored routing stands
        return existing
    second: Opinion | None = None
    if feedback.action == "correct" and opinion is not None:
        assert feedback.category_id is not None
        second = opinion.judge(dict(served.product), feedback.category_id, dict(served.prediction))
    accepts = store.accept_count(served.model_version) if feedback.action == "accept" else 0
    routing = route(policy, served, feedback, second, taxonomy=taxonomy, accepts_seen=accepts)
    return store.record_feedback(served, feedback, routing, now)
