"""The `productlens` command line. It parses flags and prints; pipelines do the work."""

from __future__ import annotations

import glob
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from pipelines.cli_options import check, option
from pipelines.model_cli import model_app
from pipelines.review_cli import register as register_review_commands
from pipelines.serve_cli import serve_command
from pipelines.train_cli import train_command
from transforms.config import (
    KEYED_STATE_CAVEAT,
    BackfillCommand,
    BackfillSettings,
    KafkaSettings,
    PredictSettings,
    RepredictCommand,
    RepredictSettings,
    StoreSettings,
    StreamCommand,
    StreamSettings,
)

__all__ = [
    "TAXONOMY",
    "IMAGE_BASE_DIR",
    "IMAGE_GCS_BUCKET",
    "IMAGE_HOST",
    "BOOTSTRAP_SERVERS",
    "KAFKA_CONFIG",
    "BEAM_ARG",
    "taxonomy_info",
    "taxonomy_search",
    "taxonomy_fetch",
    "backfill",
    "stream",
    "repredict",
    "produce",
    "consume",
    "main",
]

app = typer.Typer(help="productlens: product understanding at scale.", no_args_is_help=True, add_completion=False)
taxonomy_app = typer.Typer(help="Inspect and fetch Shopify taxonomy versions.", no_args_is_help=True)
app.add_typer(taxonomy_app, name="taxonomy")
app.command("train")(train_command)
app.add_typer(model_app, name="model")
app.command("serve")(serve_command)
register_review_commands(app)  # `productlens review add-user|migrate`, `productlens labels export`
console = Console(stderr=True)


def _fail(message: str) -> None:
    """A usage or configuration error: exit 2 (as typer does for bad flags)."""
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _pipeline_failed(exc: BaseException) -> None:
    """The job itself failed (not the flags): exit 1, with the cause and no traceback
    (it is in the log at DEBUG). Bad products never get here: they are dead letters."""
    logging.getLogger("productlens").debug("pipeline failed", exc_info=exc)
    console.print(f"[red]pipeline failed:[/red] {type(exc).__name__}: {str(exc)[:2000]}")
    raise typer.Exit(1)


# Options several commands share; each takes its default and help from its settings field.
TAXONOMY = option(PredictSettings, "taxonomy")
IMAGE_BASE_DIR = option(PredictSettings, "image_base_dir")
IMAGE_GCS_BUCKET = option(PredictSettings, "image_gcs_bucket")
IMAGE_HOST = option(PredictSettings, "image_host")
BOOTSTRAP_SERVERS = option(KafkaSettings, "kafka_bootstrap", envvar="KAFKA_BOOTSTRAP")
KAFKA_CONFIG = option(KafkaSettings, "kafka_config")
BEAM_ARG = typer.Option([], "--beam-arg", help="extra Beam pipeline flag (repeatable)")


def _image_values(
    base_dir: str | None, buckets: list[str] | None, hosts: list[str] | None, allow_private: bool
) -> dict[str, Any]:
    """The image settings by pipeline-option name (PredictSettings)."""
    if base_dir and not Path(base_dir).is_dir():
        _fail(f"--image-base-dir {base_dir} is not a directory")
    return {
        "image_base_dir": base_dir,
        "image_gcs_bucket": list(buckets or []),
        "image_host": list(hosts or []),
        "image_allow_private_addresses": allow_private,
    }


