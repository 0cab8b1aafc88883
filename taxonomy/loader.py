"""Load Shopify's official `dist/en` taxonomy files into a `Taxonomy`.

Accepted layouts (a directory, or a path to one of the files):
- `categories.json` + `attributes.json` (the two-file dist shape), or
- `taxonomy.json` (the combined dist file with both `verticals` and `attributes`).
Every file may also be stored as `.json.gz` or `.json.xz` (the bundled default is xz).

Localized category names are picked up from beside the English files:
- `localizations/<locale>.json[.gz|.xz]` holding `{"version","locale","categories":[{"id",
  "name", "full_name"?}]}` (our bundle and ../shared) or a full dist categories document, and
- an official release's sibling directories: for `.../dist/en`, every `.../dist/<locale>/
  categories.json[.gz|.xz]`.

`load_taxonomy(None)` loads the full 2024-07 taxonomy bundled in the package
(`DEFAULT_TAXONOMY_DIR`, all 10,281 categories, 13 locales); `SAMPLE_TAXONOMY_DIR` is an
840-category excerpt kept as a small fixture for fast tests.

Decompressing and parsing the full tree with its locales costs about a second, so the built
`Taxonomy` is cached as a pickle keyed by every source file's size and mtime (locale files
included); a warm load is well under a second.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import pickle
from pathlib import Path
from typing import Any

from taxonomy.model import Attribute, Category, Taxonomy, Value

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_TAXONOMY_DIR",
    "SAMPLE_TAXONOMY_DIR",
    "TaxonomyError",
    "default_cache_dir",
    "load_taxonomy",
    "parse_localized_names",
    "parse_taxonomy",
]

CACHE_FORMAT = 2  # 2: localized names
DEFAULT_TAXONOMY_DIR = Path(__file__).parent / "data" / "shopify-2024-07"
SAMPLE_TAXONOMY_DIR = Path(__file__).parent / "data" / "sample-2024-07"
JSON_SUFFIXES = (".json", ".json.xz", ".json.gz")


class TaxonomyError(ValueError):
    """The taxonomy files are missing or not in Shopify's dist shape."""


def default_cache_dir() -> Path:
    root = os.environ.get("PRODUCTLENS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "productlens"
    )
    return Path(root) / "taxonomy"


def _find(directory: Path, stem: str) -> Path | None:
    """`<stem>.json`, `.json.xz` or `.json.gz` in `directory`, in that order."""
    for suffix in JSON_SUFFIXES:
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _stem_of(path: Path) -> str:
    name = path.name
    for suffix in JSON_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _source_files(path: Path) -> list[Path]:
    if path.is_file():
        if _stem_of(path) == "taxonomy":
            return [path]
        path = path.parent
    if not path.is_dir():
        raise TaxonomyError(
            f"taxonomy path {path} does not exist; pass a directory with Shopify's dist/en "
            "categories.json + attributes.json (or taxonomy.json), or run "
            "`productlens taxonomy fetch --version V`"
        )
    pair = [_find(path, "categories"), _find(path, "attributes")]
    if pair[0] is not None and pair[1] is not None:
        return [pair[0], pair[1]]
    combined = _find(path, "taxonomy")
    if combined is not None:
        return [combined]
    raise TaxonomyError(
        f"{path} holds neither categories.json + attributes.json nor taxonomy.json (Shopify's dist/en shape)"
    )


def _locale_files(english: list[Path]) -> dict[str, Path]:
    """Localized category files that belong to the English files (see the module docstring)."""
    directory = english[0].parent
    found: dict[str, Path] = {}
    loc_dir = directory / "localizations"
    if loc_dir.is_dir():
        for f in sorted(loc_dir.iterdir()):
            if f.is_file() and any(f.name.endswith(s) for s in JSON_SUFFIXES):
                found.setdefault(_stem_of(f), f)
    if directory.name == "en":
        # An official release: dist/en next to dist/es, dist/ja, ...
        for sibling in sorted(directory.parent.iterdir()):
            if sibling.is_dir() and sibling.name != "en" and sibling.name not in found:
                f = _find(sibling, "categories")
                if f is not None:
                    found[sibling.name] = f
    found.pop("en", None)
    return found


