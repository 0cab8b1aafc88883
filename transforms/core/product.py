"""The whole per-product flow for a batch of events, synchronously and without Beam.

    raw events -> decode -> prepare images -> classify (one model call per batch)
      -> correct category -> extract (one model call per batch) -> validate -> encode

It runs the same stage functions as the Beam pipeline (`transforms.predict.PredictProducts`
wraps each of them in a DoFn), so the same events, model and taxonomy give the same
predictions, `prediction_id`s and dead letters on either path, and the same counters
under the same names. What only a pipeline does stays there: the refresh trigger and
content dedupe (keyed state across events), the in-flight window of model batches, and IO.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from model_repository.contract import MAX_CANDIDATES
from taxonomy.corrector import CategoryCorrector
from taxonomy.model import Taxonomy
from taxonomy.values import ValueNormaliser
from transforms.config import BatchConfig, EventLimits, ImageConfig, PredictConfig
from transforms.core.classify import CandidateRetriever, classify_batch
from transforms.core.correct import correct_category
from transforms.core.decode import decode
from transforms.core.encode import encode_prediction, utc_now
from transforms.core.extract import extract_batch
from transforms.core.images import prepare_images
from transforms.core.metrics import CountingMetrics, MetricsSink
from transforms.core.validate import validate_attributes
from transforms.model.client import ModelClient, ModelMetadata, check_taxonomy_version
from transforms.records import DeadLetter, Prediction, ProductEvent, WorkItem

__all__ = ["CoreConfig", "CoreResult", "ProductCore", "RawEvent", "predict_products"]

# What an event arrives as: a JSONL line or Kafka value (bytes/str), a Parquet row (dict).
RawEvent = bytes | str | dict[str, Any] | None


@dataclass(frozen=True)
class CoreConfig:
    """The stage settings the core needs: the same config models the pipeline takes."""

    images: ImageConfig = field(default_factory=ImageConfig)
    # Relative image paths resolve against this; None = events cannot name local files.
    image_base_dir: str | None = None
    limits: EventLimits = field(default_factory=EventLimits)
    # Products per model call: `max_size` of the pipeline's batching (the core has no
    # bundles to fill, so a batch is simply up to this many products).
    batching: BatchConfig = field(default_factory=BatchConfig)
    # Candidate mode: the retriever's top-k go into each classify request (0 = off).
    classify_candidates: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.classify_candidates <= MAX_CANDIDATES:
            raise ValueError(f"classify_candidates must be 0 to {MAX_CANDIDATES}, got {self.classify_candidates}")

    @classmethod
    def of(cls, config: PredictConfig) -> CoreConfig:
        """The core's share of a pipeline's PredictConfig."""
        return cls(
            images=config.images,
            image_base_dir=config.image_base_dir,
            batching=config.batching,
            classify_candidates=config.classify_candidates,
        )


@dataclass(frozen=True)
class CoreResult:
    """Every event of the input ends in exactly one of `predictions`, `deletes` (a delete
    event, no model call) or `dead_letters` (an event can also have a dead letter at
    `prepare_images` beside its prediction: its images failed, its text was predicted)."""

    predictions: list[Prediction]
    dead_letters: list[DeadLetter]
    deletes: list[ProductEvent]
    # The counters and distributions a pipeline would report for the same input.
    metrics: CountingMetrics


class ProductCore:
    """A model client and a taxonomy, ready to predict batches of product events.

    Holds no Beam and no threads; not thread-safe (one call at a time, or one instance per
    thread). `corrector` / `normaliser` may be passed in to share them (building the
    category corrector for the full taxonomy takes a while); `now` stamps `predicted_at`
    and `clock` times the per-product image budget (injectable for tests). With
    `config.classify_candidates` > 0, `retriever` proposes the classify candidates; by
    default the CPU baseline's category index for `taxonomy`, loaded once here.
    """

    def __init__(
        self,
        model: ModelClient,
        taxonomy: Taxonomy,
        config: CoreConfig | None = None,
        *,
        metadata: ModelMetadata | None = None,
        corrector: CategoryCorrector | None = None,
        normaliser: ValueNormaliser | None = None,
        retriever: CandidateRetriever | None = None,
        now: Callable[[], datetime] = utc_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.taxonomy = taxonomy
        self.config = config or CoreConfig()
        self.metadata = metadata or model.metadata()
        # The pipelines refuse the same mismatch: such a model names categories that the
        # corrector cannot validate.
        check_taxonomy_version(self.metadata, taxonomy.version)
        self.corrector = corrector or CategoryCorrector(taxonomy)
        self.normaliser = normaliser or ValueNormaliser(taxonomy)
        self.retriever = retriever
        if self.retriever is None and self.config.classify_candidates > 0:
            self.retriever = _baseline_retriever(taxonomy)
        self.now = now
        self.clock = clock

    def predict(self, events: Iterable[RawEvent]) -> CoreResult:
        """Predictions, dead letters and deletes for `events`, in input order per output;
        the model is called once per step per `config.batching.max_size` events."""
        metrics = CountingMetrics()
        predictions: list[Prediction] = []
        letters: list[DeadLetter] = []
        deletes: list[ProductEvent] = []
        for chunk in _chunks(events, self.config.batching.max_size):
            items: list[WorkItem] = []
            for element in chunk:
                out = decode(element, self.config.limits, None, metrics)
                if isinstance(out, DeadLetter):
                    letters.append(out)
                elif isinstance(out, ProductEvent):
                    deletes.append(out)
                else:
                    items.append(out)
            for result in self.predict_items(items, metrics):
                if isinstance(result, DeadLetter):
                    letters.append(result)
                else:
                    predictions.append(result)
        return CoreResult(predictions, letters, deletes, metrics)

    def predict_items(self, items: Sequence[WorkItem], metrics: MetricsSink) -> list[Prediction | DeadLetter]:
        """The model path for decoded products (one batch): everything between decode and
        encode, then encode. A product's image dead letter comes before its prediction."""
        out: list[Prediction | DeadLetter] = []
        prepared: list[WorkItem] = []
        for item in items:
            ready, letter = prepare_images(item, self.config.images, self.config.image_base_dir, metrics, self.clock)
            if letter is not None:
                out.append(letter)
            if ready is not None:
                prepared.append(ready)
        classified = _keep(
            classify_batch(
                prepared,
                self.model,
                metrics,
                retriever=self.retriever,
                candidates=self.config.classify_candidates,
            ),
            out,
        )
        corrected = _keep([correct_category(i, self.corrector, metrics) for i in classified], out)
        extracted = _keep(extract_batch(corrected, self.model, self.taxonomy, metrics), out)
        validated = _keep([validate_attributes(i, self.taxonomy, self.normaliser, metrics) for i in extracted], out)
        for item in validated:
            out.append(encode_prediction(item, self.metadata, metrics, self.now))
        return out


def predict_products(
    events: Iterable[RawEvent],
    model: ModelClient,
    taxonomy: Taxonomy,
    config: CoreConfig | None = None,
    **kwargs: Any,
) -> CoreResult:
    """One-off form of `ProductCore(model, taxonomy, config, **kwargs).predict(events)`."""
    return ProductCore(model, taxonomy, config, **kwargs).predict(events)


def _baseline_retriever(taxonomy: Taxonomy) -> CandidateRetriever:
    # Imported here: the embedding model and its index load only where candidate mode is on.
    from model_repository.product_baseline.engine import BaselineModel

    return BaselineModel(taxonomy)


def _keep(results: Iterable[WorkItem | DeadLetter], letters: list[Prediction | DeadLetter]) -> list[WorkItem]:
    """The items that go on to the next stage; dead letters are moved to `letters`."""
    items: list[WorkItem] = []
    for r in results:
        if isinstance(r, DeadLetter):
            letters.append(r)
        else:
            items.append(r)
    return items


def _chunks(events: Iterable[RawEvent], size: int) -> Iterator[list[RawEvent]]:
    chunk: list[RawEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
