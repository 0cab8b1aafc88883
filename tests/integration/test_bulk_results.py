"""API-driven bulk operation: two bulk requests (one with a bad event, one forced) against a
prediction store -> one completion record each, to a file and to a real Kafka topic.

The pipeline is wired here as backfill wires it with --prediction_store and --bulk_results:
read -> SkipCurrent(store) -> PredictProducts -> BulkResults -> WriteBulkResults.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.backfill import BackfillOptions, model_factory, predict_config
from pipelines.backfill import run as run_backfill
from tests.conftest import EXAMPLES
from tests.integration.kafka_stack import start_broker
from transforms.bulk.batch import BulkResults, WriteBulkResults
from transforms.freshness.store import ReadPredictionStore, SkipCurrent, StoreSource
from transforms.io.files import ReadEvents
from transforms.io.kafka import KafkaConfig
from transforms.predict import PredictProducts

pytestmark = pytest.mark.integration


def _creates(n: int) -> list[dict]:
    out = []
    for line in (EXAMPLES / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "create":
            out.append(e)
        if len(out) == n:
            return out
    raise AssertionError("not enough examples")


def _bulk_events(products: list[dict]) -> list[dict]:
    """A: 3 current (skipped), 1 content edit (predicted), 1 invalid (failed).
    B: 2 current but forced (predicted), 1 delete."""

    def ev(base: dict, i: str, bulk: str, **kw: object) -> dict:
        return {
            **base,
            "event_id": f"bulk-{bulk}-{i}",
            "type": "update",
            "bulk_request_id": bulk,
            "occurred_at": "2026-01-05T00:00:00Z",
            **kw,
        }

    a = [ev(products[i], str(i), "A") for i in range(3)]
    edited = ev(products[3], "3", "A")
    edited["product"] = {**edited["product"], "title": edited["product"]["title"] + " (2026 edition)"}
    bad = ev(products[4], "bad", "A")
    bad["product"] = {**bad["product"], "title": ""}  # invalid: a product needs a title
    b = [ev(products[i], str(i), "B", force=True) for i in (4, 5)]
    delete = {k: v for k, v in ev(products[0], "del", "B", type="delete").items() if k != "product"}
    return [*a, edited, bad, *b, delete]


def test_bulk_completion_records_to_file_and_kafka(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    try:
        topic = f"bulk-results-{uuid.uuid4().hex[:8]}"
        broker.create_topics(topic, partitions=1, compacted=(topic,))
        products = _creates(6)
        catalog = tmp_path / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(p) + "\n" for p in products))
        (tmp_path / "images").symlink_to(EXAMPLES / "images")
        store_dir = tmp_path / "store"
        assert (
            run_backfill(
                BackfillOptions([f"--input={catalog}", f"--output={store_dir}", f"--image_base_dir={EXAMPLES}"])
            ).predicted
            == 6
        )

        events_path = tmp_path / "bulk.jsonl"
        events_path.write_text("".join(json.dumps(e) + "\n" for e in _bulk_events(products)))
        options = BackfillOptions([f"--input={events_path}", f"--output={tmp_path / 'out'}"])
        config = predict_config(options, model_factory(options), str(tmp_path))
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
            events = p | "Read" >> ReadEvents(str(events_path))
            store = p | "Store" >> ReadPredictionStore(StoreSource.parse(str(store_dir)))
            filtered = events | "SkipCurrent" >> SkipCurrent(
                store, config.metadata.model_version, config.metadata.taxonomy_version
            )
            outputs = filtered["to_predict"] | "Predict" >> PredictProducts(config)
            skipped = [
                filtered["skipped"],
                *([outputs["skipped"]] if "skipped" in outputs else []),
            ] | "AllSkips" >> beam.Flatten()
            results = {**outputs, "events": events, "skipped": skipped} | "Bulk" >> BulkResults()
            _ = results | "ToFile" >> WriteBulkResults(str(out_dir))
            _ = results | "ToKafka" >> WriteBulkResults(f"kafka:{topic}", KafkaConfig(broker.bootstrap))

        expected = {
            "A": {"predicted": 1, "skipped": 3, "failed": 1, "deleted": 0, "unaccounted": 0, "total": 5},
            "B": {"predicted": 2, "skipped": 0, "failed": 0, "deleted": 1, "unaccounted": 0, "total": 3},
        }

        def strip(r: dict) -> dict:
            assert r.pop("completed_at")
            return r

        from_file = {
            r["bulk_request_id"]: r for r in map(json.loads, (out_dir / "bulk_results.jsonl").read_text().splitlines())
        }
        assert {
            k: {f: v for f, v in strip(r).items() if f != "bulk_request_id"} for k, r in from_file.items()
        } == expected
        records = broker.read_all(topic)
        assert len(records) == 2
        from_kafka = {k.decode(): json.loads(v) for k, v, _ in records}
        assert {
            k: {f: v for f, v in strip(r).items() if f != "bulk_request_id"} for k, r in from_kafka.items()
        } == expected
    finally:
        broker.sh("down", check=False)
