"""Wire formats: product events in, predictions and dead letters out (pydantic v2).

These are the only shapes that cross a process boundary (files, Kafka). They are frozen so
that a record cannot change after it was validated. JSON Schemas are exported to
`docs/schemas/` by `python -m transforms.records`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_TEXT_CHARS",
    "MAX_TAGS",
    "MAX_OPTIONS",
    "MAX_OPTION_VALUES",
    "MAX_URL_CHARS",
    "MAX_IMAGES",
    "MAX_ID_CHARS",
    "MAX_TAGS_STRING_CHARS",
    "EventType",
    "VariantOption",
    "Product",
    "ProductEvent",
    "PredictedValue",
    "PredictedAttribute",
    "CategoryCandidate",
    "PredictedCategory",
    "PredictionStatus",
    "Prediction",
    "DeadLetter",
    "prediction_id",
    "content_hash",
    "SCHEMAS",
    "export_schemas",
    "WorkItem",
    "Source",
    "source_of",
    "with_source",
]

M = TypeVar("M", bound=BaseModel)

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

# Input limits. Events are untrusted (DESIGN.md "Untrusted input"): without a bound on
# every field one product can cost seconds of CPU and gigabytes of memory (1M tags took
# 27 s and 1.8 GB). The bounds are Shopify's own where it documents one, so no real
# product is refused; elsewhere they are generous multiples of what a product needs.
# The event size limit (transforms.decode.EventLimits) bounds the whole event besides.
# - 255 characters for product_type, vendor, a tag, an option name and an option value:
#   the Admin API's limits. Tags and option values: "A product can have up to 250 tags.
#   Each tag can have up to 255 characters", "each option value can be up to 255
#   characters" (https://shopify.dev/docs/api/admin-rest/2023-04/resources/product);
#   option names: https://shopify.dev/docs/api/admin-graphql/2024-04/objects/ProductOption;
#   product type and vendor: productCreate answers "Product type is too long (maximum is
#   255 characters)" and "Vendor is too long (maximum is 255 characters)".
MAX_TEXT_CHARS = 255
# - 250 tags per product: https://shopify.dev/changelog/product-tags-now-have-a-limit-of-250-per-product
MAX_TAGS = 250
# - Shopify allows 3 options per product ("maximum of 3 per product",
#   https://shopify.dev/docs/api/admin-graphql/2024-04/input-objects/ProductSetInput), but
#   the limit is also a per-shop resource limit (ShopResourceLimits.maxProductOptions) and
#   events come from other platforms' exports too, whose attribute lists are longer. 10
#   keeps those products, and one option costs at most MAX_OPTION_VALUES short strings.
MAX_OPTIONS = 10
# - 2,048 values per option: a product has up to 2,048 variants since 2025-10
#   (https://shopify.dev/changelog/the-product-variant-limit-is-now-2048-for-all-merchants)
#   and a one-option product has a value per variant, so a lower bound (250) would
#   refuse real products. 2,048 x 255 characters is 0.5 MB, inside the event limit.
MAX_OPTION_VALUES = 2048
# - 2,048 characters per image URL: Shopify's limit on URL values (url metafields,
#   https://shopify.dev/docs/apps/build/metafields/metafield-limits), and about the
#   longest URL that browsers, CDNs and proxies reliably accept.
MAX_URL_CHARS = 2048
MAX_IMAGES = 50
# - 256 characters per id: a Shopify GID ("gid://shopify/Product/<digits>") is under 50;
#   other sources' ids (UUIDs, SKUs, shop domains) fit with room to spare.
MAX_ID_CHARS = 256
# A comma-separated tags string longer than this cannot hold MAX_TAGS valid tags with ", "
# separators; refusing it before splitting keeps a 10 MB string of commas from becoming
# millions of empty strings.
MAX_TAGS_STRING_CHARS = MAX_TAGS * (MAX_TEXT_CHARS + 2)

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT_CHARS)]
NonEmptyShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_CHARS)]
ImageUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_URL_CHARS)]


def _at_most(v: Any, limit: int, what: str) -> Any:
    """Refuse an over-long list before pydantic validates (and copies) each item: with a
    million items the error would otherwise come after a million-element tuple was built."""
    if isinstance(v, (list, tuple)) and len(v) > limit:
        raise ValueError(f"at most {limit:,} {what} allowed, got {len(v):,}")
    return v


_FROZEN = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class EventType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPREDICT = "repredict"


class VariantOption(BaseModel):
    model_config = _FROZEN
    name: NonEmptyShortText
    values: tuple[ShortText, ...] = Field(default=(), max_length=MAX_OPTION_VALUES)

    @field_validator("values", mode="before")
    @classmethod
    def _bounded_values(cls, v: Any) -> Any:
        return _at_most(v, MAX_OPTION_VALUES, "values per option")


class Product(BaseModel):
    """What the merchant wrote. Everything the model sees comes from here."""

    model_config = _FROZEN
    title: NonEmpty = Field(max_length=1000)
    description_html: str = Field(default="", max_length=200_000)
    product_type: ShortText = ""
    vendor: ShortText = ""
    tags: tuple[ShortText, ...] = Field(default=(), max_length=MAX_TAGS)
    image_urls: tuple[ImageUrl, ...] = Field(default=(), max_length=MAX_IMAGES)
    variant_options: tuple[VariantOption, ...] = Field(default=(), max_length=MAX_OPTIONS)
    # Price and inventory travel with real events but never reach the model, so they are
    # excluded from the content hash (see `content_hash`).
    price: float | None = None
    inventory_quantity: int | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, v: Any) -> Any:
        # Shopify exports tags as one comma-separated string.
        if isinstance(v, str):
            if len(v) > MAX_TAGS_STRING_CHARS:
                raise ValueError(
                    f"the tags string has {len(v):,} characters; {MAX_TAGS} tags of at most "
                    f"{MAX_TEXT_CHARS} characters fit in {MAX_TAGS_STRING_CHARS:,}"
                )
            v = tuple(t.strip() for t in v.split(",") if t.strip())
        return _at_most(v, MAX_TAGS, "tags")

    @field_validator("image_urls", mode="before")
    @classmethod
    def _bounded_images(cls, v: Any) -> Any:
        return _at_most(v, MAX_IMAGES, "image URLs")

    @field_validator("variant_options", mode="before")
    @classmethod
    def _bounded_options(cls, v: Any) -> Any:
        return _at_most(v, MAX_OPTIONS, "variant options")


class ProductEvent(BaseModel):
    model_config = _FROZEN
    # Stream only: the (topic, partition, offset) of the Kafka record this came from; see
    # `with_source`. Private: not serialised, not in the schemas.
    _source: tuple[str, int, int] | None = PrivateAttr(default=None)
    event_id: Identifier
    type: EventType
    product_id: Identifier
    shop_id: Identifier
    occurred_at: datetime
    product: Product | None = None
    # Predict even when the refresh trigger would skip (new model, merchant request).
    force: bool = False
    # Set by API-driven bulk operations: the job writes one completion record per request.
    bulk_request_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    # How many events the request has (the API knows when it accepts it). A stream cannot
    # see the end of a request otherwise: it writes the record once this many have an
    # outcome (batch jobs do not need it: the end of the input ends every request).
    bulk_size: int | None = Field(default=None, ge=1)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _needs_product(self) -> ProductEvent:
        if self.type is not EventType.DELETE and self.product is None:
            raise ValueError(f"a {self.type.value} event needs a product")
        return self


class PredictedValue(BaseModel):
    model_config = _FROZEN
    id: str
    name: str


class PredictedAttribute(BaseModel):
    model_config = _FROZEN
    handle: str
    name: str
    values: tuple[PredictedValue, ...]
    corrected: bool = False
    raw: tuple[str, ...] = ()


class CategoryCandidate(BaseModel):
    """A taxonomy category the model also considered, with its score (best first)."""

    model_config = _FROZEN
    id: str
    full_name: str
    score: float = Field(ge=0.0, le=1.0)


class PredictedCategory(BaseModel):
    model_config = _FROZEN
    id: str
    full_name: str
    score: float = Field(ge=0.0, le=1.0)
    corrected: bool = False
    raw: str = ""
    # Set when the model's best leaf was not probable enough and it answered that leaf's
    # deepest ancestor that was: the depth (root = 1) of the leaf it backed off from. A
    # coarse right category is worth more to tax and search than a wrong leaf.
    backed_off_from_depth: int | None = Field(default=None, ge=1)
    # The top-k categories the model considered, corrected against the taxonomy; empty
    # when the model gives none. For review (top candidates) and for candidate prompts.
    candidates: tuple[CategoryCandidate, ...] = ()


class PredictionStatus(StrEnum):
    OK = "ok"
    # The category was repaired against the taxonomy (raw answer kept in `category.raw`).
    CORRECTED = "corrected"
    # No category could be trusted: it goes to review, never silently guessed.
    UNRESOLVED = "unresolved"


class Prediction(BaseModel):
    model_config = _FROZEN
    # Stream only: the (topic, partition, offset) of the Kafka record this came from; see
    # `with_source`. Private: not serialised, not in the schemas.
    _source: tuple[str, int, int] | None = PrivateAttr(default=None)
    product_id: str
    shop_id: str
    prediction_id: str
    content_hash: str
    model_version: str
    taxonomy_version: str
    category: PredictedCategory | None
    attributes: tuple[PredictedAttribute, ...] = ()
    simplified_description: str = Field(
        default="",
        description="Model-written text: untrusted. Markup, control and bidi characters are removed and it is capped "
        "at 2,000 characters (model_repository/contract.py), but escape it wherever it is shown.",
    )
    image_description: str = Field(
        default="",
        description="Model-written text: untrusted. Cleaned like simplified_description, capped at 1,000 characters.",
    )
    status: PredictionStatus
    # Problems that were corrected and flagged rather than dead-lettered, e.g.
    # "description contained <script>; stripped", "image 2 unreachable".
    warnings: tuple[str, ...] = ()
    event_id: str = ""
    # The API bulk operation the event belonged to (not part of prediction_id).
    bulk_request_id: str | None = None
    # When the answered event happened, i.e. which version of the product this describes:
    # a snapshot's latest prediction per product is the one of the latest event.
    occurred_at: datetime | None = None
    predicted_at: datetime


class DeadLetter(BaseModel):
    model_config = _FROZEN
    # Stream only: the (topic, partition, offset) of the Kafka record this came from; see
    # `with_source`. Private: not serialised, not in the schemas.
    _source: tuple[str, int, int] | None = PrivateAttr(default=None)
    stage: str
    error_type: str
    message: str
    # The original bytes as text (invalid UTF-8 is escaped with backslashreplace), so the
    # record can be replayed after a fix.
    original_payload: str = Field(
        description="The original record as text, for replay. Untrusted merchant data. A record refused for its "
        "size carries only its head, and any payload over 4 MiB is cut, marked with how much was cut.",
    )
    attempt: int = 1
    time: datetime
    product_id: str | None = None
    event_id: str | None = None


def prediction_id(product_id: str, content_hash: str, model_version: str, taxonomy_version: str) -> str:
    """Deterministic id: a replay of the same input gives the same record (idempotent out)."""
    key = "\x1f".join((product_id, content_hash, model_version, taxonomy_version))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def content_hash(product: Product) -> str:
    """Hash of what the model sees: not price, inventory or timestamps."""
    seen = {
        "title": " ".join(product.title.casefold().split()),
        "description": " ".join(product.description_html.split()),
        "product_type": product.product_type.casefold().strip(),
        "vendor": product.vendor.casefold().strip(),
        "tags": sorted(t.casefold() for t in product.tags),
        "images": list(product.image_urls),
        "options": sorted((o.name.casefold(), sorted(o.values)) for o in product.variant_options),
    }
    return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()[:32]


SCHEMAS: dict[str, type[BaseModel]] = {
    "product_event": ProductEvent,
    "prediction": Prediction,
    "dead_letter": DeadLetter,
}


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in export_schemas(Path(__file__).resolve().parent.parent / "docs" / "schemas"):
        print(p)


@dataclass(frozen=True)
class WorkItem:
    """A product on its way through the steps (in-pipeline only, never on the wire).

    Each stage returns a copy with its part filled in (`dataclasses.replace`), so a stage
    can never change what an earlier stage decided.
    """

    event: ProductEvent
    content_hash: str
    description_text: str = ""
    warnings: tuple[str, ...] = ()
    image: bytes | None = None
    simplified_description: str = ""
    image_description: str = ""
    raw_category: str = ""
    confidence: float = 0.0
    # From the classify answer (raw, uncorrected): (path, score) best first, and the depth
    # of the leaf the model backed off from, if it did.
    raw_candidates: tuple[tuple[str, float], ...] = ()
    backed_off_from_depth: int | None = None
    # Candidate mode: the retriever's top-k put into the classify request.
    retrieved_candidates: tuple[tuple[str, str, float], ...] = ()
    category: PredictedCategory | None = None
    raw_attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    attributes: tuple[PredictedAttribute, ...] = ()
    # The event time (s since the epoch) the item entered the pipeline with, when it had
    # one. Batching stamps a batch with the end of its window; the model steps re-stamp
    # each result with this, so event-time logic after them (bulk deadlines) stays true.
    event_time: float | None = None

    @property
    def product(self) -> Product:
        assert self.event.product is not None  # only create/update/repredict become work
        return self.event.product


# Where a record came from on a stream: (topic, partition, offset) of its Kafka record.
Source = tuple[str, int, int]


def source_of(element: Any) -> Source | None:
    """The Kafka position an in-pipeline value carries (a ProductEvent, Prediction or
    DeadLetter's private `_source`, a WorkItem's event's, a freshness Skip's `source`), else
    None. The stream's sink-side offset committer (transforms/io/kafka_commit.py) counts a
    record done when an acknowledged output carries its position."""
    if isinstance(element, WorkItem):
        element = element.event
    if isinstance(element, BaseModel):
        private = element.__pydantic_private__ or {}
        return private.get("_source")
    return getattr(element, "source", None)


def with_source(model: M, source: Source | None) -> M:
    """`model` (a ProductEvent, Prediction or DeadLetter just made) stamped with `source`,
    in place (a private attribute; frozen fields are untouched). Stamps None too: a copy
    made for another record must not keep the original's position."""
    model._source = source  # type: ignore[attr-defined]
    return model
