"""WorkItem -> Prediction, Beam-free, stamped with the model and taxonomy versions it came
from and its deterministic `prediction_id` (a replay gives the same record)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from transforms.core.dead_letters import guarded
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.model.client import ModelMetadata
from transforms.records import DeadLetter, Prediction, PredictionStatus, WorkItem, prediction_id, source_of, with_source

__all__ = ["STAGE", "encode_prediction", "utc_now"]

STAGE = "encode"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _encode(item: WorkItem, model: ModelMetadata, metrics: MetricsSink, now: Callable[[], datetime]) -> Prediction:
    if item.category is None:
        status = PredictionStatus.UNRESOLVED
    elif item.category.corrected:
        status = PredictionStatus.CORRECTED
    else:
        status = PredictionStatus.OK
    event = item.event
    prediction = Prediction(
        product_id=event.product_id,
        shop_id=event.shop_id,
        prediction_id=prediction_id(event.product_id, item.content_hash, model.model_version, model.taxonomy_version),
        content_hash=item.content_hash,
        model_version=model.model_version,
        taxonomy_version=model.taxonomy_version,
        category=item.category,
        attributes=item.attributes,
        simplified_description=item.simplified_description,
        image_description=item.image_description,
        status=status,
        warnings=item.warnings,
        event_id=event.event_id,
        bulk_request_id=event.bulk_request_id,
        occurred_at=event.occurred_at,
        predicted_at=now(),
    )
    with_source(prediction, source_of(event))  # a stream's Kafka position, for the offset commit
    # Counted once the record is built: a product that fails here is a dead letter only.
    if status is PredictionStatus.UNRESOLVED:
        metrics.inc("productlens", "unresolved")
    elif status is PredictionStatus.CORRECTED:
        metrics.inc("productlens", "corrected")
    metrics.inc("productlens", "predicted")
    if item.warnings:
        metrics.inc("productlens", "predictions_with_warnings")
    return prediction


def encode_prediction(
    item: WorkItem, model: ModelMetadata, metrics: MetricsSink = NO_METRICS, now: Callable[[], datetime] = utc_now
) -> Prediction | DeadLetter:
    """The product's Prediction (status ok / corrected / unresolved) for the model that
    answered. Counts `productlens/predicted`, `corrected`, `unresolved`,
    `predictions_with_warnings`."""
    return guarded(STAGE, metrics, _encode, item, model, metrics, now)
