"""Wire formats: product events in, predictions and dead letters out (pydantic v2).

These are the only shapes that cross a process boundary (files, Kafka). They are frozen so
that a record cannot change after it was validated. JSON Schemas are exported to
`docs/schemas/` by `python -m transforms.records`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

_FROZEN = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class EventType(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPREDICT = "repredict"


class VariantOption(BaseModel):
    model_config = _FROZEN
    name: NonEmpty
    values: tuple[str, ...] = ()


class Product(BaseModel):
    """What the merchant wrote. Everything the model sees comes from here."""

    model_config = _FROZEN
    title: NonEmpty = Field(max_length=1000)
    description_html: str = Field(default="", max_length=200_000)
    product_type: str = ""
    vendor: str = ""
    tags: tuple[str, ...] = ()
    image_urls: tuple[str, ...] = Field(default=(), max_length=50)
    variant_options: tuple[VariantOption, ...] = ()
    # Price and inventory travel with real events but never reach the model, so they are
    # excluded from the content hash (see `content_hash`).
    price: float | None = None
    inventory_quantity: int | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, v: Any) -> Any:
        # Shopify exports tags as one comma-separated string.
        if isinstance(v, str):
            return tuple(t.strip() for t in v.split(",") if t.strip())
        return v


class ProductEvent(BaseModel):
    model_config = _FROZEN
    event_id: NonEmpty
    type: EventType
    product_id: NonEmpty
    shop_id: NonEmpty
    occurred_at: datetime
    product: Product | None = None
    # Predict even when the refresh trigger would skip (new model, merchant request).
    force: bool = False
    # Set by API-driven bulk operations: the job writes one completion record per request.
    bulk_request_id: str | None = None
    # How many events the request has (the API knows when it accepts it). A stream cannot
    # see the end of a request otherwise: it writes the record once this many have an
    # outcome (batch jobs do not need it: the end of the input ends every request).
    bulk_size: int | None = Field(default=None, ge=1)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)

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


class PredictedCategory(BaseModel):
    model_config = _FROZEN
    id: str
    full_name: str
    score: float = Field(ge=0.0, le=1.0)
    corrected: bool = False
    raw: str = ""


class PredictionStatus(StrEnum):
    OK = "ok"
    # The category was repaired against the taxonomy (raw answer kept in `category.raw`).
    CORRECTED = "corrected"
    # No category could be trusted: it goes to review, never silently guessed.
    UNRESOLVED = "unresolved"


class Prediction(BaseModel):
    model_config = _FROZEN
    product_id: str
    shop_id: str
    prediction_id: str
    content_hash: str
    model_version: str
    taxonomy_version: str
    category: PredictedCategory | None
    attributes: tuple[PredictedAttribute, ...] = ()
    simplified_description: str = ""
    image_description: str = ""
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
    stage: str
    error_type: str
    message: str
    # The original bytes as text (invalid UTF-8 is escaped with backslashreplace), so the
    # record can be replayed after a fix.
    original_payload: str
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
