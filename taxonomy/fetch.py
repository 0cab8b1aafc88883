"""Download an official taxonomy release's `dist/en` files into the local cache.

The default source is Shopify's product-taxonomy GitHub repository at the release tag
(`v<version>`); `base_url` (or $PRODUCTLENS_TAXONOMY_BASE_URL) points elsewhere, e.g. a
mirror inside a closed network. Files are written atomically and checked before use: the
downloaded JSON must parse as a taxonomy of the requested version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from taxonomy.loader import TaxonomyError, default_cache_dir, load_taxonomy
from taxonomy.model import Taxonomy

__all__ = [
    "DEFAULT_BASE_URL",
    "DIST_FILES",
    "FetchError",
    "release_dir",
    "fetch_release",
]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/Shopify/product-taxonomy/v{version}/dist/en"
DIST_FILES = ("categories.json", "attributes.json")


class FetchError(RuntimeError):
    pass


def release_dir(version: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "releases" / version


def fetch_release(
    version: str,
    *,
    base_url: str | None = None,
    cache_dir: Path | None = None,
    force: bool = False,
    timeout_s: float = 60.0,
    on_progress: Callable[[str, int], None] | None = None,
) -> tuple[Path, Taxonomy]:
    """Return (directory, taxonomy) for `version`, downloading it unless cached."""
    target = release_dir(version, cache_dir)
    if not force and all((target / f).is_file() for f in DIST_FILES):
        return target, load_taxonomy(target)
    template = base_url or os.environ.get("PRODUCTLENS_TAXONOMY_BASE_URL") or DEFAULT_BASE_URL
    root = template.format(version=version).rstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        for name in DIST_FILES:
            url = f"{root}/{name}"
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response, (staging / name).open("wb") as out:
                    total = 0
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        total += len(chunk)
                        if on_progress:
                            on_progress(name, total)
            except urllib.error.HTTPError as exc:
                raise FetchError(
                    f"{url} answered HTTP {exc.code}: is {version!r} a released taxonomy version?"
                ) from exc
            except (urllib.error.URLError, OSError) as exc:
                raise FetchError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from exc
        try:
            taxonomy = load_taxonomy(staging, use_cache=False)
        except (TaxonomyError, KeyError) as exc:
            raise FetchError(f"the files at {root} are not a Shopify dist/en taxonomy: {exc}") from exc
        if taxonomy.version != version:
            raise FetchError(f"asked for version {version} but the files at {root} say {taxonomy.version}")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target, taxonomy
    finally:
        shutil.rmtree(staging, ignore_errors=True)
