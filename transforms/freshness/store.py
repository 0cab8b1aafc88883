"""The prediction store: the last prediction per product, as batch jobs see it.

DESIGN.md ("Refresh trigger and caching"): batch jobs find the last prediction per product
in the compacted predictions topic or a snapshot. Two sources give the same PCollection of
`(product_id, StoreEntry)`:

- a snapshot written by backfill (`predictions.jsonl` or `predictions.parquet`, glob ok,
  or the backfill output directory): the last row per product wins, ordered by the
  answered event's `occurred_at`, then `predicted_at`, then `prediction_id`;
- the compacted predictions topic, read bounded from offset 0 with a fresh consumer group:
  the record with the highest offset per key wins (that is what compaction keeps), and a
  tombstone deletes the key. Records of one key are in one partition unless the topic was
  repartitioned, so offsets are comparable.

`SkipCurrent` drops events whose prediction is already current (same content hash, model
version and taxonomy version) unless the event forces it: the decision is `staleness`
(`transforms/freshness/staleness.py`), the one the refresh trigger and repredict make,
and a skipped event becomes the same `Skip` record the refresh trigger emits. The rest is
pure too (`event_key`, `latest`, `snapshot_order`), so it is unit-tested without Beam.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.decode import DecodeError, decode_event
from transforms.freshness.staleness import STALE, Reason, Skip, batch_name, staleness
from transforms.io.files import is_parquet
from transforms.io.kafka import KafkaConfig, KafkaRecord, ReadConfig, ReadFromKafka
from transforms.records import EventType, ProductEvent, WorkItem, content_hash

__all__ = [
    "KAFKA_PREFIX",
    "MISSING",
    "CONTENT_CHANGED",
    "MODEL_VERSION",
    "TAXONOMY_VERSION",
    "STALE_REASONS",
    "FORCED",
    "SKIPPED",
    "StoreEntry",
    "EventKey",
    "entry_from_prediction",
    "snapshot_order",
    "newest",
    "latest",
    "last_per_product",
    "resolve_snapshot",
    "StoreSource",
    "ReadPredictionStore",
    "event_key",
    "SkipCurrent",
]

KAFKA_PREFIX = "kafka:"

# Why a product needs a prediction, in the order `staleness` checks them, by the names
# this store's and repredict's counters and summaries use (`batch_name`).
MISSING = batch_name(Reason.NEW)
CONTENT_CHANGED = batch_name(Reason.CONTENT_CHANGED)
MODEL_VERSION = batch_name(Reason.MODEL_CHANGED)
TAXONOMY_VERSION = batch_name(Reason.TAXONOMY_CHANGED)
STALE_REASONS = (MISSING, CONTENT_CHANGED, MODEL_VERSION, TAXONOMY_VERSION)
FORCED = batch_name(Reason.FORCED)

SKIPPED = "skipped"


@dataclass(frozen=True)
class StoreEntry:
    """What the store keeps of a product's last prediction: enough to decide staleness."""

    content_hash: str
    model_version: str
    taxonomy_version: str
    prediction_id: str
    # The predicted category (None when unresolved); repredict's dry run uses it to estimate
    # whether step 2 (extract) would be called.
    category_id: str | None = None


@dataclass(frozen=True)
class EventKey:
    """What SkipCurrent needs to know about an event."""

    product_id: str
    event_id: str
    content_hash: str
    force: bool
    bulk_request_id: str | None


def entry_from_prediction(row: dict[str, Any]) -> tuple[str, StoreEntry]:
    """A Prediction as a dict (JSON or a Parquet row) -> (product_id, StoreEntry)."""
    category = row.get("category") or None
    return str(row["product_id"]), StoreEntry(
        content_hash=str(row["content_hash"]),
        model_version=str(row["model_version"]),
        taxonomy_version=str(row["taxonomy_version"]),
        prediction_id=str(row["prediction_id"]),
        category_id=(category or {}).get("id") if isinstance(category, dict) else None,
    )


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else 0.0
    except ValueError:
        return 0.0


def snapshot_order(row: dict[str, Any]) -> tuple[float, float, str]:
    """Order of snapshot rows of one product: the prediction of the later event wins
    (`occurred_at`: one batch job predicts a product's create and its later update in any
    order), then the later `predicted_at` (rows written before `occurred_at` existed),
    then the id, so that ties are deterministic."""
    return _seconds(row.get("occurred_at")), _seconds(row.get("predicted_at")), str(row.get("prediction_id", ""))


Versioned = tuple[tuple[Any, ...], StoreEntry | None]  # (order, entry); None = tombstone


def _order_of(version: Versioned) -> tuple[Any, ...]:
    return version[0]


def newest(versions: Iterable[Versioned]) -> Versioned:
    """The version with the highest order (tombstone or not). Associative and commutative,
    so the store combines it per product (`beam.CombinePerKey`) before the shuffle."""
    return max(versions, key=_order_of)


