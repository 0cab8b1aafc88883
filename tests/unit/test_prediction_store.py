"""The prediction store (last wins, tombstones, JSONL/Parquet), SkipCurrent, stale reasons
under the store's names (the decision itself: tests/unit/test_freshness.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.repredict import catalog_row, estimate_calls, repredict_event
from transforms.freshness.staleness import batch_name, staleness
from transforms.freshness.store import (
    CONTENT_CHANGED,
    MISSING,
    MODEL_VERSION,
    TAXONOMY_VERSION,
    ReadPredictionStore,
    Skip,
    SkipCurrent,
    StoreEntry,
    StoreSource,
    entry_from_prediction,
    event_key,
    last_per_product,
    latest,
    newest,
    snapshot_order,
)
from transforms.io.files import PREDICTION_PARQUET_SCHEMA
from transforms.io.kafka import KafkaConfig
from transforms.records import (
    Prediction,
    Product,
    ProductEvent,
    WorkItem,
    content_hash,
    prediction_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRODUCT = {"title": "Red dress", "product_type": "Dresses", "tags": ["red"]}
HASH = content_hash(Product.model_validate(PRODUCT))


def _prediction(
    pid: str,
    chash: str = HASH,
    model: str = "m-1",
    tax: str = "2024-07",
    at: int = 0,
    category: str | None = "gid://shopify/TaxonomyCategory/aa-1-4",
) -> dict:
    p = Prediction(
        product_id=pid,
        shop_id="s",
        prediction_id=prediction_id(pid, chash, model, tax),
        content_hash=chash,
        model_version=model,
        taxonomy_version=tax,
        category={"id": category, "full_name": "x", "score": 0.5} if category else None,
        status="ok" if category else "unresolved",
        predicted_at=T0 + timedelta(seconds=at),
        event_id=f"e-{pid}-{at}",
    )
    return json.loads(p.model_dump_json())


def _event(
    pid: str,
    product: dict | None = None,
    force: bool = False,
    type_: str = "update",
    bulk: str | None = None,
    eid: str | None = None,
) -> bytes:
    e = {
        "event_id": eid or f"ev-{pid}",
        "type": type_,
        "product_id": pid,
        "shop_id": "s",
        "occurred_at": "2026-01-02T00:00:00Z",
        "force": force,
    }
    if type_ != "delete":
        e["product"] = product or PRODUCT
    if bulk:
        e["bulk_request_id"] = bulk
    return json.dumps(e).encode()


# ---- pure helpers ---------------------------------------------------------------------


def stale_reason(
    content_hash_: str, stored: StoreEntry | None, model_version: str, taxonomy_version: str
) -> str | None:
    """The store's reason for a product, by the name its counters and repredict use."""
    reason = staleness(stored, content_hash_, model_version, taxonomy_version)
    return None if reason is None else batch_name(reason)


def test_stale_reasons_in_order() -> None:
    assert (MISSING, CONTENT_CHANGED, MODEL_VERSION, TAXONOMY_VERSION) == (
        "missing",
        "content_changed",
        "model_version",
        "taxonomy_version",
    )
    cur = StoreEntry(HASH, "m-1", "2024-07", "pid")
    assert stale_reason(HASH, None, "m-1", "2024-07") == MISSING
    assert stale_reason("other", cur, "m-2", "2025-01") == CONTENT_CHANGED  # content first
    assert stale_reason(HASH, cur, "m-2", "2025-01") == MODEL_VERSION
    assert stale_reason(HASH, cur, "m-1", "2025-01") == TAXONOMY_VERSION
    assert stale_reason(HASH, cur, "m-1", "2024-07") is None
    # a rollback to an "older" version is a change too
    assert stale_reason(HASH, StoreEntry(HASH, "m-3", "2024-07", "p"), "m-1", "2024-07") == MODEL_VERSION


def test_latest_and_tombstones() -> None:
    a, b = StoreEntry("h1", "m", "t", "1"), StoreEntry("h2", "m", "t", "2")
    assert latest([((1,), a), ((3,), b), ((2,), None)]) == b
    assert latest([((1,), a), ((3,), None)]) is None  # the last is a tombstone: deleted
    assert latest([((5,), None), ((6,), a)]) == a  # re-created after the delete
    assert latest([]) is None
    assert newest([((1,), a), ((3,), None), ((2,), b)]) == ((3,), None)  # the combiner keeps tombstones
    store = last_per_product([("p1", ((1,), a)), ("p2", ((1,), b)), ("p2", ((2,), None)), ("p1", ((0,), b))])
    assert store == {"p1": a}


