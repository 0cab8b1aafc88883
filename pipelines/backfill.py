"""Backfill: a file of product events in, corrected predictions and dead letters out.

`build_pipeline` is pure (it only wires transforms); `run` picks the runner, shows
progress and returns the run's summary. The local runner is Beam's FnApiRunner, named
explicitly; on Dataflow the same `build_pipeline` runs with `--runner DataflowRunner`.
"""

from __future__ import annotations

import glob
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.options import KafkaOptions, PredictOptions, StoreOptions, generated_from, kafka_config, read_settings
from pipelines.results import counter_totals
from transforms.bulk.batch import BulkResults, WriteBulkResults
from transforms.config import BackfillSettings, PredictSettings
from transforms.freshness.store import ReadPredictionStore, SkipCurrent, StoreSource
from transforms.io.files import ReadEvents, WriteDeadLetters, WritePredictions
from transforms.io.kafka import ReadConfig, ReadFromKafka, commit_offsets, end_offsets
from transforms.io.kafka_sink import WritePredictionsToKafka
from transforms.model.client import (
    ModelClientFactory,
    check_taxonomy_version,
)
from transforms.model.factory import model_factory_of
from transforms.predict import PredictConfig, PredictProducts
from transforms.progress import ReportProgress, register, unregister
from transforms.shared import shared_taxonomy

__all__ = [
    "BackfillOptions",
    "KAFKA_PREFIX",
    "predict_config",
    "model_factory",
    "kafka_input",
    "build_pipeline",
    "RunSummary",
    "count_lines",
    "run",
]


@generated_from(BackfillSettings)
class BackfillOptions(PipelineOptions):
    """--input and --output (transforms/config.py BackfillSettings). Not `required`: Beam
    parses every PipelineOptions subclass for every pipeline, so a required flag here would
    break `stream`. `run` checks them instead."""


KAFKA_PREFIX = "kafka:"

# Dead letters at these stages are about a part of a product (one image); the product
# itself still ends as a prediction, so they do not finish an input.
_PARTIAL_STAGES = {"prepare_images"}


def predict_config(
    options: PipelineOptions, model: ModelClientFactory, image_base_dir: str | None = None
) -> PredictConfig:
    """Validated config (the flags are checked before the model is loaded); reads the
    model's metadata once and refuses a taxonomy mismatch."""
    settings: PredictSettings = read_settings(options, PredictOptions)
    client = model()
    metadata = client.metadata()
    taxonomy_version = shared_taxonomy(settings.taxonomy).version
    check_taxonomy_version(metadata, taxonomy_version)
    return PredictConfig(
        model=model,
        metadata=metadata,
        taxonomy_path=settings.taxonomy,
        images=settings.image_config(),
        batching=settings.batch_config(),
        image_base_dir=image_base_dir or settings.image_base_dir,
        refresh_quiet_s=settings.refresh_quiet_s,
        dedupe=settings.dedupe_config(),
        max_in_flight=settings.max_in_flight,
        classify_candidates=settings.classify_candidates,
    )


def model_factory(options: PipelineOptions) -> ModelClientFactory:
    """The job's model (`transforms.model.factory.model_factory_of`: Triton, an
    OpenAI-compatible server, a trained model directory or the in-process baseline)."""
    return model_factory_of(read_settings(options, PredictOptions))


def kafka_input(options: BackfillOptions, stop_offsets: tuple[tuple[str, int, int], ...] | None = None) -> ReadConfig:
    """The bounded read of `--input kafka:TOPIC` for the job's consumer group."""
    topic = options.input[len(KAFKA_PREFIX) :]
    group = options.view_as(KafkaOptions).group_id
    return ReadConfig(kafka_config(options), (topic,), group, bounded=True, stop_offsets=stop_offsets)


