"""The two model steps: classify (step 1) and extract (step 2), batched.

Both build contract requests (`model_repository.contract`), call the model through a
`ModelClient` made in `setup()`, and attach the raw answer to the WorkItem. Validation
against the taxonomy is the next stage's job (`transforms.correction`), so a model can
never put an unknown category or value into a prediction.

The requests and the answer handling are the product core's (`transforms.core.classify`,
`transforms.core.extract`, `transforms.core.model_calls`, Beam-free); the DoFns here add
the batching window, threads, windowed re-stamping, tagged outputs and Beam metrics.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import apache_beam as beam
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from model_repository.contract import ModelCandidate, ModelProduct
from transforms.config import BatchConfig  # noqa: F401 - defined once in transforms/config.py
from transforms.core.classify import STAGE as CLASSIFY_STAGE
from transforms.core.classify import (
    CandidateRetriever,
    classify_answer,
    classify_request,
    model_product,
    retrieve_candidates,
)
from transforms.core.extract import STAGE as EXTRACT_STAGE
from transforms.core.extract import extract_answer, extract_call, extract_request
from transforms.core.metrics import MetricsSink
from transforms.core.model_calls import ModelCall, answer_batch, build_requests, call_model, publish_client_stats
from transforms.dead_letters import BeamMetrics, member_dead_letters, tagged
from transforms.model.client import ModelClient, ModelClientFactory
from transforms.records import DeadLetter, WorkItem
from transforms.shared import acquire_shared, shared_taxonomy

__all__ = [
    "BatchConfig",
    "ClassifyStep",
    "InProcessRetriever",
    "RetrieverFactory",
    "ExtractStep",
    "event_time_of",
    "extract_request",  # re-exported from the core (benchmarks and tools build requests)
    "model_product",
]


class _ModelStep(beam.DoFn):
    """Base of the model steps: a rolling window of batches in flight.

    `process` submits its batch and returns at once unless `max_in_flight` batches are
    already out, so the next bundle's requests are on the wire while earlier ones are
    computed: the server queue never drains between batches. Results are emitted as
    WindowedValues with the window and timestamp of the batch they came from (each item
    re-stamped with its own event time), from `process` as they complete and from
    `finish_bundle` for the rest.

    Requests and answers are the product core's (`build`, `answer`): this class adds only
    the window, the threads and Beam's outputs. Counted through the core under `model/`
    (`<stage>_requests`, `_failures`, `_batch_size`, `_batch_latency_ms`, `_retries`,
    `_transport_failures`, `_requests_in_flight`), plus `_batches_in_flight` here.
    """

    STAGE = "model"

    def __init__(self, model: ModelClientFactory, max_in_flight: int = 1) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.model = model
        self.max_in_flight = max_in_flight
        self.client: ModelClient | None = None
        self.metrics = BeamMetrics()

    def setup(self) -> None:
        self.client = self.model()
        self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix=f"{self.STAGE}-inflight")
        self._pending: deque[tuple[Future[tuple[list[bytes | Exception], float]], list[WorkItem], Any, Any]] = deque()

    def teardown(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self.client is not None:
            self.client.close()

    def _infer(self, requests: Sequence[ModelCall]) -> tuple[list[bytes | Exception], float]:
        """Runs on a pool thread: no Beam metrics here (they belong to the bundle's
        thread and would be lost); the latency is returned and recorded in `_drain`."""
        assert self.client is not None
        return call_model(self.client, requests)

    def _build(self, item: WorkItem) -> ModelCall | None:
        raise NotImplementedError  # each step builds its own request (None: no call needed)

    def _answer(self, item: WorkItem, response: bytes, metrics: MetricsSink) -> WorkItem | DeadLetter:
        raise NotImplementedError  # each step parses its own answer

    def _process(self, batch: list[WorkItem], window: Any, timestamp: Any) -> Iterator[Any]:
        """Items that need no call pass at once, items whose request failed are dead
        letters at once, the rest go on the wire."""
        built = build_requests(self.STAGE, batch, self._build, self.metrics)
        for item in built.passed:
            yield WindowedValue(item, event_time_of(item, timestamp), [window])
        for item, letter in built.dead_letters:
            yield from self._emit(item, letter, window, timestamp)
        if built.items:
            self._pending.append((self._pool.submit(self._infer, built.requests), built.items, window, timestamp))
        yield from self._drain(limit=self.max_in_flight - 1)

    def _drain(self, limit: int) -> Iterator[Any]:
        """Emit finished batches; block on the oldest while more than `limit` are out."""
        while self._pending and (len(self._pending) > limit or self._pending[0][0].done()):
            future, items, window, timestamp = self._pending.popleft()
            self.metrics.update("model", f"{self.STAGE}_batches_in_flight", len(self._pending) + 1)
            outcome: Sequence[bytes | Exception] | Exception
            seconds: float | None
            try:
                outcome, seconds = future.result()
            except Exception as exc:  # noqa: BLE001 - every item of the batch is accounted for
                outcome, seconds = exc, None
            publish_client_stats(self.STAGE, self.client, self.metrics)
            results = answer_batch(self.STAGE, items, outcome, self._answer, self.metrics, seconds)
            for item, result in zip(items, results):
                yield from self._emit(item, result, window, timestamp)

    def _emit(self, item: WorkItem, result: WorkItem | DeadLetter, window: Any, timestamp: Any) -> Iterator[Any]:
        """`result` in the batch's window at the item's own event time; a dead letter once
        more for every product that shared the item's model path (content dedupe)."""
        at = event_time_of(item, timestamp)
        if not isinstance(result, DeadLetter):
            yield WindowedValue(result, at, [window])
            return
        letter = tagged(result)
        yield _windowed(letter, window, at)
        for member in member_dead_letters(letter, item):
            yield _windowed(member, window, at)

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._drain(limit=0)


