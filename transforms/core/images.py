"""Prepare a product's images, Beam-free: the core's `prepare_images` stage and the
fetching and decoding under it, bounded in bytes, pixels and time, resized, re-encoded.

Image tokens are most of a vision LLM's input, so sending an image already resized to the
model's resolution is the largest client-side cost lever (DESIGN.md). Every failure is an
`ImageError` with a reason a merchant can act on; the caller decides what it costs.

Image locations come from merchants and are untrusted (DESIGN.md, "Untrusted input"):

- http(s) goes through `transforms.images.http_fetch` (public addresses only, checked on every
  redirect hop, one total deadline per image);
- local paths and file:// URLs are read only under a configured base directory, as
  regular files, with a byte bound and without blocking (a FIFO or /dev/zero cannot hang
  or flood a worker); with no base directory an event cannot name a local file at all;
- gs:// only from configured buckets, since the job's own credentials read them;
- decoding accepts an allow-list of formats, with the pixel budget checked on the header.

`transforms.images.prepare` re-exports these names and wraps `prepare_images` in the
`PrepareImages` DoFn.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from PIL import Image

from transforms.config import ImageConfig
from transforms.core.dead_letters import new_dead_letter, truncate, unexpected_dead_letter
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.images.http_fetch import FetchError, fetch_http
from transforms.records import DeadLetter, WorkItem

__all__ = [
    "ALLOWED_FORMATS",
    "STAGE",
    "ImageError",
    "fetch_image",
    "prepare_image",
    "prepare_images",
]

STAGE = "prepare_images"

# Formats a product photo comes in. Everything else (TIFF, ICO, PSD, TGA, EPS, ...) is
# refused before a decoder runs: rarely used for product photos, large attack surface,
# and EPS would run Ghostscript where it is installed.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


class ImageError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # unreachable | too_large | not_an_image | unsupported_url | refused | timeout


def _short(url: str) -> str:
    return truncate(url, 200)


def fetch_image(url: str, config: ImageConfig, base_dir: str | None = None, deadline_s: float | None = None) -> bytes:
    """Bytes of the image at an http(s) URL, a gs:// URL of an allowed bucket, or a local
    path / file:// URL under `base_dir` (relative paths resolve against it)."""
    deadline = config.timeout_s if deadline_s is None else min(deadline_s, config.timeout_s)
    try:
        parsed = urlsplit(url)
        scheme = parsed.scheme.lower()
    except ValueError:
        raise ImageError("unsupported_url", f"image URL {_short(url)!r} is malformed") from None
    if scheme in ("http", "https"):
        try:
            return fetch_http(url, policy=config.address_policy(), max_bytes=config.max_bytes, deadline_s=deadline)
        except FetchError as exc:
            raise ImageError(exc.kind, str(exc)) from None
    if scheme == "gs":
        return _fetch_gcs(url, config, deadline)
    if scheme == "file":
        return _read_local(unquote(parsed.path), url, config, base_dir)
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return _read_local(url, url, config, base_dir)
    raise ImageError("unsupported_url", f"image URL scheme {scheme[:20]!r} is not supported: {_short(url)}")


