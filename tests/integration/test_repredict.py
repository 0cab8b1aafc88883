"""repredict end to end: backfill a catalog snapshot, then re-predict exactly the stale
products (snapshot store and a real compacted Kafka topic); --dry-run counts match."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.backfill import BackfillOptions
from pipelines.backfill import run as run_backfill
from pipelines.repredict import RepredictOptions
from pipelines.repredict import run as run_repredict
from tests.conftest import EXAMPLES
from tests.integration.kafka_stack import Broker, start_broker
from transforms.encode import prediction_record
from transforms.records import ProductEvent

pytestmark = pytest.mark.integration

OLD_MODEL = ["1002", "1010", "1020", "1030", "1040"]
OLD_TAXONOMY = ["1003", "1011"]
CHANGED = ["1004"]
MISSING = ["1005"]


def _pid(n: str) -> str:
    return f"gid://shopify/Product/{n}"


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A catalog snapshot (the latest event per product of examples/events.jsonl, deleted
    products left out) and the backfill of it."""
    root = tmp_path_factory.mktemp("repredict")
    latest: dict[str, ProductEvent] = {}
    lines: dict[str, str] = {}
    for line in (EXAMPLES / "events.jsonl").read_text().splitlines():
        e = ProductEvent.model_validate_json(line)
        if e.product_id not in latest or e.occurred_at >= latest[e.product_id].occurred_at:
            latest[e.product_id], lines[e.product_id] = e, line
    catalog = root / "catalog.jsonl"
    catalog.write_text("".join(lines[p] + "\n" for p, e in latest.items() if e.type.value != "delete"))
    (root / "images").symlink_to(EXAMPLES / "images")  # image paths are relative to the catalog
    out = root / "backfill"
    summary = run_backfill(BackfillOptions([f"--input={catalog}", f"--output={out}", f"--image_base_dir={EXAMPLES}"]))
    assert summary.predicted == 76 and summary.dead_letter_total == 0, summary
    return {"root": root, "catalog": catalog, "backfill": out}


def _repredict(catalog: Path, store: str, output: Path | None, dry_run: bool = False, *extra: str):
    flags = [f"--catalog={catalog}", f"--prediction_store={store}", f"--image_base_dir={EXAMPLES}", *extra]
    if output is not None:
        flags.append(f"--repredict_output={output}")
    if dry_run:
        flags.append("--repredict_dry_run")
    return run_repredict(RepredictOptions(flags))


def _rewritten(backfilled: dict[str, Path]) -> list[dict]:
    rows = [json.loads(x) for x in (backfilled["backfill"] / "predictions.jsonl").read_text().splitlines()]
    out = []
    for r in rows:
        n = r["product_id"].rsplit("/", 1)[-1]
        if n in MISSING:
            continue
        if n in OLD_MODEL:
            r["model_version"] = "baseline-minilm-0"
        if n in OLD_TAXONOMY:
            r["taxonomy_version"] = "2023-12"
        if n in CHANGED:
            r["content_hash"] = "0" * 32
        out.append(r)
    return out


def _expected_stale() -> dict[str, int]:
    return {
        "missing": len(MISSING),
        "content_changed": len(CHANGED),
        "model_version": len(OLD_MODEL),
        "taxonomy_version": len(OLD_TAXONOMY),
    }


def _stale_ids() -> set[str]:
    return {_pid(n) for n in OLD_MODEL + OLD_TAXONOMY + CHANGED + MISSING}


def test_same_model_nothing_is_stale(backfilled: dict[str, Path], tmp_path: Path) -> None:
    for store in (backfilled["backfill"], backfilled["backfill"] / "predictions.jsonl"):
        s = _repredict(backfilled["catalog"], str(store), tmp_path / "out", dry_run=True)
        assert s.catalog_products == 76 and s.current == 76, s
        assert s.stale_total == 0 and s.classify_calls == 0 and s.extract_calls_estimate == 0
    real = _repredict(backfilled["catalog"], str(backfilled["backfill"]), tmp_path / "real")
    assert real.stale_total == 0 and real.predicted == 0 and real.model_calls == 0
    assert (tmp_path / "real" / "predictions.jsonl").read_text() == ""
    assert json.loads((tmp_path / "real" / "summary.json").read_text())["current"] == 76


