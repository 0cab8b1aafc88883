"""One request's products -> predictions: cache, in-flight coalescing, micro-batches.

For each product of a request, in this order:

1. **decode** with the product core (`transforms.core.decode`), exactly as a pipeline
   decodes an event: a product the core refuses is a 422 naming the product and the reason.
2. **cache**: the key is (content hash, model version, taxonomy version); a hit is the
   cached prediction re-stamped for this product (product id, shop, `prediction_id`, event)
   without any model call, as the pipeline's content dedupe fans one answer out.
3. **coalesce**: a content whose model call is already in flight (another request, or the
   same request twice) waits for that call instead of making its own.
4. **batch**: the rest go to the micro-batcher, which runs `ProductCore.predict_items` on
   a worker thread: the same stages, in the same order, as the pipelines.

A product whose images failed still gets its text-only prediction (as in the pipelines)
with the image dead letter beside it; such a prediction is not cached, so the next
request tries the images again. A model call that failed as a whole (model down,
unreachable, timed out) makes the request a 503 with Retry-After, never a 500 or a hang.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from service.batcher import DeadlineExceeded, MicroBatcher, Overloaded
from service.cache import Cache, prediction_key
from service.metrics import ServiceMetrics
from service.runtime import Runtime
from service.schemas import ProductError, ProductInput
from transforms.core import CountingMetrics, ProductCore, decode
from transforms.core.classify import STAGE as CLASSIFY_STAGE
from transforms.core.extract import STAGE as EXTRACT_STAGE
from transforms.records import DeadLetter, EventType, Prediction, ProductEvent, WorkItem, prediction_id

__all__ = ["DeadlineExceeded", "InvalidProducts", "ModelUnavailable", "Overloaded", "Predictor", "Served"]

_MODEL_STAGES = frozenset({CLASSIFY_STAGE, EXTRACT_STAGE})
# Keys of the `latest` store: a product's latest prediction, and what was served under a
# prediction id (feedback refers to it).
LATEST_PREFIX = "product:"
SERVED_PREFIX = "served:"
# answer_batch's message for an item of a call that failed as a whole (transforms/core/model_calls.py).
_CALL_FAILED = "model call failed:"


class InvalidProducts(Exception):
    """Products the core's decode refused (422)."""

    def __init__(self, errors: list[ProductError]) -> None:
        super().__init__("; ".join(f"{e.product_id}: {e.message}" for e in errors))
        self.errors = errors


class ModelUnavailable(Exception):
    """A model call failed as a whole: the model is down or unreachable (503)."""


@dataclass
class _Computed:
    """A content's model result: its prediction (None if it has none) and dead letters."""

    prediction: Prediction | None
    letters: list[DeadLetter] = field(default_factory=list)


@dataclass
class Served:
    predictions: list[Prediction]
    errors: list[ProductError]
    cache_hits: int


