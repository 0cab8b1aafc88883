"""Load Shopify's official `dist/en` taxonomy files into a `Taxonomy`.

Accepted layouts (a directory, or a path to one of the files):
- `categories.json` + `attributes.json` (the two-file dist shape), or
- `taxonomy.json` (the combined dist file with both `verticals` and `attributes`).

Parsing the full 7 MB tree with `json` costs ~0.2 s, so the built `Taxonomy` is cached as a
pickle keyed by the source files' size and mtime; a warm load is a few tens of ms.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

from taxonomy.model import Attribute, Category, Taxonomy, Value

__all__ = [
    "CACHE_FORMAT",
    "SAMPLE_TAXONOMY_DIR",
    "TaxonomyError",
    "default_cache_dir",
    "load_taxonomy",
    "parse_taxonomy",
]

CACHE_FORMAT = 1
SAMPLE_TAXONOMY_DIR = Path(__file__).parent / "data" / "sample-2024-07"


class TaxonomyError(ValueError):
    """The taxonomy files are missing or not in Shopify's dist shape."""


def default_cache_dir() -> Path:
    root = os.environ.get("PRODUCTLENS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "productlens"
    )
    return Path(root) / "taxonomy"


def _source_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.name == "taxonomy.json":
            return [path]
        path = path.parent
    if not path.is_dir():
        raise TaxonomyError(
            f"taxonomy path {path} does not exist; pass a directory with Shopify's dist/en "
            "categories.json + attributes.json (or taxonomy.json), or run "
            "`productlens taxonomy fetch --version V`"
        )
    combined = path / "taxonomy.json"
    pair = [path / "categories.json", path / "attributes.json"]
    if all(p.is_file() for p in pair):
        return pair
    if combined.is_file():
        return [combined]
    raise TaxonomyError(
        f"{path} holds neither categories.json + attributes.json nor taxonomy.json (Shopify's dist/en shape)"
    )


def _cache_key(files: list[Path]) -> str:
    h = hashlib.sha256(str(CACHE_FORMAT).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def load_taxonomy(path: str | os.PathLike[str] | None = None, *, use_cache: bool = True) -> Taxonomy:
    """Load a taxonomy from a dist/en directory; `None` loads the bundled sample."""
    files = _source_files(Path(path) if path is not None else SAMPLE_TAXONOMY_DIR)
    cache_file = default_cache_dir() / f"{_cache_key(files)}.pickle"
    if use_cache and cache_file.is_file():
        try:
            with cache_file.open("rb") as fh:
                cached = pickle.load(fh)
            if isinstance(cached, Taxonomy):
                return cached
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass  # a stale or torn cache file is rebuilt below
    taxonomy = parse_taxonomy(*(_read_json(f) for f in files))
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
        with path.open("rb") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise TaxonomyError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TaxonomyError(f"{path}: expected a JSON object at the top level")
    return data


def parse_taxonomy(*documents: dict[str, Any]) -> Taxonomy:
    """Build a Taxonomy from parsed dist documents (categories + attributes, or combined)."""
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
    return Taxonomy(version=str(version), categories=categories, attributes=attributes)