def test_entry_from_prediction_and_order() -> None:
    row = _prediction("p1", at=5)
    key, entry = entry_from_prediction(row)
    assert key == "p1" and entry.content_hash == HASH and entry.model_version == "m-1"
    assert entry.prediction_id == prediction_id("p1", HASH, "m-1", "2024-07")
    assert entry.category_id.endswith("aa-1-4")
    assert entry_from_prediction(_prediction("p2", category=None))[1].category_id is None
    assert snapshot_order(_prediction("p1", at=5)) > snapshot_order(_prediction("p1", at=4))


def test_the_prediction_of_the_later_event_wins_whenever_it_was_made() -> None:
    # One batch job predicted the update (event at t=20) before the create (event at t=10).
    update = {**_prediction("p1", chash="h-update", at=1), "occurred_at": (T0 + timedelta(seconds=20)).isoformat()}
    create = {**_prediction("p1", chash="h-create", at=2), "occurred_at": (T0 + timedelta(seconds=10)).isoformat()}
    assert snapshot_order(update) > snapshot_order(create)
    store = last_per_product(
        [(entry_from_prediction(r)[0], (snapshot_order(r), entry_from_prediction(r)[1])) for r in (create, update)]
    )
    assert store["p1"].content_hash == "h-update"


def test_a_parquet_snapshot_from_before_occurred_at_still_reads(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "occurred_at"} for r in _rows()]
    schema = pa.schema([f for f in PREDICTION_PARQUET_SCHEMA if f.name != "occurred_at"])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "predictions.parquet")
    p = TestPipeline(runner=FnApiRunner())
    store = p | ReadPredictionStore(StoreSource.parse(str(tmp_path)))
    assert_that(store, equal_to(_expected()))
    p.run().wait_until_finish()


def test_event_key_accepts_every_form() -> None:
    raw = _event("p1", force=True, bulk="b1")
    ev = ProductEvent.model_validate_json(raw)
    for form in (raw, raw.decode(), json.loads(raw), ev, WorkItem(event=ev, content_hash=HASH)):
        k = event_key(form)
        assert k is not None and (k.product_id, k.content_hash, k.force, k.bulk_request_id) == ("p1", HASH, True, "b1")
    assert event_key(b"not json") is None
    assert event_key(b"[1]") is None
    assert event_key(_event("p1", type_="delete")) is None
    assert (
        event_key(json.dumps({"event_id": "x", "type": "create"}).encode()) is None
    )  # invalid: decode dead-letters it


