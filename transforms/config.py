"""Every setting of productlens, its default, its bounds and what it means: written once, here.

Three kinds of models live in this module, all frozen pydantic models (picklable, hashable
when their values are, validated when built):

- **Runtime configs** that the transforms take: `EventLimits`, `ImageConfig`,
  `BatchConfig`, `RefreshConfig`, `DedupeConfig` and `PredictConfig` (the modules that use
  them re-export them, so `from transforms.images.prepare import ImageConfig` keeps working).
- **Option groups**, one per `PipelineOptions` subclass of `pipelines/` (`PredictSettings`,
  `KafkaSettings`, `StoreSettings`, `BackfillSettings`, `StreamSettings`,
  `RepredictSettings`, `EvaluateSettings`): a field's name is the pipeline flag's name
  (`--image_max_side`), and `pipelines/options.py` generates the argparse flags from them.
  A field that mirrors a runtime config field is built with `_like`, which copies the
  default, the bounds and the description, so none is written twice. `cli` in a field's
  `json_schema_extra` names its `productlens` flag(s); `pipelines/cli.py` takes the
  default and the help of every typer option from these fields.
- **Command defaults** (`BackfillCommand`, `StreamCommand`, `RepredictCommand`): what a
  `productlens` command turns on by default where it differs from the pipeline options'
  own default (backfill and the stream run the refresh trigger and content dedupe).

This module imports neither Beam nor a CLI library and parses no flags (DESIGN.md:
`transforms/` must not). `python -m transforms.config` prints docs/CONFIGURATION.md.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from model_repository.contract import MAX_CANDIDATES
from transforms.images.address_policy import AddressPolicy
from transforms.model.client import ModelMetadata

__all__ = [
    "COMMANDS",
    "KEYED_STATE_CAVEAT",
    "OPTION_GROUPS",
    "RUNTIME_CONFIGS",
    "BackfillCommand",
    "BackfillSettings",
    "BatchConfig",
    "DedupeConfig",
    "EvaluateSettings",
    "EventLimits",
    "ImageConfig",
    "KafkaSettings",
    "PredictConfig",
    "PredictSettings",
    "RefreshConfig",
    "RepredictCommand",
    "RepredictSettings",
    "ServeCommand",
    "StoreSettings",
    "StreamCommand",
    "StreamSettings",
    "cli_help",
    "cli_names",
    "default_of",
    "settings_error",
    "settings_markdown",
    "validate",
]

M = TypeVar("M", bound=BaseModel)

# A keyed step (refresh trigger, content dedupe, bulk results) between the Kafka source and
# sink holds records: the stream commits offsets from the sink side, so a held record's
# offset is committed only after its outputs are written, and the committed offset lags by
# the longest hold (docs/ARCHITECTURE.md, "Kafka and streaming").
KEYED_STATE_CAVEAT = (
    "keyed state: a held record's offset is committed once its outputs are written, so the committed "
    "offset lags by the hold and a restart re-reads that much (docs/ARCHITECTURE.md)"
)


class _Model(BaseModel):
    """Frozen, no unknown fields; positional arguments in field order are accepted, as the
    dataclasses these models replace accepted them (`DedupeConfig(2.0)`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(
                    f"{type(self).__name__} takes at most {len(names)} positional arguments, got {len(args)}"
                )
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"{type(self).__name__} got two values for {name}")
                kwargs[name] = value
        super().__init__(**kwargs)


class _Config(_Model):
    """Runtime configs are strict: "30" is not 30 seconds, True is not 1."""

    model_config = ConfigDict(strict=True)


class _Options(_Model):
    """Option groups take what argparse or `PipelineOptions` hand over (lax types)."""


def _cli(*names: str) -> dict[str, Any]:
    return {"cli": list(names)}


def _like(model: type[BaseModel], name: str, *, cli: tuple[str, ...] = (), **overrides: Any) -> Any:
    """A field with the default, bounds and description of `model.name` (one source);
    `overrides` replaces some of them (a list default for a tuple field)."""
    extra = {"from": f"{model.__name__}.{name}", **(_cli(*cli) if cli else {})}
    return FieldInfo.merge_field_infos(model.model_fields[name], json_schema_extra=extra, **overrides)


def default_of(model: type[BaseModel], name: str) -> Any:
    """The default of a field (`ImageConfig.max_side` is not a class attribute of a model)."""
    field = model.model_fields[name]
    return field.get_default(call_default_factory=True)


def cli_names(field: FieldInfo) -> list[str]:
    extra = field.json_schema_extra
    return list(extra.get("cli", [])) if isinstance(extra, dict) else []


