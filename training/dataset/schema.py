"""The one definition of the dataset's Parquet schema.

`productlens dataset build` writes it and `productlens train --data train.parquet` reads
it, so both import this module rather than repeating column names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["PARQUET_SCHEMA", "LABEL_STATUSES", "SPLITS", "COLUMNS"]

# confirmed: the judge agrees (or a person vetted it); replaced: the judge was confident
# and the merchant label was off its lineage; flagged: disagreement without confidence, kept
# but marked; unreviewed: no judge ran.
LABEL_STATUSES = ("confirmed", "replaced", "flagged", "unreviewed")
SPLITS = ("train", "validation", "test")

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("store", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("product_type", pa.string()),
        pa.field("vendor", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("image_urls", pa.list_(pa.string())),
        pa.field("category_id", pa.string(), nullable=False),
        pa.field("category_full_name", pa.string(), nullable=False),
        pa.field("vertical", pa.string()),
        # Where the label came from: merchant, reviewed, judge (a replacement).
        pa.field("label_source", pa.string(), nullable=False),
        pa.field("label_status", pa.string(), nullable=False),
        # Why the label has its status (the judge's reason, or how the raw label resolved).
        pa.field("label_reason", pa.string()),
        # The merchant's label as written, for audit.
        pa.field("raw_label", pa.string()),
        # JSON text {attribute handle: [value names]} after k-of-n consensus: a JSON string
        # keeps the schema fixed while each category has its own attributes.
        pa.field("attributes", pa.string()),
        pa.field("source", pa.string()),
        pa.field("split", pa.string(), nullable=False),
    ],
    metadata={b"productlens.dataset.schema_version": b"1"},
)

COLUMNS = tuple(PARQUET_SCHEMA.names)


def golden_records(parquet_path: str | Path) -> list[dict[str, Any]]:
    """A split written by `dataset build` as golden records (the shape of
    ../shared/datasets and `productlens evaluate --golden`), so a test split can be the
    golden set of `model promote` and `evaluate` without a conversion step by hand."""
    import json

    import pyarrow.parquet as pq

    out = []
    for row in pq.read_table(parquet_path).to_pylist():
        attributes = row.get("attributes")
        out.append(
            {
                "id": row["product_id"],
                "title": row.get("title") or "",
                "description": row.get("description"),
                "image_urls": row.get("image_urls") or [],
                "vendor": row.get("vendor"),
                "product_type": row.get("product_type"),
                "gold_category_path": row["category_full_name"],
                "gold_category_taxonomy": "shopify",
                "gold_attributes": json.loads(attributes) if attributes else {},
                # evaluate's per-store figures read owner/repo from `source`
                "source": row.get("source") or f"{row.get('store') or 'dataset'}/{Path(str(parquet_path)).name}",
            }
        )
    return out
