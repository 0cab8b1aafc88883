"""Bulk completion records in a stream: the pure state machine, how outcomes find their
request, and the stateful DoFn under TestStream on Prism (skipped with a reason where the
Prism binary is not built)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipelines.stream import prism_binary
from transforms.bulk.stream import (
    BulkElement,
    RequestState,
    StreamingBulkResults,
    TrackBulkRequests,
    arrival_of,
    on_deadline,
    on_element,
    outcome_element,
)
from transforms.records import (
    DeadLetter,
    EventType,
    Prediction,
    PredictionStatus,
    ProductEvent,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def raw(eid: str, bulk: str | None = "b1", size: int | None = 3, **extra: object) -> bytes:
    event = {
        "event_id": eid,
        "type": "update",
        "product_id": f"p-{eid}",
        "shop_id": "s",
        "occurred_at": NOW.isoformat(),
        "product": {"title": f"shirt {eid}"},
        **extra,
    }
    if bulk:
        event["bulk_request_id"] = bulk
    if size:
        event["bulk_size"] = size
    return json.dumps(event).encode()


def prediction(eid: str, bulk: str | None = "b1") -> Prediction:
    return Prediction(
        product_id=f"p-{eid}",
        shop_id="s",
        prediction_id="x",
        content_hash="h",
        model_version="m",
        taxonomy_version="t",
        category=None,
        status=PredictionStatus.UNRESOLVED,
        event_id=eid,
        bulk_request_id=bulk,
        predicted_at=NOW,
    )


def letter(payload: bytes, stage: str = "classify", eid: str | None = None) -> DeadLetter:
    return DeadLetter(
        stage=stage, error_type="E", message="m", original_payload=payload.decode(), time=NOW, event_id=eid
    )


def delete(eid: str, bulk: str = "b1") -> ProductEvent:
    return ProductEvent(
        event_id=eid,
        type=EventType.DELETE,
        product_id=f"p-{eid}",
        shop_id="s",
        occurred_at=NOW,
        bulk_request_id=bulk,
        bulk_size=3,
    )


# --- which request an element belongs to ---------------------------------------------------


def test_arrival_names_request_size_and_event() -> None:
    assert arrival_of(raw("e1")) == ("b1", BulkElement("e1", None, 3))
    assert arrival_of(raw("e1", size=None)) == ("b1", BulkElement("e1", None, None))
    assert arrival_of(raw("e1", bulk=None)) is None
    assert arrival_of(b"not json") is None and arrival_of(b"[1]") is None


def test_an_invalid_event_still_belongs_to_its_request() -> None:
    assert arrival_of(raw("e1", type="nonsense")) == ("b1", BulkElement("e1", None, 3))


def test_outcomes_find_their_request() -> None:
    assert outcome_element(prediction("e1"), "predicted") == ("b1", BulkElement("e1", "predicted"))
    assert outcome_element(prediction("e1", bulk=None), "predicted") is None
    assert outcome_element(letter(raw("e2"), eid="e2"), "failed") == ("b1", BulkElement("e2", "failed"))
    assert outcome_element(delete("e3"), "deleted") == ("b1", BulkElement("e3", "deleted"))


def test_a_dead_image_is_not_the_events_outcome() -> None:
    assert outcome_element(letter(raw("e1"), stage="prepare_images", eid="e1"), "failed") is None


# --- the state machine ---------------------------------------------------------------------


def feed(*elements: BulkElement, state: RequestState | None = None) -> tuple[RequestState, list, list[str]]:
    state, results, whats = state or RequestState(), [], []
    for e in elements:
        state, result, what = on_element("b1", state, e)
        whats.append(what)
        if result is not None:
            results.append(result)
    return state, results, whats


def test_record_when_bulk_size_events_have_an_outcome() -> None:
    state, results, _ = feed(
        BulkElement("e1", None, 3),
        BulkElement("e2", None, 3),
        BulkElement("e3", None, 3),
        BulkElement("e1", "predicted"),
        BulkElement("e2", "failed"),
    )
    assert results == [] and not state.done
    state, results, _ = feed(BulkElement("e3", "skipped"), state=state)
    assert state.done and len(results) == 1
    r = results[0]
    assert (r.predicted, r.failed, r.skipped, r.deleted, r.unaccounted, r.total) == (1, 1, 1, 0, 0, 3)


def test_an_outcome_may_arrive_before_its_event() -> None:
    _, results, _ = feed(BulkElement("e1", "predicted"), BulkElement("e1", None, 1))
    assert len(results) == 1 and results[0].predicted == 1


def test_a_redelivered_outcome_counts_once_and_a_late_one_writes_nothing() -> None:
    _, results, whats = feed(
        BulkElement("e1", None, 2),
        BulkElement("e1", "predicted"),
        BulkElement("e1", "predicted"),
        BulkElement("e2", "deleted"),
        BulkElement("e2", "deleted"),
    )
    assert whats == ["arrival", "outcome", "duplicate", "outcome", "after_done"]
    assert len(results) == 1 and (results[0].predicted, results[0].deleted, results[0].total) == (1, 1, 2)


def test_the_deadline_writes_a_partial_record_then_forgets() -> None:
    state, _, _ = feed(BulkElement("e1", None, 3), BulkElement("e1", "predicted"))
    state2, result = on_deadline("b1", state)
    assert result is not None and (result.predicted, result.unaccounted, result.total) == (1, 2, 3)
    assert state2 is not None and state2.done
    assert on_deadline("b1", state2) == (None, None)


def test_without_bulk_size_the_deadline_writes_what_arrived() -> None:
    state, results, _ = feed(BulkElement("e1", None, None), BulkElement("e1", "predicted"))
    assert results == []
    _, result = on_deadline("b1", state)
    assert result is not None and (result.predicted, result.unaccounted, result.total) == (1, 0, 1)


def test_timeout_is_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        TrackBulkRequests(0)


def test_bulk_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ProductEvent.model_validate_json(raw("e1", size=None, bulk_size=0))


# --- Beam: TestStream on Prism ---------------------------------------------------------------

PRISM = prism_binary()
needs_prism = pytest.mark.skipif(PRISM is None, reason="Prism is not built: run deploy/local/prism/prism.sh")


def _run(
    streams: dict[str, list[tuple[object, float]]],
    timeout_s: float,
    watermark_steps: list[float],
    expected: list[tuple],
) -> None:
    """One TestStream (Prism runs one per pipeline) of (input name, element), split per input;
    the watermark advances through `watermark_steps`."""
    options = PipelineOptions(["--runner=PrismRunner", f"--prism_location={PRISM}"])
    options.view_as(StandardOptions).streaming = True
    p = beam.Pipeline(options=options)
    pending = sorted(((t, name, v) for name, elements in streams.items() for v, t in elements), key=lambda e: e[0])
    ts = EventStream().advance_watermark_to(0)
    for step in watermark_steps:
        now = [TimestampedValue((name, v), t) for t, name, v in pending if t < step]
        pending = [e for e in pending if e[0] >= step]
        if now:
            ts = ts.add_elements(now)
        ts = ts.advance_watermark_to(step)
    tagged = p | ts.advance_watermark_to_infinity()
    pcolls = {
        name: tagged
        | f"Only{name}" >> beam.Filter(lambda e, n: e[0] == n, name)
        | f"Value{name}" >> beam.Map(lambda e: e[1])
        for name in streams
    }
    results = pcolls | StreamingBulkResults(timeout_s)
    summary = results | beam.Map(
        lambda r: (r.bulk_request_id, r.predicted, r.skipped, r.failed, r.deleted, r.unaccounted, r.total)
    )
    assert_that(summary, equal_to(expected))
    p.run().wait_until_finish()


@needs_prism
def test_stream_writes_one_record_per_request_and_a_partial_one_at_the_deadline() -> None:
    events = [(raw(f"a{i}", bulk="A", size=3), 10 + i) for i in range(3)] + [
        (raw(f"b{i}", bulk="B", size=3), 20 + i) for i in range(2)
    ]
    events.append((raw("x", bulk=None), 25))  # no request: no record
    predictions = [(prediction("a0", "A"), 30), (prediction("a2", "A"), 31), (prediction("b0", "B"), 32)]
    predictions.append((prediction("a0", "A"), 33))  # an at-least-once re-delivery
    letters = [(letter(raw("a1", bulk="A", size=3), eid="a1"), 34)]
    streams = {"events": events, "predictions": predictions, "dead_letters": letters}
    # A completes at t=34 (its re-delivered prediction counts once); B has 1 outcome of 3
    # and is written at its deadline, 20 + 100, with 2 unaccounted.
    _run(
        streams,
        timeout_s=100,
        watermark_steps=[50, 200, 400],
        expected=[("A", 2, 0, 1, 0, 0, 3), ("B", 1, 0, 0, 0, 2, 3)],
    )
