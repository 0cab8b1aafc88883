"""Fetch and prepare product images: bounded in bytes, pixels and time, resized, re-encoded.

Image tokens are most of a vision LLM's input, so sending an image already resized to the
model's resolution is the largest client-side cost lever (DESIGN.md). Every failure is an
`ImageError` with a reason a merchant can act on; the caller decides what it costs.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.metrics import Metrics
from PIL import Image, UnidentifiedImageError

from transforms.dead_letters import dead_letter
from transforms.records import WorkItem


@dataclass(frozen=True)
class ImageConfig:
    """Limits declared as data, validated when built."""

    max_side: int = 448  # Qwen2.5-VL-class models tile 28x28 patches; 448 = 16x16 tiles
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 5.0
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        if not 32 <= self.max_side <= 4096:
            raise ValueError(f"image max_side must be within 32..4096, got {self.max_side}")
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.timeout_s <= 0:
            raise ValueError("image max_bytes, max_pixels and timeout_s must be positive")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be within 1..95, got {self.jpeg_quality}")


class ImageError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # unreachable | too_large | not_an_image | unsupported_url


def fetch_image(url: str, config: ImageConfig, base_dir: str | None = None) -> bytes:
    """Bytes of the image at an http(s) URL, a gs:// URL, a file:// URL or a local path
    (relative paths are resolved against `base_dir`, the directory of the input file)."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return _fetch_http(url, config)
    if parsed.scheme == "gs":
        return _fetch_gcs(url, config)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else url)
        if not path.is_absolute() and base_dir:
            path = Path(base_dir) / path
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageError("unreachable", f"image file {path} cannot be read: {exc.strerror}") from exc
        if size > config.max_bytes:
            raise ImageError("too_large", f"image {url} is {size} bytes, over the {config.max_bytes}-byte limit")
        return path.read_bytes()
    raise ImageError("unsupported_url", f"image URL scheme {parsed.scheme!r} is not supported: {url}")


def _fetch_http(url: str, config: ImageConfig) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "productlens/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > config.max_bytes:
                raise ImageError("too_large", f"image {url} declares {declared} bytes, over the {config.max_bytes}-byte limit")
            data = response.read(config.max_bytes + 1)
    except ImageError:
        raise
    except urllib.error.HTTPError as exc:
        raise ImageError("unreachable", f"image {url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageError("unreachable", f"image {url} is unreachable: {reason}") from exc
    if len(data) > config.max_bytes:
        raise ImageError("too_large", f"image {url} is over the {config.max_bytes}-byte limit")
    return data


def _fetch_gcs(url: str, config: ImageConfig) -> bytes:
    from transforms import (
        gcs,  # google-cloud-storage is imported only when a gs:// image comes
    )

    try:
        return gcs.read_bytes(url, config.max_bytes, config.timeout_s)
    except gcs.GcsError as exc:
        kind = {"too_large": "too_large", "invalid_url": "unsupported_url"}.get(exc.kind, "unreachable")
        raise ImageError(kind, f"image {exc}") from exc


def prepare_image(data: bytes, config: ImageConfig, url: str = "image") -> bytes:
    """Decode, check the pixel budget before decoding pixels, resize, re-encode as JPEG."""
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError("not_an_image", f"{url} is not a readable image ({len(data)} bytes)") from exc
    with img:
        width, height = img.size  # header only: a decompression bomb is refused here
        if width * height > config.max_pixels:
            raise ImageError(
                "too_large",
                f"{url} is {width}x{height} = {width * height / 1e6:.0f} MP, over the "
                f"{config.max_pixels / 1e6:.0f} MP limit",
            )
        try:
            rgb = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError("not_an_image", f"{url} could not be decoded: {exc}") from exc
    rgb.thumbnail((config.max_side, config.max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=config.jpeg_quality, optimize=True)
    return out.getvalue()


class PrepareImages(beam.DoFn):
    """WorkItem -> WorkItem with `image` = the first usable image, resized, as JPEG.

    A product whose images all fail is still predicted from its text: the prediction
    carries a warning and each failed image is a dead letter at stage `prepare_images`
    (replayable once the merchant fixes the URL). Nothing is lost either way.
    """

    STAGE = "prepare_images"

    def __init__(self, config: ImageConfig, base_dir: str | None = None) -> None:
        self.config = config
        self.base_dir = base_dir
        self.prepared = Metrics.counter("productlens", "images_prepared")
        self.failed = Metrics.counter("productlens", "images_failed")
        self.bytes_in = Metrics.distribution("productlens", "image_bytes_in")
        self.bytes_out = Metrics.distribution("productlens", "image_bytes_out")

    def process(self, item: WorkItem) -> Iterator[Any]:
        warnings = list(item.warnings)
        image: bytes | None = None
        for url in item.product.image_urls:
            try:
                data = fetch_image(url, self.config, self.base_dir)
                image = prepare_image(data, self.config, url)
            except ImageError as exc:
                self.failed.inc()
                warnings.append(f"image {url} skipped: {exc}")
                yield dead_letter(self.STAGE, f"Image{exc.kind.title().replace('_', '')}", str(exc), item)
                continue
            self.prepared.inc()
            self.bytes_in.update(len(data))
            self.bytes_out.update(len(image))
            break  # the contract sends one image per request
        yield replace(item, image=image, warnings=tuple(warnings))
