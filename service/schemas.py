"""Request and response bodies of `/v1/predictions`.

The product is `transforms.records.Product`, the `product` of a ProductEvent, so the API
takes exactly what the pipelines take and OpenAPI documents it from the same model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from transforms.records import MAX_ID_CHARS, Prediction, Product

__all__ = ["PredictionRequest", "PredictionResponse", "ProductError", "ProductInput"]

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProductInput(BaseModel):
    """One product of a batch request."""

    model_config = _STRICT
    product_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    product: Product
    # Optional, as in a ProductEvent: they do not change the prediction or its id.
    event_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    occurred_at: datetime | None = None


class PredictionRequest(BaseModel):
    """One product (`product_id` + `product`) or a small batch (`products`), for one shop."""

    model_config = _STRICT
    shop_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    product_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    product: Product | None = None
    event_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_CHARS)
    occurred_at: datetime | None = None
    # The bound is the server's --max-products (checked by the app, which knows it); this
    # one only stops a huge list before pydantic builds it.
    products: list[ProductInput] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        single = self.product_id is not None or self.product is not None
        if single and self.products is not None:
            raise ValueError("give either product_id + product (one product) or products (a batch), not both")
        if self.products is None and (self.product_id is None or self.product is None):
            raise ValueError("give product_id and product (one product), or products (a batch)")
        return self

    def items(self) -> list[ProductInput]:
        if self.products is not None:
            return self.products
        assert self.product_id is not None and self.product is not None  # _one_shape
        return [
            ProductInput(
                product_id=self.product_id, product=self.product, event_id=self.event_id, occurred_at=self.occurred_at
            )
        ]


class ProductError(BaseModel):
    """Why a product has no prediction, or what went wrong beside it (its images)."""

    product_id: str
    stage: str
    error_type: str
    message: str


class PredictionResponse(BaseModel):
    predictions: list[Prediction] = Field(description="one per product that got a prediction, in request order")
    errors: list[ProductError] = Field(
        default_factory=list,
        description="problems by product: a product without a prediction has one here; a failed image beside a "
        "text-only prediction also shows here (stage prepare_images)",
    )
    cache_hits: int = Field(0, description="predictions served from the cache, without a model call")
    model_version: str
    taxonomy_version: str
