"""The `productlens` command line. It parses flags and prints; pipelines do the work."""

from __future__ import annotations

import glob
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

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

app = typer.Typer(help="productlens: product understanding at scale.", no_args_is_help=True, add_completion=False)
taxonomy_app = typer.Typer(help="Inspect and fetch Shopify taxonomy versions.", no_args_is_help=True)
app.add_typer(taxonomy_app, name="taxonomy")
console = Console(stderr=True)

TaxonomyOpt = Annotated[
    Optional[str], typer.Option("--taxonomy", help="dist/en directory (categories.json + attributes.json); default: the bundled sample")
]


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


ImageBaseDirOpt = Annotated[
    Optional[str],
    typer.Option("--image-base-dir", help="directory that local image paths (relative, absolute or file://) must lie in; "
                 "default: events cannot name local files"),
]
ImageBucketOpt = Annotated[
    Optional[list[str]], typer.Option("--image-gcs-bucket", help="gs:// bucket images may come from (repeatable); default: none")
]
ImageHostOpt = Annotated[
    Optional[list[str]],
    typer.Option("--image-host", help="allow-list of image hosts, e.g. cdn.shopify.com or .example-cdn.com (repeatable); "
                 "default: any public host"),
]
PrivateImagesOpt = Annotated[
    bool,
    typer.Option("--allow-private-image-addresses", help="tests and local use only: let image URLs reach loopback and "
                 "private addresses (never on a shared or cloud worker)"),
]


def _image_flags(base_dir: str | None, buckets: list[str] | None, hosts: list[str] | None, allow_private: bool) -> list[str]:
    if base_dir and not Path(base_dir).is_dir():
        _fail(f"--image-base-dir {base_dir} is not a directory")
    return [
        *([f"--image_base_dir={base_dir}"] if base_dir else []),
        *(f"--image_gcs_bucket={b}" for b in buckets or []),
        *(f"--image_host={h}" for h in hosts or []),
        *(["--image_allow_private_addresses"] if allow_private else []),
    ]


@taxonomy_app.command("info")
def taxonomy_info(taxonomy: TaxonomyOpt = None) -> None:
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
    taxonomy: TaxonomyOpt = None,
    limit: Annotated[int, typer.Option(help="how many matches")] = 10,
) -> None:
    """Find categories by (part of) a name or path; shows how the corrector reads it too."""
    from rapidfuzz import fuzz, process

    from taxonomy.corrector import CategoryCorrector
    from taxonomy.loader import TaxonomyError, load_taxonomy

    try:
        t = load_taxonomy(taxonomy)
    except TaxonomyError as exc:
        _fail(str(exc))
    categories = list(t.categories.values())
    table = Table(title=f"{query!r} in taxonomy {t.version}")
    for col in ("score", "id", "full name", "attributes"):
        table.add_column(col)
    for _, score, i in process.extract(query, [c.full_name for c in categories], scorer=fuzz.WRatio, limit=limit):
        c = categories[i]
        table.add_row(f"{score:.0f}", c.id.rsplit("/", 1)[-1], c.full_name, str(len(c.attribute_handles)))
    Console().print(table)
    r = CategoryCorrector(t).correct(query)
    verdict = r.category.full_name if r.category else "unresolved"
    Console().print(f"corrector: {verdict} (method {r.method}, score {r.score:.2f})")


@taxonomy_app.command("fetch")
def taxonomy_fetch(
    version: Annotated[str, typer.Option("--version", help="release, e.g. 2024-07")],
    base_url: Annotated[
        Optional[str], typer.Option(help="URL template with {version}; default: Shopify's GitHub release")
    ] = None,
    force: Annotated[bool, typer.Option(help="download again even if cached")] = False,
) -> None:
    """Download a release's dist/en files into the local cache and print the directory."""
    from taxonomy.fetch import FetchError, fetch_release

    try:
        with console.status(f"fetching taxonomy {version}") as status:
            path, t = fetch_release(
                version,
                base_url=base_url,
                force=force,
                on_progress=lambda name, n: status.update(f"fetching {name}: {n / 1e6:.1f} MB"),
            )
    except FetchError as exc:
        _fail(str(exc))
    console.print(f"taxonomy {t.version}: {len(t)} categories, {len(t.attributes)} attributes")
    print(path)