def cli_help(field: FieldInfo) -> str:
    """The help of the field's `productlens` option: its description, or `cli_help` where
    the option is phrased the other way round (`--images/--no-images` for `no_images`)."""
    extra = field.json_schema_extra
    return str(extra["cli_help"]) if isinstance(extra, dict) and "cli_help" in extra else field.description or ""


# -- runtime configs ------------------------------------------------------------------------


def _bucket_names(buckets: Any) -> Any:
    for b in buckets:
        if not b or "/" in b:
            raise ValueError(f"name a gs:// bucket without gs:// or a path, e.g. my-images, got {b!r}")
    return buckets


class EventLimits(_Config):
    """What one event may cost before it is refused (decode, the JSONL line reader)."""

    # 2 MiB: the largest event a merchant can legitimately send is dominated by
    # description_html, which the Product model caps at 200,000 characters: at most
    # 800 KB as UTF-8, 1.2 MB if every character is written as a "\uXXXX" escape
    # (json.dumps' default for non-ASCII). The other fields of a product Shopify accepts
    # add about 0.7 MB at most (250 tags and 2,048 variants' option values of 255
    # characters, 50 URLs of 2,048). So 2 MiB refuses no realistic product, while one
    # event's parse stays in the tens of milliseconds and a few MB.
    max_event_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1,
        description="largest event (or JSONL line) in bytes; larger ones are dead letters (EventTooLarge)",
    )
    # A product event is 5 levels deep (event > product > variant_options > option >
    # values); 32 is generous, and far below the ~1,000 where the json module recurses out
    # of stack (the depth is checked before parsing, so the bound keeps that true).
    max_depth: int = Field(
        32,
        ge=1,
        le=512,
        description="deepest nesting of an event's JSON; deeper ones are dead letters (TooDeeplyNested)",
    )


class ImageConfig(_Config):
    """Image limits and the fetch policy (transforms/images/prepare.py)."""

    # Qwen2.5-VL-class models tile 28x28 patches; 448 = 16x16 tiles.
    max_side: int = Field(448, ge=32, le=4096, description="resize images to at most this many pixels a side")
    max_bytes: int = Field(10 * 1024 * 1024, ge=1, description="largest image file fetched, in bytes")
    max_pixels: int = Field(
        40_000_000, ge=1, description="largest image decoded, in pixels (checked on the header, before decoding)"
    )
    timeout_s: float = Field(
        5.0,
        gt=0,
        allow_inf_nan=False,
        description="total deadline per image in seconds (DNS, connect, redirects, headers and body), not per read",
    )
    jpeg_quality: int = Field(85, ge=1, le=95, description="JPEG quality of the image sent to the model")
    # A product names up to 50 images; only the first usable one is sent, so a product may
    # not spend more than this many tries or seconds finding it.
    max_attempts: int = Field(3, ge=1, description="images tried per product (the first usable one is sent)")
    product_budget_s: float = Field(
        10.0, gt=0, allow_inf_nan=False, description="seconds of image fetching per product"
    )
    # The job reads gs:// images with its own credentials, hence an allow-list.
    # Lists are accepted (and kept as tuples, so the config stays hashable).
    gcs_buckets: tuple[str, ...] = Field(
        (), strict=False, description="gs:// bucket images may come from (repeatable); default: none"
    )
    allowed_hosts: tuple[str, ...] = Field(
        (),
        strict=False,
        description="allow-list of image hosts, e.g. cdn.shopify.com or .example-cdn.com (repeatable); "
        "default: any public host",
    )
    allow_private_addresses: bool = Field(
        False,
        description="tests and local use only: let image URLs reach loopback and private addresses "
        "(never on a shared or cloud worker)",
    )
    proxy: str | None = Field(
        None, description="HTTP proxy host:port for image fetches (proxy environment variables are ignored)"
    )

    @field_validator("gcs_buckets")
    @classmethod
    def _buckets(cls, buckets: tuple[str, ...]) -> tuple[str, ...]:
        return _bucket_names(buckets)

    def address_policy(self) -> AddressPolicy:
        return AddressPolicy(
            allow_private=self.allow_private_addresses, allowed_hosts=self.allowed_hosts, proxy=self.proxy
        )


