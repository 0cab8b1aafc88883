"""The outputs of the two-step flow to Kafka topics."""

from __future__ import annotations

import apache_beam as beam

from transforms.encode import dead_letter_record, prediction_record, tombstone_record
from transforms.io.kafka import KafkaConfig, WriteToKafka
from transforms.predict import DEAD_LETTER_PART

__all__ = [
    "WritePredictionsToKafka",
]


class WritePredictionsToKafka(beam.PTransform):
    """Predictions, tombstones and dead letters of PredictProducts to their topics.

    Each output (and each stage's dead letters) gets its own WriteToKafka, with no Flatten
    in between: on Prism a Flatten is a runner-side transform and breaks the fused stage,
    and then a source bundle is finalised (its offsets committed) before its records are
    written, so a crash loses them. Fused, a bundle's offsets are committed only after
    every WriteToKafka of it flushed (tests/integration/test_stream.py, kill -9).
    """

    def __init__(self, kafka: KafkaConfig, predictions_topic: str, dlq_topic: str) -> None:
        super().__init__()
        self.kafka, self.predictions_topic, self.dlq_topic = kafka, predictions_topic, dlq_topic

    def expand(self, outputs: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:  # type: ignore[override]
        parts = {k[len(DEAD_LETTER_PART) :]: v for k, v in outputs.items() if k.startswith(DEAD_LETTER_PART)}
        if not parts:
            parts = {"all": outputs["dead_letters"]}
        writes = {
            "predictions": outputs["predictions"]
            | "PredictionRecords" >> beam.Map(prediction_record, self.predictions_topic)
            | "WritePredictions" >> beam.ParDo(WriteToKafka(self.kafka)),
            "tombstones": outputs["deletes"]
            | "Tombstones" >> beam.Map(tombstone_record, self.predictions_topic)
            | "WriteTombstones" >> beam.ParDo(WriteToKafka(self.kafka)),
        }
        for stage, letters in parts.items():
            writes[f"dead_letters_{stage}"] = (
                letters
                | f"DeadLetterRecords[{stage}]" >> beam.Map(dead_letter_record, self.dlq_topic)
                | f"WriteDeadLetters[{stage}]" >> beam.ParDo(WriteToKafka(self.kafka))
            )
        return writes