def test_exactly_the_stale_products_are_repredicted(backfilled: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store" / "predictions.jsonl"
    store.parent.mkdir()
    store.write_text("".join(json.dumps(r) + "\n" for r in _rewritten(backfilled)))

    dry = _repredict(backfilled["catalog"], str(store), tmp_path / "dry", dry_run=True)
    assert dry.stale == _expected_stale()
    assert dry.current == 76 - len(_stale_ids())
    assert dry.classify_calls == len(_stale_ids()) and dry.extract_calls_max == len(_stale_ids())
    listed = [json.loads(x) for x in (tmp_path / "dry" / "stale.jsonl").read_text().splitlines()]
    assert {r["product_id"] for r in listed} == _stale_ids()
    assert not (tmp_path / "dry" / "predictions.jsonl").exists()
    assert json.loads((tmp_path / "dry" / "summary.json").read_text())["stale_total"] == len(_stale_ids())

    real = _repredict(backfilled["catalog"], str(store), tmp_path / "real")
    predictions = [json.loads(x) for x in (tmp_path / "real" / "predictions.jsonl").read_text().splitlines()]
    assert {p["product_id"] for p in predictions} == _stale_ids()
    assert real.predicted == len(_stale_ids()) and real.stale == dry.stale
    assert real.classify_calls == len(_stale_ids())  # one classify per stale product, measured
    assert 0 <= real.extract_calls_estimate <= len(_stale_ids())
    # Same model, same content for the version-only cases: their category is the stored one,
    # so the dry run's extract estimate is exact for them; the rest is an estimate.
    assert abs(dry.extract_calls_estimate - real.extract_calls_estimate) <= len(MISSING) + len(CHANGED)
    originals = {
        json.loads(x)["product_id"]: json.loads(x)
        for x in (backfilled["backfill"] / "predictions.jsonl").read_text().splitlines()
    }
    for p in predictions:
        assert p["model_version"] == originals[p["product_id"]]["model_version"]
        # the same model on the same content gives the same deterministic id as the backfill
        assert p["prediction_id"] == originals[p["product_id"]]["prediction_id"]
        assert p["event_id"].startswith("repredict-")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("kafka-repredict"))
    try:
        yield b
    finally:
        b.sh("down", check=False)


def test_store_from_a_compacted_topic(backfilled: dict[str, Path], broker: Broker, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    from transforms.records import Prediction

    topic = f"predictions-{uuid.uuid4().hex[:8]}"
    broker.create_topics(topic, partitions=3, compacted=(topic,))
    originals = [
        Prediction.model_validate_json(x)
        for x in (backfilled["backfill"] / "predictions.jsonl").read_text().splitlines()
    ]
    rewritten = [Prediction.model_validate(r) for r in _rewritten(backfilled)]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True})

    def send(records: list) -> None:
        for r in records:
            producer.produce(r.topic, key=r.key, value=r.value, headers=list(r.headers))
        assert producer.flush(60) == 0

    # Current predictions first, then the rewritten ones over them (last wins per key),
    # then tombstones: for the product the rewrite dropped, and for one more product.
    send([prediction_record(p, topic) for p in originals])
    send([prediction_record(p, topic) for p in rewritten])
    tomb = _pid("1006")
    for key in (tomb, *(_pid(n) for n in MISSING)):
        producer.produce(topic, key=key.encode(), value=None)
    assert producer.flush(60) == 0

    s = _repredict(
        backfilled["catalog"], f"kafka:{topic}", tmp_path / "dry", True, f"--kafka_bootstrap={broker.bootstrap}"
    )
    expected = _expected_stale()
    expected["missing"] += 1
    assert s.stale == expected, s
    listed = {json.loads(x)["product_id"] for x in (tmp_path / "dry" / "stale.jsonl").read_text().splitlines()}
    assert listed == _stale_ids() | {tomb}
    assert s.store.startswith("kafka:")
