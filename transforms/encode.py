"""WorkItem -> Prediction, stamped with the model and taxonomy versions it came from."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.model_client import ModelMetadata
from transforms.records import Prediction, PredictionStatus, WorkItem, prediction_id


class EncodePrediction(beam.DoFn):
    def __init__(self, model: ModelMetadata) -> None:
        self.model = model
        self.predicted = Metrics.counter("productlens", "predicted")
        self.corrected = Metrics.counter("productlens", "corrected")
        self.unresolved = Metrics.counter("productlens", "unresolved")
        self.flagged = Metrics.counter("productlens", "predictions_with_warnings")

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
            predicted_at=datetime.now(timezone.utc),
        )
