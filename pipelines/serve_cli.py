"""`productlens serve`: the real-time API (service/) on uvicorn.

Takes the model, taxonomy and image settings of the batch jobs (same flags, same
defaults), so the service answers as `productlens backfill` does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

from pipelines.cli_options import check, option
from transforms.config import PredictSettings, ServeCommand

__all__ = ["serve_command"]

console = Console(stderr=True)


def serve_command(
    host: str = option(ServeCommand, "host"),
    port: int = option(ServeCommand, "port"),
    taxonomy: str | None = option(PredictSettings, "taxonomy"),
    triton_url: str | None = option(PredictSettings, "triton_url"),
    model_name: str = option(PredictSettings, "model_name"),
    model_dir: str | None = option(PredictSettings, "model_dir"),
    openai_url: str | None = option(PredictSettings, "openai_url"),
    openai_model: str = option(PredictSettings, "openai_model"),
    backoff_threshold: float | None = option(PredictSettings, "backoff_threshold"),
    classify_candidates: int = option(PredictSettings, "classify_candidates"),
    batch_max: int = option(PredictSettings, "batch_max"),
    image_max_side: int = option(PredictSettings, "image_max_side"),
    image_base_dir: str | None = option(PredictSettings, "image_base_dir"),
    image_gcs_bucket: list[str] = option(PredictSettings, "image_gcs_bucket"),
    image_host: list[str] = option(PredictSettings, "image_host"),
    allow_private_image_addresses: bool = option(PredictSettings, "image_allow_private_addresses"),
    cache: str = option(ServeCommand, "cache"),
    cache_size: int = option(ServeCommand, "cache_size"),
    cache_ttl: float = option(ServeCommand, "cache_ttl_s"),
    batch_wait_ms: float = option(ServeCommand, "batch_wait_ms"),
    batch_workers: int = option(ServeCommand, "batch_workers"),
    max_queue: int = option(ServeCommand, "max_queue"),
    deadline: float = option(ServeCommand, "deadline_s"),
    max_body_bytes: int = option(ServeCommand, "max_body_bytes"),
    max_products: int = option(ServeCommand, "max_products"),
    retry_after: int = option(ServeCommand, "retry_after_s"),
    review_db: str = option(ServeCommand, "review_db"),
    review_policy: str | None = option(ServeCommand, "review_policy"),
    rating_sample_rate: float = option(ServeCommand, "rating_sample_rate"),
    second_opinion: str = option(ServeCommand, "second_opinion"),
    feedback_kafka: str | None = option(ServeCommand, "feedback_kafka"),
    feedback_topic: str = option(ServeCommand, "feedback_topic"),
) -> None:
    """Serve real-time predictions over HTTP (POST /v1/predictions; docs at /docs).

    API keys come from PRODUCTLENS_API_KEYS (comma-separated); they are required when
    --host reaches beyond loopback."""
    import uvicorn

    from service.app import create_app
    from service.auth import ApiKeys, require_keys_for

    def fail(message: str) -> None:
        console.print(f"[red]error:[/red] {message}")
        raise typer.Exit(2)

    if taxonomy and not Path(taxonomy).exists():
        fail(f"--taxonomy {taxonomy} does not exist")
    if model_dir and not (Path(model_dir) / "1" / "weights.npz").is_file():
        fail(f"--model-dir {model_dir} is not a trained model directory (productlens train writes one)")
    keys = ApiKeys.from_env()
    try:
        require_keys_for(host, keys)
        serve_values = {
            "host": host,
            "port": port,
            "cache": cache,
            "cache_size": cache_size,
            "cache_ttl_s": cache_ttl,
            "batch_wait_ms": batch_wait_ms,
            "batch_workers": batch_workers,
            "max_queue": max_queue,
            "deadline_s": deadline,
            "max_body_bytes": max_body_bytes,
            "max_products": max_products,
            "retry_after_s": retry_after,
            "review_db": review_db,
            "review_policy": review_policy,
            "rating_sample_rate": rating_sample_rate,
            "second_opinion": second_opinion,
            "feedback_kafka": feedback_kafka,
            "feedback_topic": feedback_topic,
        }
        predict_values = {
            "taxonomy": taxonomy,
            "triton_url": triton_url,
            "model_name": model_name,
            "model_dir": model_dir,
            "openai_url": openai_url,
            "openai_model": openai_model,
            "backoff_threshold": backoff_threshold,
            "classify_candidates": classify_candidates,
            "batch_max": batch_max,
            "image_max_side": image_max_side,
            "image_base_dir": image_base_dir,
            "image_gcs_bucket": image_gcs_bucket,
            "image_host": image_host,
            "image_allow_private_addresses": allow_private_image_addresses,
        }
        check(ServeCommand, **serve_values)  # a ValueError naming the productlens flag
        check(PredictSettings, **predict_values)
        serve, predict = ServeCommand(**serve_values), PredictSettings(**predict_values)
        app = create_app(serve, predict, keys)
    except ValueError as exc:
        fail(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    auth = "API keys required" if keys.enabled else "no API keys (loopback only)"
    console.print(f"serving on http://{host}:{port} ({auth}); docs at /docs, readiness at /readyz")
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
