"""Stream: Kafka product-events -> the two-step flow -> Kafka product-predictions, with
dead letters to product-events-dlq and deletes as tombstones.

Locally it runs on Beam's Prism runner (built by deploy/local/prism/prism.sh and passed
with --prism_location); on Dataflow the same `build_pipeline` runs with
--runner DataflowRunner --streaming.

Delivery (DESIGN.md "Delivery"): offsets are committed from the sink side
(transforms/io/kafka_commit.py). The source commits nothing; each record's Kafka position
rides on what the flow makes of it, every write emits its positions once the broker
acknowledged it, and a committer per partition commits the highest offset below which
every record is done: predicted, tombstoned, dead-lettered or skipped, and with bulk
results on, its request's record written. Records held in keyed state (the refresh
trigger's quiet period, the dedupe buffer, an open bulk request) are not done, so a crash
re-reads them: at-least-once, with identical duplicates (same prediction_id).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, PrismRunnerOptions, StandardOptions

from pipelines.backfill import model_factory, predict_config
from pipelines.options import KafkaOptions, generated_from, kafka_config, read_settings
from transforms.bulk.batch import bulk_result_record
from transforms.bulk.stream import StreamingBulkResults
from transforms.config import StreamSettings
from transforms.io.kafka import ReadConfig, ReadFromKafka, WriteToKafka
from transforms.io.kafka_commit import BULK, PREDICT, CommitOffsets
from transforms.io.kafka_sink import WritePredictionsToKafka
from transforms.predict import PredictConfig, PredictProducts

__all__ = [
    "REPO_ROOT",
    "StreamOptions",
    "build_pipeline",
    "prism_binary",
    "run",
]

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


@generated_from(StreamSettings)
class StreamOptions(PipelineOptions):
    """The source topic and bulk results (transforms/config.py StreamSettings)."""


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, config: PredictConfig) -> None:
    s, k = options.view_as(StreamOptions), options.view_as(KafkaOptions)
    kafka = kafka_config(options)
    read = ReadConfig(
        kafka,
        (s.events_topic,),
        k.group_id,
        bounded=False,
        start_from=s.start_from,
        max_bundle_s=s.max_bundle_s,
        commit_on_finalize=False,
    )
    source = pipeline | "ReadEvents" >> ReadFromKafka(read)
    events = source["records"]  # KafkaRecords: decode stamps their positions on its outputs
    outputs = events | "Predict" >> PredictProducts(config)
    done = outputs | "Write" >> WritePredictionsToKafka(kafka, k.predictions_topic, k.dlq_topic, track=True)
    paths = (PREDICT,)
    if s.bulk_results_topic:
        topic = s.bulk_results_topic
        bulk_done = (
            {"events": events, **outputs}
            | "BulkResults" >> StreamingBulkResults(s.bulk_timeout_s, track=True)
            | "BulkRecords"
            >> beam.MapTuple(lambda sources, result: (sources, bulk_result_record(result, topic) if result else None))
            | "WriteBulkResults" >> beam.ParDo(WriteToKafka(kafka, track=BULK))
        )
        done, paths = [*done, bulk_done], (PREDICT, BULK)
    signals = {"ranges": source["ranges"], **{f"done{i}": d for i, d in enumerate(done)}}
    _ = signals | "CommitOffsets" >> CommitOffsets(read, paths)


def prism_binary() -> str | None:
    """The Prism runner built by deploy/local/prism/prism.sh, or one on PATH."""
    version = beam.version.__version__
    candidate = os.environ.get("PRISM_LOCATION") or str(
        REPO_ROOT / ".cache" / "prism" / f"v{version}" / "bin" / "prism"
    )
    if os.path.isfile(candidate):
        return candidate
    return shutil.which("prism")


def run(options: PipelineOptions | list[str]) -> None:
    """Runs until cancelled (Ctrl-C) or killed; restart resumes from committed offsets.
    `options`: built by the CLI (`build_options`), or flags."""
    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(options)
    for group in (StreamOptions, KafkaOptions):
        read_settings(options, group)  # bad values: a ValueError naming the flag, before anything starts
    std = options.view_as(StandardOptions)
    std.streaming = True
    if std.runner in (None, "PrismRunner"):
        std.runner = "PrismRunner"
        prism_options = options.view_as(PrismRunnerOptions)
        if not prism_options.prism_location:
            prism = prism_binary()
            if not prism:
                raise FileNotFoundError(
                    "the Prism runner is not built: run deploy/local/prism/prism.sh (Beam's own download "
                    "from GitHub cannot work offline), or pass --prism_location"
                )
            prism_options.prism_location = prism
    config = predict_config(options, model_factory(options))
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options, config)
    result = pipeline.run()
    result.wait_until_finish()
