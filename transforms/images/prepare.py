"""The `PrepareImages` DoFn: the Beam side of the product core's image stage.

Fetching (SSRF-safe, bounded), decoding (allow-listed formats, pixel budget) and the
per-product budget live in `transforms.core.images` (Beam-free; its docstring has the
rules for untrusted image locations) and are re-exported here for existing callers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from transforms.config import ImageConfig  # noqa: F401 - defined once in transforms/config.py
from transforms.core.images import (  # re-exported: the image stage lives in the core
    ALLOWED_FORMATS,
    STAGE,
    ImageError,
    fetch_image,
    prepare_image,
    prepare_images,
)
from transforms.dead_letters import BeamMetrics, guard_stage, member_dead_letters, tagged
from transforms.records import WorkItem

__all__ = [
    "ALLOWED_FORMATS",
    "STAGE",
    "ImageConfig",
    "ImageError",
    "PrepareImages",
    "fetch_image",
    "prepare_image",
    "prepare_images",
]


class PrepareImages(beam.DoFn):
    """WorkItem -> WorkItem with `image` = the first usable image, resized, as JPEG.

    A product whose images all fail is still predicted from its text: the prediction
    carries a warning and the product gets ONE dead letter at stage `prepare_images`
    listing its failed images (replayable once the merchant fixes them; the payload is
    stored once, not once per image). Tries stop at the per-product budget (count and
    time), so fifty slow URLs cannot hold a worker for fifty deadlines.
    """

    STAGE = "prepare_images"

    def __init__(self, config: ImageConfig, base_dir: str | None = None) -> None:
        self.config = config
        self.base_dir = base_dir
        # productlens/images_prepared, images_failed, images_over_product_budget,
        # image_bytes_in/out and dead_letters/prepare_images: counted by the core.
        self.metrics = BeamMetrics()

    @guard_stage(STAGE)
    def process(self, item: WorkItem) -> Iterator[Any]:
        prepared, letter = prepare_images(item, self.config, self.base_dir, self.metrics)
        if letter is not None:
            yield tagged(letter)
        if prepared is not None:
            yield prepared
        elif letter is not None:  # an unexpected error stopped the product: its members too
            yield from member_dead_letters(tagged(letter), item)
