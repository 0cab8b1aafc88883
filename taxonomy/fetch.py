"""Download an official taxonomy release's `dist/en` files into the local cache.

The default source is Shopify's product-taxonomy GitHub repository at the release tag
(`v<version>`); `base_url` (or $PRODUCTLENS_TAXONOMY_BASE_URL) points elsewhere, e.g. a
mirror inside a closed network. Files are written atomically and checked before use: the
downloaded JSON must parse as a taxonomy of the requested version.

`locales` also fetches `dist/<locale>/categories.json` (the localized category names) into
`<release>/localizations/<locale>.json`, where the loader finds them. The locale's URL is
the base URL with `{locale}` filled in, or, for a template without it, with its final
`/en` replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from taxonomy.loader import TaxonomyError, default_cache_dir, load_taxonomy, parse_localized_names
from taxonomy.model import Taxonomy

__all__ = [
    "DEFAULT_BASE_URL",
    "DIST_FILES",
    "KNOWN_LOCALES",
    "locale_url",
    "FetchError",
    "release_dir",
    "fetch_release",
]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/Shopify/product-taxonomy/v{version}/dist/en"
DIST_FILES = ("categories.json", "attributes.json")
# The locales of the 2024-07 names we bundle; `--locale all` fetches these.
KNOWN_LOCALES = ("da", "de", "es", "fi", "fr", "it", "ja", "ko", "nl", "pl", "pt-BR", "pt-PT", "zh-CN")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,4})?$")


class FetchError(RuntimeError):
    pass


def release_dir(version: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "releases" / version


def locale_url(template: str, version: str, locale: str) -> str:
    """The directory URL of `locale` in a release, from a dist/en URL template."""
    if "{locale}" in template:
        return template.format(version=version, locale=locale).rstrip("/")
    root = template.format(version=version).rstrip("/")
    if not root.endswith("/en"):
        raise FetchError(f"cannot derive the {locale!r} URL from {template!r}: put {{locale}} where dist/en says en")
    return f"{root[:-3]}/{locale}"


def _download(
    url: str, dest: Path, timeout_s: float, on_progress: Callable[[str, int], None] | None, label: str
) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, dest.open("wb") as out:
            total = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                total += len(chunk)
                if on_progress:
                    on_progress(label, total)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from exc


def fetch_release(
    version: str,
    *,
    base_url: str | None = None,
    cache_dir: Path | None = None,
    force: bool = False,
    timeout_s: float = 60.0,
    on_progress: Callable[[str, int], None] | None = None,
    locales: Iterable[str] = (),
) -> tuple[Path, Taxonomy]:
    """Return (directory, taxonomy) for `version`, downloading it unless cached; `locales`
    (e.g. ("es", "ja"), or ("all",)) adds those locales' category names."""
    wanted = _expand_locales(locales)
    target = release_dir(version, cache_dir)
    template = base_url or os.environ.get("PRODUCTLENS_TAXONOMY_BASE_URL") or DEFAULT_BASE_URL
    if force or not all((target / f).is_file() for f in DIST_FILES):
        _fetch_english(version, template, target, timeout_s, on_progress)
    for locale in wanted:
        if force or not (target / "localizations" / f"{locale}.json").is_file():
            _fetch_locale(version, template, locale, target, timeout_s, on_progress)
    return target, load_taxonomy(target)


def _expand_locales(locales: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in locales:
        for locale in (p.strip() for p in item.split(",")):
            if not locale or locale == "en":
                continue  # English is the canonical dist/en, always fetched
            if locale == "all":
                out.extend(KNOWN_LOCALES)
            elif _LOCALE.match(locale):
                out.append(locale)
            else:
                raise FetchError(f"{locale!r} is not a locale code (e.g. es, pt-BR, zh-CN, or all)")
    return list(dict.fromkeys(out))


def _fetch_locale(
    version: str,
    template: str,
    locale: str,
    target: Path,
    timeout_s: float,
    on_progress: Callable[[str, int], None] | None,
) -> None:
    url = f"{locale_url(template, version, locale)}/categories.json"
    folder = target / "localizations"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{locale}-", suffix=".json", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            _download(url, tmp, timeout_s, on_progress, f"{locale}/categories.json")
        except FetchError as exc:
            raise FetchError(f"{exc}: does release {version} have the locale {locale!r}?") from exc
        try:
            with tmp.open("rb") as fh:
                doc = json.load(fh)
            names = parse_localized_names(doc, url) if isinstance(doc, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError, TaxonomyError) as exc:
            raise FetchError(f"{url} is not a Shopify dist categories file: {exc}") from exc
        if not names:
            raise FetchError(f"{url} names no categories")
        if doc.get("version") and doc["version"] != version:
            raise FetchError(f"asked for version {version} but {url} says {doc['version']}")
        os.replace(tmp, folder / f"{locale}.json")  # atomic: a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_english(
    version: str,
    template: str,
    target: Path,
    timeout_s: float,
    on_progress: Callable[[str, int], None] | None,
) -> None:
    root = template.format(version=version, locale="en").rstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        for name in DIST_FILES:
            url = f"{root}/{name}"
            try:
                _download(url, staging / name, timeout_s, on_progress, name)
            except FetchError as exc:
                if "HTTP" in str(exc):
                    raise FetchError(f"{exc}: is {version!r} a released taxonomy version?") from exc
                raise
        try:
            taxonomy = load_taxonomy(staging, use_cache=False)
        except (TaxonomyError, KeyError) as exc:
            raise FetchError(f"the files at {root} are not a Shopify dist/en taxonomy: {exc}") from exc
        if taxonomy.version != version:
            raise FetchError(f"asked for version {version} but the files at {root} say {taxonomy.version}")
        # Localized names already fetched for this version survive a forced re-fetch.
        if (target / "localizations").is_dir():
            (target / "localizations").rename(staging / "localizations")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
