"""Bulk completion records: outcome attribution (pure) and BulkResults under Beam."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.bulk.batch import (
    FAILED,
    PREDICTED,
    UNACCOUNTED,
    BulkResults,
    WriteBulkResults,
    count_outcomes,
    outcome_of,
    request_of,
    to_result,
)
from transforms.freshness.store import Skip
from transforms.records import DeadLetter, Prediction, ProductEvent

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _raw(eid: str, bulk: str | None, **extra: object) -> bytes:
    e = {
        "event_id": eid,
        "type": "create",
        "product_id": f"p-{eid}",
        "shop_id": "s",
        "occurred_at": "2026-01-01T00:00:00Z",
        "product": {"title": "t"},
    }
    if bulk:
        e["bulk_request_id"] = bulk
    e.update(extra)
    return json.dumps(e).encode()


def _prediction(eid: str) -> Prediction:
    return Prediction(
        product_id=f"p-{eid}",
        shop_id="s",
        prediction_id="x",
        content_hash="h",
        model_version="m",
        taxonomy_version="t",
        category=None,
        status="unresolved",
        event_id=eid,
        predicted_at=NOW,
    )


def _letter(stage: str, eid: str | None, payload: bytes) -> DeadLetter:
    return DeadLetter(
        stage=stage, error_type="E", message="m", original_payload=payload.decode(), time=NOW, event_id=eid
    )


def test_request_of_is_lenient() -> None:
    assert request_of(_raw("e1", "b1")) == ("e1", "b1")
    assert request_of(_raw("e1", None)) is None
    assert request_of(json.dumps({"event_id": "e9", "bulk_request_id": "b2", "type": "bogus"})) == ("e9", "b2")
    assert request_of(b"\xff not json") is None
    assert request_of(ProductEvent.model_validate_json(_raw("e1", "b1"))) == ("e1", "b1")


def test_outcome_of() -> None:
    assert outcome_of(_prediction("e1"), PREDICTED) == ("e1", PREDICTED)
    assert outcome_of(Skip("p", "e2", "x", "b"), "skipped") == ("e2", "skipped")
    ev = ProductEvent.model_validate_json(_raw("e7", "b1"))
    assert outcome_of(Skip.of_event(ev, "skipped_unchanged", "h"), "skipped") == ("e7", "skipped")
    # decode failed before the event id was known: found in the original payload
    assert outcome_of(_letter("decode", None, _raw("e3", "b1", type="bogus")), FAILED) == ("e3", FAILED)
    assert outcome_of(_letter("classify", "e4", b"{}"), FAILED) == ("e4", FAILED)
    assert outcome_of(_letter("prepare_images", "e5", b"{}"), FAILED) is None  # the product continues
    assert outcome_of(_letter("decode", None, b"garbage"), FAILED) is None


def test_count_outcomes_and_result() -> None:
    assert count_outcomes(["b1"], [PREDICTED]) == [("b1", PREDICTED)]
    assert count_outcomes(["b1", "b1"], [PREDICTED]) == [("b1", PREDICTED), ("b1", UNACCOUNTED)]
    assert count_outcomes([], [PREDICTED]) == []  # not part of any bulk request
    r = to_result("b1", {"predicted": 2, "failed": 1}, "2026-01-01T00:00:00+00:00")
    assert (r.predicted, r.skipped, r.failed, r.total) == (2, 0, 1, 3)
    assert json.loads(r.to_json())["bulk_request_id"] == "b1"


def test_bulk_results_pipeline(tmp_path: Path) -> None:
    events = [
        _raw("a1", "A"),
        _raw("a2", "A"),
        _raw("a3", "A", type="bogus"),
        _raw("b1", "B"),
        _raw("n1", None),
        b"garbage",
    ]
    p = TestPipeline(runner=FnApiRunner())
    streams = {
        "events": p | "E" >> beam.Create(events),
        "predictions": p | "P" >> beam.Create([_prediction("a1"), _prediction("n1")]),
        "skipped": p | "S" >> beam.Create([Skip("p-a2", "a2", "x", "A")]),
        "dead_letters": p
        | "D"
        >> beam.Create(
            [
                _letter("decode", None, events[2]),
                _letter("decode", None, b"garbage"),
                _letter("prepare_images", "b1", b"{}"),
            ]
        ),
        "deletes": p | "X" >> beam.Create([]),
    }
    results = streams | BulkResults()
    got = results | beam.Map(
        lambda r: (r.bulk_request_id, r.predicted, r.skipped, r.failed, r.deleted, r.unaccounted, r.total)
    )
    # b1's only outcome is a partial dead letter (the stream of predictions here lacks it): unaccounted
    assert_that(got, equal_to([("A", 1, 1, 1, 0, 0, 3), ("B", 0, 0, 0, 0, 1, 1)]))
    results | WriteBulkResults(str(tmp_path))
    p.run().wait_until_finish()
    lines = [json.loads(x) for x in (tmp_path / "bulk_results.jsonl").read_text().splitlines()]
    assert sorted(r["bulk_request_id"] for r in lines) == ["A", "B"]
    assert set(lines[0]) == {
        "bulk_request_id",
        "predicted",
        "skipped",
        "failed",
        "deleted",
        "unaccounted",
        "total",
        "completed_at",
    }
