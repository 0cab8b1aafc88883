"""The whole two-step flow as one composite transform, shared by every pipeline.

raw events -> decode -> [refresh trigger] -> [content dedupe: one model path per content]
  model path: prepare images -> classify [with the retriever's top-k candidates, when
  `classify_candidates` > 0] -> correct category -> extract -> validate
-> encode; every stage's failures flow to one dead-letter output.

The refresh trigger and content dedupe are keyed steps (state or a shuffle). In batch jobs
they are free of delivery concerns; in the stream they hold records between the Kafka
source and sink, which is safe because offsets are committed from the sink side once a
record's outputs are written (transforms/io/kafka_commit.py), so they are on there too.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.config import PredictConfig  # noqa: F401 - defined once in transforms/config.py
from transforms.correction import CorrectCategory, ValidateAttributes
from transforms.dead_letters import DEAD_LETTER
from transforms.decode import DELETED, DecodeEvents
from transforms.encode import EncodePrediction
from transforms.freshness.dedupe import DedupeByContent
from transforms.freshness.refresh import SKIPPED, RefreshTrigger
from transforms.images.prepare import PrepareImages
from transforms.model.steps import ClassifyStep, ExtractStep, InProcessRetriever

__all__ = [
    "DEAD_LETTER_PART",
    "dead_letter_part",
    "ModelPath",
    "PredictProducts",
]

# Outputs "dead_letters:<stage>": each stage's dead letters, unflattened. A sink that
# writes them one by one stays in the source's fused stage: on Prism a Flatten is a
# runner-side transform and a fusion break, after which a source bundle is finalised (its
# Kafka offsets committed) before its records are written.
DEAD_LETTER_PART = "dead_letters:"


def dead_letter_part(stage: str) -> str:
    return DEAD_LETTER_PART + stage


class ModelPath(beam.PTransform):
    """PCollection[WorkItem] -> {"items": WorkItem with model results (resolved or not),
    "dead_letters": DeadLetter}: everything between decode and encode."""

    def __init__(self, config: PredictConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, items: beam.PCollection) -> dict[str, beam.PCollection]:  # type: ignore[override]
        c = self.config
        prepared = items | "PrepareImages" >> beam.ParDo(PrepareImages(c.images, c.image_base_dir)).with_outputs(
            DEAD_LETTER, main="items"
        )
        classified = (
            prepared.items
            | "BatchClassify" >> c.batching.transform()
            | "Classify"
            >> beam.ParDo(
                ClassifyStep(c.model, c.max_in_flight, c.classify_candidates, InProcessRetriever(c.taxonomy_path))
            ).with_outputs(DEAD_LETTER, main="items")
        )
        corrected = classified.items | "CorrectCategory" >> beam.ParDo(CorrectCategory(c.taxonomy_path)).with_outputs(
            DEAD_LETTER, main="items"
        )
        extracted = (
            corrected.items
            | "BatchExtract" >> c.batching.transform()
            | "Extract"
            >> beam.ParDo(ExtractStep(c.model, c.taxonomy_path, c.max_in_flight)).with_outputs(
                DEAD_LETTER, main="items"
            )
        )
        validated = extracted.items | "ValidateAttributes" >> beam.ParDo(
            ValidateAttributes(c.taxonomy_path)
        ).with_outputs(DEAD_LETTER, main="items")
        parts = {
            "prepare_images": prepared[DEAD_LETTER],
            "classify": classified[DEAD_LETTER],
            "correct_category": corrected[DEAD_LETTER],
            "extract": extracted[DEAD_LETTER],
            "validate_attributes": validated[DEAD_LETTER],
        }
        letters = tuple(parts.values()) | "ModelDeadLetters" >> beam.Flatten()
        return {"items": validated.items, "dead_letters": letters, **{dead_letter_part(k): v for k, v in parts.items()}}


class PredictProducts(beam.PTransform):
    """PCollection[bytes | dict] of product events -> {"predictions": Prediction,
    "dead_letters": DeadLetter, "deletes": ProductEvent, "skipped": freshness Skip}.

    `known` (optional): (product_id, KnownPrediction | Prediction) of the last predictions,
    which seeds the refresh trigger so that current products are skipped."""

    def __init__(self, config: PredictConfig, known: beam.PCollection | None = None) -> None:
        super().__init__()
        self.config = config
        self.known = known

    def expand(self, events: beam.PCollection) -> dict[str, beam.PCollection]:  # type: ignore[override]
        c = self.config
        decoded = events | "Decode" >> beam.ParDo(DecodeEvents()).with_outputs(DEAD_LETTER, DELETED, main="items")
        work, deletes = decoded.items, decoded[DELETED]
        skipped = work.pipeline | "NoSkips" >> beam.Create([])
        if c.refresh is not None:
            trigger_in = (work, deletes) | "WorkAndDeletes" >> beam.Flatten()
            inputs = trigger_in if self.known is None else {"events": trigger_in, "known": self.known}
            refreshed = inputs | "Refresh" >> RefreshTrigger(c.refresh)
            work, deletes, skipped = refreshed["items"], refreshed[DELETED], refreshed[SKIPPED]
        path = ModelPath(c)
        done = work | "Model" >> (DedupeByContent(path, c.dedupe) if c.dedupe is not None else path)
        encoded = done["items"] | "Encode" >> beam.ParDo(EncodePrediction(c.metadata)).with_outputs(
            DEAD_LETTER, main="items"
        )
        predictions = encoded.items
        dead_letters = (
            decoded[DEAD_LETTER],
            done["dead_letters"],
            encoded[DEAD_LETTER],
        ) | "AllDeadLetters" >> beam.Flatten()
        parts = {dead_letter_part("decode"): decoded[DEAD_LETTER]}
        parts.update({k: v for k, v in done.items() if k.startswith(DEAD_LETTER_PART)})
        parts[dead_letter_part("encode")] = encoded[DEAD_LETTER]
        return {
            "predictions": predictions,
            "dead_letters": dead_letters,
            "deletes": deletes,
            "skipped": skipped,
            **parts,
        }
