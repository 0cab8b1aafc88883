"""The two model steps: classify (step 1) and extract (step 2), batched.

Both build contract requests (`model_repository.contract`), call the model through a
`ModelClient` made in `setup()`, and attach the raw answer to the WorkItem. Validation
against the taxonomy is the next stage's job (`transforms.correction`), so a model can
never put an unknown category or value into a prediction.
"""

from __future__ import annotations

import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

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
from transforms.dead_letters import DEAD_LETTER, dead_letter, member_dead_letters
from transforms.model.client import ModelClient, ModelClientFactory
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
    """Base of the model steps: a rolling window of batches in flight.

    `process` submits its batch and returns at once unless `max_in_flight` batches are
    already out, so the next bundle's requests are on the wire while earlier ones are
    computed: the server queue never drains between batches. Results are emitted as
    WindowedValues with the window and timestamp of the batch they came from, from
    `process` as they complete and from `finish_bundle` for the rest.
    """

    STAGE = "model"

    def __init__(self, model: ModelClientFactory, max_in_flight: int = 1) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.model = model
        self.max_in_flight = max_in_flight
        self.client: ModelClient | None = None
        self.requests = Metrics.counter("model", f"{self.STAGE}_requests")
        self.item_failures = Metrics.counter("model", f"{self.STAGE}_failures")
        self.batches = Metrics.distribution("model", f"{self.STAGE}_batch_size")
        self.latency_ms = Metrics.distribution("model", f"{self.STAGE}_batch_latency_ms")
        self.batches_in_flight = Metrics.distribution("model", f"{self.STAGE}_batches_in_flight")

    def setup(self) -> None:
        self.client = self.model()
        self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix=f"{self.STAGE}-inflight")
        self._pending: deque[tuple[Future[tuple[list[bytes | Exception], float]], list[WorkItem], Any, Any]] = deque()

    def teardown(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            self.client.close()

    def _infer(self, requests: Sequence[tuple[bytes, bytes | None]]) -> tuple[list[bytes | Exception], float]:
        """Runs on a pool thread: no Beam metrics here (they belong to the bundle's
        thread and would be lost); the latency is returned and recorded in `_drain`."""
        assert self.client is not None
        start = time.perf_counter()
        responses = self.client.infer_batch(requests)
        if len(responses) != len(requests):
            raise RuntimeError(f"model answered {len(responses)} responses to {len(requests)} requests")
        return responses, time.perf_counter() - start

    def _publish_client_stats(self) -> None:
        take = getattr(self.client, "take_stats", None)
        if take is None:
            return
        stats = take()
        Metrics.counter("model", f"{self.STAGE}_retries").inc(stats.get("retries", 0))
        Metrics.counter("model", f"{self.STAGE}_transport_failures").inc(stats.get("failures", 0))
        Metrics.distribution("model", f"{self.STAGE}_requests_in_flight").update(stats.get("max_requests_in_flight", 0))

    def _submit(
        self, items: list[WorkItem], requests: list[tuple[bytes, bytes | None]], window: Any, timestamp: Any
    ) -> Iterator[Any]:
        if items:
            self._pending.append((self._pool.submit(self._infer, requests), items, window, timestamp))
        yield from self._drain(limit=self.max_in_flight - 1)

    def _drain(self, limit: int) -> Iterator[Any]:
        """Emit finished batches; block on the oldest while more than `limit` are out."""
        while self._pending and (len(self._pending) > limit or self._pending[0][0].done()):
            future, items, window, timestamp = self._pending.popleft()
            self.requests.inc(len(items))
            self.batches.update(len(items))
            self.batches_in_flight.update(len(self._pending) + 1)
            try:
                responses, seconds = future.result()
                self.latency_ms.update(int(seconds * 1000))
            except Exception as exc:  # noqa: BLE001 - every item of the batch is accounted for
                responses = [exc] * len(items)
            self._publish_client_stats()
            for item, response in zip(items, responses):
                if isinstance(response, Exception):
                    self.item_failures.inc()
                    out = dead_letter(self.STAGE, type(response).__name__, f"model call failed: {response}", item)
                else:
                    out = self._complete_safely(item, response)
                at = event_time_of(item, timestamp)
                yield _windowed(out, window, at)
                if isinstance(out, beam.pvalue.TaggedOutput) and out.tag == DEAD_LETTER:
                    for letter in member_dead_letters(out, item):
                        yield _windowed(letter, window, at)

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._drain(limit=0)

    def _complete(self, item: WorkItem, response: bytes) -> Any:
        raise NotImplementedError  # each step parses its own answer

    def _complete_safely(self, item: WorkItem, response: bytes) -> Any:
        """`_complete`, with anything its own handling did not foresee as a dead letter:
        one bad answer must not fail the batch (nor the others already answered in it)."""
        try:
            return self._complete(item, response)
        except Exception as exc:  # noqa: BLE001 - the last resort behind the parser's own errors
            return self._unexpected(item, exc)

    def _unexpected(self, item: WorkItem, exc: Exception) -> beam.pvalue.TaggedOutput:
        Metrics.counter("dead_letters", "unexpected_errors").inc()
        return dead_letter(self.STAGE, type(exc).__name__, f"unexpected error at {self.STAGE}: {exc!r}", item)

    def _requests(
        self, batch: Sequence[WorkItem], build: Any, window: Any, timestamp: Any
    ) -> tuple[list[WorkItem], list[tuple[bytes, bytes | None]], list[Any]]:
        """(items, their requests, dead letters of items whose request could not be built)."""
        items: list[WorkItem] = []
        requests: list[tuple[bytes, bytes | None]] = []
        failed: list[Any] = []
        for item in batch:
            try:
                request = build(item)
            except Exception as exc:  # noqa: BLE001 - one product's request never fails the batch
                letter = self._unexpected(item, exc)
                at = event_time_of(item, timestamp)
                failed.append(_windowed(letter, window, at))
                failed.extend(_windowed(m, window, at) for m in member_dead_letters(letter, item))
                continue
            if request is not None:
                items.append(item)
                requests.append(request)
        return items, requests, failed


def event_time_of(item: WorkItem, batch_timestamp: Any) -> Any:
    """The item's own event time; the batch's timestamp (end of window) when it has none."""
    return Timestamp.of(item.event_time) if item.event_time is not None else batch_timestamp


def _windowed(out: Any, window: Any, timestamp: Any) -> Any:
    if isinstance(out, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, timestamp, [window]))
    return WindowedValue(out, timestamp, [window])


