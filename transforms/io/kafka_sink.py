"""The outputs of the two-step flow to Kafka topics."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from transforms.encode import dead_letter_record, prediction_record, tombstone_record
from transforms.io.kafka import KafkaConfig, WriteToKafka
from transforms.io.kafka_commit import PREDICT, SignalDone
from transforms.predict import DEAD_LETTER_PART
from transforms.records import source_of

__all__ = [
    "WritePredictionsToKafka",
]


def _tracked(record: Any, element: Any) -> tuple[tuple[Any, ...], Any]:
    return (source_of(element),), record


class WritePredictionsToKafka(beam.PTransform):
    """Predictions, tombstones and dead letters of PredictProducts to their topics.

    Untracked (`track=False`): each output (and each stage's dead letters) gets its own
    WriteToKafka, with no Flatten in between: on Prism a Flatten is a runner-side transform
    and breaks the fused stage, and then a source bundle is finalised (its offsets
    committed) before its records are written, so a crash loses them. Fused, a bundle's
    offsets are committed only after every WriteToKafka of it flushed.

    Tracked (`track=True`, the stream's sink-side commit, transforms/io/kafka_commit.py):
    every write carries the Kafka position of the record it completes and emits DoneSignals
    once acknowledged; counted skips are done when emitted. Returns the done signals
    (a list of PCollections) for `CommitOffsets`; fusion no longer matters.
    """

    def __init__(self, kafka: KafkaConfig, predictions_topic: str, dlq_topic: str, track: bool = False) -> None:
        super().__init__()
        self.kafka, self.predictions_topic, self.dlq_topic = kafka, predictions_topic, dlq_topic
        self.track = track

    def expand(self, outputs: dict[str, beam.PCollection]) -> Any:  # type: ignore[override]
        if self.track:
            return self._tracked(outputs)
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

    def _tracked(self, outputs: dict[str, beam.PCollection]) -> list[beam.PCollection]:
        p, dlq = self.predictions_topic, self.dlq_topic
        return [
            outputs["predictions"]
            | "PredictionRecords" >> beam.Map(lambda x: _tracked(prediction_record(x, p), x))
            | "WritePredictions" >> beam.ParDo(WriteToKafka(self.kafka, track=PREDICT)),
            outputs["deletes"]
            | "Tombstones" >> beam.Map(lambda x: _tracked(tombstone_record(x, p), x))
            | "WriteTombstones" >> beam.ParDo(WriteToKafka(self.kafka, track=PREDICT)),
            outputs["dead_letters"]
            | "DeadLetterRecords" >> beam.Map(lambda x: _tracked(dead_letter_record(x, dlq), x))
            | "WriteDeadLetters" >> beam.ParDo(WriteToKafka(self.kafka, track=PREDICT)),
            outputs["skipped"] | "SkipsDone" >> beam.ParDo(SignalDone(PREDICT)),
        ]
