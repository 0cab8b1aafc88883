"""Reading a training Parquet (`productlens dataset build`'s output) into products and labels.

Required columns: title, category_id. Optional (defaults when absent or null): description,
product_type, vendor, tags (list<string>), attributes (JSON {handle: [value names]}), split
(train/validation/test; absent means every row trains)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_repository.contract import ModelProduct

__all__ = ["TrainingRow", "TrainingDataError", "read_rows", "read_paths", "rows_from_records"]

REQUIRED = ("title", "category_id")


class TrainingDataError(ValueError):
    pass


@dataclass(frozen=True)
class TrainingRow:
    product: ModelProduct
    category_id: str
    attributes: dict[str, list[str]] = field(default_factory=dict)
    split: str = "train"
    store: str = ""


def _attributes(value: Any) -> dict[str, list[str]]:
    """Lenient: a JSON string or a mapping; anything unreadable counts as no attributes."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    out: dict[str, list[str]] = {}
    for handle, values in value.items():
        if isinstance(values, str):
            values = [values]
        if isinstance(values, (list, tuple)):
            out[str(handle)] = [str(v) for v in values if v is not None and str(v).strip()]
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def rows_from_records(records: list[dict[str, Any]]) -> tuple[list[TrainingRow], int]:
    """Rows, and how many records were skipped for a missing title or category."""
    rows, skipped = [], 0
    for r in records:
        title, category = _text(r.get("title")).strip(), _text(r.get("category_id")).strip()
        if not title or not category:
            skipped += 1
            continue
        tags = r.get("tags")
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",")]
        product = ModelProduct(
            title=title,
            description=_text(r.get("description")),
            product_type=_text(r.get("product_type")),
            vendor=_text(r.get("vendor")),
            tags=tuple(str(t) for t in (tags or ()) if t),
        )
        split = _text(r.get("split")).strip().lower() or "train"
        rows.append(TrainingRow(product, category, _attributes(r.get("attributes")), split, _text(r.get("store"))))
    return rows, skipped


def read_paths(paths: list[str | Path]) -> tuple[list[TrainingRow], int]:
    """Rows of several Parquet files, or of every *.parquet in a directory (`productlens
    dataset build` writes train/validation/test.parquet side by side)."""
    files: list[Path] = []
    for p in map(Path, paths):
        found = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
        if not found:
            raise TrainingDataError(f"{p}: no *.parquet in this directory")
        files.extend(found)
    rows: list[TrainingRow] = []
    skipped = 0
    for f in files:
        more, n = read_rows(f)
        rows.extend(more)
        skipped += n
    return rows, skipped


def read_rows(path: str | Path) -> tuple[list[TrainingRow], int]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(str(path))
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise TrainingDataError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise TrainingDataError(f"{path}: missing required column(s) {', '.join(missing)}")
    return rows_from_records(table.to_pylist())