def _model_error(response: bytes) -> str | None:
    """The model's own per-item error answer ({"error": ...}), if that is what it is."""
    if not response.startswith(b'{"error"'):
        return None
    try:
        return str(json.loads(response)["error"])
    except (ValueError, KeyError):
        return None


class ClassifyStep(_ModelStep):
    """list[WorkItem] -> WorkItem with raw_category, confidence and descriptions."""

    STAGE = "classify"

    def process(self, batch: list[WorkItem], window: Any = beam.DoFn.WindowParam, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        items, requests, failed = self._requests(
            batch,
            lambda i: (ModelRequest(task=Task.CLASSIFY, product=model_product(i)).model_dump_json().encode(), i.image),
            window,
            timestamp,
        )
        yield from failed
        yield from self._submit(items, requests, window, timestamp)

    def _complete(self, item: WorkItem, response: bytes) -> Any:
        error = _model_error(response)
        if error is not None:
            return dead_letter(self.STAGE, "ModelError", error, item)
        try:
            answer = parse_classify_answer(response)
        except ModelAnswerError as exc:
            return dead_letter(self.STAGE, "ModelAnswerError", str(exc), item)
        return replace(
            item,
            raw_category=answer.category,
            confidence=answer.confidence,
            simplified_description=answer.simplified_description,
            image_description=answer.image_description,
        )


class ExtractStep(_ModelStep):
    """list[WorkItem] -> WorkItem with raw_attributes.

    An unresolved item (no category) or a category without attributes needs no model
    call: it passes straight through.
    """

    STAGE = "extract"

    def __init__(self, model: ModelClientFactory, taxonomy_path: str | None, max_in_flight: int = 1) -> None:
        super().__init__(model, max_in_flight)
        self.taxonomy_path = taxonomy_path
        self.skipped = Metrics.counter("model", "extract_calls_saved_no_attributes")

    def setup(self) -> None:
        super().setup()
        self.taxonomy = shared_taxonomy(self.taxonomy_path)

    def process(self, batch: list[WorkItem], window: Any = beam.DoFn.WindowParam, timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        passed: list[Any] = []

        def build(item: WorkItem) -> tuple[bytes, bytes | None] | None:
            category = self.taxonomy.get(item.category.id) if item.category is not None else None
            if category is None or not self.taxonomy.attributes_of(category):
                self.skipped.inc()
                passed.append(WindowedValue(item, event_time_of(item, timestamp), [window]))
                return None
            return extract_request(item, self.taxonomy, category).model_dump_json().encode(), item.image

        todo, requests, failed = self._requests(batch, build, window, timestamp)
        yield from passed
        yield from failed
        yield from self._submit(todo, requests, window, timestamp)

    def _complete(self, item: WorkItem, response: bytes) -> Any:
        error = _model_error(response)
        if error is not None:
            return dead_letter(self.STAGE, "ModelError", error, item)
        try:
            answer = parse_extract_answer(response)
        except ModelAnswerError as exc:
            return dead_letter(self.STAGE, "ModelAnswerError", str(exc), item)
        return replace(item, raw_attributes=tuple((h, tuple(v)) for h, v in answer.attributes.items()))
