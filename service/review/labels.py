"""Vetted labels -> golden-shaped JSONL (`productlens labels export`), an input of
`productlens dataset build --labelled`.

Only vetted labels leave the review store (issue 15): items people approved and items the
policy auto-vetted. Each line has the shape of `../shared/datasets/README.md`:

    {"id", "title", "description", "image_urls", "vendor", "product_type",
     "gold_category_path", "gold_category_taxonomy": "shopify",
     "gold_attributes": {handle: [value names]}, "source"}

Why these choices:
- `id` is `<shop>#<product id>` like the dev stores' `<store>#<handle>`; one line per
  product: when a product has several vetted labels (it was edited and re-predicted), the
  latest vetted one wins, so a training set never holds two answers for one product.
- `source` carries the provenance and keeps `store_of(source)` (the dataset builder's
  store, used by `--split-by-store`) equal to the shop:
  `productlens-review/<shop>/item-<id>/<approved|auto_vetted>/<annotators|policy>@<model version>`
  (each part percent-quoted, so a shop GID's slashes do not split it).
- Category ids and value ids are resolved to names with the taxonomy given (the values
  are stored as ids); a label the taxonomy does not know is counted and left out, never
  written with a guessed path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from service.review.store import ReviewStore, VettedLabel
    from taxonomy.model import Taxonomy

__all__ = ["ExportStats", "export_labels", "golden_record", "latest_per_product", "provenance"]

SOURCE_PREFIX = "productlens-review"


@dataclass
class ExportStats:
    written: int = 0
    superseded: int = 0  # older labels of a product that has a later one
    unknown_category: int = 0
    dropped_values: int = 0
    by_how: dict[str, int] = field(default_factory=dict)


def _q(text: str) -> str:
    return quote(text, safe="") or "-"


def provenance(label: VettedLabel) -> str:
    who = ",".join(label.annotators) if label.annotators else "policy"
    return f"{SOURCE_PREFIX}/{_q(label.shop_id)}/item-{label.item_id}/{label.how}/{_q(who)}@{_q(label.model_version)}"


def latest_per_product(labels: Iterable[VettedLabel]) -> tuple[list[VettedLabel], int]:
    """One label per (shop, product): the latest vetted (then highest item id); and how many
    older ones were left out."""
    best: dict[tuple[str, str], VettedLabel] = {}
    total = 0
    for label in labels:
        total += 1
        key = (label.shop_id, label.product_id)
        old = best.get(key)
        if old is None or (label.vetted_at, label.item_id) > (old.vetted_at, old.item_id):
            best[key] = label
    kept = sorted(best.values(), key=lambda v: v.item_id)
    return kept, total - len(kept)


def golden_record(label: VettedLabel, taxonomy: Taxonomy, stats: ExportStats | None = None) -> dict[str, Any] | None:
    """The golden-shaped record of one vetted label; None when the taxonomy does not know its category."""
    from transforms.sanitise import html_to_text

    stats = stats if stats is not None else ExportStats()
    category = taxonomy.get(label.category_id)
    if category is None:
        stats.unknown_category += 1
        return None
    allowed = set(category.attribute_handles)
    attributes: dict[str, list[str]] = {}
    for handle, ids in sorted(label.attributes.items()):
        names = []
        for vid in ids:
            value = taxonomy.value(vid)
            if value is None or handle not in allowed:
                stats.dropped_values += 1
                continue
            names.append(value.name)
        if names:
            attributes[handle] = names
    description, _ = html_to_text(label.product.description)
    return {
        "id": f"{label.shop_id}#{label.product_id}",
        "title": label.product.title,
        "description": description,
        "image_urls": list(label.product.image_urls),
        "vendor": label.product.vendor,
        "product_type": label.product.product_type,
        "gold_category_path": category.full_name,
        "gold_category_taxonomy": "shopify",
        "gold_attributes": attributes,
        "source": provenance(label),
    }


def records(store: ReviewStore, taxonomy: Taxonomy, stats: ExportStats) -> Iterator[dict[str, Any]]:
    kept, stats.superseded = latest_per_product(store.vetted_labels())
    for label in kept:
        record = golden_record(label, taxonomy, stats)
        if record is not None:
            stats.by_how[label.how] = stats.by_how.get(label.how, 0) + 1
            yield record


def export_labels(store: ReviewStore, output: str | Path, taxonomy: Taxonomy) -> ExportStats:
    """Write the vetted labels to `output` (JSONL, replaced atomically) and say what was left out."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    stats = ExportStats()
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records(store, taxonomy, stats):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            stats.written += 1
    os.replace(tmp, out)
    return stats