def latest(versions: Iterable[Versioned]) -> StoreEntry | None:
    """The entry with the highest order; None when that is a tombstone (or nothing)."""
    best = max(versions, key=_order_of, default=None)
    return None if best is None else best[1]


def last_per_product(versions: Iterable[tuple[str, Versioned]]) -> dict[str, StoreEntry]:
    """Pure reference of the store: the last version per product, tombstoned keys removed."""
    by_key: dict[str, list[Versioned]] = {}
    for key, v in versions:
        by_key.setdefault(key, []).append(v)
    out = {}
    for key, vs in by_key.items():
        entry = latest(vs)
        if entry is not None:
            out[key] = entry
    return out


def resolve_snapshot(path: str) -> str:
    """A backfill output directory means its predictions.parquet (else predictions.jsonl)."""
    if os.path.isdir(path):
        for name in ("predictions.parquet", "predictions.jsonl"):
            if os.path.exists(os.path.join(path, name)):
                return os.path.join(path, name)
        raise FileNotFoundError(f"{path} holds neither predictions.parquet nor predictions.jsonl")
    return path


@dataclass(frozen=True)
class StoreSource:
    """A predictions snapshot path, or a compacted topic (`kafka:TOPIC`)."""

    path: str | None = None
    topic: str | None = None
    kafka: KafkaConfig | None = None
    # A fresh group per read: the store is always read from the beginning, and the
    # offsets this read commits never move the group of a real consumer.
    group_id: str = ""

    def __post_init__(self) -> None:
        if (self.path is None) == (self.topic is None):
            raise ValueError("a prediction store is either a snapshot path or a kafka:TOPIC")
        if self.topic is not None and self.kafka is None:
            raise ValueError(f"reading the store from topic {self.topic} needs Kafka settings (--kafka_bootstrap)")

    @classmethod
    def parse(cls, spec: str, kafka: KafkaConfig | None = None) -> StoreSource:
        if spec.startswith(KAFKA_PREFIX):
            return cls(topic=spec[len(KAFKA_PREFIX) :], kafka=kafka, group_id=f"productlens-store-{uuid.uuid4().hex}")
        return cls(path=resolve_snapshot(spec))

    def describe(self) -> str:
        return f"{KAFKA_PREFIX}{self.topic}" if self.topic else str(self.path)


class _SnapshotRows(beam.DoFn):
    def __init__(self) -> None:
        self.unreadable = Metrics.counter("store", "unreadable")

    def process(self, element: bytes | str | dict[str, Any]) -> Iterator[tuple[str, Versioned]]:
        try:
            row = element if isinstance(element, dict) else json.loads(element)
            key, entry = entry_from_prediction(row)
        except (ValueError, KeyError, TypeError, RecursionError):
            self.unreadable.inc()
            return
        yield key, (snapshot_order(row), entry)


class _TopicRows(beam.DoFn):
    def __init__(self) -> None:
        self.unreadable = Metrics.counter("store", "unreadable")
        self.tombstones = Metrics.counter("store", "tombstones_read")

    def process(self, record: KafkaRecord) -> Iterator[tuple[str, Versioned]]:
        if record.key is None:
            self.unreadable.inc()
            return
        key = record.key.decode("utf-8", errors="replace")
        order = (record.offset,)
        if record.value is None:
            self.tombstones.inc()
            yield key, (order, None)
            return
        try:
            _, entry = entry_from_prediction(json.loads(record.value))
        except (ValueError, KeyError, TypeError, RecursionError):
            self.unreadable.inc()
            return
        yield key, (order, entry)


def _live(keyed: tuple[str, Versioned]) -> Iterator[tuple[str, StoreEntry]]:
    key, (_, entry) = keyed
    if entry is not None:  # a tombstone: the product is deleted
        yield key, entry


_STORE_COLUMNS = [
    "product_id",
    "content_hash",
    "model_version",
    "taxonomy_version",
    "prediction_id",
    "category",
    "predicted_at",
]


