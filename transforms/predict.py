"""The whole two-step flow as one composite transform, shared by every pipeline.

raw events -> decode -> prepare images -> classify -> correct category -> extract
-> validate attributes -> encode; every stage's failures flow to one dead-letter output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam

from transforms.correction import UNRESOLVED, CorrectCategory, ValidateAttributes
from transforms.dead_letters import DEAD_LETTER
from transforms.decode import DELETED, DecodeEvents
from transforms.encode import EncodePrediction
from transforms.images import ImageConfig, PrepareImages
from transforms.model_client import ModelClientFactory, ModelMetadata
from transforms.steps import BatchConfig, ClassifyStep, ExtractStep


@dataclass(frozen=True)
class PredictConfig:
    model: ModelClientFactory
    metadata: ModelMetadata
    taxonomy_path: str | None = None  # None = the bundled sample taxonomy
    images: ImageConfig = field(default_factory=ImageConfig)
    batching: BatchConfig = field(default_factory=BatchConfig)
    image_base_dir: str | None = None  # relative image paths resolve against this
    # Batches each model step keeps on the wire at once, so the server queue never
    # drains while the pipeline prepares the next batch.
    max_in_flight: int = 4

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")


class PredictProducts(beam.PTransform):
    """PCollection[bytes | dict] of product events -> {"predictions": Prediction,
    "dead_letters": DeadLetter, "deletes": ProductEvent}."""

    def __init__(self, config: PredictConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, events: beam.PCollection) -> dict[str, beam.PCollection]:  # type: ignore[override]
        c = self.config
        decoded = events | "Decode" >> beam.ParDo(DecodeEvents()).with_outputs(DEAD_LETTER, DELETED, main="items")
        prepared = decoded.items | "PrepareImages" >> beam.ParDo(
            PrepareImages(c.images, c.image_base_dir)
        ).with_outputs(DEAD_LETTER, main="items")
        classified = (
            prepared.items
            | "BatchClassify" >> c.batching.transform()
            | "Classify" >> beam.ParDo(ClassifyStep(c.model, c.max_in_flight)).with_outputs(DEAD_LETTER, main="items")
        )
        corrected = classified.items | "CorrectCategory" >> beam.ParDo(
            CorrectCategory(c.taxonomy_path)
        ).with_outputs(UNRESOLVED, main="items")
        extracted = (
            corrected.items
            | "BatchExtract" >> c.batching.transform()
            | "Extract" >> beam.ParDo(ExtractStep(c.model, c.taxonomy_path, c.max_in_flight)).with_outputs(DEAD_LETTER, main="items")
        )
        validated = extracted.items | "ValidateAttributes" >> beam.ParDo(ValidateAttributes(c.taxonomy_path))
        predictions = (
            (validated, corrected[UNRESOLVED])
            | "AllPredicted" >> beam.Flatten()
            | "Encode" >> beam.ParDo(EncodePrediction(c.metadata))
        )
        dead_letters = (
            decoded[DEAD_LETTER],
            prepared[DEAD_LETTER],
            classified[DEAD_LETTER],
            extracted[DEAD_LETTER],
        ) | "AllDeadLetters" >> beam.Flatten()
        return {"predictions": predictions, "dead_letters": dead_letters, "deletes": decoded[DELETED]}