class BatchConfig(_Config):
    """Model batching declared as data (beam.BatchElements in front of each model step).

    There is no `max_wait_s`. Beam 2.77's `BatchElements(max_batch_duration_secs=...)`
    switches to a stateful implementation: every element is keyed by a per-process key
    (`WithSharedKey`) and buffered in state with a processing-time timer. That puts keyed
    state (a shuffle) between the Kafka source and sink, which on Prism splits the fused
    stage, so offsets would be committed before the predictions are written (the stream's
    at-least-once guarantee, docs/ARCHITECTURE.md); and one key per process serialises each
    process's batching behind one key's state. In batch jobs bundles are large and batches
    fill up to `max_size` anyway. What bounds the wait in the stream is the source's bundle
    length (`StreamSettings.max_bundle_s`): BatchElements emits what it holds when a bundle
    ends.
    """

    min_size: int = Field(8, ge=1, le=10_000, description="smallest model batch")
    max_size: int = Field(64, ge=1, le=10_000, description="largest model batch")

    @model_validator(mode="after")
    def _ordered(self) -> BatchConfig:
        if self.min_size > self.max_size:
            raise ValueError(
                f"the smallest model batch ({self.min_size}) is larger than the largest ({self.max_size}): "
                "lower the minimum or raise the maximum"
            )
        return self

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": self.min_size, "max_batch_size": self.max_size}

    def transform(self) -> Any:
        """`beam.BatchElements` with these sizes (Beam is imported only here, when asked)."""
        import apache_beam as beam

        return beam.BatchElements(**self.batch_elements_kwargs())


class RefreshConfig(_Config):
    """The refresh trigger (transforms/freshness/refresh.py). ``model_version`` /
    ``taxonomy_version``: what the pipeline predicts with now (the model's metadata)."""

    model_version: str = Field(
        description="the model's version (from its metadata), stamped on predictions",
        json_schema_extra={"runtime": True},
    )
    taxonomy_version: str = Field(
        description="the taxonomy version (from the model's metadata)", json_schema_extra={"runtime": True}
    )
    quiet_period_s: float = Field(
        30.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds without edits that end a burst (one prediction per burst); 0 predicts every edit",
    )

    @field_validator("model_version", "taxonomy_version")
    @classmethod
    def _named(cls, value: str, info: Any) -> str:
        if not value.strip():
            raise ValueError(
                f"RefreshConfig.{info.field_name} must be a non-empty string (the model's metadata), got {value!r}"
            )
        return value

    @property
    def quiet_micros(self) -> int:
        return round(self.quiet_period_s * 1_000_000)


class DedupeConfig(_Config):
    """Content dedupe (transforms/freshness/dedupe.py)."""

    max_wait_s: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="streaming: how long (event time, seconds) equal content waits for its twins; "
        "batch jobs group all of it",
    )


class PredictConfig(_Config):
    """The whole two-step flow (transforms/predict.py): the model, the taxonomy, and the
    configs of the stages. Built once per job, validated, pickled into the DoFns."""

    model: Callable[[], Any] = Field(
        description="picklable ModelClientFactory (InProcessBaseline, TritonModel); the client is made in setup()",
        json_schema_extra={"runtime": True},
    )
    metadata: InstanceOf[ModelMetadata] = Field(
        description="the model's name and versions, read once at construction", json_schema_extra={"runtime": True}
    )
    taxonomy_path: str | None = Field(
        None,
        description="dist/en directory (categories.json + attributes.json); default: the full 2024-07 taxonomy "
        "bundled with productlens (13 locales)",
    )
    images: ImageConfig = Field(default_factory=ImageConfig, description="image limits and fetch policy")
    batching: BatchConfig = Field(default_factory=BatchConfig, description="model batching")
    image_base_dir: str | None = Field(
        None,
        description="directory that local image paths (relative, absolute or file://) must lie in; "
        "default: events cannot name local files",
    )
    # Batches each model step keeps on the wire at once, so the server queue never drains
    # while the pipeline prepares the next batch.
    max_in_flight: int = Field(4, ge=1, le=256, description="model batches on the wire per step")
    refresh_quiet_s: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        description="run the refresh trigger (skip unchanged products, one prediction per burst of edits "
        "within this many seconds); default: predict every event",
    )
    dedupe: DedupeConfig | None = Field(
        None, description="one model path per distinct content in flight; default: one per product"
    )
    # Candidate mode (model_repository/product_vlm/README.md): an off-the-shelf VLM picks one
    # of K retrieved paths. Bounded by what a contract request may carry; each candidate
    # costs the prompt about 20-25 tokens.
    classify_candidates: int = Field(
        0,
        ge=0,
        le=MAX_CANDIDATES,
        description="candidate mode: put the top K categories of the in-process baseline retriever into each "
        "classify request, for a model that picks from candidates (product_vlm with classify_mode candidates); "
        "0 = off, 20 is a good start",
    )

    @property
    def refresh(self) -> RefreshConfig | None:
        if self.refresh_quiet_s is None:
            return None
        return RefreshConfig(
            model_version=self.metadata.model_version,
            taxonomy_version=self.metadata.taxonomy_version,
            quiet_period_s=self.refresh_quiet_s,
        )