def build_pipeline(
    pipeline: beam.Pipeline,
    options: BackfillOptions,
    config: PredictConfig,
    run_id: str = "",
    kafka_read: ReadConfig | None = None,
) -> dict[str, beam.PCollection]:
    """`kafka_read`: the bounded read of a `kafka:` input with its end offsets fixed (run()
    commits them once the pipeline succeeded); by default the ends found at start."""
    if options.input.startswith(KAFKA_PREFIX):
        read = kafka_read or kafka_input(options)
        events = pipeline | "ReadEvents" >> ReadFromKafka(read) | "Values" >> beam.Map(lambda r: r.value)
    else:
        events = pipeline | "ReadEvents" >> ReadEvents(options.input)
    raw_events = events
    store_options = options.view_as(StoreOptions)
    skips = []
    if store_options.prediction_store:
        # Products whose last prediction (snapshot or compacted topic) is current are
        # skipped before any model work; force=True events always pass.
        spec = store_options.prediction_store
        source = StoreSource.parse(spec, kafka_config(options) if spec.startswith(KAFKA_PREFIX) else None)
        store = pipeline | "ReadStore" >> ReadPredictionStore(source)
        m = config.metadata
        filtered = events | "SkipCurrent" >> SkipCurrent(store, m.model_version, m.taxonomy_version)
        events = filtered["to_predict"]
        skips.append(filtered["skipped"])
        _ = filtered["skipped"] | "ProgressSkipped" >> beam.ParDo(ReportProgress(run_id))
    outputs = events | "Predict" >> PredictProducts(config)
    predictions = outputs["predictions"] | "ProgressPredictions" >> beam.ParDo(ReportProgress(run_id))
    _ = outputs["deletes"] | "ProgressDeletes" >> beam.ParDo(ReportProgress(run_id))
    letters = outputs["dead_letters"]
    _ = (
        letters
        | "FinalDeadLetters" >> beam.Filter(lambda d: d.stage not in _PARTIAL_STAGES)
        | "ProgressDeadLetters" >> beam.ParDo(ReportProgress(run_id))
    )
    if options.output.startswith(KAFKA_PREFIX):
        k = options.view_as(KafkaOptions)
        _ = {"predictions": predictions, "dead_letters": letters, "deletes": outputs["deletes"]} | "WriteToKafka" >> (
            WritePredictionsToKafka(kafka_config(options), options.output[len(KAFKA_PREFIX) :], k.dlq_topic)
        )
    else:
        predictions | "WritePredictions" >> WritePredictions(options.output)
        letters | "WriteDeadLetters" >> WriteDeadLetters(options.output)
    if store_options.bulk_results:
        target = store_options.bulk_results
        if "skipped" in outputs:  # the refresh trigger's skips
            skips.append(outputs["skipped"])
        streams = {
            "events": raw_events,
            "predictions": predictions,
            "dead_letters": letters,
            "deletes": outputs["deletes"],
        }
        if skips:
            streams["skipped"] = skips | "AllSkips" >> beam.Flatten()
        _ = (
            streams
            | "BulkResults" >> BulkResults()
            | "WriteBulkResults"
            >> WriteBulkResults(target, kafka_config(options) if target.startswith(KAFKA_PREFIX) else None)
        )
    return {"predictions": predictions, "dead_letters": letters, "deletes": outputs["deletes"]}


@dataclass
class RunSummary:
    events: int
    predicted: int
    corrected: int
    unresolved: int
    with_warnings: int
    deletes: int
    dead_letters: dict[str, int]
    seconds: float
    output: str
    model_version: str
    taxonomy_version: str
    model_calls: int = 0
    model_retries: int = 0
    skipped_current: int = 0
    skipped_unchanged: int = 0
    debounced: int = 0
    dedupe_calls_saved: int = 0

    @property
    def dead_letter_total(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def products_per_s(self) -> float:
        return self.predicted / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            **self.__dict__,
            "dead_letter_total": self.dead_letter_total,
            "products_per_s": round(self.products_per_s, 2),
        }


def count_lines(pattern: str) -> int | None:
    """Input size for the progress bar (local JSONL only; None when unknown)."""
    if "://" in pattern or pattern.endswith(".parquet"):
        return None
    files = glob.glob(pattern)
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as fh:
            total += sum(1 for line in fh if line.strip())
    return total


def run(
    options: BackfillOptions,
    model: ModelClientFactory | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RunSummary:
    if not options.input or not options.output:
        raise ValueError("backfill needs --input (events file) and --output (directory)")
    # Local image files only under --image_base_dir: the events are merchant data, and
    # their directory is no more trusted than they are.
    config = predict_config(options, model or model_factory(options))
    run_id = uuid.uuid4().hex
    runner_name = options.view_as(StandardOptions).runner
    runner = FnApiRunner() if runner_name in (None, "FnApiRunner") else runner_name
    if "://" not in options.output and not options.output.startswith(KAFKA_PREFIX):
        os.makedirs(options.output, exist_ok=True)
    start = time.perf_counter()
    if on_progress:
        register(run_id, on_progress)
    # A Kafka input's end offsets are fixed now and committed only after every output was
    # written: the pipeline's shuffles (refresh, dedupe) run after the source's bundles end.
    kafka_read = (
        kafka_input(options, end_offsets(kafka_input(options))) if options.input.startswith(KAFKA_PREFIX) else None
    )
    try:
        pipeline = beam.Pipeline(runner=runner, options=options)
        build_pipeline(pipeline, options, config, run_id, kafka_read)
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        unregister(run_id)
    if kafka_read is not None and kafka_read.stop_offsets is not None:
        commit_offsets(kafka_read, kafka_read.stop_offsets)
    seconds = time.perf_counter() - start
    counts = counter_totals(result, "productlens")
    model = counter_totals(result, "model")
    return RunSummary(
        events=counts.get("events", 0),
        predicted=counts.get("predicted", 0),
        corrected=counts.get("corrected", 0),
        unresolved=counts.get("unresolved", 0),
        with_warnings=counts.get("predictions_with_warnings", 0),
        deletes=counts.get("deletes", 0),
        dead_letters=dict(sorted(counter_totals(result, "dead_letters").items())),
        seconds=seconds,
        output=options.output,
        model_version=config.metadata.model_version,
        taxonomy_version=config.metadata.taxonomy_version,
        model_calls=sum(v for k, v in model.items() if k.endswith("_requests")),
        model_retries=sum(v for k, v in model.items() if k.endswith("_retries")),
        skipped_current=counter_totals(result, "store").get("skipped_current", 0),
        skipped_unchanged=counter_totals(result, "refresh").get("skipped_unchanged", 0),
        debounced=counter_totals(result, "refresh").get("debounced", 0),
        dedupe_calls_saved=counter_totals(result, "dedupe").get("calls_saved", 0),
    )
