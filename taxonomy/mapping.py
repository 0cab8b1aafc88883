"""Category mappings from another taxonomy (or another Shopify version) onto the loaded one.

Golden labels are not always in the taxonomy the model predicts into: a merchant export
may carry an older Shopify path ("... > Uniforms & Workwear > Sports Uniforms"), a Google
product taxonomy path, or a marketplace's own tree. A mapping file says, per source path,
which category of the loaded taxonomy it means. Nothing is guessed: a source path the file
does not name stays unmapped, and every target must exist in the taxonomy, checked when the
file is loaded.

Accepted files:

* JSON object: ``{"<source path>": "<Shopify full path or id>", ...}``
* JSON list:   ``[{"source": "...", "target": "..."}, ...]`` (``from``/``to`` also accepted)
* CSV:         a header row with ``source`` and ``target`` columns (``from``/``to``), or two
  columns without a header. Lines starting with ``#`` are comments.

A target is a full path (``Apparel & Accessories > Clothing > Uniforms > Sports Uniforms``),
a GID (``gid://shopify/TaxonomyCategory/aa-1-18-4``) or a short id (``aa-1-18-4``). Sources
are matched case- and whitespace-insensitively, with any of `` > ``, ``>``, `` / `` as the
separator written as `` > ``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxonomy.model import PATH_SEPARATOR, Category, Taxonomy, normalise_key

__all__ = [
    "MappingError",
    "source_key",
    "CategoryMapping",
    "build_mapping",
    "load_mapping",
]

_SEPARATOR = re.compile(r"\s*(?:>|›|»)\s*")
_SOURCE_KEYS = ("source", "from", "source_path")
_TARGET_KEYS = ("target", "to", "target_path", "shopify", "shopify_path", "shopify_id")


class MappingError(ValueError):
    """The mapping file is unreadable, malformed, or names categories the taxonomy lacks."""


def source_key(path: str) -> str:
    """Key a source path is matched by: case/space-insensitive, separators unified."""
    parts = [p for p in _SEPARATOR.split(str(path).strip()) if p.strip()]
    return normalise_key(PATH_SEPARATOR.join(parts))


@dataclass(frozen=True)
class CategoryMapping:
    """source path key -> target category id, all targets checked against one taxonomy.

    Picklable (plain dicts of strings), so a Beam DoFn can carry it.
    """

    taxonomy_version: str
    targets: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.targets)

    def target_id(self, source_path: str) -> str | None:
        return self.targets.get(source_key(source_path))

    def resolve(self, source_path: str, taxonomy: Taxonomy) -> Category | None:
        """The mapped category, or None when the file does not name this source path."""
        target = self.target_id(source_path)
        return taxonomy.get(target) if target is not None else None


def _resolve_target(taxonomy: Taxonomy, target: str) -> Category | None:
    text = " ".join(str(target).split())
    return (
        taxonomy.get(text)
        or taxonomy.by_full_name(text)
        or taxonomy.by_full_name(PATH_SEPARATOR.join(p for p in _SEPARATOR.split(text) if p.strip()))
    )


def build_mapping(pairs: Iterable[tuple[str, str]], taxonomy: Taxonomy, source: str = "") -> CategoryMapping:
    """Validate (source, target) pairs against `taxonomy`; raise with every bad row named."""
    targets: dict[str, str] = {}
    problems: list[str] = []
    for n, (src, dst) in enumerate(pairs, start=1):
        key = source_key(src or "")
        if not key:
            problems.append(f"row {n}: empty source path")
            continue
        category = _resolve_target(taxonomy, dst or "")
        if category is None:
            problems.append(f"row {n}: target {dst!r} is not a category of taxonomy {taxonomy.version}")
            continue
        previous = targets.get(key)
        if previous is not None and previous != category.id:
            problems.append(f"row {n}: source {src!r} is mapped twice, to different categories")
            continue
        targets[key] = category.id
    if problems:
        shown = "; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
        raise MappingError(f"mapping {source or '(inline)'}: {shown}")
    return CategoryMapping(taxonomy_version=taxonomy.version, targets=targets, source=source)


def _pick(row: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    lowered = {str(k).strip().casefold(): v for k, v in row.items() if k is not None}
    for k in keys:
        if k in lowered and lowered[k] not in (None, ""):
            return str(lowered[k])
    return None


def _pairs_from_json(data: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(data, dict):
        bad = [k for k, v in data.items() if not isinstance(v, str)]
        if bad:
            raise MappingError(f"{where}: values must be strings (a Shopify path or id); {bad[0]!r} is not")
        return list(data.items())
    if isinstance(data, list):
        pairs = []
        for i, row in enumerate(data, start=1):
            if not isinstance(row, dict):
                raise MappingError(f"{where}: item {i} is not an object with source and target")
            src, dst = _pick(row, _SOURCE_KEYS), _pick(row, _TARGET_KEYS)
            if src is None or dst is None:
                raise MappingError(f"{where}: item {i} needs 'source' and 'target' keys")
            pairs.append((src, dst))
        return pairs
    raise MappingError(f"{where}: expected a JSON object or a list of objects")


def _pairs_from_csv(text: str, where: str) -> list[tuple[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header = [c.strip().casefold() for c in rows[0]]
    has_header = any(h in _SOURCE_KEYS for h in header) and any(h in _TARGET_KEYS for h in header)
    pairs = []
    if has_header:
        for i, values in enumerate(rows[1:], start=2):
            row = dict(zip(header, values))
            src, dst = _pick(row, _SOURCE_KEYS), _pick(row, _TARGET_KEYS)
            if src is None or dst is None:
                raise MappingError(f"{where}: line {i} lacks a source or a target")
            pairs.append((src, dst))
    else:
        for i, values in enumerate(rows, start=1):
            if len(values) < 2:
                raise MappingError(f"{where}: line {i} needs two columns (source, target)")
            pairs.append((values[0], values[1]))
    return pairs


def load_mapping(path: str | os.PathLike[str], taxonomy: Taxonomy) -> CategoryMapping:
    """Load a JSON or CSV mapping file (see the module doc) and check it against `taxonomy`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"mapping file {p} cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise MappingError(f"mapping file {p} is not UTF-8 text") from exc
    stripped = text.lstrip()
    if p.suffix.casefold() == ".json" or stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingError(f"mapping file {p} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
        pairs = _pairs_from_json(data, str(p))
    else:
        pairs = _pairs_from_csv(text, str(p))
    if not pairs:
        raise MappingError(f"mapping file {p} holds no mappings")
    return build_mapping(pairs, taxonomy, source=str(p))
