"""One model call for a batch of products, Beam-free: what classify and extract share.

A step builds one contract request per product (`build`), sends the batch in one
`ModelClient.infer_batch` call, and turns each answer into the product's next WorkItem or
a dead letter (`answer`). The Beam steps (`transforms.model.steps`) run the same pieces,
only split over threads: `call_model` on a pool thread, `answer_batch` back on the
bundle's thread (Beam metrics belong to it), with the in-flight window in between.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transforms.core.dead_letters import new_dead_letter, unexpected_dead_letter
from transforms.core.metrics import MetricsSink
from transforms.model.client import ModelClient
from transforms.records import DeadLetter, WorkItem

__all__ = [
    "Answer",
    "BuiltRequests",
    "ModelCall",
    "answer_batch",
    "build_requests",
    "call_model",
    "model_error",
    "publish_client_stats",
    "run_batch",
]

ModelCall = tuple[bytes, bytes | None]  # (REQUEST, IMAGE) of the model contract
# A step's answer handling: (item, RESPONSE, metrics) -> the item's next WorkItem or a dead letter.
Answer = Callable[[WorkItem, bytes, MetricsSink], "WorkItem | DeadLetter"]


@dataclass(frozen=True)
class BuiltRequests:
    """A batch split by `build_requests`: what goes to the model, in order."""

    items: list[WorkItem]  # the products that need a call, aligned with `requests`
    requests: list[ModelCall]
    passed: list[WorkItem]  # products that need no call (e.g. a category without attributes)
    dead_letters: list[tuple[WorkItem, DeadLetter]]  # products whose request could not be built


def build_requests(
    stage: str, batch: Sequence[WorkItem], build: Callable[[WorkItem], ModelCall | None], metrics: MetricsSink
) -> BuiltRequests:
    """Each product's request; `build` returns None for a product that needs no call. One
    product's request failing is a dead letter for that product, never a failed batch."""
    built = BuiltRequests([], [], [], [])
    for item in batch:
        request = _build_one(stage, item, build, metrics)
        if isinstance(request, DeadLetter):
            built.dead_letters.append((item, request))
        elif request is None:
            built.passed.append(item)
        else:
            built.items.append(item)
            built.requests.append(request)
    return built


def _build_one(
    stage: str, item: WorkItem, build: Callable[[WorkItem], ModelCall | None], metrics: MetricsSink
) -> ModelCall | None | DeadLetter:
    try:
        return build(item)
    except Exception as exc:  # noqa: BLE001 - one product's request never fails the batch
        return unexpected_dead_letter(stage, exc, item, metrics)


def call_model(client: ModelClient, requests: Sequence[ModelCall]) -> tuple[list[bytes | Exception], float]:
    """(one answer per request, the call's seconds). Raises when the whole call failed, or
    when the model answered a different number of requests (answers would be misaligned).
    Counts nothing: under Beam it runs on a pool thread, where Beam metrics would be lost."""
    start = time.perf_counter()
    responses = client.infer_batch(requests)
    if len(responses) != len(requests):
        raise RuntimeError(f"model answered {len(responses)} responses to {len(requests)} requests")
    return responses, time.perf_counter() - start


def answer_batch(
    stage: str,
    items: Sequence[WorkItem],
    outcome: Sequence[bytes | Exception] | Exception,
    answer: Answer,
    metrics: MetricsSink,
    seconds: float | None = None,
) -> list[WorkItem | DeadLetter]:
    """Each item's result, aligned with `items`, from the call's answers or the exception
    that failed the whole call (then every item of the batch is a dead letter at `stage`).
    Counts `model/<stage>_requests`, `_batch_size`, `_batch_latency_ms` and `_failures`."""
    metrics.inc("model", f"{stage}_requests", len(items))
    metrics.update("model", f"{stage}_batch_size", len(items))
    if seconds is not None:
        metrics.update("model", f"{stage}_batch_latency_ms", int(seconds * 1000))
    responses = [outcome] * len(items) if isinstance(outcome, Exception) else outcome
    results: list[WorkItem | DeadLetter] = []
    for item, response in zip(items, responses):
        if isinstance(response, Exception):
            metrics.inc("model", f"{stage}_failures")
            results.append(
                new_dead_letter(stage, type(response).__name__, f"model call failed: {response}", item, metrics)
            )
        else:
            results.append(answer(item, response, metrics))
    return results


def publish_client_stats(stage: str, client: Any, metrics: MetricsSink) -> None:
    """A client that retries (the Triton client) reports its retries and transport
    failures since the last call; others have no `take_stats`."""
    take = getattr(client, "take_stats", None)
    if take is None:
        return
    stats = take()
    metrics.inc("model", f"{stage}_retries", stats.get("retries", 0))
    metrics.inc("model", f"{stage}_transport_failures", stats.get("failures", 0))
    metrics.update("model", f"{stage}_requests_in_flight", stats.get("max_requests_in_flight", 0))


def run_batch(
    stage: str,
    batch: Sequence[WorkItem],
    build: Callable[[WorkItem], ModelCall | None],
    answer: Answer,
    client: ModelClient,
    metrics: MetricsSink,
) -> list[WorkItem | DeadLetter]:
    """A model step for a batch, synchronously: one `infer_batch` call (none when no
    product needs one). Results in the order of `batch`."""
    results: list[WorkItem | DeadLetter] = list(batch)  # a product that needs no call passes as it is
    positions: list[int] = []
    requests: list[ModelCall] = []
    for i, item in enumerate(batch):
        request = _build_one(stage, item, build, metrics)
        if isinstance(request, DeadLetter):
            results[i] = request
        elif request is not None:
            positions.append(i)
            requests.append(request)
    if positions:
        outcome: Sequence[bytes | Exception] | Exception
        seconds: float | None
        try:
            outcome, seconds = call_model(client, requests)
        except Exception as exc:  # noqa: BLE001 - every item of the batch is accounted for
            outcome, seconds = exc, None
        publish_client_stats(stage, client, metrics)
        answered = answer_batch(stage, [batch[i] for i in positions], outcome, answer, metrics, seconds)
        for i, result in zip(positions, answered):
            results[i] = result
    return results


def model_error(response: bytes) -> str | None:
    """The model's own per-item error answer ({"error": ...}), if that is what it is."""
    if not response.startswith(b'{"error"'):
        return None
    try:
        return str(json.loads(response)["error"])
    except (ValueError, KeyError):
        return None
