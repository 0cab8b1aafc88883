"""Nightly re-prediction: the catalog snapshot joined with the prediction store; exactly the
stale products are predicted again.

A product is stale when it has no prediction (`missing`), its content hash changed
(`content_changed`), or its prediction came from another model version (`model_version`)
or taxonomy version (`taxonomy_version`) than the model the job runs against (read from
the model's metadata). One reason per product, checked in that order: the decision is
`staleness` (`transforms/freshness/staleness.py`), the one the refresh trigger and the
prediction store's `SkipCurrent` make; the reasons are reported under the store's names
(`batch_name`).

`--dry-run` runs only the join: it counts stale products per reason and the model calls a
real run would make, without one inference call. Every stale product costs one classify
call; it costs an extract call too only when its (new) category has attributes, which is
unknown before classify. So calls are reported as a range [stale, 2 x stale] and an
estimate: 1 + the extract share, where the share is measured on the stale products whose
stored prediction names a category (does that category have attributes in the current
taxonomy?) and applied to the others.

`build_pipeline` is pure; `run` picks the runner (FnApiRunner locally) and returns a
`RepredictSummary`, also written as summary.json to a local output directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from pydantic import ValidationError

from pipelines.backfill import KAFKA_PREFIX, model_factory, predict_config
from pipelines.options import KafkaOptions, StoreOptions, generated_from, kafka_config
from pipelines.results import counter_totals
from transforms.config import RepredictSettings
from transforms.dead_letters import DEAD_LETTER, dead_letter, guard_stage
from transforms.decode import DecodeError, parse_event_object
from transforms.freshness.staleness import batch_name, staleness
from transforms.freshness.store import (
    MISSING,
    STALE_REASONS,
    ReadPredictionStore,
    StoreEntry,
    StoreSource,
)
from transforms.io.files import OversizedLine, ReadEvents, WriteDeadLetters, WritePredictions
from transforms.io.kafka_sink import WritePredictionsToKafka
from transforms.model.client import ModelClientFactory
from transforms.predict import PredictConfig, PredictProducts
from transforms.records import (
    EventType,
    Product,
    ProductEvent,
    content_hash,
    prediction_id,
)
from transforms.shared import shared_taxonomy

CATALOG_STAGE = "catalog"


@generated_from(RepredictSettings)
class RepredictOptions(PipelineOptions):
    """--catalog, --repredict_output, --repredict_dry_run (transforms/config.py
    RepredictSettings). Not `required` (Beam parses every PipelineOptions subclass for
    every pipeline); `run` checks them."""


@dataclass(frozen=True)
class CatalogRow:
    """One product of the catalog snapshot, as the model would see it."""

    product_id: str
    shop_id: str
    product: dict[str, Any]  # Product as JSON-compatible data
    content_hash: str
    occurred_at: float = 0.0  # orders several events of one product; 0 for product rows
    deleted: bool = False
    order: str = ""  # tie-break for equal occurred_at (the event id)


def catalog_row(element: bytes | str | dict[str, Any]) -> CatalogRow:
    """A catalog line: a ProductEvent, or a product row ({product_id, shop_id, product: {...}}
    or {product_id, shop_id, title, ...}). Raises DecodeError / ValueError / ValidationError when unusable."""
    data = parse_event_object(element)  # size, depth and duplicate keys checked before parsing
    if "type" in data and "event_id" in data:
        event = ProductEvent.model_validate(data)
        if event.type is EventType.DELETE or event.product is None:
            return CatalogRow(
                event.product_id, event.shop_id, {}, "", event.occurred_at.timestamp(), True, event.event_id
            )
        product = event.product
        return CatalogRow(
            event.product_id,
            event.shop_id,
            product.model_dump(mode="json"),
            content_hash(product),
            event.occurred_at.timestamp(),
            False,
            event.event_id,
        )
    rest = {k: v for k, v in data.items() if k not in ("product_id", "shop_id")}
    if "product_id" not in data or "shop_id" not in data:
        raise ValueError("a product row needs product_id and shop_id")
    product = Product.model_validate(rest.get("product", rest))
    return CatalogRow(
        str(data["product_id"]), str(data["shop_id"]), product.model_dump(mode="json"), content_hash(product)
    )


def repredict_event(row: CatalogRow, model_version: str, taxonomy_version: str, occurred_at: str) -> dict[str, Any]:
    """A stale catalog row as a `repredict` event for PredictProducts. The event id is
    deterministic, so a rerun of the same night gives the same ids."""
    pid = prediction_id(row.product_id, row.content_hash, model_version, taxonomy_version)
    return {
        "event_id": f"repredict-{pid}",
        "type": EventType.REPREDICT.value,
        "product_id": row.product_id,
        "shop_id": row.shop_id,
        "occurred_at": occurred_at,
        "product": row.product,
    }


@dataclass(frozen=True)
class RepredictConfig:
    model_version: str
    taxonomy_version: str
    taxonomy_path: str | None
    dry_run: bool
    occurred_at: str  # stamped on the repredict events (the job's start)


class _ParseCatalog(beam.DoFn):
    def __init__(self) -> None:
        self.rows = Metrics.counter("repredict", "catalog_rows")

    @guard_stage(CATALOG_STAGE)
    def process(self, element: Any) -> Iterator[Any]:
        if isinstance(element, OversizedLine):
            yield dead_letter(
                CATALOG_STAGE,
                "EventTooLarge",
                f"{element.path} line {element.line_number} is {element.size} bytes, over the limit",
                element.head,
            )
            return
        try:
            row = catalog_row(element)
        except DecodeError as exc:
            yield dead_letter(CATALOG_STAGE, exc.error_type, exc.message, element)
            return
        except ValidationError as exc:
            yield dead_letter(CATALOG_STAGE, "InvalidCatalogRow", str(exc.errors()[:3]), element)
            return
        except (ValueError, TypeError) as exc:
            yield dead_letter(CATALOG_STAGE, "InvalidCatalogRow", str(exc), element)
            return
        self.rows.inc()
        yield row.product_id, row


def _latest(rows: Iterable[CatalogRow]) -> CatalogRow:
    """Several events of one product in the snapshot: the latest is the catalog's state.
    Associative and commutative, so Beam combines it with partial results (CombinePerKey)."""
    return max(rows, key=lambda r: (r.occurred_at, r.order))


class _Classify(beam.DoFn):
    """(product_id, {catalog, store}) -> (CatalogRow, reason) for the stale ones; counted."""

    def __init__(self, config: RepredictConfig) -> None:
        self.c = config
        self.products = Metrics.counter("repredict", "catalog_products")
        self.current = Metrics.counter("repredict", "current")
        self.orphaned = Metrics.counter("repredict", "store_without_catalog")
        self.deleted = Metrics.counter("repredict", "catalog_deleted")
        self.stale = {r: Metrics.counter("repredict", f"stale_{r}") for r in STALE_REASONS}
        # Dry-run estimate of extract calls, from the category of the stored prediction.
        self.prior_with = Metrics.counter("repredict", "stale_prior_category_with_attributes")
        self.prior_without = Metrics.counter("repredict", "stale_prior_category_without_attributes")
        self.prior_unknown = Metrics.counter("repredict", "stale_prior_category_unknown")

    def setup(self) -> None:
        self.taxonomy = shared_taxonomy(self.c.taxonomy_path)

    def process(self, joined: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[CatalogRow, str]]:
        _, groups = joined
        rows = [r for r in groups["catalog"] if r is not None]
        entries: list[StoreEntry] = list(groups["store"])
        stored = entries[0] if entries else None
        if not rows:
            self.orphaned.inc()  # predicted, but gone from the catalog: counted, not deleted
            return
        row = rows[0]
        if row.deleted:
            self.deleted.inc()
            return
        self.products.inc()
        stale = staleness(stored, row.content_hash, self.c.model_version, self.c.taxonomy_version)
        if stale is None:
            self.current.inc()
            return
        reason = batch_name(stale)
        self.stale[reason].inc()
        category = self.taxonomy.get(stored.category_id) if stored is not None and stored.category_id else None
        if category is None:
            self.prior_unknown.inc()
        elif self.taxonomy.attributes_of(category):
            self.prior_with.inc()
        else:
            self.prior_without.inc()
        yield row, reason


def _stale_line(row_reason: tuple[CatalogRow, str]) -> str:
    row, reason = row_reason
    return json.dumps({"product_id": row.product_id, "reason": reason, "content_hash": row.content_hash})


def build_pipeline(
    pipeline: beam.Pipeline,
    options: RepredictOptions,
    config: RepredictConfig,
    predict: PredictConfig | None,
    store: StoreSource,
) -> dict[str, beam.PCollection]:
    """Catalog + store -> stale products -> (unless dry run) PredictProducts -> outputs."""
    parsed = (
        pipeline
        | "ReadCatalog" >> ReadEvents(options.catalog)
        | "ParseCatalog" >> beam.ParDo(_ParseCatalog()).with_outputs(DEAD_LETTER, main="rows")
    )
    catalog = parsed.rows | "LatestPerProduct" >> beam.CombinePerKey(_latest)
    entries = pipeline | "ReadStore" >> ReadPredictionStore(store)
    stale = (
        {"catalog": catalog, "store": entries}
        | "JoinStore" >> beam.CoGroupByKey()
        | "Classify" >> beam.ParDo(_Classify(config))
    )
    out: dict[str, beam.PCollection] = {"stale": stale, "catalog_dead_letters": parsed[DEAD_LETTER]}
    target = options.repredict_output
    to_dir = bool(target) and not target.startswith(KAFKA_PREFIX)
    if config.dry_run:
        if to_dir:
            _ = (
                stale
                | "StaleJson" >> beam.Map(_stale_line)
                | "WriteStale"
                >> beam.io.WriteToText(
                    os.path.join(target, "stale"), file_name_suffix=".jsonl", num_shards=1, shard_name_template=""
                )
            )
        return out
    assert predict is not None and target
    events = stale | "ToRepredictEvents" >> beam.Map(
        lambda rr: repredict_event(rr[0], config.model_version, config.taxonomy_version, config.occurred_at)
    )
    outputs = events | "Predict" >> PredictProducts(predict)
    letters = (outputs["dead_letters"], parsed[DEAD_LETTER]) | "AllDeadLetters" >> beam.Flatten()
    if to_dir:
        outputs["predictions"] | "WritePredictions" >> WritePredictions(target)
        letters | "WriteDeadLetters" >> WriteDeadLetters(target)
    else:
        k = options.view_as(KafkaOptions)
        _ = {"predictions": outputs["predictions"], "dead_letters": letters, "deletes": outputs["deletes"]} | (
            "WriteToKafka" >> WritePredictionsToKafka(kafka_config(options), target[len(KAFKA_PREFIX) :], k.dlq_topic)
        )
    out.update(predictions=outputs["predictions"], dead_letters=letters)
    return out


@dataclass
class RepredictSummary:
    dry_run: bool
    catalog: str
    store: str
    output: str | None
    model_version: str
    taxonomy_version: str
    catalog_rows: int
    catalog_products: int
    catalog_deleted: int
    catalog_invalid: int
    store_without_catalog: int
    current: int
    stale: dict[str, int]
    # Model calls: made (a real run) or that would be made (dry run).
    classify_calls: int
    extract_calls_min: int
    extract_calls_max: int
    extract_calls_estimate: int
    extract_share: float | None
    predicted: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    model_calls: int = 0
    seconds: float = 0.0

    @property
    def stale_total(self) -> int:
        return sum(self.stale.values())

    @property
    def calls_estimate(self) -> int:
        return self.classify_calls + self.extract_calls_estimate

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stale_total": self.stale_total, "model_calls_estimate": self.calls_estimate}


def estimate_calls(stale: int, prior_with: int, prior_without: int, prior_unknown: int) -> dict[str, Any]:
    """Model calls for `stale` products: one classify each, and an extract for those whose
    category has attributes. The share is measured where a stored category is known and
    applied to the rest (or taken as 1, the upper bound, when nothing is known)."""
    known = prior_with + prior_without
    share = prior_with / known if known else None
    extract = prior_with + round(prior_unknown * (share if share is not None else 1.0))
    return {
        "classify_calls": stale,
        "extract_calls_min": 0,
        "extract_calls_max": stale,
        "extract_calls_estimate": extract,
        "extract_share": None if share is None else round(share, 4),
    }


def summary_table(summary: RepredictSummary) -> Any:
    """A rich Table of the summary (the CLI prints it)."""
    from rich.table import Table

    mode = "dry run" if summary.dry_run else "run"
    table = Table(title=f"repredict {mode} (model {summary.model_version}, taxonomy {summary.taxonomy_version})")
    table.add_column("what")
    table.add_column("count", justify="right")
    n = summary.stale_total
    rows: list[tuple[str, object]] = [
        ("catalog products", summary.catalog_products),
        ("  deleted in the snapshot", summary.catalog_deleted),
        ("  invalid catalog rows (dead letters)", summary.catalog_invalid),
        ("current (skipped)", summary.current),
        ("stale", n),
        *((f"  {r}", summary.stale.get(r, 0)) for r in STALE_REASONS),
        ("in the store, not in the catalog", summary.store_without_catalog),
    ]
    if summary.dry_run:
        share = "unknown" if summary.extract_share is None else f"{summary.extract_share:.0%}"
        rows += [
            ("model calls: classify", summary.classify_calls),
            ("model calls: extract (range)", f"{summary.extract_calls_min}..{summary.extract_calls_max}"),
            (f"model calls: extract (estimate, share {share})", summary.extract_calls_estimate),
            ("model calls total (range)", f"{n}..{2 * n}"),
            ("model calls total (estimate)", summary.calls_estimate),
        ]
    else:
        rows += [
            ("predicted", summary.predicted),
            ("dead letters", sum(summary.dead_letters.values())),
            *((f"  at {stage}", v) for stage, v in summary.dead_letters.items()),
            ("model calls", summary.model_calls),
            ("seconds", f"{summary.seconds:.1f}"),
        ]
    for k, v in rows:
        table.add_row(k, str(v))
    return table


def run(options: RepredictOptions, model: ModelClientFactory | None = None) -> RepredictSummary:
    o = options.view_as(RepredictOptions)
    store_spec = options.view_as(StoreOptions).prediction_store
    if not o.catalog or not store_spec:
        raise ValueError(
            "repredict needs --catalog (snapshot of the catalog) and --prediction_store (snapshot or kafka:TOPIC)"
        )
    if not o.repredict_dry_run and not o.repredict_output:
        raise ValueError("repredict needs --output (directory or kafka:TOPIC) unless --dry-run")
    # Local image files only under --image_base_dir (the catalog is merchant data).
    predict = predict_config(options, model or model_factory(options))
    config = RepredictConfig(
        model_version=predict.metadata.model_version,
        taxonomy_version=predict.metadata.taxonomy_version,
        taxonomy_path=predict.taxonomy_path,
        dry_run=o.repredict_dry_run,
        occurred_at=datetime.now(UTC).isoformat(),
    )
    store = StoreSource.parse(store_spec, kafka_config(options) if store_spec.startswith(KAFKA_PREFIX) else None)
    target = o.repredict_output
    to_dir = bool(target) and "://" not in target and not target.startswith(KAFKA_PREFIX)
    if to_dir:
        os.makedirs(target, exist_ok=True)
    runner_name = options.view_as(StandardOptions).runner
    runner = FnApiRunner() if runner_name in (None, "FnApiRunner") else runner_name
    start = time.perf_counter()
    pipeline = beam.Pipeline(runner=runner, options=options)
    build_pipeline(pipeline, o, config, None if o.repredict_dry_run else predict, store)
    result = pipeline.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - start
    r = counter_totals(result, "repredict")
    letters = counter_totals(result, "dead_letters")
    model_counts = counter_totals(result, "model")
    stale = {reason: r.get(f"stale_{reason}", 0) for reason in STALE_REASONS}
    n = sum(stale.values())
    estimate = estimate_calls(
        n,
        r.get("stale_prior_category_with_attributes", 0),
        r.get("stale_prior_category_without_attributes", 0),
        r.get("stale_prior_category_unknown", 0),
    )
    if not o.repredict_dry_run:  # what was actually called
        estimate.update(
            classify_calls=model_counts.get("classify_requests", 0),
            extract_calls_estimate=model_counts.get("extract_requests", 0),
        )
    summary = RepredictSummary(
        dry_run=o.repredict_dry_run,
        catalog=o.catalog,
        store=store.describe(),
        output=target,
        model_version=config.model_version,
        taxonomy_version=config.taxonomy_version,
        catalog_rows=r.get("catalog_rows", 0),
        catalog_products=r.get("catalog_products", 0),
        catalog_deleted=r.get("catalog_deleted", 0),
        catalog_invalid=letters.get(CATALOG_STAGE, 0),
        store_without_catalog=r.get("store_without_catalog", 0),
        current=r.get("current", 0),
        stale=stale,
        predicted=counter_totals(result, "productlens").get("predicted", 0),
        dead_letters=dict(sorted(letters.items())),
        model_calls=sum(v for k, v in model_counts.items() if k.endswith("_requests")),
        seconds=seconds,
        **estimate,
    )
    if to_dir:
        with open(os.path.join(target, "summary.json"), "w", encoding="utf-8") as fh:
            json.dump(summary.as_dict(), fh, indent=2)
            fh.write("\n")
    return summary


__all__ = [
    "MISSING",
    "CatalogRow",
    "RepredictConfig",
    "RepredictOptions",
    "RepredictSummary",
    "StoreOptions",
    "build_pipeline",
    "catalog_row",
    "estimate_calls",
    "repredict_event",
    "run",
    "summary_table",
]