# -- option groups: one per PipelineOptions subclass; field name = pipeline flag ----------------


class PredictSettings(_Options):
    """`PredictOptions`: what every predicting pipeline shares (taxonomy, model, images, batching)."""

    taxonomy: str | None = _like(PredictConfig, "taxonomy_path", cli=("--taxonomy",))
    triton_url: str | None = Field(
        None,
        description="Triton gRPC host:port (e.g. localhost:8001); default: the in-process baseline",
        json_schema_extra=_cli("--triton-url"),
    )
    model_name: str = Field(
        "product_baseline",
        min_length=1,
        description="Triton model that answers the contract",
        json_schema_extra=_cli("--model-name"),
    )
    model_dir: str | None = Field(
        None,
        description="a trained model directory (productlens train: model_repository/NAME) run in-process instead of "
        "the baseline; ignored with --triton-url (serve it there by its --model-name)",
        json_schema_extra=_cli("--model-dir"),
    )
    openai_url: str | None = Field(
        None,
        description="base URL of an OpenAI-compatible chat server (LMDeploy, SGLang, vLLM), e.g. "
        "http://127.0.0.1:23333/v1: product_vlm's prompts are rendered here and sent as chat messages; "
        "the bearer token comes from the environment variable PRODUCTLENS_OPENAI_API_KEY",
        json_schema_extra=_cli("--openai-url"),
    )
    openai_model: str = Field(
        "product_vlm",
        min_length=1,
        description="the served model name on --openai-url",
        json_schema_extra=_cli("--openai-model"),
    )
    model_timeout_s: float = Field(
        60.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds one Triton call may take (a timeout is retried, then dead-lettered)",
    )
    image_max_side: int = _like(ImageConfig, "max_side", cli=("--image-max-side",))
    image_max_bytes: int = _like(ImageConfig, "max_bytes")
    image_timeout_s: float = _like(ImageConfig, "timeout_s")
    image_max_attempts: int = _like(ImageConfig, "max_attempts")
    image_product_budget_s: float = _like(ImageConfig, "product_budget_s")
    image_gcs_bucket: list[str] = _like(ImageConfig, "gcs_buckets", cli=("--image-gcs-bucket",), default=[])
    image_host: list[str] = _like(ImageConfig, "allowed_hosts", cli=("--image-host",), default=[])
    image_proxy: str | None = _like(ImageConfig, "proxy")
    image_allow_private_addresses: bool = _like(
        ImageConfig, "allow_private_addresses", cli=("--allow-private-image-addresses",)
    )
    image_base_dir: str | None = _like(PredictConfig, "image_base_dir", cli=("--image-base-dir",))
    batch_min: int = _like(BatchConfig, "min_size")
    batch_max: int = _like(BatchConfig, "max_size", cli=("--batch-max",))
    max_in_flight: int = _like(PredictConfig, "max_in_flight", cli=("--max-in-flight",))
    refresh_quiet_s: float | None = _like(PredictConfig, "refresh_quiet_s", cli=("--refresh-quiet-period",))
    dedupe: bool = Field(
        False,
        description="content dedupe: one model path per distinct content in flight",
        json_schema_extra=_cli("--dedupe/--no-dedupe"),
    )
    dedupe_wait_s: float = _like(DedupeConfig, "max_wait_s")
    classify_candidates: int = _like(PredictConfig, "classify_candidates", cli=("--classify-candidates",))
    backoff_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="in-process baseline: below this calibrated probability a prediction backs off to the deepest "
        "ancestor category that clears it (0 never backs off); default: the model's own (0.5). For a model behind "
        "Triton it is the `backoff_threshold` parameter of its config.pbtxt",
        json_schema_extra=_cli("--backoff-threshold"),
    )

    @field_validator("image_gcs_bucket")
    @classmethod
    def _buckets(cls, buckets: list[str]) -> list[str]:
        return _bucket_names(buckets)

    @model_validator(mode="after")
    def _configs(self) -> PredictSettings:
        # The runtime configs' own cross-field checks (batch order) run now, when the flags
        # are read, not when the first DoFn is built. Their field bounds are this model's too.
        for build in (self.image_config, self.batch_config, self.dedupe_config):
            try:
                build()
            except ValidationError as exc:
                raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
        return self

    def image_config(self) -> ImageConfig:
        return ImageConfig(
            max_side=self.image_max_side,
            max_bytes=self.image_max_bytes,
            timeout_s=self.image_timeout_s,
            max_attempts=self.image_max_attempts,
            product_budget_s=self.image_product_budget_s,
            gcs_buckets=tuple(self.image_gcs_bucket),
            allowed_hosts=tuple(self.image_host),
            allow_private_addresses=self.image_allow_private_addresses,
            proxy=self.image_proxy,
        )

    def batch_config(self) -> BatchConfig:
        return BatchConfig(min_size=self.batch_min, max_size=self.batch_max)

    def dedupe_config(self) -> DedupeConfig | None:
        return DedupeConfig(max_wait_s=self.dedupe_wait_s) if self.dedupe else None


