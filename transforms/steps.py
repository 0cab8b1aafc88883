"""The two model steps: classify (step 1) and extract (step 2), batched.

Both build contract requests (`model_repository.contract`), call the model through a
`ModelClient` made in `setup()`, and attach the raw answer to the WorkItem. Validation
against the taxonomy is the next stage's job (`transforms.correction`), so a model can
never put an unknown category or value into a prediction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from model_repository.contract import (
    ModelAnswerError,
    ModelAttribute,
    ModelCategory,
    ModelProduct,
    ModelRequest,
    Task,
    parse_classify_answer,
    parse_extract_answer,
)
from taxonomy.model import Category, Taxonomy
from transforms.dead_letters import dead_letter
from transforms.model_client import ModelClient, ModelClientFactory
from transforms.records import WorkItem
from transforms.shared import shared_taxonomy


@dataclass(frozen=True)
class BatchConfig:
    """Batching declared as data. `max_wait_s` bounds how long a streaming batch waits to
    fill; in batch jobs bundles are large and batches fill up to `max_size`."""

    min_size: int = 8
    max_size: int = 64
    max_wait_s: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(f"batch sizes need 1 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be positive, got {self.max_wait_s}")

    def transform(self) -> beam.PTransform:
        return beam.BatchElements(min_batch_size=self.min_size, max_batch_size=self.max_size)


def model_product(item: WorkItem) -> ModelProduct:
    p = item.product
    return ModelProduct(
        title=p.title,
        description=item.description_text,
        product_type=p.product_type,
        vendor=p.vendor,
        tags=p.tags,
        variant_options={o.name: o.values for o in p.variant_options},
    )


def extract_request(item: WorkItem, taxonomy: Taxonomy, category: Category) -> ModelRequest:
    return ModelRequest(
        task=Task.EXTRACT,
        product=model_product(item),
        category=ModelCategory(id=category.id, full_name=category.full_name),
        attributes=tuple(
            ModelAttribute(handle=a.handle, name=a.name, values=tuple(v.name for v in a.values))
            for a in taxonomy.attributes_of(category)
        ),
    )


class _ModelStep(beam.DoFn):
    STAGE = "model"

    def __init__(self, model: ModelClientFactory) -> None:
        self.model = model
        self.client: ModelClient | None = None
        self.requests = Metrics.counter("model", f"{self.STAGE}_requests")
        self.batches = Metrics.distribution("model", f"{self.STAGE}_batch_size")
        self.latency_ms = Metrics.distribution("model", f"{self.STAGE}_batch_latency_ms")

    def setup(self) -> None:
        self.client = self.model()

    def teardown(self) -> None:
        if self.client is not None:
            self.client.close()

    def _infer(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        assert self.client is not None
        start = time.perf_counter()
        responses = self.client.infer_batch(requests)
        self.latency_ms.update(int((time.perf_counter() - start) * 1000))
        self.requests.inc(len(requests))
        self.batches.update(len(requests))
        if len(responses) != len(requests):
            raise RuntimeError(f"model answered {len(responses)} responses to {len(requests)} requests")
        return responses

    def _infer_or_dead_letter(
        self, items: Sequence[WorkItem], requests: Sequence[tuple[bytes, bytes | None]]
    ) -> tuple[list[bytes] | None, list[Any]]:
        try:
            return self._infer(requests), []
        except Exception as exc:  # noqa: BLE001 - every item of the batch is accounted for
            return None, [dead_letter(self.STAGE, type(exc).__name__, f"model call failed: {exc}", i) for i in items]


class ClassifyStep(_ModelStep):
    """list[WorkItem] -> WorkItem with raw_category, confidence and descriptions."""

    STAGE = "classify"

    def process(self, batch: list[WorkItem]) -> Iterator[Any]:
        requests = [
            (ModelRequest(task=Task.CLASSIFY, product=model_product(i)).model_dump_json().encode(), i.image)
            for i in batch
        ]
        responses, letters = self._infer_or_dead_letter(batch, requests)
        yield from letters
        for item, response in zip(batch, responses or ()):
            try:
                answer = parse_classify_answer(response)
            except ModelAnswerError as exc:
                yield dead_letter(self.STAGE, "ModelAnswerError", str(exc), item)
                continue
            yield replace(
                item,
                raw_category=answer.category,
                confidence=answer.confidence,
                simplified_description=answer.simplified_description,
                image_description=answer.image_description,
            )


class ExtractStep(_ModelStep):
    """list[WorkItem] (category resolved) -> WorkItem with raw_attributes.

    A category without attributes needs no model call: it passes straight through.
    """

    STAGE = "extract"

    def __init__(self, model: ModelClientFactory, taxonomy_path: str | None) -> None:
        super().__init__(model)
        self.taxonomy_path = taxonomy_path
        self.skipped = Metrics.counter("model", "extract_calls_saved_no_attributes")

    def setup(self) -> None:
        super().setup()
        self.taxonomy = shared_taxonomy(self.taxonomy_path)

    def process(self, batch: list[WorkItem]) -> Iterator[Any]:
        todo: list[WorkItem] = []
        requests: list[tuple[bytes, bytes | None]] = []
        for item in batch:
            assert item.category is not None
            category = self.taxonomy.get(item.category.id)
            if category is None or not self.taxonomy.attributes_of(category):
                self.skipped.inc()
                yield item
                continue
            todo.append(item)
            requests.append((extract_request(item, self.taxonomy, category).model_dump_json().encode(), item.image))
        if not todo:
            return
        responses, letters = self._infer_or_dead_letter(todo, requests)
        yield from letters
        for item, response in zip(todo, responses or ()):
            try:
                answer = parse_extract_answer(response)
            except ModelAnswerError as exc:
                yield dead_letter(self.STAGE, "ModelAnswerError", str(exc), item)
                continue
            raw = tuple((h, tuple(v)) for h, v in answer.attributes.items())
            yield replace(item, raw_attributes=raw)