def _parquet_columns(pattern: str) -> list[str]:
    """The columns the store reads; `occurred_at` only where the snapshot has it (older
    snapshots do not, and naming a missing column fails the read)."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    matched = FileSystems.match([pattern])[0].metadata_list
    if not matched:
        raise FileNotFoundError(f"no Parquet snapshot matches {pattern}")
    with FileSystems.open(matched[0].path) as f:
        names = pq.read_schema(f).names
    return _STORE_COLUMNS + (["occurred_at"] if "occurred_at" in names else [])


class ReadPredictionStore(beam.PTransform):
    """PBegin -> PCollection[(product_id, StoreEntry)], one per product that has a live
    prediction (tombstoned products are absent)."""

    def __init__(self, source: StoreSource) -> None:
        super().__init__()
        self.source = source

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:  # type: ignore[override]
        s = self.source
        if s.topic is not None:
            assert s.kafka is not None
            read = ReadConfig(
                s.kafka,
                (s.topic,),
                s.group_id or f"productlens-store-{uuid.uuid4().hex}",
                bounded=True,
                start_from="earliest",
            )
            versions = (
                pbegin
                | "ReadTopic" >> ReadFromKafka(read)
                | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
                | "TopicRows" >> beam.ParDo(_TopicRows())
            )
        else:
            assert s.path is not None
            if is_parquet(s.path):
                rows = pbegin | "ReadParquet" >> beam.io.ReadFromParquet(s.path, columns=_parquet_columns(s.path))
            else:
                rows = (
                    pbegin
                    | "ReadJsonl" >> beam.io.ReadFromText(s.path, coder=beam.coders.BytesCoder())
                    | "NonBlank" >> beam.Filter(lambda line: bool(line.strip()))
                )
            versions = rows | "SnapshotRows" >> beam.ParDo(_SnapshotRows())
        return versions | "LastPerProduct" >> beam.CombinePerKey(newest) | "DropTombstoned" >> beam.FlatMap(_live)


def event_key(element: Any) -> EventKey | None:
    """The product, content hash and flags of an event in any form the pipelines carry
    (raw bytes / str / dict, ProductEvent, WorkItem). None when it is not a predictable
    event (undecodable: the decode stage dead-letters it; a delete: it becomes a
    tombstone) — those pass SkipCurrent untouched."""
    if isinstance(element, WorkItem):
        e = element.event
        return EventKey(e.product_id, e.event_id, element.content_hash, e.force, e.bulk_request_id)
    if isinstance(element, ProductEvent):
        event = element
    else:
        try:
            event = decode_event(element)  # bounded: hostile events are the decode stage's to dead-letter
        except DecodeError:
            return None
    if event.type is EventType.DELETE or event.product is None:
        return None
    return EventKey(event.product_id, event.event_id, content_hash(event.product), event.force, event.bulk_request_id)


class _KeyEvents(beam.DoFn):
    PASS = "passthrough"

    def process(self, element: Any) -> Iterator[Any]:
        key = event_key(element)
        if key is None:
            yield beam.pvalue.TaggedOutput(self.PASS, element)
        else:
            yield key.product_id, (key, element)


class _Decide(beam.DoFn):
    def __init__(self, model_version: str, taxonomy_version: str) -> None:
        self.model_version, self.taxonomy_version = model_version, taxonomy_version
        self.skipped = Metrics.counter("store", "skipped_current")
        self.to_predict = Metrics.counter("store", "to_predict")
        self.reasons = {r: Metrics.counter("store", f"to_predict_{batch_name(r)}") for r in STALE}

    def process(self, joined: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        _, groups = joined
        entries = list(groups["store"])
        stored = entries[0] if entries else None  # the store has one entry per product
        for key, element in groups["events"]:
            # Only `force` counts as a request here: EventKey has no event type, so a
            # `repredict` event of a current product is skipped (as it always was here),
            # where the refresh trigger alone would predict it.
            reason = staleness(stored, key.content_hash, self.model_version, self.taxonomy_version, force=key.force)
            if reason is None:
                self.skipped.inc()
                assert stored is not None
                yield beam.pvalue.TaggedOutput(
                    SKIPPED,
                    Skip(
                        key.product_id,
                        key.event_id,
                        stored.prediction_id,
                        key.bulk_request_id,
                        Reason.SKIPPED_UNCHANGED.value,
                        key.content_hash,
                    ),
                )
                continue
            self.to_predict.inc()
            self.reasons[reason].inc()
            yield element


class SkipCurrent(beam.PTransform):
    """events (raw, ProductEvent or WorkItem) -> {"to_predict": the same elements, unchanged;
    "skipped": Skip (reason ``skipped_unchanged``)}, given the store. An event is skipped
    when its product's stored prediction has the same content hash, model version and
    taxonomy version and the event does not force. Undecodable events and deletes pass through (decode dead-letters the
    first, the second becomes a tombstone).

    Batch only: the store is joined with CoGroupByKey by product id in the global window.
    (A stream does the same with the refresh trigger's per-product state.)
    """

    def __init__(self, store: beam.PCollection, model_version: str, taxonomy_version: str) -> None:
        super().__init__()
        self.store = store
        self.model_version, self.taxonomy_version = model_version, taxonomy_version

    def expand(self, events: beam.PCollection) -> dict[str, beam.PCollection]:  # type: ignore[override]
        keyed = events | "KeyEvents" >> beam.ParDo(_KeyEvents()).with_outputs(_KeyEvents.PASS, main="keyed")
        joined = {
            "events": keyed.keyed | "EventsGlobal" >> beam.WindowInto(beam.window.GlobalWindows()),
            "store": self.store,
        } | "JoinStore" >> beam.CoGroupByKey()
        decided = joined | "Decide" >> beam.ParDo(_Decide(self.model_version, self.taxonomy_version)).with_outputs(
            SKIPPED, main="to_predict"
        )
        to_predict = (decided.to_predict, keyed[_KeyEvents.PASS]) | "ToPredict" >> beam.Flatten()
        return {"to_predict": to_predict, "skipped": decided[SKIPPED]}
