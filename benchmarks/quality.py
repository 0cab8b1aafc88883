"""Prediction quality of the default model on the dev sets: one table, one JSON.

    .venv/bin/python benchmarks/quality.py [--taxonomy ../shared/taxonomy/shopify-2024-07]
        [--limit N] [--images] [--json out/benchmarks/quality.json]

Runs `productlens evaluate` (the same pipeline, in-process) with the default model on
`../shared/datasets/dev/shopify_stores_dev.jsonl` and on
`../shared/datasets/dev/extractgpt_ae110k_oamine.jsonl`, against the full 2024-07
taxonomy, and prints per dataset: overall, per store, per vertical and attributes per
handle (accuracy, hP, hR, hF1, attribute P/R/F1, ECE of the category score, products/s),
then per dataset a coverage table (the highest-scored products first: coverage, score
threshold, accuracy, hP, hR, hF1) with the number of backed-off answers. Metric
definitions: docs/EVALUATION.md (ECE: 15 equal-width bins, an answer is right when its
category is on the gold lineage; the scores are whatever the model answers, so the ECE
says how far they are from calibrated probabilities).

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
        _f((cat.get("calibration") or {}).get("ece")),
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


def coverage_table(name: str, m: dict[str, Any]) -> Table | str:
    """One dataset's quality against coverage, with its calibration and back-off counts in
    the title; a line instead when no gold category is in the taxonomy (nothing to rank)."""
    c = m["category"]
    cal, back_off = c.get("calibration") or {}, c.get("back_off") or {}
    rows = c.get("coverage") or []
    if not rows:
        return f"{name}: no gold category in the taxonomy, so no ECE, coverage curve or back-off figures"
    table = Table(
        title=f"{name}: quality against coverage (highest scores first) · ECE {_f(cal.get('ece'))} "
        f"(exact node {_f(cal.get('ece_exact'))}) · backed off {back_off.get('n', 0)} "
        f"of {cal.get('n', 0)} answers"
    )
    # The target and the coverage reached differ when products tie at the threshold.
    for col in ("target", "coverage", "covered", "threshold", "acc", "lineage acc", "hP", "hR", "hF1"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{100 * r['target']:.0f}%",
            f"{100 * r['coverage']:.1f}%",
            str(r["n"]),
            "-" if r["threshold"] is None else f"{r['threshold']:.4f}",
            _f(r["accuracy"]),
            _f(r["lineage_accuracy"]),
            _f(r["hierarchical_precision"]),
            _f(r["hierarchical_recall"]),
            _f(r["hierarchical_f1"]),
        )
    return table


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
    for name, m in results.items():
        Console(width=170).print(coverage_table(name, m))
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
            "ece": m["category"]["calibration"]["ece"],
            "ece_exact": m["category"]["calibration"]["ece_exact"],
            "calibration": m["category"]["calibration"],
            "coverage": m["category"]["coverage"],
            "back_off": m["category"]["back_off"],
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