class Predictor:
    def __init__(
        self,
        runtime: Runtime,
        cache: Cache,
        latest: Cache,
        metrics: ServiceMetrics,
        *,
        max_wait_s: float,
        max_queue: int,
        workers: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runtime = runtime
        self.cache = cache
        self.latest = latest
        self.metrics = metrics
        self.now = now
        self._ids = itertools.count()
        # content key -> (future of its model result, requests waiting on it)
        self._inflight: dict[str, tuple[asyncio.Future[_Computed], int]] = {}
        self.batcher: MicroBatcher[WorkItem, _Computed] = MicroBatcher(
            self._run_batch,
            max_batch=runtime.cores[0].config.batching.max_size,
            max_wait_s=max_wait_s,
            max_queue=max_queue,
            workers=workers,
            on_depth=metrics.queue_depth.set,
        )
        # A ProductCore is not thread-safe: each batch borrows one (one per worker).
        self._free_cores: list[ProductCore] = list(runtime.cores)
        self._cores_lock = threading.Lock()

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    # -- the request path ------------------------------------------------------------------

    async def predict(self, shop_id: str, products: list[ProductInput], timeout_s: float) -> Served:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        items = self._decode(shop_id, products)
        meta = self.runtime.metadata
        keys = [prediction_key(i.content_hash, meta.model_version, meta.taxonomy_version) for i in items]

        cached = await self._io(self.cache.get_many, list(dict.fromkeys(keys)))
        found = dict(zip(dict.fromkeys(keys), cached))
        results: dict[str, _Computed] = {}
        for key, raw in found.items():
            if raw is None:
                continue
            try:
                results[key] = _Computed(Prediction.model_validate_json(raw))
            except ValueError:
                found[key] = None  # an unreadable entry (another version's encoding): recompute
        hits = sum(1 for key in keys if key in results)
        self.metrics.cache.labels("hit").inc(hits)
        self.metrics.cache.labels("miss").inc(len(keys) - hits)
        if not self.cache.healthy():
            self.metrics.cache.labels("error").inc()

        await self._model_results(items, keys, results, deadline, loop)
        served = self._assemble(items, keys, results, hits)
        if served.predictions:
            await self._io(self.latest.put_many, self._records(items, served.predictions))
        self.metrics.predictions.labels("cache").inc(hits)
        self.metrics.predictions.labels("model").inc(len(served.predictions) - hits)
        return served

    async def latest_prediction(self, product_id: str) -> bytes | None:
        return (await self._io(self.latest.get_many, [LATEST_PREFIX + product_id]))[0]

    async def served_record(self, prediction_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """(what was served under `prediction_id`: {"prediction", "product", "served_at"}, or
        None; the prediction id now latest for that product, or None). Feedback checks both:
        an unknown prediction, or one that is no longer its product's latest (stale)."""
        raw = (await self._io(self.latest.get_many, [SERVED_PREFIX + prediction_id]))[0]
        if raw is None:
            return None, None
        try:
            record = json.loads(raw)
            product_id = record["prediction"]["product_id"]
        except (ValueError, KeyError, TypeError):
            return None, None
        latest = await self.latest_prediction(product_id)
        latest_id = None
        if latest is not None:
            try:
                latest_id = json.loads(latest).get("prediction_id")
            except ValueError:
                latest_id = None
        return record, latest_id

    def _records(self, items: list[WorkItem], predictions: list[Prediction]) -> dict[str, bytes]:
        """The latest prediction per product, and what was served under each prediction id
        (the product as sent and its prediction) for feedback to refer to."""
        products = {i.event.product_id: i.event.product for i in items}
        records: dict[str, bytes] = {}
        for p in predictions:
            records[LATEST_PREFIX + p.product_id] = p.model_dump_json().encode()
            product = products.get(p.product_id)
            served = {
                "prediction": p.model_dump(mode="json"),
                "product": product.model_dump(mode="json") if product is not None else None,
                "served_at": p.predicted_at.isoformat(),
            }
            records[SERVED_PREFIX + p.prediction_id] = json.dumps(served).encode()
        return records

    def _decode(self, shop_id: str, products: list[ProductInput]) -> list[WorkItem]:
        limits = self.runtime.cores[0].config.limits
        items: list[WorkItem] = []
        errors: list[ProductError] = []
        for p in products:
            event = {
                "event_id": p.event_id or f"api-{uuid.uuid4().hex}",
                "type": EventType.CREATE.value,
                "product_id": p.product_id,
                "shop_id": shop_id,
                "occurred_at": (p.occurred_at or self.now()).isoformat(),
                "product": p.product.model_dump(mode="json"),
            }
            out = decode(event, limits, None, CountingMetrics())
            if isinstance(out, DeadLetter):
                errors.append(
                    ProductError(
                        product_id=p.product_id, stage=out.stage, error_type=out.error_type, message=out.message
                    )
                )
            elif isinstance(out, ProductEvent):  # cannot happen: the event type is create
                errors.append(
                    ProductError(product_id=p.product_id, stage="decode", error_type="Delete", message="not a product")
                )
            else:
                items.append(out)
        if errors:
            raise InvalidProducts(errors)
        return items

    async def _model_results(
        self,
        items: list[WorkItem],
        keys: list[str],
        results: dict[str, _Computed],
        deadline: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Fill `results` for the keys that missed: join calls in flight, submit the rest."""
        mine: dict[str, asyncio.Future[_Computed]] = {}
        new: list[tuple[str, WorkItem]] = []
        for key, item in zip(keys, items):
            if key in results or key in mine:
                continue
            if key in self._inflight:
                future, refs = self._inflight[key]
                self._inflight[key] = (future, refs + 1)
                mine[key] = future
                self.metrics.coalesced.inc()
            else:
                new.append((key, item))
        if new:
            # The model runs on a copy of the product under an id of the service's own: its
            # answer is shared by every product with this content, each re-stamped below.
            futures = await self.batcher.submit([self._representative(item) for _, item in new], deadline)
            for (key, _), future in zip(new, futures):
                self._inflight[key] = (future, 1)
                mine[key] = future
                future.add_done_callback(lambda _f, key=key: self._inflight.pop(key, None))
        if not mine:
            return
        _, pending = await asyncio.wait(mine.values(), timeout=max(0.0, deadline - loop.time()))
        for key, future in mine.items():
            entry = self._inflight.get(key)
            if future in pending and entry is not None and entry[0] is future:
                if entry[1] <= 1:
                    future.cancel()  # nobody else waits for it: dropped before it costs a model call
                else:
                    self._inflight[key] = (future, entry[1] - 1)
        if pending:
            raise DeadlineExceeded(f"{len(pending)} product(s) were not answered within the request deadline")
        for key, future in mine.items():
            exc = future.exception()
            if exc is not None:
                raise exc
            results[key] = future.result()

    def _representative(self, item: WorkItem) -> WorkItem:
        event = item.event.model_copy(update={"event_id": f"serve-{next(self._ids)}"})
        return replace(item, event=event)

    def _assemble(self, items: list[WorkItem], keys: list[str], results: dict[str, _Computed], hits: int) -> Served:
        predictions: list[Prediction] = []
        errors: list[ProductError] = []
        for item, key in zip(items, keys):
            computed = results[key]
            event = item.event
            for letter in computed.letters:
                if letter.stage in _MODEL_STAGES and letter.message.startswith(_CALL_FAILED):
                    raise ModelUnavailable(letter.message)
                errors.append(
                    ProductError(
                        product_id=event.product_id,
                        stage=letter.stage,
                        error_type=letter.error_type,
                        message=letter.message,
                    )
                )
            if computed.prediction is not None:
                predictions.append(restamp(computed.prediction, event, self.now()))
        return Served(predictions, errors, hits)

    # -- the batch worker (a thread) -------------------------------------------------------

    def _run_batch(self, items: list[WorkItem]) -> list[_Computed]:
        with self._cores_lock:
            core = self._free_cores.pop()
        try:
            start = time.perf_counter()
            out = core.predict_items(items, CountingMetrics())
            self.metrics.model_calls.inc()
            self.metrics.model_batch_size.observe(len(items))
            self.metrics.model_batch_seconds.observe(time.perf_counter() - start)
        finally:
            with self._cores_lock:
                self._free_cores.append(core)
        by_event: dict[str, _Computed] = {i.event.event_id: _Computed(None) for i in items}
        for result in out:
            if isinstance(result, Prediction):
                by_event[result.event_id].prediction = result
            elif result.event_id in by_event:
                by_event[result.event_id].letters.append(result)
        meta = self.runtime.metadata
        clean = {
            prediction_key(c.prediction.content_hash, meta.model_version, meta.taxonomy_version): (
                c.prediction.model_dump_json().encode()
            )
            for c in by_event.values()
            if c.prediction is not None and not c.letters
        }
        if clean:
            self.cache.put_many(clean)  # never raises; off the event loop on this thread
        return [by_event[i.event.event_id] for i in items]

    async def _io(self, call: Callable[..., Any], *args: Any) -> Any:
        """A cache call: inline for the in-process cache (microseconds), on a thread for a
        network one, so a slow Redis never stalls the event loop."""
        if self.cache.backend == "memory":
            return call(*args)
        return await asyncio.to_thread(call, *args)


def restamp(prediction: Prediction, event: ProductEvent, now: datetime) -> Prediction:
    """`prediction` (of this content) as this product's: its id, shop, event and
    `prediction_id`; the answer itself is the content's."""
    return prediction.model_copy(
        update={
            "product_id": event.product_id,
            "shop_id": event.shop_id,
            "prediction_id": prediction_id(
                event.product_id, prediction.content_hash, prediction.model_version, prediction.taxonomy_version
            ),
            "event_id": event.event_id,
            "bulk_request_id": event.bulk_request_id,
            "occurred_at": event.occurred_at,
            "predicted_at": now,
        }
    )
