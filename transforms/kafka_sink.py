"""The outputs of the two-step flow to Kafka topics, through one producer."""

from __future__ import annotations

import apache_beam as beam

from transforms.encode import dead_letter_record, prediction_record, tombstone_record
from transforms.kafka_io import KafkaConfig, WriteToKafka


class WritePredictionsToKafka(beam.PTransform):
    """The three outputs of PredictProducts to their topics, through one producer."""

    def __init__(self, kafka: KafkaConfig, predictions_topic: str, dlq_topic: str) -> None:
        super().__init__()
        self.kafka, self.predictions_topic, self.dlq_topic = kafka, predictions_topic, dlq_topic

    def expand(self, outputs: dict[str, beam.PCollection]) -> beam.PCollection:  # type: ignore[override]
        records = (
            outputs["predictions"] | "PredictionRecords" >> beam.Map(prediction_record, self.predictions_topic),
            outputs["deletes"] | "Tombstones" >> beam.Map(tombstone_record, self.predictions_topic),
            outputs["dead_letters"] | "DeadLetterRecords" >> beam.Map(dead_letter_record, self.dlq_topic),
        ) | "AllRecords" >> beam.Flatten()
        return records | "WriteToKafka" >> beam.ParDo(WriteToKafka(self.kafka))