@taxonomy_app.command("info")
def taxonomy_info(taxonomy: str | None = TAXONOMY) -> None:
    """Version, counts and load time of a taxonomy."""
    from taxonomy.loader import TaxonomyError, load_taxonomy

    try:
        start = time.perf_counter()
        t = load_taxonomy(taxonomy)
        ms = (time.perf_counter() - start) * 1000
    except TaxonomyError as exc:
        _fail(str(exc))
    table = Table(title=f"taxonomy {t.version}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in t.stats().items():
        table.add_row(k, str(v))
    table.add_row("load time (ms)", f"{ms:.1f}")
    Console().print(table)


@taxonomy_app.command("search")
def taxonomy_search(
    query: str,
    taxonomy: str | None = TAXONOMY,
    limit: Annotated[int, typer.Option(help="how many matches")] = 10,
) -> None:
    """Find categories by (part of) a name or path, in English or any loaded locale; shows
    how the corrector reads the query too."""
    from rapidfuzz import fuzz, process

    from taxonomy.corrector import CategoryCorrector
    from taxonomy.loader import TaxonomyError, load_taxonomy

    try:
        t = load_taxonomy(taxonomy)
    except TaxonomyError as exc:
        _fail(str(exc))
    categories = list(t.categories.values())
    # English paths and every locale's paths, one flat list; a category keeps its best hit.
    choices = [c.full_name for c in categories]
    owners: list[tuple[int, str]] = [(i, "en") for i in range(len(categories))]
    for locale in t.locales:
        for i, c in enumerate(categories):
            full = t.localized_full_name(c.id, locale)
            if full is not None:
                choices.append(full)
                owners.append((i, locale))
    best: dict[int, tuple[float, str, str]] = {}
    for text, score, k in process.extract(query, choices, scorer=fuzz.WRatio, limit=limit * 4):
        i, locale = owners[k]
        if i not in best or score > best[i][0]:
            best[i] = (score, locale, text)
    table = Table(title=f"{query!r} in taxonomy {t.version}")
    for col in ("score", "id", "full name", "locale", "matched", "attributes"):
        table.add_column(col)
    for i, (score, locale, text) in sorted(best.items(), key=lambda kv: -kv[1][0])[:limit]:
        c = categories[i]
        matched = "" if locale == "en" else text
        table.add_row(
            f"{score:.0f}", c.id.rsplit("/", 1)[-1], c.full_name, locale, matched, str(len(c.attribute_handles))
        )
    Console().print(table)
    r = CategoryCorrector(t).correct(query)
    verdict = r.category.full_name if r.category else "unresolved"
    via = f", locale {r.locale}" if r.locale else ""
    Console().print(f"corrector: {verdict} (method {r.method}, score {r.score:.2f}{via})")


@taxonomy_app.command("fetch")
def taxonomy_fetch(
    version: Annotated[str, typer.Option("--version", help="release, e.g. 2024-07")],
    base_url: Annotated[
        str | None, typer.Option(help="URL template with {version}; default: Shopify's GitHub release")
    ] = None,
    force: Annotated[bool, typer.Option(help="download again even if cached")] = False,
    locale: Annotated[
        list[str] | None,
        typer.Option(
            "--locale",
            help="also fetch dist/<locale>/categories.json (localized names); repeatable, or 'all'",
        ),
    ] = None,
) -> None:
    """Download a release's dist/en files (and localized names) into the local cache and
    print the directory."""
    from taxonomy.fetch import FetchError, fetch_release

    try:
        with console.status(f"fetching taxonomy {version}") as status:
            path, t = fetch_release(
                version,
                base_url=base_url,
                force=force,
                locales=locale or (),
                on_progress=lambda name, n: status.update(f"fetching {name}: {n / 1e6:.1f} MB"),
            )
    except FetchError as exc:
        _fail(str(exc))
    locales = f", locales {' '.join(t.locales)}" if t.locales else ""
    console.print(f"taxonomy {t.version}: {len(t)} categories, {len(t.attributes)} attributes{locales}")
    print(path)


@app.command()
def backfill(
    input: str = option(BackfillSettings, "input", default=...),
    output: str = option(BackfillSettings, "output", default=...),
    taxonomy: str | None = TAXONOMY,
    image_max_side: int = option(PredictSettings, "image_max_side"),
    batch_max: int = option(PredictSettings, "batch_max"),
    triton_url: str | None = option(PredictSettings, "triton_url"),
    model_name: str = option(PredictSettings, "model_name"),
    model_dir: str | None = option(PredictSettings, "model_dir"),
    max_in_flight: int = option(PredictSettings, "max_in_flight"),
    classify_candidates: int = option(PredictSettings, "classify_candidates"),
    backoff_threshold: float | None = option(PredictSettings, "backoff_threshold"),
    bootstrap_servers: str = BOOTSTRAP_SERVERS,
    refresh: bool = option(BackfillCommand, "refresh"),
    quiet_period: float = option(BackfillCommand, "quiet_period"),
    dedupe: bool = option(BackfillCommand, "dedupe"),
    prediction_store: str | None = option(StoreSettings, "prediction_store", "--prediction-store"),
    bulk_results: str | None = option(StoreSettings, "bulk_results"),
    image_base_dir: str | None = IMAGE_BASE_DIR,
    image_gcs_bucket: list[str] = IMAGE_GCS_BUCKET,
    image_host: list[str] = IMAGE_HOST,
    allow_private_image_addresses: bool = option(PredictSettings, "image_allow_private_addresses"),
    runner: str = option(BackfillCommand, "runner"),
    beam_arg: list[str] = BEAM_ARG,
) -> None:
    """Predict category and attributes for every product in a file of events."""
    from pipelines.backfill import BackfillOptions, count_lines, run
    from pipelines.options import build_options
    from taxonomy.loader import TaxonomyError
    from transforms.model.client import TaxonomyVersionMismatch
    from transforms.model.retry import RetriesExhausted
    from transforms.model.triton import ModelConfigError

    local = "://" not in input and not input.startswith("kafka:")
    if local and not glob.glob(input):
        _fail(f"no input file matches {input}" if any(c in input for c in "*?[") else f"input {input} does not exist")
    if model_dir and not (Path(model_dir) / "1" / "weights.npz").is_file():
        _fail(f"--model-dir {model_dir} is not a trained model directory (productlens train writes one)")
    values = {
        "input": input,
        "output": output,
        "taxonomy": taxonomy,
        "image_max_side": image_max_side,
        "batch_max": batch_max,
        "triton_url": triton_url,
        "model_name": model_name,
        "model_dir": model_dir,
        "max_in_flight": max_in_flight,
        "classify_candidates": classify_candidates,
        "backoff_threshold": backoff_threshold,
        "kafka_bootstrap": bootstrap_servers,
        "refresh_quiet_s": quiet_period if refresh else None,
        "dedupe": dedupe,
        "prediction_store": prediction_store,
        "bulk_results": bulk_results,
        **_image_values(image_base_dir, image_gcs_bucket, image_host, allow_private_image_addresses),
        "runner": runner,
    }
    try:
        check(BackfillCommand, refresh=refresh, quiet_period=quiet_period, dedupe=dedupe, runner=runner)
        options = build_options(BackfillOptions, values, beam_arg)
    except ValueError as exc:
        _fail(str(exc))
    total = count_lines(input)
    progress = Progress(
        TextColumn("[bold]backfill"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    try:
        with progress:
            task = progress.add_task("events", total=total)
            console.print("loading the model and the taxonomy ...")
            summary = run(options, on_progress=lambda n: progress.advance(task, n))
    except (TaxonomyError, TaxonomyVersionMismatch, ModelConfigError, RetriesExhausted, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a failed job is reported, not dumped as a traceback
        _pipeline_failed(exc)
    _print_summary(summary)
    if "://" not in output and not output.startswith("kafka:"):
        Path(output, "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")


def _print_summary(summary: object) -> None:
    from pipelines.backfill import RunSummary

    assert isinstance(summary, RunSummary)
    table = Table(title=f"backfill summary (model {summary.model_version}, taxonomy {summary.taxonomy_version})")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("events", summary.events),
        ("predicted", summary.predicted),
        ("  of which corrected category", summary.corrected),
        ("  of which unresolved (review)", summary.unresolved),
        ("  of which flagged with warnings", summary.with_warnings),
        ("skipped: prediction current (store)", summary.skipped_current),
        ("skipped: content unchanged", summary.skipped_unchanged),
        ("skipped: superseded within a burst", summary.debounced),
        ("model paths saved by content dedupe", summary.dedupe_calls_saved),
        ("deletes", summary.deletes),
        ("dead letters", summary.dead_letter_total),
        *((f"  at {stage}", n) for stage, n in summary.dead_letters.items()),
        ("model calls", summary.model_calls),
        ("model call retries", summary.model_retries),
        ("seconds", f"{summary.seconds:.1f}"),
        ("products/s", f"{summary.products_per_s:.1f}"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)
    if summary.output.startswith("kafka:"):
        console.print(f"predictions and tombstones in topic {summary.output[6:]}, dead letters in the DLQ topic")
    else:
        console.print(
            f"outputs in {summary.output}: predictions.jsonl, predictions.parquet, dead_letters.jsonl, summary.json"
        )


@app.command()
def stream(
    bootstrap_servers: str = BOOTSTRAP_SERVERS,
    events_topic: str = option(StreamSettings, "events_topic"),
    predictions_topic: str = option(KafkaSettings, "predictions_topic"),
    dlq_topic: str = option(KafkaSettings, "dlq_topic"),
    group_id: str = option(StreamCommand, "group_id"),
    taxonomy: str | None = TAXONOMY,
    triton_url: str | None = option(PredictSettings, "triton_url"),
    model_name: str = option(PredictSettings, "model_name"),
    image_base_dir: str | None = IMAGE_BASE_DIR,
    image_gcs_bucket: list[str] = IMAGE_GCS_BUCKET,
    image_host: list[str] = IMAGE_HOST,
    allow_private_image_addresses: bool = option(PredictSettings, "image_allow_private_addresses"),
    kafka_config: list[str] = KAFKA_CONFIG,
    refresh: bool = option(StreamCommand, "refresh", note=KEYED_STATE_CAVEAT),
    quiet_period: float = option(StreamCommand, "quiet_period"),
    dedupe: bool = option(StreamCommand, "dedupe", note=KEYED_STATE_CAVEAT),
    bulk_results_topic: str | None = option(StreamSettings, "bulk_results_topic"),
    bulk_timeout: float = option(StreamSettings, "bulk_timeout_s"),
    runner: str = option(StreamCommand, "runner"),
    beam_arg: list[str] = BEAM_ARG,
) -> None:
    """Run the streaming pipeline: Kafka in, two steps, Kafka out. Runs until stopped."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.options import build_options
    from pipelines.stream import run as run_stream

    values = {
        "kafka_bootstrap": bootstrap_servers,
        "events_topic": events_topic,
        "predictions_topic": predictions_topic,
        "dlq_topic": dlq_topic,
        "group_id": group_id,
        "taxonomy": taxonomy,
        "triton_url": triton_url,
        "model_name": model_name,
        **_image_values(image_base_dir, image_gcs_bucket, image_host, allow_private_image_addresses),
        "kafka_config": list(kafka_config),
        "refresh_quiet_s": quiet_period if refresh else None,
        "dedupe": dedupe,
        "bulk_results_topic": bulk_results_topic,
        "bulk_timeout_s": bulk_timeout,
        "runner": runner,
    }
    try:
        check(
            StreamCommand, group_id=group_id, runner=runner, refresh=refresh, quiet_period=quiet_period, dedupe=dedupe
        )
        options = build_options(PipelineOptions, values, beam_arg)
    except ValueError as exc:
        _fail(str(exc))
    console.print(
        f"streaming {events_topic} -> {predictions_topic} (dead letters: {dlq_topic}) on {runner}; Ctrl-C stops"
    )
    try:
        run_stream(options)
    except FileNotFoundError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        console.print("stopped; a restart resumes from the committed offsets")
    except Exception as exc:  # noqa: BLE001
        _pipeline_failed(exc)


@app.command()
def repredict(
    catalog: str = option(RepredictSettings, "catalog", default=...),
    predictions: str = option(StoreSettings, "prediction_store", "--predictions", default=...),
    output: str | None = option(RepredictSettings, "repredict_output"),
    dry_run: bool = option(RepredictSettings, "repredict_dry_run"),
    taxonomy: str | None = TAXONOMY,
    triton_url: str | None = option(PredictSettings, "triton_url"),
    model_name: str = option(PredictSettings, "model_name"),
    bootstrap_servers: str = BOOTSTRAP_SERVERS,
    kafka_config: list[str] = KAFKA_CONFIG,
    image_base_dir: str | None = IMAGE_BASE_DIR,
    image_gcs_bucket: list[str] = IMAGE_GCS_BUCKET,
    image_host: list[str] = IMAGE_HOST,
    runner: str = option(RepredictCommand, "runner"),
    beam_arg: list[str] = BEAM_ARG,
) -> None:
    """Nightly re-prediction: predict again exactly the products whose prediction is stale
    (missing, content changed, other model or taxonomy version)."""
    from pipelines.options import build_options
    from pipelines.repredict import RepredictOptions, summary_table
    from pipelines.repredict import run as run_repredict
    from taxonomy.loader import TaxonomyError
    from transforms.model.client import TaxonomyVersionMismatch
    from transforms.model.triton import ModelConfigError

    values = {
        "catalog": catalog,
        "prediction_store": predictions,
        "repredict_output": output,
        "repredict_dry_run": dry_run,
        "taxonomy": taxonomy,
        "triton_url": triton_url,
        "model_name": model_name,
        "kafka_bootstrap": bootstrap_servers,
        "kafka_config": list(kafka_config),
        **_image_values(image_base_dir, image_gcs_bucket, image_host, False),
        "runner": runner,
    }
    try:
        options = build_options(RepredictOptions, values, beam_arg)
    except ValueError as exc:
        _fail(str(exc))
    try:
        with console.status(
            "joining the catalog with the prediction store" + ("" if dry_run else " and re-predicting")
        ):
            summary = run_repredict(options)
    except (TaxonomyError, TaxonomyVersionMismatch, ModelConfigError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        _pipeline_failed(exc)
    Console().print(summary_table(summary))
    if summary.dry_run:
        console.print(
            "dry run: no model was called. Extract calls depend on the category classify finds; "
            "the estimate applies the share of stale products whose stored category has attributes."
        )
    if output and not output.startswith("kafka:"):
        console.print(
            f"summary.json{' and stale.jsonl' if dry_run else ', predictions.jsonl, predictions.parquet, dead_letters.jsonl'} in {output}"
        )


@app.command()
def produce(
    input: Annotated[Path, typer.Option("--input", help="JSONL file: one event per line, sent as is")],
    topic: str = option(StreamSettings, "events_topic", "--topic", help="topic to send to"),
    bootstrap_servers: str = BOOTSTRAP_SERVERS,
    kafka_config: list[str] = KAFKA_CONFIG,
) -> None:
    """Send the lines of a JSONL file as Kafka records, keyed by product_id when readable."""
    from confluent_kafka import Producer

    from transforms.io.kafka import KafkaConfig

    if not input.is_file():
        _fail(f"input {input} does not exist")
    config = KafkaConfig.from_options(bootstrap_servers, kafka_config or [])
    producer = Producer(config.client_config(**{"enable.idempotence": True, "acks": "all"}))
    failed: list[str] = []
    sent = 0
    for line in input.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            key = json.loads(line).get("product_id")
        except (ValueError, AttributeError):
            key = None  # bad lines go as they are: the pipeline dead-letters them
        producer.produce(
            topic,
            key=str(key).encode() if key else None,
            value=line,
            on_delivery=lambda err, msg: failed.append(str(err)) if err else None,
        )
        producer.poll(0)
        sent += 1
    remaining = producer.flush(60)
    if remaining or failed:
        _fail(f"{remaining + len(failed)} of {sent} records were not delivered: {failed[:3]}")
    console.print(f"sent {sent} records to {topic}")


@app.command()
def consume(
    topic: str = option(KafkaSettings, "predictions_topic", "--topic", help="topic to read"),
    bootstrap_servers: str = BOOTSTRAP_SERVERS,
    max_records: Annotated[int, typer.Option("--max", help="stop after this many records (0: no limit)")] = 0,
    idle_timeout: Annotated[float, typer.Option(help="stop after this many seconds without a record")] = 10.0,
    kafka_config: list[str] = KAFKA_CONFIG,
) -> None:
    """Print a topic from the beginning as JSON lines: key, value (null for a tombstone), headers."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from transforms.io.kafka import KafkaConfig

    config = KafkaConfig.from_options(bootstrap_servers, kafka_config or [])
    metadata = AdminClient(config.client_config()).list_topics(topic, timeout=30).topics.get(topic)
    if metadata is None or metadata.error is not None:
        _fail(f"topic {topic} does not exist")
    consumer = Consumer(config.client_config(**{"group.id": "productlens-consume", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])  # 0 = from the beginning
    seen, last = 0, time.monotonic()
    try:
        while (not max_records or seen < max_records) and time.monotonic() - last < idle_timeout:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            value = _json_or_text(msg.value())
            print(
                json.dumps(
                    {
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "key": msg.key().decode(errors="replace") if msg.key() else None,
                        "value": value,
                        "headers": {k: v.decode(errors="replace") for k, v in (msg.headers() or [])},
                    }
                ),
                flush=True,
            )
            seen += 1
    finally:
        consumer.close()
    console.print(f"{seen} records from {topic}")


def _register_evaluate() -> None:
    # Imported lazily by typer's call, registered here so `productlens --help` lists it.
    from pipelines.evaluate import evaluate_command

    app.command("evaluate", help=evaluate_command.__doc__)(evaluate_command)


_register_evaluate()
__import__("pipelines.dataset_cli", fromlist=["register"]).register(app)  # `productlens dataset ...`
__import__("pipelines.sft_cli", fromlist=["register"]).register(app)  # `productlens sft export`


def _json_or_text(value: bytes | None) -> object:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value.decode("utf-8", errors="backslashreplace")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