class KafkaSettings(_Options):
    """`KafkaOptions`: the cluster, the output topics and the consumer group."""

    # Beam's own --bootstrap_servers belongs to its Kafka Streams runner, hence the name.
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        min_length=1,
        description="Kafka bootstrap servers (host:port, comma-separated)",
        json_schema_extra=_cli("--bootstrap-servers"),
    )
    kafka_config: list[str] = Field(
        [],
        description="librdkafka key=value, e.g. security.protocol=SASL_SSL (repeatable)",
        json_schema_extra=_cli("--kafka-config"),
    )
    predictions_topic: str = Field(
        "product-predictions",
        min_length=1,
        description="compacted topic of predictions",
        json_schema_extra=_cli("--predictions-topic"),
    )
    dlq_topic: str = Field(
        "product-events-dlq", min_length=1, description="dead-letter topic", json_schema_extra=_cli("--dlq-topic")
    )
    group_id: str = Field(
        "productlens",
        min_length=1,
        description="consumer group whose offsets a Kafka read commits",
        json_schema_extra=_cli("--group-id"),
    )

    @field_validator("kafka_config")
    @classmethod
    def _pairs(cls, settings: list[str]) -> list[str]:
        for s in settings:
            key, sep, _ = s.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"write a Kafka setting as key=value, e.g. security.protocol=SASL_SSL; got {s!r}")
        return settings


class StoreSettings(_Options):
    """`StoreOptions`: the prediction store and bulk results (backfill, repredict)."""

    prediction_store: str | None = Field(
        None,
        description="prediction store, the last prediction per product (backfill skips the products whose "
        "prediction is current, repredict predicts the stale ones): a predictions snapshot (.jsonl/.parquet or a "
        "backfill output dir) or kafka:TOPIC (compacted)",
        json_schema_extra=_cli("--prediction-store", "--predictions"),
    )
    bulk_results: str | None = Field(
        None,
        description="one completion record per bulk_request_id: a directory (bulk_results.jsonl), a .jsonl path, "
        "or kafka:TOPIC",
        json_schema_extra=_cli("--bulk-results"),
    )


class BackfillSettings(_Options):
    """`BackfillOptions`. Not required as flags: Beam parses every options class for every
    pipeline, so a required flag would break the others; `backfill.run` checks them."""

    input: str | None = Field(
        None,
        description="product events: .jsonl (glob ok), .parquet, or kafka:TOPIC (read to its end offsets)",
        json_schema_extra=_cli("--input"),
    )
    output: str | None = Field(None, description="output directory, or kafka:TOPIC", json_schema_extra=_cli("--output"))