def _cache_key(files: list[Path]) -> str:
    h = hashlib.sha256(str(CACHE_FORMAT).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def load_taxonomy(path: str | os.PathLike[str] | None = None, *, use_cache: bool = True) -> Taxonomy:
    """Load a taxonomy from a dist/en directory (with the localized names found beside it);
    `None` loads the full taxonomy bundled in the package."""
    files = _source_files(Path(path) if path is not None else DEFAULT_TAXONOMY_DIR)
    locale_files = _locale_files(files)
    cache_file = default_cache_dir() / f"{_cache_key([*files, *locale_files.values()])}.pickle"
    if use_cache and cache_file.is_file():
        try:
            with cache_file.open("rb") as fh:
                cached = pickle.load(fh)
            if isinstance(cached, Taxonomy):
                return cached
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
            pass  # a stale or torn cache file is rebuilt below
    localizations = {locale: parse_localized_names(_read_json(f), f) for locale, f in locale_files.items()}
    taxonomy = parse_taxonomy(*(_read_json(f) for f in files), localizations=localizations)
    if use_cache:
        _write_cache(cache_file, taxonomy)
    return taxonomy


def _write_cache(cache_file: Path, taxonomy: Taxonomy) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        with tmp.open("wb") as fh:
            pickle.dump(taxonomy, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_file)  # atomic: concurrent loaders never see a torn file
    except OSError:
        pass  # a read-only home directory only costs speed


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.name.endswith(".xz"):
            raw = lzma.decompress(path.read_bytes())
        elif path.name.endswith(".gz"):
            raw = gzip.decompress(path.read_bytes())
        else:
            raw = path.read_bytes()
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"{path} is not valid JSON: {exc}") from exc
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as exc:
        raise TaxonomyError(f"{path} is not a valid compressed file: {exc}") from exc
    if not isinstance(data, dict):
        raise TaxonomyError(f"{path}: expected a JSON object at the top level")
    return data


def parse_localized_names(doc: dict[str, Any], source: Path | str = "<document>") -> dict[str, str]:
    """Category GID -> localized name, from either a localizations file
    (`{"categories": [{"id", "name"}]}`) or a dist `categories.json` (`{"verticals": ...}`)."""
    if "verticals" in doc:
        entries = (c for v in doc["verticals"] for c in v.get("categories", ()))
    elif isinstance(doc.get("categories"), list):
        entries = iter(doc["categories"])
    else:
        raise TaxonomyError(f"{source}: neither `categories` nor `verticals`: not a localized category file")
    try:
        return {c["id"]: c["name"] for c in entries if c.get("name")}
    except (KeyError, TypeError, AttributeError) as exc:
        raise TaxonomyError(f"{source}: a category entry lacks `id`/`name`") from exc


def parse_taxonomy(*documents: dict[str, Any], localizations: dict[str, dict[str, str]] | None = None) -> Taxonomy:
    """Build a Taxonomy from parsed dist documents (categories + attributes, or combined),
    plus localized names (locale -> category GID -> name)."""
    verticals: list[dict[str, Any]] | None = None
    raw_attributes: list[dict[str, Any]] = []
    version: str | None = None
    for doc in documents:
        version = version or doc.get("version")
        if "verticals" in doc:
            verticals = doc["verticals"]
        if "attributes" in doc:
            raw_attributes = doc["attributes"]
    if verticals is None:
        raise TaxonomyError("no `verticals` key: not a dist categories.json / taxonomy.json")
    if not version:
        raise TaxonomyError("the taxonomy files carry no `version`")

    base_by_handle: dict[str, Attribute] = {}
    base_by_id: dict[str, Attribute] = {}
    for a in raw_attributes:
        attr = Attribute(
            id=a["id"],
            name=a["name"],
            handle=a["handle"],
            description=a.get("description") or "",
            values=tuple(Value(v["id"], v["name"], v["handle"]) for v in a.get("values", ())),
        )
        base_by_handle[attr.handle] = attr
        base_by_id[attr.id] = attr

    attributes: dict[str, Attribute] = dict(base_by_handle)
    categories: dict[str, Category] = {}
    for vertical in verticals:
        for c in vertical["categories"]:
            handles: list[str] = []
            for ref in c.get("attributes", ()):
                handle = ref["handle"]
                if handle not in attributes:
                    base = base_by_id.get(ref["id"])
                    if base is None:
                        # A category that names an attribute the file does not define:
                        # skip it rather than invent values.
                        continue
                    attributes[handle] = Attribute(
                        id=ref["id"],
                        name=ref["name"],
                        handle=handle,
                        description=ref.get("description") or base.description,
                        values=base.values,
                        extended=True,
                        base_handle=base.handle,
                    )
                handles.append(handle)
            categories[c["id"]] = Category(
                id=c["id"],
                name=c["name"],
                full_name=c["full_name"],
                level=int(c["level"]),
                parent_id=c.get("parent_id"),
                ancestor_ids=tuple(a["id"] for a in c.get("ancestors", ())),
                children_ids=tuple(ch["id"] for ch in c.get("children", ())),
                attribute_handles=tuple(handles),
            )
    missing = {pid for c in categories.values() for pid in c.ancestor_ids if pid not in categories}
    if missing:
        raise TaxonomyError(f"{len(missing)} ancestor ids are not defined as categories (e.g. {sorted(missing)[0]})")
    return Taxonomy(version=str(version), categories=categories, attributes=attributes, localizations=localizations)