@app.command()
def backfill(
    input: Annotated[str, typer.Option("--input", help="product events: .jsonl (glob ok), .parquet, or kafka:TOPIC")],
    output: Annotated[str, typer.Option("--output", help="output directory, or kafka:TOPIC")],
    taxonomy: TaxonomyOpt = None,
    image_max_side: Annotated[int, typer.Option(help="resize images to at most this many pixels a side")] = 448,
    batch_max: Annotated[int, typer.Option(help="largest model batch")] = 64,
    triton_url: Annotated[Optional[str], typer.Option(help="Triton gRPC host:port (e.g. localhost:8001); default: the in-process baseline")] = None,
    model_name: Annotated[str, typer.Option(help="Triton model that answers the contract")] = "product_baseline",
    max_in_flight: Annotated[int, typer.Option(help="model batches on the wire per step")] = 4,
    bootstrap_servers: Annotated[str, typer.Option("--bootstrap-servers", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap servers, for kafka: inputs and outputs")] = "127.0.0.1:9092",
    refresh: Annotated[bool, typer.Option(help="skip unchanged products; one prediction per burst of edits")] = True,
    quiet_period: Annotated[float, typer.Option(help="seconds without edits that end a burst")] = 30.0,
    dedupe: Annotated[bool, typer.Option(help="one model call per distinct product content")] = True,
    prediction_store: Annotated[Optional[str], typer.Option("--prediction-store", help="skip products whose last prediction is current: predictions snapshot/dir or kafka:TOPIC")] = None,
    bulk_results: Annotated[Optional[str], typer.Option("--bulk-results", help="one completion record per bulk_request_id: directory, .jsonl, or kafka:TOPIC")] = None,
    image_base_dir: ImageBaseDirOpt = None,
    image_gcs_bucket: ImageBucketOpt = None,
    image_host: ImageHostOpt = None,
    allow_private_image_addresses: PrivateImagesOpt = False,
    runner: Annotated[str, typer.Option(help="Beam runner")] = "FnApiRunner",
    beam_arg: Annotated[Optional[list[str]], typer.Option("--beam-arg", help="extra Beam pipeline flag (repeatable)")] = None,
) -> None:
    """Predict category and attributes for every product in a file of events."""
    from pipelines.backfill import BackfillOptions, count_lines, run
    from taxonomy.loader import TaxonomyError
    from transforms.model.triton import ModelConfigError
    from transforms.model.client import TaxonomyVersionMismatch
    from transforms.model.retry import RetriesExhausted

    flags = [
        f"--input={input}",
        f"--output={output}",
        f"--image_max_side={image_max_side}",
        f"--batch_max={batch_max}",
        f"--runner={runner}",
        f"--model_name={model_name}",
        f"--max_in_flight={max_in_flight}",
        f"--kafka_bootstrap={bootstrap_servers}",
        *([f"--refresh_quiet_s={quiet_period}"] if refresh else []),
        *(["--dedupe"] if dedupe else []),
        *([f"--prediction_store={prediction_store}"] if prediction_store else []),
        *([f"--bulk_results={bulk_results}"] if bulk_results else []),
        *_image_flags(image_base_dir, image_gcs_bucket, image_host, allow_private_image_addresses),
        *(beam_arg or []),
    ]
    if taxonomy:
        flags.append(f"--taxonomy={taxonomy}")
    if triton_url:
        flags.append(f"--triton_url={triton_url}")
    local = "://" not in input and not input.startswith("kafka:")
    if local and not glob.glob(input):
        _fail(f"no input file matches {input}" if any(c in input for c in "*?[") else f"input {input} does not exist")
    options = BackfillOptions(flags)
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
        console.print(f"outputs in {summary.output}: predictions.jsonl, predictions.parquet, dead_letters.jsonl, summary.json")


BootstrapOpt = Annotated[str, typer.Option("--bootstrap-servers", envvar="KAFKA_BOOTSTRAP", help="Kafka bootstrap servers")]
KafkaConfigOpt = Annotated[
    Optional[list[str]], typer.Option("--kafka-config", help="librdkafka key=value, e.g. security.protocol=SASL_SSL (repeatable)")
]


@app.command()
def stream(
    bootstrap_servers: BootstrapOpt = "127.0.0.1:9092",
    events_topic: Annotated[str, typer.Option(help="topic of product events")] = "product-events",
    predictions_topic: Annotated[str, typer.Option(help="compacted topic of predictions")] = "product-predictions",
    dlq_topic: Annotated[str, typer.Option(help="dead-letter topic")] = "product-events-dlq",
    group_id: Annotated[str, typer.Option(help="consumer group whose offsets the stream commits")] = "productlens-stream",
    taxonomy: TaxonomyOpt = None,
    triton_url: Annotated[Optional[str], typer.Option(help="Triton gRPC host:port; default: the in-process baseline")] = None,
    model_name: Annotated[str, typer.Option(help="Triton model that answers the contract")] = "product_baseline",
    image_base_dir: ImageBaseDirOpt = None,
    image_gcs_bucket: ImageBucketOpt = None,
    image_host: ImageHostOpt = None,
    allow_private_image_addresses: PrivateImagesOpt = False,
    kafka_config: KafkaConfigOpt = None,
    refresh_quiet_period: Annotated[
        Optional[float],
        typer.Option(help="run the refresh trigger with this quiet period (s). Keyed state between source and sink: "
                     "on Prism offsets may be committed before outputs (docs/ARCHITECTURE.md); on Dataflow it is durable"),
    ] = None,
    dedupe: Annotated[bool, typer.Option(help="content dedupe (keyed state: same caveat as the refresh trigger)")] = False,
    bulk_results_topic: Annotated[
        Optional[str],
        typer.Option(help="one completion record per bulk_request_id, once bulk_size of its events have an outcome "
                     "(keyed state: same caveat as the refresh trigger)"),
    ] = None,
    bulk_timeout: Annotated[
        float, typer.Option(help="seconds (event time) after a request's first event when its record is written as partial")
    ] = 3600.0,
    runner: Annotated[str, typer.Option(help="Beam runner (PrismRunner locally, DataflowRunner in production)")] = "PrismRunner",
    beam_arg: Annotated[Optional[list[str]], typer.Option("--beam-arg", help="extra Beam pipeline flag (repeatable)")] = None,
) -> None:
    """Run the streaming pipeline: Kafka in, two steps, Kafka out. Runs until stopped."""
    from pipelines.stream import run as run_stream

    flags = [
        f"--kafka_bootstrap={bootstrap_servers}",
        f"--events_topic={events_topic}",
        f"--predictions_topic={predictions_topic}",
        f"--dlq_topic={dlq_topic}",
        f"--group_id={group_id}",
        f"--model_name={model_name}",
        f"--runner={runner}",
        *(f"--kafka_config={c}" for c in kafka_config or []),
        *(["--dedupe"] if dedupe else []),
        *([f"--refresh_quiet_s={refresh_quiet_period}"] if refresh_quiet_period is not None else []),
        *([f"--bulk_results_topic={bulk_results_topic}", f"--bulk_timeout_s={bulk_timeout}"] if bulk_results_topic else []),
        *_image_flags(image_base_dir, image_gcs_bucket, image_host, allow_private_image_addresses),
        *(beam_arg or []),
    ]
    for name, value in (("taxonomy", taxonomy), ("triton_url", triton_url)):
        if value:
            flags.append(f"--{name}={value}")
    console.print(f"streaming {events_topic} -> {predictions_topic} (dead letters: {dlq_topic}) on {runner}; Ctrl-C stops")
    try:
        run_stream(flags)
    except FileNotFoundError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        console.print("stopped; a restart resumes from the committed offsets")
    except Exception as exc:  # noqa: BLE001
        _pipeline_failed(exc)


@app.command()
def repredict(
    catalog: Annotated[str, typer.Option("--catalog", help="catalog snapshot: .jsonl (glob ok) or .parquet of ProductEvents or product rows")],
    predictions: Annotated[str, typer.Option("--predictions", help="prediction store: predictions snapshot (.jsonl/.parquet or a backfill output dir) or kafka:TOPIC (compacted)")],
    output: Annotated[Optional[str], typer.Option("--output", help="output directory, or kafka:TOPIC (optional with --dry-run)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only the join: count stale products and the model calls, call no model")] = False,
    taxonomy: TaxonomyOpt = None,
    triton_url: Annotated[Optional[str], typer.Option(help="Triton gRPC host:port; default: the in-process baseline")] = None,
    model_name: Annotated[str, typer.Option(help="Triton model that answers the contract")] = "product_baseline",
    bootstrap_servers: BootstrapOpt = "127.0.0.1:9092",
    kafka_config: KafkaConfigOpt = None,
    image_base_dir: ImageBaseDirOpt = None,
    image_gcs_bucket: ImageBucketOpt = None,
    image_host: ImageHostOpt = None,
    runner: Annotated[str, typer.Option(help="Beam runner")] = "FnApiRunner",
    beam_arg: Annotated[Optional[list[str]], typer.Option("--beam-arg", help="extra Beam pipeline flag (repeatable)")] = None,
) -> None:
    """Nightly re-prediction: predict again exactly the products whose prediction is stale
    (missing, content changed, other model or taxonomy version)."""
    from pipelines.repredict import RepredictOptions, summary_table
    from pipelines.repredict import run as run_repredict
    from taxonomy.loader import TaxonomyError
    from transforms.model.triton import ModelConfigError
    from transforms.model.client import TaxonomyVersionMismatch

    flags = [
        f"--catalog={catalog}",
        f"--prediction_store={predictions}",
        f"--model_name={model_name}",
        f"--kafka_bootstrap={bootstrap_servers}",
        f"--runner={runner}",
        *(f"--kafka_config={c}" for c in kafka_config or []),
        *_image_flags(image_base_dir, image_gcs_bucket, image_host, False),
        *(beam_arg or []),
    ]
    for name, value in (("repredict_output", output), ("taxonomy", taxonomy), ("triton_url", triton_url)):
        if value:
            flags.append(f"--{name}={value}")
    if dry_run:
        flags.append("--repredict_dry_run")
    try:
        with console.status("joining the catalog with the prediction store" + ("" if dry_run else " and re-predicting")):
            summary = run_repredict(RepredictOptions(flags))
    except (TaxonomyError, TaxonomyVersionMismatch, ModelConfigError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        _pipeline_failed(exc)
    Console().print(summary_table(summary))
    if summary.dry_run:
        console.print("dry run: no model was called. Extract calls depend on the category classify finds; "
                      "the estimate applies the share of stale products whose stored category has attributes.")
    if output and not output.startswith("kafka:"):
        console.print(f"summary.json{' and stale.jsonl' if dry_run else ', predictions.jsonl, predictions.parquet, dead_letters.jsonl'} in {output}")


@app.command()
def produce(
    input: Annotated[Path, typer.Option("--input", help="JSONL file: one event per line, sent as is")],
    topic: Annotated[str, typer.Option(help="topic to send to")] = "product-events",
    bootstrap_servers: BootstrapOpt = "127.0.0.1:9092",
    kafka_config: KafkaConfigOpt = None,
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
    topic: Annotated[str, typer.Option(help="topic to read")] = "product-predictions",
    bootstrap_servers: BootstrapOpt = "127.0.0.1:9092",
    max_records: Annotated[int, typer.Option("--max", help="stop after this many records (0: no limit)")] = 0,
    idle_timeout: Annotated[float, typer.Option(help="stop after this many seconds without a record")] = 10.0,
    kafka_config: KafkaConfigOpt = None,
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
