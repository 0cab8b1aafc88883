"""Prediction quality of the default model on the dev sets: one table, one JSON.

    .venv/bin/python benchmarks/quality.py [--taxonomy ../shared/taxonomy/shopify-2024-07]
        [--limit N] [--images] [--json out/benchmarks/quality.json]

Runs `productlens evaluate` (the same pipeline, in-process) with the default model on
`../shared/datasets/dev/shopify_stores_dev.jsonl` and on
`../shared/datasets/dev/extractgpt_ae110k_oamine.jsonl`, against the full 2024-07
taxonomy, and prints per dataset: overall, per store, per vertical and attributes per
handle (accuracy, hP, hR, hF1, attribute P/R/F1, products/s). Metric definitions:
docs/EVALUATION.md. ECE is printed as "n/a" until the classify answer carries a calibrated
probability (issue 12, item 4).

The dev sets' images are remote URLs and this machine has no internet: the default is
`--no-images` (text only), said in the table title; `--images` tries them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SHARED = ROOT.parent / "shared"
DATASETS = {
    "shopify_stores_dev": SHARED / "datasets" / "dev" / "shopify_stores_dev.jsonl",
    "extractgpt_ae110k_oamine": SHARED / "datasets" / "dev" / "extractgpt_ae110k_oamine.jsonl",
}


def evaluate(golden: Path, out: Path, taxonomy: str, limit: int | None, images: bool) -> dict[str, Any]:
    from pipelines.evaluate import evaluation_options, run

    options = evaluation_options(str(golden), str(out), taxonomy=taxonomy, limit=limit, images=images)
    return run(options).metrics


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _row(label: str, n: int, cat: dict[str, Any], attrs: dict[str, Any], products_per_s: float | None) -> list[str]:
    return [
        label,
        str(n),
        _f(cat.get("accuracy")),
        _f(cat.get("hierarchical_precision")),
        _f(cat.get("hierarchical_recall")),
        _f(cat.get("hierarchical_f1")),
        _f(attrs.get("micro_precision")),
        _f(attrs.get("micro_recall")),
        _f(attrs.get("micro_f1")),
        "n/a",
        "" if products_per_s is None else f"{products_per_s:.1f}",
    ]


def table_rows(name: str, m: dict[str, Any], top_handles: int) -> list[list[str]]:
    rows = [_row(f"[bold]{name}[/bold] (all)", m["n"], m["category"], m["attributes"], m["latency"]["products_per_s"])]
    for store, s in sorted(m.get("per_store", {}).items()):
        rows.append(_row(f"  store {store}", s["n"], s["category"], s["attributes"], None))
    for vertical, v in sorted(m["category"].get("per_vertical", {}).items()):
        rows.append(_row(f"  vertical {vertical}", v["n"], v["category"], v.get("attributes", {}), None))
    handles = sorted(m["attributes"].get("per_attribute", {}).items(), key=lambda kv: -kv[1].get("gold_values", 0))
    for handle, a in handles[:top_handles]:
        rows.append(
            [
                f"  attribute {handle}",
                str(a.get("gold_values", 0)),
                *([""] * 4),
                _f(a.get("precision")),
                _f(a.get("recall")),
                _f(a.get("f1")),
                "",
                "",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taxonomy", default=str(SHARED / "taxonomy" / "shopify-2024-07"))
    parser.add_argument("--limit", type=int, default=None, help="golden products per dataset (default: all)")
    parser.add_argument("--images", action="store_true", help="fetch the dev sets' image URLs (needs internet)")
    parser.add_argument("--top-handles", type=int, default=12, help="attribute rows per dataset")
    parser.add_argument("--json", default=str(ROOT / "out" / "benchmarks" / "quality.json"))
    args = parser.parse_args()
    missing = [str(p) for p in DATASETS.values() if not p.is_file()]
    if missing or not Path(args.taxonomy, "categories.json").is_file():
        raise SystemExit(f"needs ../shared (datasets and the 2024-07 taxonomy); missing: {missing or args.taxonomy}")
    console = Console(stderr=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="productlens-quality-") as tmp:
        for name, path in DATASETS.items():
            console.print(f"evaluating {name} ({path.name}) ...")
            results[name] = evaluate(path, Path(tmp) / name, args.taxonomy, args.limit, args.images)
    table = Table(
        title="default model quality on the dev sets, full 2024-07 taxonomy"
        + ("" if args.images else " (text only: no images)")
    )
    for col in ("slice", "n", "acc", "hP", "hR", "hF1", "attr P", "attr R", "attr F1", "ECE", "products/s"):
        table.add_column(col, justify="left" if col == "slice" else "right")
    for name, m in results.items():
        for row in table_rows(name, m, args.top_handles):
            table.add_row(*row)
    Console(width=170).print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        name: {
            "n": m["n"],
            "category": {
                k: m["category"][k]
                for k in ("accuracy", "hierarchical_precision", "hierarchical_recall", "hierarchical_f1")
            },
            "attributes": {
                k: m["attributes"][k] for k in ("micro_precision", "micro_recall", "micro_f1", "tp", "fp", "fn")
            },
            "ece": None,
            "products_per_s": m["latency"]["products_per_s"],
            "per_store": m.get("per_store", {}),
            "per_vertical": m["category"].get("per_vertical", {}),
            "per_attribute": m["attributes"].get("per_attribute", {}),
        }
        for name, m in results.items()
    }
    out.write_text(
        json.dumps({"benchmark": "quality", "images": args.images, "limit": args.limit, "datasets": summary}, indent=2)
        + "\n"
    )
    Console().print(f"wrote {out}")


if __name__ == "__main__":
    main()
