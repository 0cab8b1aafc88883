"""API-driven bulk operations: one completion record per bulk request.

An API call (re-predict these products, with or without `force`) becomes events that
carry `bulk_request_id`. Every event ends as a prediction, a counted skip, a delete or a
dead letter (DESIGN.md "Delivery"); `BulkResults` counts those outcomes per request and
emits one `BulkResult` when the request is done.

"Done", in a batch job, is the end of the input: the counts are a CombinePerKey in the
global window, which fires once when the bounded input is exhausted, so a request's
record is written only after all of its events have an outcome.

In a stream the end of a request is not the end of the input: the events carry
`bulk_size` and `transforms/bulk/stream.py` writes the record when that many have an
outcome (or a partial one at a deadline).

How an outcome finds its request: a Prediction and a Skip carry `event_id`; a DeadLetter
carries `event_id` when decode got that far, and its `original_payload` (the raw event)
otherwise. The raw input is read once more for the map event_id -> bulk_request_id, and
the outcomes are joined with it by event_id. A line that is not JSON cannot name its
request and is not counted in any record (it still is a dead letter).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.decode import DecodeError, parse_event_object
from transforms.io.kafka import KafkaConfig, OutgoingRecord, WriteToKafka
from transforms.records import DeadLetter, ProductEvent

__all__ = [
    "PREDICTED",
    "SKIPPED",
    "FAILED",
    "DELETED",
    "UNACCOUNTED",
    "OUTCOMES",
    "PARTIAL_STAGES",
    "BulkResult",
    "event_fields",
    "request_of",
    "outcome_of",
    "count_outcomes",
    "to_result",
    "BulkResults",
    "bulk_result_record",
    "WriteBulkResults",
]

PREDICTED = "predicted"
SKIPPED = "skipped"
FAILED = "failed"
DELETED = "deleted"
UNACCOUNTED = "unaccounted"
OUTCOMES = (PREDICTED, SKIPPED, FAILED, DELETED)

# Dead letters at these stages concern a part of a product (one image); the product still
# ends as a prediction, so they are not the event's outcome. Same as backfill's.
PARTIAL_STAGES = frozenset({"prepare_images"})


@dataclass(frozen=True)
class BulkResult:
    bulk_request_id: str
    predicted: int
    skipped: int
    failed: int
    deleted: int
    # Events of the request that have no outcome; 0 unless something was lost, which the
    # delivery rule forbids, so a non-zero value is a bug to report, not to hide.
    unaccounted: int
    total: int
    completed_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def event_fields(element: Any) -> dict[str, Any] | None:
    """A raw event (bytes, str, dict or ProductEvent) as a dict, without validating it;
    None when it is not a JSON object."""
    if isinstance(element, ProductEvent):
        return element.model_dump(mode="json")
    try:
        # The decode stage's bounded parser: a hostile event (deep nesting, a huge line)
        # is refused here too instead of recursing in json.loads.
        return parse_event_object(element)
    except DecodeError:
        return None


def request_of(element: Any) -> tuple[str, str] | None:
    """(event_id, bulk_request_id) of a raw event when it names both, else None. Lenient:
    an event that fails validation still belongs to its request (it ends as `failed`)."""
    data = event_fields(element)
    if data is None:
        return None
    event_id, bulk = data.get("event_id"), data.get("bulk_request_id")
    if isinstance(event_id, str) and event_id.strip() and isinstance(bulk, str) and bulk.strip():
        return event_id.strip(), bulk.strip()
    return None


def outcome_of(element: Any, kind: str) -> tuple[str, str] | None:
    """(event_id, outcome) of an outcome record, or None when it names no event."""
    if isinstance(element, DeadLetter):
        if element.stage in PARTIAL_STAGES:
            return None
        if element.event_id:
            return element.event_id, FAILED
        found = request_of(element.original_payload)
        return (found[0], FAILED) if found else None
    # Prediction and freshness Skip carry event_id; an event (ProductEvent) carries its own.
    event_id = getattr(element, "event_id", None) or getattr(getattr(element, "event", None), "event_id", None)
    return (event_id, kind) if event_id else None


def count_outcomes(requests: Iterable[str], outcomes: Iterable[str]) -> list[tuple[str, str]]:
    """Pair the requests an event_id was seen in with its outcomes: [(bulk_id, outcome)].
    An event id seen twice in the input counts twice; one without outcome is unaccounted."""
    reqs, outs = list(requests), list(outcomes)
    return [(bulk, outs[i] if i < len(outs) else UNACCOUNTED) for i, bulk in enumerate(reqs)]


class _CountOutcomes(beam.CombineFn):
    def create_accumulator(self) -> dict[str, int]:
        return {}

    def add_input(self, acc: dict[str, int], outcome: str) -> dict[str, int]:
        acc[outcome] = acc.get(outcome, 0) + 1
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in accs:
            for k, v in a.items():
                out[k] = out.get(k, 0) + v
        return out

    def extract_output(self, acc: dict[str, int]) -> dict[str, int]:
        return acc


def to_result(bulk_id: str, counts: dict[str, int], completed_at: str | None = None) -> BulkResult:
    return BulkResult(
        bulk_request_id=bulk_id,
        predicted=counts.get(PREDICTED, 0),
        skipped=counts.get(SKIPPED, 0),
        failed=counts.get(FAILED, 0),
        deleted=counts.get(DELETED, 0),
        unaccounted=counts.get(UNACCOUNTED, 0),
        total=sum(counts.values()),
        completed_at=completed_at or datetime.now(UTC).isoformat(),
    )


class _Pair(beam.DoFn):
    def __init__(self) -> None:
        self.unaccounted = Metrics.counter("bulk", "unaccounted_events")

    def process(self, joined: tuple[str, dict[str, list[str]]]) -> Iterator[tuple[str, str]]:
        _, groups = joined
        for bulk, outcome in count_outcomes(groups["requests"], groups["outcomes"]):
            if outcome == UNACCOUNTED:
                self.unaccounted.inc()
            yield bulk, outcome


class _Emit(beam.DoFn):
    def __init__(self) -> None:
        self.records = Metrics.counter("bulk", "completion_records")

    def process(self, kv: tuple[str, dict[str, int]]) -> Iterator[BulkResult]:
        self.records.inc()
        yield to_result(*kv)


def _global(pcoll: beam.PCollection, label: str) -> beam.PCollection:
    return pcoll | label >> beam.WindowInto(beam.window.GlobalWindows())


class BulkResults(beam.PTransform):
    """{"events": raw events (the job's input), "predictions": Prediction, "skipped": Skip
    (optional), "dead_letters": DeadLetter, "deletes": ProductEvent (optional)} ->
    PCollection[BulkResult], one per bulk_request_id seen in the events. Batch only."""

    def expand(self, streams: dict[str, beam.PCollection]) -> beam.PCollection:  # type: ignore[override]
        requests = (
            _global(streams["events"], "EventsGlobal")
            | "RequestOf" >> beam.Map(request_of)
            | "BulkOnly" >> beam.Filter(lambda r: r is not None)
        )
        kinds = {"predictions": PREDICTED, "skipped": SKIPPED, "dead_letters": FAILED, "deletes": DELETED}
        parts = [
            _global(streams[name], f"{name}Global")
            | f"{name}Outcome" >> beam.Map(outcome_of, kind)
            | f"{name}Named" >> beam.Filter(lambda o: o is not None)
            for name, kind in kinds.items()
            if name in streams
        ]
        outcomes = parts | "AllOutcomes" >> beam.Flatten()
        return (
            {"requests": requests, "outcomes": outcomes}
            | "JoinByEvent" >> beam.CoGroupByKey()
            | "Pair" >> beam.ParDo(_Pair())
            | "CountPerRequest" >> beam.CombinePerKey(_CountOutcomes())
            | "Record" >> beam.ParDo(_Emit())
        )


def bulk_result_record(result: BulkResult, topic: str) -> OutgoingRecord:
    """Keyed by bulk_request_id, so a replayed job overwrites its record under compaction."""
    return OutgoingRecord(topic=topic, key=result.bulk_request_id.encode(), value=result.to_json().encode())


class WriteBulkResults(beam.PTransform):
    """BulkResult -> `kafka:TOPIC`, or `DIR/bulk_results.jsonl` (a directory, or a path
    ending in .jsonl)."""

    def __init__(self, target: str, kafka: KafkaConfig | None = None) -> None:
        super().__init__()
        if target.startswith("kafka:") and kafka is None:
            raise ValueError(f"bulk results to {target} need Kafka settings (--kafka_bootstrap)")
        self.target, self.kafka = target, kafka

    def expand(self, results: beam.PCollection) -> beam.PCollection:  # type: ignore[override]
        if self.target.startswith("kafka:"):
            assert self.kafka is not None
            return (
                results
                | "BulkRecords" >> beam.Map(bulk_result_record, self.target[len("kafka:") :])
                | "WriteBulkToKafka" >> beam.ParDo(WriteToKafka(self.kafka))
            )
        path = self.target if self.target.endswith(".jsonl") else os.path.join(self.target, "bulk_results.jsonl")
        stem, suffix = os.path.splitext(path)
        return (
            results
            | "BulkJson" >> beam.Map(BulkResult.to_json)
            | "WriteBulkJsonl"
            >> beam.io.WriteToText(stem, file_name_suffix=suffix, num_shards=1, shard_name_template="")
        )