class StreamSettings(_Options):
    """`StreamOptions`: the streaming pipeline's source and bulk results."""

    events_topic: str = Field(
        "product-events", min_length=1, description="topic of product events", json_schema_extra=_cli("--events-topic")
    )
    start_from: Literal["earliest", "latest"] = Field(
        "earliest", description="where a partition starts when the consumer group has no committed offset"
    )
    # transforms.io.kafka.ReadConfig.max_bundle_s has the same default (a test checks).
    max_bundle_s: float = Field(
        2.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a source bundle reads before it checkpoints (offset commits; the model "
        "steps' batches and in-flight window drain at its end)",
    )
    bulk_results_topic: str | None = Field(
        None,
        description="one completion record per bulk_request_id, once bulk_size of its events have an outcome "
        f"({KEYED_STATE_CAVEAT})",
        json_schema_extra=_cli("--bulk-results-topic"),
    )
    bulk_timeout_s: float = Field(
        3600.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds (event time) after a request's first event when its record is written as partial",
        json_schema_extra=_cli("--bulk-timeout"),
    )


class RepredictSettings(_Options):
    """`RepredictOptions` (not required as flags, for the reason `BackfillSettings` gives)."""

    catalog: str | None = Field(
        None,
        description="catalog snapshot: .jsonl (glob ok) or .parquet of ProductEvents or product rows",
        json_schema_extra=_cli("--catalog"),
    )
    repredict_output: str | None = Field(
        None,
        description="output directory, or kafka:TOPIC (optional with --dry-run)",
        json_schema_extra=_cli("--output"),
    )
    repredict_dry_run: bool = Field(
        False,
        description="only the join: count stale products and the model calls, call no model",
        json_schema_extra=_cli("--dry-run"),
    )


class EvaluateSettings(_Options):
    """`EvaluateOptions`; the model, taxonomy, image and batching flags are `PredictSettings`'."""

    golden: str | None = Field(
        None, description="golden products JSONL (../shared/datasets shape)", json_schema_extra=_cli("--golden")
    )
    out: str | None = Field(
        None, description="output directory for metrics.json and report.html", json_schema_extra=_cli("--out")
    )
    predictions: str | None = Field(
        None,
        description="existing predictions (.jsonl/.parquet) instead of running the model",
        json_schema_extra=_cli("--predictions"),
    )
    mapping: str | None = Field(
        None,
        description="JSON or CSV mapping gold paths of another taxonomy to Shopify paths or ids",
        json_schema_extra=_cli("--mapping"),
    )
    limit: int | None = Field(
        None, ge=1, description="only the first N golden records; default: all", json_schema_extra=_cli("--limit")
    )
    top_n: int = Field(20, ge=1, description="confusion pairs kept", json_schema_extra=_cli("--top-n"))
    no_images: bool = Field(
        False,
        description="send no product images to the model (evaluate on text only)",
        json_schema_extra={
            **_cli("--images/--no-images"),
            "cli_help": "send product images to the model (--no-images: text only)",
        },
    )


# -- command defaults: what a `productlens` command turns on where the options' default differs --


class BackfillCommand(_Options):
    """`productlens backfill`: in a batch job the refresh trigger and dedupe cost no delivery
    guarantee, so they are on unless switched off."""

    refresh: bool = Field(
        True,
        description="skip unchanged products; one prediction per burst of edits",
        json_schema_extra=_cli("--refresh/--no-refresh"),
    )
    quiet_period: float = _like(RefreshConfig, "quiet_period_s", cli=("--quiet-period",))
    dedupe: bool = Field(
        True, description="one model call per distinct product content", json_schema_extra=_cli("--dedupe/--no-dedupe")
    )
    runner: str = Field("FnApiRunner", description="Beam runner", json_schema_extra=_cli("--runner"))


class StreamCommand(_Options):
    """`productlens stream`: the refresh trigger and dedupe are on unless switched off, as in
    backfill; offsets are committed from the sink side, so their keyed state is crash-safe
    (KEYED_STATE_CAVEAT)."""

    refresh: bool = _like(BackfillCommand, "refresh", cli=("--refresh/--no-refresh",))
    quiet_period: float = _like(RefreshConfig, "quiet_period_s", cli=("--refresh-quiet-period",))
    dedupe: bool = _like(BackfillCommand, "dedupe", cli=("--dedupe/--no-dedupe",))

    group_id: str = Field(
        "productlens-stream",
        min_length=1,
        description="consumer group whose offsets the stream commits",
        json_schema_extra=_cli("--group-id"),
    )
    runner: str = Field(
        "PrismRunner",
        description="Beam runner (PrismRunner locally, DataflowRunner in production)",
        json_schema_extra=_cli("--runner"),
    )


class RepredictCommand(_Options):
    """`productlens repredict`."""

    runner: str = Field("FnApiRunner", description="Beam runner", json_schema_extra=_cli("--runner"))


class ServeCommand(_Options):
    """`productlens serve`: the real-time API (service/). The model, taxonomy and image
    settings are `PredictSettings`' (same flags as the batch jobs, same answers)."""

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="address to bind; anything beyond loopback requires API keys (PRODUCTLENS_API_KEYS)",
        json_schema_extra=_cli("--host"),
    )
    port: int = Field(
        8080, ge=0, le=65535, description="TCP port to bind (0: any free port)", json_schema_extra=_cli("--port")
    )
    cache: str = Field(
        "memory",
        description="prediction cache: memory (in-process LRU), none, or a Redis URL (redis://host:6379/0) shared by "
        "replicas; a Redis outage degrades to no cache",
        json_schema_extra=_cli("--cache"),
    )
    cache_size: int = Field(
        100_000,
        ge=1,
        description="entries of the in-process cache (and of the latest-prediction store)",
        json_schema_extra=_cli("--cache-size"),
    )
    cache_ttl_s: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds a cached prediction lives (the key already changes with content, model and taxonomy "
        "version); 0 = no expiry",
        json_schema_extra=_cli("--cache-ttl"),
    )
    batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="milliseconds a model batch waits for more requests before it starts (while the model is busy, "
        "requests gather anyway)",
        json_schema_extra=_cli("--batch-wait-ms"),
    )
    batch_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="model batches run at once (1 for the in-process model, which uses every core; more for Triton "
        "or an OpenAI-compatible server, which batch on their side)",
        json_schema_extra=_cli("--batch-workers"),
    )
    max_queue: int = Field(
        512,
        ge=1,
        description="products waiting for the model before new requests get 503 + Retry-After",
        json_schema_extra=_cli("--max-queue"),
    )
    deadline_s: float = Field(
        10.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="seconds a request may take before it gets 503 + Retry-After (a client may ask for less with "
        "the X-Request-Timeout header)",
        json_schema_extra=_cli("--deadline"),
    )
    max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="largest request body accepted (413 beyond)",
        json_schema_extra=_cli("--max-body-bytes"),
    )
    max_products: int = Field(
        32,
        ge=1,
        le=1000,
        description="products one request may carry (422 beyond)",
        json_schema_extra=_cli("--max-products"),
    )
    retry_after_s: int = Field(
        1, ge=1, le=3600, description="Retry-After seconds of a 503", json_schema_extra=_cli("--retry-after")
    )
    review_db: str = Field(
        "sqlite:///review.sqlite",
        min_length=1,
        description="the review store (feedback, review queue, annotators, ratings): a SQLAlchemy URL, SQLite by "
        "default, postgresql+psycopg://user@host/db in production",
        json_schema_extra=_cli("--review-db"),
    )
    review_policy: str | None = Field(
        None,
        description="vetting policy YAML (service/review/policy.yaml documents the keys); default: the bundled policy",
        json_schema_extra=_cli("--review-policy"),
    )
    rating_sample_rate: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="share of served predictions kept in the review store as blind rating samples for annotators "
        "(continuous human evaluation), chosen by prediction id",
        json_schema_extra=_cli("--rating-sample-rate"),
    )
    second_opinion: Literal["auto", "baseline", "served"] = Field(
        "auto",
        description="who gives the second opinion on a merchant's correction: baseline (the CPU baseline model, loaded "
        "beside the served model), served (the served prediction's own candidates), auto (served when the in-process "
        "baseline serves, baseline otherwise)",
        json_schema_extra=_cli("--second-opinion"),
    )
    feedback_kafka: str | None = Field(
        None,
        description="Kafka bootstrap servers to publish merchant feedback to (topic --feedback-topic), so batch jobs "
        "can use it; default: not published",
        json_schema_extra=_cli("--feedback-kafka"),
    )
    feedback_topic: str = Field(
        "product-feedback",
        min_length=1,
        description="Kafka topic of merchant feedback",
        json_schema_extra=_cli("--feedback-topic"),
    )


