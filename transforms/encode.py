"""WorkItem -> Prediction, stamped with the model and taxonomy versions it came from."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.dead_letters import guard_stage
from transforms.io.kafka import OutgoingRecord
from transforms.model.client import ModelMetadata
from transforms.records import (
    DeadLetter,
    Prediction,
    PredictionStatus,
    ProductEvent,
    WorkItem,
    prediction_id,
)


class EncodePrediction(beam.DoFn):
    def __init__(self, model: ModelMetadata) -> None:
        self.model = model
        self.predicted = Metrics.counter("productlens", "predicted")
        self.corrected = Metrics.counter("productlens", "corrected")
        self.unresolved = Metrics.counter("productlens", "unresolved")
        self.flagged = Metrics.counter("productlens", "predictions_with_warnings")

    @guard_stage("encode")
    def process(self, item: WorkItem) -> Iterator[Prediction]:
        if item.category is None:
            status = PredictionStatus.UNRESOLVED
            self.unresolved.inc()
        elif item.category.corrected:
            status = PredictionStatus.CORRECTED
            self.corrected.inc()
        else:
            status = PredictionStatus.OK
        self.predicted.inc()
        if item.warnings:
            self.flagged.inc()
        event = item.event
        yield Prediction(
            product_id=event.product_id,
            shop_id=event.shop_id,
            prediction_id=prediction_id(
                event.product_id, item.content_hash, self.model.model_version, self.model.taxonomy_version
            ),
            content_hash=item.content_hash,
            model_version=self.model.model_version,
            taxonomy_version=self.model.taxonomy_version,
            category=item.category,
            attributes=item.attributes,
            simplified_description=item.simplified_description,
            image_description=item.image_description,
            status=status,
            warnings=item.warnings,
            event_id=event.event_id,
            bulk_request_id=event.bulk_request_id,
            occurred_at=event.occurred_at,
            predicted_at=datetime.now(timezone.utc),
        )


def prediction_record(prediction: Prediction, topic: str) -> OutgoingRecord:
    """Keyed by product id on the compacted predictions topic: the latest prediction per
    product survives compaction, and a replay writes an identical record."""
    return OutgoingRecord(
        topic=topic,
        key=prediction.product_id.encode(),
        value=prediction.model_dump_json().encode(),
        headers=(
            ("prediction_id", prediction.prediction_id.encode()),
            ("model_version", prediction.model_version.encode()),
            ("taxonomy_version", prediction.taxonomy_version.encode()),
        ),
    )


def tombstone_record(event: ProductEvent, topic: str) -> OutgoingRecord:
    """A delete: null value under the product's key, so compaction removes the product."""
    return OutgoingRecord(topic=topic, key=event.product_id.encode(), value=None, headers=(("event_id", event.event_id.encode()),))


def dead_letter_record(letter: DeadLetter, topic: str) -> OutgoingRecord:
    key = (letter.product_id or letter.event_id or "").encode()
    return OutgoingRecord(
        topic=topic,
        key=key,
        value=letter.model_dump_json().encode(),
        headers=(("stage", letter.stage.encode()), ("error_type", letter.error_type.encode())),
    )
