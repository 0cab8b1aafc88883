"""Rebuild the bundled sample taxonomy from a full dist/en tree.

    python taxonomy/data/make_sample.py ../shared/taxonomy/shopify-2024-07 taxonomy/data/sample-2024-07

The sample keeps Shopify's official shape and real ids so that anything that works on it
works on the full tree: all of Apparel & Accessories (the vertical with attributes), every
vertical root, and a few shallow subtrees from other verticals so that classification has
real competition. Only attributes referenced by the kept categories are written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = [
    "SUBTREES",
    "GID",
    "main",
]

# (subtree root short id, deepest level kept)
SUBTREES: list[tuple[str, int]] = [
    ("aa", 99),
    ("el-2", 3),  # Audio
    ("el-6", 2),  # Computers
    ("hg-11", 2),  # Kitchen & Dining
    ("hg-3", 2),  # Decor
    ("fr-7", 2),  # Chairs
    ("fr-24", 2),  # Tables
    ("fr-22", 2),  # Sofas
    ("tg-4", 3),  # Puzzles
    ("tg-5", 2),  # Toys
    ("hb-3", 2),  # Personal Care
    ("sg-2", 2),  # Fitness & General Exercise Equipment
    ("fb-1", 2),  # Beverages
    ("lb", 2),  # Luggage & Bags
    ("ap-2", 2),  # Pet Supplies
    ("os", 1),  # Office Supplies
]
GID = "gid://shopify/TaxonomyCategory/"


def main(src: Path, dst: Path) -> None:
    cats_doc = json.loads((src / "categories.json").read_text())
    attrs_doc = json.loads((src / "attributes.json").read_text())
    all_cats = {c["id"]: c for v in cats_doc["verticals"] for c in v["categories"]}

    keep: set[str] = {c["id"] for c in all_cats.values() if c["level"] == 0}
    for root, max_level in SUBTREES:
        rid = GID + root
        for c in all_cats.values():
            in_subtree = c["id"] == rid or rid in {a["id"] for a in c["ancestors"]}
            if in_subtree and c["level"] <= max_level:
                keep.add(c["id"])
                keep.update(a["id"] for a in c["ancestors"])

    verticals = []
    used_attr_ids: set[str] = set()
    for v in cats_doc["verticals"]:
        cats = []
        for c in v["categories"]:
            if c["id"] not in keep:
                continue
            c = dict(c, children=[ch for ch in c["children"] if ch["id"] in keep])
            used_attr_ids.update(a["id"] for a in c["attributes"])
            cats.append(c)
        verticals.append({"name": v["name"], "prefix": v["prefix"], "categories": cats})
    attributes = [a for a in attrs_doc["attributes"] if a["id"] in used_attr_ids]

    dst.mkdir(parents=True, exist_ok=True)
    (dst / "categories.json").write_text(
        json.dumps({"version": cats_doc["version"], "verticals": verticals}, ensure_ascii=False) + "\n"
    )
    (dst / "attributes.json").write_text(
        json.dumps({"version": attrs_doc["version"], "attributes": attributes}, ensure_ascii=False) + "\n"
    )
    print(f"{len(keep)} categories, {len(attributes)} attributes -> {dst}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