# The option groups in the order of docs/CONFIGURATION.md, with their PipelineOptions class.
OPTION_GROUPS: tuple[tuple[type[_Options], str], ...] = (
    (PredictSettings, "PredictOptions"),
    (KafkaSettings, "KafkaOptions"),
    (StoreSettings, "StoreOptions"),
    (BackfillSettings, "BackfillOptions"),
    (StreamSettings, "StreamOptions"),
    (RepredictSettings, "RepredictOptions"),
    (EvaluateSettings, "EvaluateOptions"),
)
COMMANDS: tuple[tuple[type[_Options], str], ...] = (
    (BackfillCommand, "productlens backfill"),
    (StreamCommand, "productlens stream"),
    (RepredictCommand, "productlens repredict"),
    (ServeCommand, "productlens serve"),
)
RUNTIME_CONFIGS: tuple[type[_Config], ...] = (
    EventLimits,
    ImageConfig,
    BatchConfig,
    RefreshConfig,
    DedupeConfig,
    PredictConfig,
)


# -- errors -------------------------------------------------------------------------------------

_BOUND_WORDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def settings_error(
    exc: ValidationError, model: type[BaseModel] | None = None, *, cli: bool = False, rename: Mapping[str, str] = {}
) -> str:
    """One line per problem, naming the flag, what it must be and what the flag means, e.g.
    `--max-in-flight must be at least 1, got 0 (model batches on the wire per step)`.
    `cli`: name the `productlens` flag; `rename`: error field -> option field."""
    lines = []
    for err in exc.errors():
        name = rename.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else ""
        field = model.model_fields.get(name) if model is not None else None
        flag = f"--{name}"
        if cli and field is not None and cli_names(field):
            flag = cli_names(field)[0].split("/")[0]
        got = f", got {err['input']!r}" if "input" in err and not isinstance(err["input"], (dict, BaseModel)) else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] in _BOUND_WORDS:
            key, words = _BOUND_WORDS[err["type"]]
            bound = err["ctx"][key]
            bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
            what = f" must be {words} {bound}{got}"
        elif msg.startswith("Input should"):
            what = f" {msg.removeprefix('Input ')}{got}"
        else:
            what = f": {msg}" + ("" if " got " in msg else got)
        meaning = f" ({field.description})" if field is not None and field.description else ""
        lines.append(f"{flag}{what}{meaning}" if name else msg)
    return "\n".join(lines)


