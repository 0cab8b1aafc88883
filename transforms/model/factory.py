"""Which model a job or the service talks to, from the settings: one decision for every entry point.

Beam-free, so that the real-time service builds its model exactly as the batch pipelines do
(same settings, same factory, same answers) without importing Beam.
"""

from __future__ import annotations

from transforms.config import PredictSettings
from transforms.model.client import InProcessBaseline, ModelClientFactory

__all__ = ["model_factory_of"]


def model_factory_of(settings: PredictSettings) -> ModelClientFactory:
    """Triton when `triton_url` is set, else an OpenAI-compatible chat server (`openai_url`),
    else a trained model's directory (`model_dir`) or the baseline, in-process."""
    if settings.triton_url:
        from transforms.model.triton import TritonModel

        return TritonModel(settings.triton_url, settings.model_name, timeout_s=settings.model_timeout_s)
    if settings.openai_url:
        from transforms.model.openai_chat import OpenAIChatModel

        # Every product of a batch on the wire at once: the server batches continuously.
        return OpenAIChatModel(
            settings.openai_url,
            settings.openai_model,
            timeout_s=settings.model_timeout_s,
            max_concurrency=settings.batch_max,
        )
    if settings.model_dir:
        from transforms.model.trained import InProcessTrained

        return InProcessTrained(settings.model_dir, settings.taxonomy, backoff_threshold=settings.backoff_threshold)
    return InProcessBaseline(settings.taxonomy, backoff_threshold=settings.backoff_threshold)
