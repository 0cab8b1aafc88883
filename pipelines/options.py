"""Option groups shared by several pipelines (each pipeline adds its own subclass)."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.images.prepare import ImageConfig
from transforms.io.kafka import KafkaConfig
from transforms.model.steps import BatchConfig


class PredictOptions(PipelineOptions):
    """What every predicting pipeline shares: taxonomy, model, images, batching."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--taxonomy", default=None, help="dist/en directory; default: bundled sample")
        parser.add_argument("--image_max_side", type=int, default=ImageConfig.max_side)
        parser.add_argument("--image_max_bytes", type=int, default=ImageConfig.max_bytes)
        parser.add_argument("--image_timeout_s", type=float, default=ImageConfig.timeout_s)
        parser.add_argument("--batch_min", type=int, default=BatchConfig.min_size)
        parser.add_argument("--batch_max", type=int, default=BatchConfig.max_size)
        parser.add_argument("--max_in_flight", type=int, default=4, help="model batches on the wire per step")
        parser.add_argument("--triton_url", default=None, help="Triton gRPC host:port; default: the in-process baseline")
        parser.add_argument("--model_name", default="product_baseline", help="Triton model answering the contract")
        parser.add_argument("--model_timeout_s", type=float, default=60.0)
        parser.add_argument(
            "--image_base_dir", default=None,
            help="directory local image paths (relative, absolute or file://) must lie in; default: events cannot name local files",
        )
        parser.add_argument("--image_max_attempts", type=int, default=ImageConfig.max_attempts, help="images tried per product")
        parser.add_argument("--image_product_budget_s", type=float, default=ImageConfig.product_budget_s, help="seconds of image fetching per product")
        parser.add_argument("--image_gcs_bucket", action="append", default=[], help="gs:// bucket images may come from (repeatable); default: none")
        parser.add_argument("--image_host", action="append", default=[], help="allow-list of image hosts, e.g. cdn.shopify.com or .example-cdn.com (repeatable); default: any public host")
        parser.add_argument("--image_proxy", default=None, help="HTTP proxy host:port for image fetches (proxy environment variables are ignored)")
        parser.add_argument(
            "--image_allow_private_addresses", action="store_true",
            help="tests and local use only: let image URLs reach loopback and private addresses",
        )
        parser.add_argument(
            "--refresh_quiet_s", type=float, default=None,
            help="run the refresh trigger (skip unchanged products, one prediction per burst of edits "
            "within this many seconds); default: predict every event",
        )
        parser.add_argument("--dedupe", action="store_true", help="one model path per distinct content in flight")
        parser.add_argument("--dedupe_wait_s", type=float, default=1.0, help="streaming: how long equal content waits for its twins")


class KafkaOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--kafka_bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (Beam's own --bootstrap_servers belongs to its Kafka Streams runner)")
        parser.add_argument("--kafka_config", action="append", default=[], help="librdkafka key=value (SASL/SSL), repeatable")
        parser.add_argument("--predictions_topic", default="product-predictions")
        parser.add_argument("--dlq_topic", default="product-events-dlq")
        parser.add_argument("--group_id", default="productlens", help="consumer group whose offsets a Kafka read commits")


class StoreOptions(PipelineOptions):
    """The prediction store and bulk results, shared by backfill and repredict.
    """

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--prediction_store", default=None, help="last prediction per product: a predictions snapshot (.jsonl/.parquet or a backfill output dir), or kafka:TOPIC (compacted)")
        parser.add_argument("--bulk_results", default=None, help="one completion record per bulk_request_id: a directory (bulk_results.jsonl), a .jsonl path, or kafka:TOPIC")


def kafka_config(options: PipelineOptions) -> KafkaConfig:
    k = options.view_as(KafkaOptions)
    return KafkaConfig.from_options(k.kafka_bootstrap, k.kafka_config)


def image_config(options: PipelineOptions) -> ImageConfig:
    o = options.view_as(PredictOptions)
    return ImageConfig(
        max_side=o.image_max_side,
        max_bytes=o.image_max_bytes,
        timeout_s=o.image_timeout_s,
        max_attempts=o.image_max_attempts,
        product_budget_s=o.image_product_budget_s,
        gcs_buckets=tuple(o.image_gcs_bucket),
        allowed_hosts=tuple(o.image_host),
        allow_private_addresses=o.image_allow_private_addresses,
        proxy=o.image_proxy,
    )