# -- docs -----------------------------------------------------------------------------------------


def _bounds(field: FieldInfo) -> str:
    parts = []
    for m in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥")):
            value = getattr(m, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
        if getattr(m, "allow_inf_nan", True) is False:
            parts.append("finite")
    if get_origin(field.annotation) is Literal:
        parts.append("one of " + ", ".join(f"`{a}`" for a in get_args(field.annotation)))
    return ", ".join(dict.fromkeys(parts)) or ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value == () or value == []:
        return "none"
    if isinstance(value, BaseModel):
        return f"`{type(value).__name__}()`"
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) >= 1e6:
        return f"`{value:g}`"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    """docs/CONFIGURATION.md: every setting with its flags, default, bounds and meaning."""
    out = [
        "# Configuration",
        "",
        "Generated from `transforms/config.py` by `python -m transforms.config > docs/CONFIGURATION.md`",
        "(a unit test fails when this file is stale). Every setting is written once, there: the pipeline",
        "flags (`PipelineOptions`), the `productlens` options and this page derive from it.",
        "",
        "## Pipeline options",
        "",
        "Flags of the Beam pipelines (`--flag=value`; for `backfill`, `stream`, `repredict` and `evaluate`",
        "alike, also on Dataflow). A list is given by repeating its flag. `productlens` names the option in",
        "the CLI column where a command offers it.",
    ]
    mirrored: dict[str, str] = {}
    for model, options in OPTION_GROUPS:
        out += ["", f"### `{options}` ({model.__name__})", "", _cell(" ".join((model.__doc__ or "").split())), ""]
        out += ["| pipeline flag | productlens | default | bounds | description |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if "from" in extra:
                mirrored[str(extra["from"])] = f"--{name}"
            cli = ", ".join(f"`{c}`" for c in cli_names(field)) or "—"
            out.append(f"| `--{name}` | {cli} | {_default(field)} | {_bounds(field)} | {_cell(field.description)} |")
    out += [
        "",
        "## `productlens` defaults",
        "",
        "Where a command's default differs from the pipeline option's own.",
        "",
        "| command | option | default | description |",
        "|---|---|---|---|",
    ]
    for model, command in COMMANDS:
        for field in model.model_fields.values():
            cli = ", ".join(f"`{c}`" for c in cli_names(field))
            out.append(f"| `{command}` | {cli} | {_default(field)} | {_cell(field.description)} |")
    out += [
        "",
        "## Runtime configs",
        "",
        "What the transforms take (`from transforms.config import ImageConfig`, or from the module",
        "that uses it). A setting without a pipeline flag keeps its default in the pipelines.",
        "",
        "| setting | pipeline flag | default | bounds | description |",
        "|---|---|---|---|---|",
    ]
    for model in RUNTIME_CONFIGS:
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("runtime"):
                continue
            flag = mirrored.get(f"{model.__name__}.{name}")
            flag_cell = f"`{flag}`" if flag else "—"
            out.append(
                f"| `{model.__name__}.{name}` | {flag_cell} | {_default(field)} | {_bounds(field)} | {_cell(field.description)} |"
            )
    return "\n".join(out) + "\n"


def validate(model: type[M], values: Mapping[str, Any]) -> M:
    """`model` from the values of its fields found in `values` (others are ignored)."""
    return model.model_validate({k: v for k, v in values.items() if k in model.model_fields})


if __name__ == "__main__":
    sys.stdout.write(settings_markdown())