def _read_local(path_text: str, url: str, config: ImageConfig, base_dir: str | None) -> bytes:
    """A regular file inside `base_dir`, read with a bound and without blocking."""
    if base_dir is None:
        raise ImageError(
            "refused",
            f"image {_short(url)} is a local path; local images are read only when the job names a "
            "directory for them (--image-base-dir)",
        )
    outside = ImageError("refused", f"image {_short(url)} is not a file inside the job's image directory")
    if "\x00" in path_text or not path_text:
        raise outside
    base = os.path.realpath(base_dir)
    real = os.path.realpath(os.path.join(base, path_text))  # an absolute path_text replaces base
    if os.path.commonpath((base, real)) != base:
        raise outside
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the checked
        # path cannot be swapped for a symlink between realpath() and open().
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise ImageError("unreachable", f"image file {_short(url)} cannot be read") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise outside
        if info.st_size > config.max_bytes:
            raise ImageError(
                "too_large", f"image {_short(url)} is {info.st_size} bytes, over the {config.max_bytes}-byte limit"
            )
        chunks: list[bytes] = []
        total = 0
        while total <= config.max_bytes:
            chunk = os.read(fd, min(1 << 20, config.max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError:
        raise ImageError("unreachable", f"image file {_short(url)} cannot be read") from None
    finally:
        os.close(fd)
    if total > config.max_bytes:  # the file grew while it was read
        raise ImageError("too_large", f"image {_short(url)} is over the {config.max_bytes}-byte limit")
    return b"".join(chunks)


def _fetch_gcs(url: str, config: ImageConfig, deadline_s: float) -> bytes:
    from transforms.io import gcs  # google-cloud-storage is imported only when a gs:// image comes

    try:
        bucket, _ = gcs.parse_gs_url(url)
    except gcs.GcsError as exc:
        raise ImageError("unsupported_url", f"image {truncate(str(exc), 300)}") from None
    if bucket not in config.gcs_buckets:
        raise ImageError(
            "refused", f"image {_short(url)}: bucket {truncate(bucket, 80)!r} is not an allowed image bucket"
        )
    try:
        return gcs.read_bytes(url, config.max_bytes, deadline_s)
    except gcs.GcsError as exc:
        kind = {"too_large": "too_large", "invalid_url": "unsupported_url"}.get(exc.kind, "unreachable")
        raise ImageError(kind, f"image {truncate(str(exc), 300)}") from None


def prepare_image(data: bytes, config: ImageConfig, url: str = "image") -> bytes:
    """Decode (allowed formats only), check the pixel budget on the header before decoding
    pixels, resize, re-encode as JPEG. Any decoder failure is `not_an_image`."""
    name = _short(url)
    # Pillow's own bomb guard follows the budget: it refuses at 2x before any decode.
    Image.MAX_IMAGE_PIXELS = config.max_pixels
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise ImageError("too_large", f"{name} is over the {config.max_pixels / 1e6:.0f} MP limit") from None
    except Exception:  # noqa: BLE001 - every decoder error (fuzzed headers raise anything) is the merchant's image
        raise ImageError(
            "not_an_image", f"{name} is not a readable {'/'.join(ALLOWED_FORMATS)} image ({len(data)} bytes)"
        ) from None
    with img:
        width, height = img.size  # header only: a decompression bomb is refused here
        if width * height > config.max_pixels:
            raise ImageError(
                "too_large",
                f"{name} is {width}x{height} = {width * height / 1e6:.0f} MP, over the "
                f"{config.max_pixels / 1e6:.0f} MP limit",
            )
        try:
            rgb = img.convert("RGB")
            rgb.thumbnail((config.max_side, config.max_side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=config.jpeg_quality, optimize=True)
        except Image.DecompressionBombError:
            raise ImageError("too_large", f"{name} is over the {config.max_pixels / 1e6:.0f} MP limit") from None
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
            raise ImageError("not_an_image", f"{name} could not be decoded: {truncate(str(exc), 200)}") from None
    return out.getvalue()


def _prepare_images(
    item: WorkItem, config: ImageConfig, base_dir: str | None, metrics: MetricsSink, clock: Callable[[], float]
) -> tuple[WorkItem, DeadLetter | None]:
    c = config
    warnings = list(item.warnings)
    image: bytes | None = None
    failures: list[tuple[str, ImageError]] = []
    deadline = clock() + c.product_budget_s
    urls = item.product.image_urls
    for attempt, url in enumerate(urls):
        remaining = deadline - clock()
        if attempt >= c.max_attempts or remaining <= 0:
            metrics.inc("productlens", "images_over_product_budget", len(urls) - attempt)
            warnings.append(
                f"{len(urls) - attempt} more image(s) not tried: the product's image budget "
                f"({c.max_attempts} tries, {c.product_budget_s:g} s) is spent"
            )
            break
        try:
            data = fetch_image(url, c, base_dir, deadline_s=remaining)
            image = prepare_image(data, c, url)
        except ImageError as exc:
            metrics.inc("productlens", "images_failed")
            failures.append((url, exc))
            warnings.append(truncate(f"image {_short(url)} skipped: {exc}", 400))
            continue
        metrics.inc("productlens", "images_prepared")
        metrics.update("productlens", "image_bytes_in", len(data))
        metrics.update("productlens", "image_bytes_out", len(image))
        break  # the contract sends one image per request
    letter = None
    if failures:
        kinds = sorted({exc.kind for _, exc in failures})
        error_type = "Image" + kinds[0].title().replace("_", "") if len(kinds) == 1 else "ImagesFailed"
        message = "; ".join(f"{_short(u)}: {exc}" for u, exc in failures)
        letter = new_dead_letter(STAGE, error_type, f"{len(failures)} image(s) failed: {message}", item, metrics)
    return replace(item, image=image, warnings=tuple(warnings)), letter


def prepare_images(
    item: WorkItem,
    config: ImageConfig,
    base_dir: str | None = None,
    metrics: MetricsSink = NO_METRICS,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[WorkItem | None, DeadLetter | None]:
    """WorkItem -> (the WorkItem with `image` = its first usable image, resized, as JPEG;
    the product's dead letter at `prepare_images` when some of its images failed).

    A product whose images all fail is still predicted from its text: the item carries a
    warning per failed image, and the product gets ONE dead letter listing them
    (replayable once the merchant fixes them; the payload is stored once, not once per
    image). Tries stop at the per-product budget (count, and seconds of `clock`), so fifty
    slow URLs cannot hold a worker for fifty deadlines. An unexpected error gives
    (None, its dead letter): the product stops here, as under `guard_stage`.
    """
    try:
        return _prepare_images(item, config, base_dir, metrics, clock)
    except Exception as exc:  # noqa: BLE001 - the last resort behind ImageError
        return None, unexpected_dead_letter(STAGE, exc, item, metrics)
