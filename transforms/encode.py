"""WorkItem -> Prediction, stamped with the model and taxonomy versions it came from
(`transforms.core.encode`, Beam-free), and the Kafka records of the outputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from transforms.core.encode import STAGE, encode_prediction
from transforms.dead_letters import BeamMetrics, guard_stage, member_dead_letters, tagged
from transforms.io.kafka import OutgoingRecord
from transforms.model.client import ModelMetadata
from transforms.records import DeadLetter, Prediction, ProductEvent, WorkItem

__all__ = ["EncodePrediction", "dead_letter_record", "prediction_record", "tombstone_record"]


class EncodePrediction(beam.DoFn):
    """WorkItem -> Prediction (status ok / corrected / unresolved) with its
    `prediction_id`; counted under `productlens/` by the core."""

    def __init__(self, model: ModelMetadata) -> None:
        self.model = model
        self.metrics = BeamMetrics()

    @guard_stage(STAGE)
    def process(self, item: WorkItem) -> Iterator[Any]:
        result = encode_prediction(item, self.model, self.metrics)
        if isinstance(result, DeadLetter):
            letter = tagged(result)
            yield letter
            yield from member_dead_letters(letter, item)
        else:
            yield result


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
    return OutgoingRecord(
        topic=topic, key=event.product_id.encode(), value=None, headers=(("event_id", event.event_id.encode()),)
    )


def dead_letter_record(letter: DeadLetter, topic: str) -> OutgoingRecord:
    key = (letter.product_id or letter.event_id or "").encode()
    return OutgoingRecord(
        topic=topic,
        key=key,
        value=letter.model_dump_json().encode(),
        headers=(("stage", letter.stage.encode()), ("error_type", letter.error_type.encode())),
    )