def event_time_of(item: WorkItem, batch_timestamp: Any) -> Any:
    """The item's own event time; the batch's timestamp (end of window) when it has none."""
    return Timestamp.of(item.event_time) if item.event_time is not None else batch_timestamp


def _windowed(out: Any, window: Any, timestamp: Any) -> Any:
    if isinstance(out, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(out.tag, WindowedValue(out.value, timestamp, [window]))
    return WindowedValue(out, timestamp, [window])


class RetrieverFactory(Protocol):
    """Picklable; makes the classify candidates' retriever in `setup()`."""

    def __call__(self) -> CandidateRetriever: ...


class _LockedRetriever:
    """One retriever per worker process, called by the classify DoFns of all its threads:
    one call at a time (the embedding pass already uses every core, as the in-process
    baseline client's lock says too)."""

    def __init__(self, retriever: CandidateRetriever) -> None:
        self._retriever = retriever
        self._lock = threading.Lock()

    def candidates(self, products: Sequence[ModelProduct], k: int) -> list[list[ModelCandidate]]:
        with self._lock:
            return self._retriever.candidates(products, k)


def _baseline_retriever(taxonomy_path: str | None) -> _LockedRetriever:
    from model_repository.product_baseline.engine import BaselineModel  # the embedder only where it runs

    return _LockedRetriever(BaselineModel(shared_taxonomy(taxonomy_path)))


@dataclass(frozen=True)
class InProcessRetriever:
    """The CPU baseline's category index as the candidate retriever, loaded once per worker
    process and taxonomy (Beam's `Shared`, `transforms/shared.py`), for every classify
    DoFn instance there. A second copy beside `InProcessBaseline`'s model, because the two
    are separate shared handles; a pipeline in candidate mode calls a VLM, not that model."""

    taxonomy_path: str | None = None

    def __call__(self) -> CandidateRetriever:
        path = self.taxonomy_path
        return acquire_shared("retriever", path, lambda: _baseline_retriever(path))


class ClassifyStep(_ModelStep):
    """list[WorkItem] -> WorkItem with raw_category, confidence and descriptions
    (`transforms.core.classify`); dead letters at `classify`.

    With `candidates` K > 0 (candidate mode), each batch first gets its top-K categories
    from the retriever in one call, on the bundle's thread while earlier batches are on the
    wire, and every request carries them. The retriever is made in `setup()`.
    """

    STAGE = CLASSIFY_STAGE

    def __init__(
        self,
        model: ModelClientFactory,
        max_in_flight: int = 1,
        candidates: int = 0,
        retriever: RetrieverFactory | None = None,
    ) -> None:
        super().__init__(model, max_in_flight)
        if candidates < 0:
            raise ValueError(f"candidates must be >= 0, got {candidates}")
        if candidates and retriever is None:
            raise ValueError("candidate mode needs a retriever factory (e.g. InProcessRetriever(taxonomy_path))")
        self.candidates = candidates
        self.retriever_factory = retriever
        self.retriever: CandidateRetriever | None = None

    def setup(self) -> None:
        super().setup()
        if self.candidates and self.retriever_factory is not None:
            self.retriever = self.retriever_factory()

    def process(
        self, batch: list[WorkItem], window: Any = beam.DoFn.WindowParam, timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        if self.retriever is not None:
            ready: list[WorkItem] = []
            for item, result in zip(batch, retrieve_candidates(batch, self.retriever, self.candidates, self.metrics)):
                if isinstance(result, DeadLetter):
                    yield from self._emit(item, result, window, timestamp)
                else:
                    ready.append(result)
            batch = ready
        yield from self._process(batch, window, timestamp)

    def _build(self, item: WorkItem) -> ModelCall | None:
        return classify_request(item)

    def _answer(self, item: WorkItem, response: bytes, metrics: MetricsSink) -> WorkItem | DeadLetter:
        return classify_answer(item, response, metrics)


class ExtractStep(_ModelStep):
    """list[WorkItem] -> WorkItem with raw_attributes (`transforms.core.extract`); dead
    letters at `extract`.

    An unresolved item (no category) or a category without attributes needs no model
    call: it passes straight through.
    """

    STAGE = EXTRACT_STAGE

    def __init__(self, model: ModelClientFactory, taxonomy_path: str | None, max_in_flight: int = 1) -> None:
        super().__init__(model, max_in_flight)
        self.taxonomy_path = taxonomy_path

    def setup(self) -> None:
        super().setup()
        self.taxonomy = shared_taxonomy(self.taxonomy_path)

    def process(
        self, batch: list[WorkItem], window: Any = beam.DoFn.WindowParam, timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        yield from self._process(batch, window, timestamp)

    def _build(self, item: WorkItem) -> ModelCall | None:
        return extract_call(item, self.taxonomy, self.metrics)

    def _answer(self, item: WorkItem, response: bytes, metrics: MetricsSink) -> WorkItem | DeadLetter:
        return extract_answer(item, response, metrics)