def test_store_source_parse(tmp_path: Path) -> None:
    (tmp_path / "predictions.jsonl").write_text("")
    assert StoreSource.parse(str(tmp_path)).path == str(tmp_path / "predictions.jsonl")
    (tmp_path / "predictions.parquet").write_text("")
    assert StoreSource.parse(str(tmp_path)).path == str(tmp_path / "predictions.parquet")
    s = StoreSource.parse("kafka:preds", KafkaConfig("127.0.0.1:1"))
    assert s.topic == "preds" and s.group_id.startswith("productlens-store-")
    assert StoreSource.parse("kafka:preds", KafkaConfig("x")).group_id != s.group_id  # fresh group each time
    with pytest.raises(ValueError, match="Kafka settings"):
        StoreSource.parse("kafka:preds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        StoreSource.parse(str(tmp_path / "empty"))


def test_catalog_rows_from_events_and_products() -> None:
    r = catalog_row(_event("p1"))
    assert (r.product_id, r.content_hash, r.deleted) == ("p1", HASH, False)
    assert catalog_row(_event("p1", type_="delete")).deleted
    nested = catalog_row(json.dumps({"product_id": "p2", "shop_id": "s", "product": {**PRODUCT, "price": 3}}))
    flat = catalog_row({"product_id": "p2", "shop_id": "s", **PRODUCT, "inventory_quantity": 9})
    assert nested.content_hash == flat.content_hash == HASH  # price/inventory are not content
    with pytest.raises(ValueError):
        catalog_row({"title": "no id"})
    ev = repredict_event(nested, "m-2", "2024-07", "2026-01-03T00:00:00+00:00")
    parsed = ProductEvent.model_validate(ev)
    assert parsed.type.value == "repredict" and content_hash(parsed.product) == HASH
    assert ev["event_id"] == repredict_event(nested, "m-2", "2024-07", "later")["event_id"]  # deterministic


def test_estimate_calls() -> None:
    e = estimate_calls(10, prior_with=3, prior_without=1, prior_unknown=6)
    assert e["classify_calls"] == 10 and e["extract_calls_max"] == 10
    assert e["extract_share"] == 0.75 and e["extract_calls_estimate"] == 3 + round(6 * 0.75)
    assert estimate_calls(4, 0, 0, 4)["extract_calls_estimate"] == 4  # nothing known: the upper bound


# ---- Beam -----------------------------------------------------------------------------


def _rows() -> list[dict]:
    return [
        _prediction("p1", chash="old", at=1),
        _prediction("p1", at=2),  # last wins
        _prediction("p2", model="m-0", at=9),
        _prediction("p2", model="m-1", at=3),  # an earlier write does not win
        _prediction("p3", at=1),
    ]


def _expected() -> list:
    return [
        ("p1", entry_from_prediction(_prediction("p1", at=2))[1]),
        ("p2", entry_from_prediction(_prediction("p2", model="m-0", at=9))[1]),
        ("p3", entry_from_prediction(_prediction("p3", at=1))[1]),
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_read_store_snapshot_last_wins(tmp_path: Path, fmt: str) -> None:
    rows = _rows()
    if fmt == "jsonl":
        path = tmp_path / "predictions.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in reversed(rows)) + "\n\n")
    else:
        path = tmp_path / "predictions.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTION_PARQUET_SCHEMA), path)
    p = TestPipeline(runner=FnApiRunner())
    store = p | ReadPredictionStore(StoreSource.parse(str(tmp_path)))
    assert_that(store, equal_to(_expected()))
    p.run().wait_until_finish()


def test_skip_current_force_wins_and_counts() -> None:
    store_rows = [
        ("p-current", StoreEntry(HASH, "m-1", "2024-07", "pc", None)),
        ("p-forced", StoreEntry(HASH, "m-1", "2024-07", "pf", None)),
        ("p-oldmodel", StoreEntry(HASH, "m-0", "2024-07", "po", None)),
        ("p-changed", StoreEntry("other", "m-1", "2024-07", "px", None)),
        ("p-delete", StoreEntry(HASH, "m-1", "2024-07", "pd", None)),
    ]
    events = [
        _event("p-current", bulk="b1"),
        _event("p-forced", force=True),
        _event("p-oldmodel"),
        _event("p-changed"),
        _event("p-new"),
        _event("p-delete", type_="delete"),
        b"{not json",
    ]
    p = TestPipeline(runner=FnApiRunner())
    store = p | "Store" >> beam.Create(store_rows)
    out = p | "Events" >> beam.Create(events) | SkipCurrent(store, "m-1", "2024-07")
    assert_that(
        out["skipped"],
        equal_to([Skip("p-current", "ev-p-current", "pc", "b1", "skipped_unchanged", HASH)]),
        label="skipped",
    )
    assert_that(out["to_predict"], equal_to(events[1:]), label="to_predict")
    result = p.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("store"))["counters"]
    }
    assert counters["skipped_current"] == 1
    assert counters["to_predict"] == 4
    assert counters["to_predict_forced"] == 1
    assert counters["to_predict_missing"] == 1
    assert counters["to_predict_model_version"] == 1
    assert counters["to_predict_content_changed"] == 1


def test_skip_current_on_work_items() -> None:
    ev = ProductEvent.model_validate_json(_event("p1"))
    items = [WorkItem(event=ev, content_hash=HASH), WorkItem(event=ev, content_hash="changed")]
    p = TestPipeline(runner=FnApiRunner())
    store = p | "Store" >> beam.Create([("p1", StoreEntry(HASH, "m-1", "2024-07", "x"))])
    out = p | "Items" >> beam.Create(items) | SkipCurrent(store, "m-1", "2024-07")
    assert_that(out["to_predict"] | beam.Map(lambda w: w.content_hash), equal_to(["changed"]))
    p.run().wait_until_finish()
