"""API bulk operations in a stream: one completion record per request, written when the
last of its events has an outcome.

In a batch job the end of the input ends every request (`transforms/bulk/batch.py`). In a stream
the request says how big it is: the API knows the number of products when it accepts the
request, so each of its events carries `bulk_size`. A stateful DoFn keyed by
`bulk_request_id` collects the request's events and their outcomes (prediction, skip,
delete, dead letter: the same rules as the batch job) and emits the `BulkResult` when
`bulk_size` distinct events have an outcome. An event-time deadline (`timeout_s` after the
request's first element) emits a partial record instead of waiting forever: `unaccounted`
is then the number of events without an outcome (a request whose events never all reached
the topic, or whose `bulk_size` is wrong). Without `bulk_size` the record is written at the
deadline with what arrived.

At-least-once delivery re-delivers outcomes: one event's outcome is counted once (the
first), and a request stays marked done for another `timeout_s`, so a late duplicate
neither reopens it nor writes a second record.

Layers, as in `transforms/freshness/refresh.py`: `on_element` / `on_deadline` are the pure state
machine; `TrackBulkRequests` is the stateful DoFn; `StreamingBulkResults` the composite.

Delivery (DESIGN.md "Delivery"): the state lives in the runner. With `track` (the stream's
sink-side offset commit, transforms/io/kafka_commit.py) a request's arrivals are released
as done only with its written record, so a crash before that re-reads them and the request
is rebuilt; an event that is not part of a request is done on this path at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.typehints import Tuple
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.bulk.batch import (
    DELETED,
    FAILED,
    OUTCOMES,
    PREDICTED,
    SKIPPED,
    BulkResult,
    event_fields,
    outcome_of,
    request_of,
    to_result,
)
from transforms.records import DeadLetter, ProductEvent

__all__ = [
    "NAMESPACE",
    "BulkElement",
    "RequestState",
    "arrival_of",
    "outcome_element",
    "on_element",
    "on_deadline",
    "TrackBulkRequests",
    "StreamingBulkResults",
]

NAMESPACE = "bulk"


@dataclass(frozen=True)
class BulkElement:
    """What the keyed step sees of one event: its arrival (`outcome` None) or its outcome."""

    event_id: str
    outcome: str | None = None
    size: int | None = None
    # An arrival's Kafka position (stream with sink-side commits): released, as done, with
    # the request's record.
    source: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class RequestState:
    size: int | None = None
    # event_id -> its first outcome.
    outcomes: dict[str, str] = field(default_factory=dict)
    events_seen: int = 0
    done: bool = False
    # Kafka positions of the arrivals not yet released (see TrackBulkRequests `track`).
    sources: tuple[tuple[str, int, int], ...] = ()


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def arrival_of(raw: Any) -> tuple[str, BulkElement] | None:
    """(bulk_request_id, arrival) of a raw event that names a request, else None. Lenient, as
    `bulk.request_of`: an event that fails validation still belongs to its request. A Kafka
    record's arrival carries the record's position."""
    source = _kafka_position(raw)
    if source is not None:
        found = arrival_of(raw.value)
        return (found[0], replace(found[1], source=source)) if found else None
    if (isinstance(raw, bytes) and b"bulk_request_id" not in raw) or (
        isinstance(raw, str) and "bulk_request_id" not in raw
    ):
        return None  # most events are not part of a bulk operation: skip the second parse
    data = event_fields(raw)
    found = request_of(data) if data is not None else None
    if found is None:
        return None
    event_id, bulk = found
    return bulk, BulkElement(event_id, None, _size(data.get("bulk_size")))  # type: ignore[union-attr]


def _kafka_position(element: Any) -> tuple[str, int, int] | None:
    offset = getattr(element, "offset", None)
    if isinstance(offset, int) and hasattr(element, "partition") and hasattr(element, "value"):
        return (element.topic, element.partition, offset)
    return None


def _bulk_of(element: Any) -> str | None:
    if isinstance(element, DeadLetter):
        found = arrival_of(element.original_payload)
        return found[0] if found else None
    event = element if isinstance(element, ProductEvent) else getattr(element, "event", None)
    bulk = getattr(event, "bulk_request_id", None) or getattr(element, "bulk_request_id", None)
    return bulk or None


def outcome_element(element: Any, kind: str) -> tuple[str, BulkElement] | None:
    """(bulk_request_id, outcome) of a Prediction, Skip(ped), delete or DeadLetter that
    belongs to a request, else None (partial-stage dead letters are not outcomes)."""
    found = outcome_of(element, kind)
    bulk = _bulk_of(element) if found else None
    if found is None or bulk is None:
        return None
    return bulk, BulkElement(found[0], found[1])


def _result(bulk_id: str, state: RequestState, timed_out: bool) -> BulkResult:
    counts = {k: 0 for k in OUTCOMES}
    for outcome in state.outcomes.values():
        counts[outcome] += 1
    if timed_out and state.size is not None:
        counts["unaccounted"] = max(0, state.size - len(state.outcomes))
    return to_result(bulk_id, counts)


def on_element(bulk_id: str, state: RequestState, element: BulkElement) -> tuple[RequestState, BulkResult | None, str]:
    """One arrival or outcome. Returns (new state, the record when the request is now
    complete, what happened: arrival | outcome | duplicate | after_done)."""
    if state.done:
        return state, None, "after_done"
    size = state.size if state.size is not None else element.size
    if element.outcome is None:
        sources = state.sources + ((element.source,) if element.source is not None else ())
        state, what = replace(state, size=size, events_seen=state.events_seen + 1, sources=sources), "arrival"
    elif element.event_id in state.outcomes:
        return replace(state, size=size), None, "duplicate"
    else:
        state, what = (
            replace(state, size=size, outcomes={**state.outcomes, element.event_id: element.outcome}),
            "outcome",
        )
    if state.size is not None and len(state.outcomes) >= state.size:
        return replace(state, done=True, outcomes={}), _result(bulk_id, state, timed_out=False), what
    return state, None, what


def on_deadline(bulk_id: str, state: RequestState) -> tuple[RequestState | None, BulkResult | None]:
    """The deadline fired. An open request gets its partial record and stays done for one
    more period (new state returned); a done one is forgotten (None)."""
    if state.done:
        return None, None
    return replace(state, done=True, outcomes={}), _result(bulk_id, state, timed_out=True)


class TrackBulkRequests(beam.DoFn):
    """(bulk_request_id, BulkElement) -> BulkResult, one per request.

    `track` (the stream's sink-side offset commit): outputs (sources, BulkResult | None)
    instead, `sources` the Kafka positions of the arrivals the output releases: a
    request's arrivals are released with its record (their offsets are committed once it
    is written); an arrival after the record was written, at once (None: nothing to write)."""

    REQUEST = ReadModifyWriteStateSpec("request", coders.PickleCoder())
    DEADLINE_SET = ReadModifyWriteStateSpec("deadline_set", coders.BooleanCoder())
    DEADLINE = TimerSpec("deadline", TimeDomain.WATERMARK)

    def __init__(self, timeout_s: float, track: bool = False) -> None:
        if timeout_s <= 0:
            raise ValueError(f"the bulk request timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.track = track
        self.counters = {k: Metrics.counter(NAMESPACE, k) for k in ("arrival", "outcome", "duplicate", "after_done")}
        self.records = Metrics.counter(NAMESPACE, "completion_records")
        self.partial = Metrics.counter(NAMESPACE, "partial_records")

    def process(
        self,
        kv: tuple[str, BulkElement],
        timestamp: Timestamp = beam.DoFn.TimestampParam,
        request: Any = beam.DoFn.StateParam(REQUEST),
        deadline_set: Any = beam.DoFn.StateParam(DEADLINE_SET),
        deadline: Any = beam.DoFn.TimerParam(DEADLINE),
    ) -> Iterator[BulkResult]:
        bulk_id, element = kv
        state, result, what = on_element(bulk_id, request.read() or RequestState(), element)
        self.counters[what].inc()
        released: tuple[tuple[str, int, int], ...] = ()
        if result is not None:
            released, state = state.sources, replace(state, sources=())
        request.write(state)
        if result is not None or not deadline_set.read():
            # First element: the deadline. Completion: the done marker lives one more
            # period, so that late duplicates find it.
            deadline.set(timestamp + Duration.of(self.timeout_s))
            deadline_set.write(True)
        if result is not None:
            self.records.inc()
            yield (released, result) if self.track else result
        elif what == "after_done" and self.track and element.source is not None:
            yield (element.source,), None

    @on_timer(DEADLINE)
    def expire(
        self,
        key: str = beam.DoFn.KeyParam,
        fired: Timestamp = beam.DoFn.TimestampParam,
        request: Any = beam.DoFn.StateParam(REQUEST),
        deadline_set: Any = beam.DoFn.StateParam(DEADLINE_SET),
        deadline: Any = beam.DoFn.TimerParam(DEADLINE),
    ) -> Iterator[BulkResult]:
        state = request.read()
        if state is None:
            return
        state, result = on_deadline(key, state)
        if state is None:
            request.clear()
            deadline_set.clear()
            return
        released, state = state.sources, replace(state, sources=())
        request.write(state)
        deadline.set(fired + Duration.of(self.timeout_s))
        self.records.inc()
        self.partial.inc()
        assert result is not None
        yield (released, result) if self.track else result


class StreamingBulkResults(beam.PTransform):
    """{"events": raw events, "predictions", "dead_letters", "deletes", "skipped"
    (optional)} -> PCollection[BulkResult], one per bulk_request_id. With `track` the events
    are Kafka records and the output is (sources, BulkResult | None), every record's
    position released exactly once (see TrackBulkRequests)."""

    def __init__(self, timeout_s: float = 3600.0, track: bool = False) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.track = track

    def expand(self, streams: dict[str, beam.PCollection]) -> beam.PCollection:  # type: ignore[override]
        if self.track:
            # Events are Kafka records: one not part of a request is done on the bulk path
            # at once, (its position, None); the others are released with their record.
            split = streams["events"] | "ArrivalOf" >> beam.ParDo(_TrackedArrivals()).with_outputs(
                _NOT_BULK, main="arrivals"
            )
            arrivals, not_bulk = split.arrivals, split[_NOT_BULK]
        else:
            arrivals = streams["events"] | "ArrivalOf" >> beam.Map(arrival_of)
        kinds = {"predictions": PREDICTED, "skipped": SKIPPED, "dead_letters": FAILED, "deletes": DELETED}
        parts = [arrivals] + [
            streams[name] | f"{name}Outcome" >> beam.Map(outcome_element, kind)
            for name, kind in kinds.items()
            if name in streams
        ]
        results = (
            parts
            | "AllBulkElements" >> beam.Flatten()
            # Typed, so that the state's key coder is the deterministic one for str.
            | "OfARequest" >> beam.Filter(lambda e: e is not None).with_output_types(Tuple[str, Any])
            | "Track" >> beam.ParDo(TrackBulkRequests(self.timeout_s, self.track))
        )
        if self.track:
            return (results, not_bulk) | "AndNotBulk" >> beam.Flatten()
        return results


_NOT_BULK = "not_bulk"


class _TrackedArrivals(beam.DoFn):
    """Kafka record -> its arrival, or ((position,), None) on `not_bulk`."""

    def process(self, record: Any) -> Iterator[Any]:
        found = arrival_of(record)
        if found is not None:
            yield found
            return
        source = _kafka_position(record)
        if source is not None:
            yield beam.pvalue.TaggedOutput(_NOT_BULK, ((source,), None))
