"""Learning curve of the trainable CPU model on the dev stores: one table, one JSON.

    .venv/bin/python benchmarks/learning.py [--taxonomy ../shared/taxonomy/shopify-2024-07]
        [--sizes 0 10 50 200 all] [--test-share 0.3] [--attributes] [--json out/benchmarks/learning.json]

For each store of `../shared/datasets/dev/shopify_stores_dev.jsonl`, a fixed random 30% of
its products is held out (test); the model is trained (`training/model/train.py`'s layer,
blend and alpha choice) on the first N of the rest (N = 0 is the zero-shot baseline, "all"
is every non-test product of the store; with N >= 10, a fifth of them is the validation
split that picks alpha) and scored on that store's test products and on the other
store's test products: does it generalise, or only learn its own store? Category figures
(accuracy, hP, hR, hF1) come from cached baseline features, so each point costs one
logistic fit; with --attributes each model is also written (under out/, never committed:
../shared/datasets/README.md forbids shipping a model trained on those records) and run
through `productlens evaluate` for attribute micro F1.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "datasets" / "dev" / "shopify_stores_dev.jsonl"
SEED = 13


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def load(golden: Path, taxonomy: Any) -> list[dict[str, Any]]:
    """Golden records with a category id in the taxonomy (others are counted and left out)."""
    from transforms.evaluation.metrics import store_of

    out, unmapped = [], 0
    for line in golden.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        category = taxonomy.by_full_name(r.get("gold_category_path") or "")
        if category is None:
            unmapped += 1
            continue
        r["_category_id"], r["_store"] = category.id, store_of(r.get("source", ""))
        out.append(r)
    if unmapped:
        Console(stderr=True).print(f"{unmapped} golden records without a category of the taxonomy left out")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taxonomy", default=str(SHARED / "taxonomy" / "shopify-2024-07"))
    parser.add_argument("--golden", default=str(GOLDEN))
    parser.add_argument("--sizes", nargs="+", default=["0", "10", "50", "200", "all"])
    parser.add_argument("--test-share", type=float, default=0.3)
    parser.add_argument("--attributes", action="store_true", help="also attribute F1 through productlens evaluate")
    parser.add_argument("--json", default=str(ROOT / "out" / "benchmarks" / "learning.json"))
    args = parser.parse_args()
    if not Path(args.golden).is_file() or not Path(args.taxonomy, "categories.json").is_file():
        raise SystemExit(f"needs ../shared (the dev stores and the 2024-07 taxonomy): {args.golden}, {args.taxonomy}")

    from model_repository.contract import ModelProduct
    from model_repository.product_baseline.engine import BaselineModel
    from model_repository.product_trained import engine
    from training.model.data import TrainingRow
    from training.model.train import ALPHAS, DEFAULT_ALPHA, _decide_ids, _fit, attribute_priors, evaluate_rows, fit_gate

    console = Console(stderr=True)
    started = time.monotonic()
    baseline = BaselineModel(args.taxonomy)
    taxonomy = baseline.taxonomy
    records = load(Path(args.golden), taxonomy)
    products = [
        ModelProduct(
            title=r.get("title") or "",
            description=r.get("description") or "",
            product_type=r.get("product_type") or "",
            vendor=r.get("vendor") or "",
            tags=tuple(r.get("tags") or ()),
        )
        for r in records
    ]
    console.print(f"features of {len(records)} products ...")
    # Cached once: the zero-shot own probabilities, their masses and the embeddings; a
    # trained point only slices them (engine.features does the same per call).
    own_parts, emb_parts = [], []
    for i in range(0, len(products), 64):
        batch = products[i : i + 64]
        own_parts.append(baseline.retriever.probabilities(batch))
        emb_parts.append(baseline.embedder.encode([engine.query_text(p) for p in batch]).astype(np.float32))
    own, emb = np.concatenate(own_parts), np.concatenate(emb_parts)
    mass = baseline.retriever.tree.masses(own)
    tree_index = {cid: i for i, cid in enumerate(baseline.retriever.tree.ids)}
    gold = [r["_category_id"] for r in records]

    stores = sorted({r["_store"] for r in records})
    rng = random.Random(SEED)
    split: dict[str, tuple[list[int], list[int]]] = {}
    for s in stores:
        idx = [i for i, r in enumerate(records) if r["_store"] == s]
        rng.shuffle(idx)
        n_test = max(1, round(args.test_share * len(idx)))
        split[s] = (idx[n_test:], idx[:n_test])  # (pool, test)

    def features(rows: list[int], class_index: np.ndarray) -> np.ndarray:
        return np.concatenate([emb[rows], own[np.ix_(rows, class_index)], mass[np.ix_(rows, class_index)]], axis=1)

    def score(rows: list[int], blended: np.ndarray) -> dict[str, Any]:
        return evaluate_rows(taxonomy, _decide_ids(baseline, blended), [gold[i] for i in rows])

    results: list[dict[str, Any]] = []
    models_root = ROOT / "out" / "learning" / "models"
    for s in stores:
        pool, test = split[s]
        others = [t for o in stores if o != s for t in split[o][1]]
        for size in args.sizes:
            n = len(pool) if size == "all" else min(int(size), len(pool))
            point: dict[str, Any] = {"store": s, "n": n, "size": size, "test": len(test), "other_test": len(others)}
            if n == 0:
                point["alpha"] = 0.0
                point["own"], point["other"] = score(test, own[test]), score(others, own[others])
                results.append(point)
                continue
            chosen = pool[:n]
            n_valid = n // 5 if n >= 10 else 0
            train_rows, valid_rows = chosen[: n - n_valid], chosen[n - n_valid :]
            classes = sorted({gold[i] for i in train_rows})
            class_index = np.array([tree_index[c] for c in classes])
            position = {c: k for k, c in enumerate(classes)}
            x, y = features(train_rows, class_index), np.array([position[gold[i]] for i in train_rows])
            mean, scale, coef, intercept = _fit(x, y, len(classes), 1.0)
            centroids, low, high = fit_gate(x, y, len(classes))
            weights = engine.TrainedWeights(classes, mean, scale, coef, intercept, DEFAULT_ALPHA, centroids, low, high)
            if valid_rows:
                xv = features(valid_rows, class_index)
                p_valid, g_valid = weights.predict(xv), weights.gate(xv)
                by_alpha = {
                    a: score(valid_rows, engine.blend(own[valid_rows], p_valid, class_index, a, g_valid))[
                        "hierarchical_f1"
                    ]
                    or 0.0
                    for a in ALPHAS
                }
                weights.alpha = max(ALPHAS, key=lambda a: (by_alpha[a], a))
            point["alpha"], point["classes"] = weights.alpha, len(classes)
            for key, rows in (("own", test), ("other", others)):
                xr = features(rows, class_index)
                blended = engine.blend(own[rows], weights.predict(xr), class_index, weights.alpha, weights.gate(xr))
                point[key] = score(rows, blended)
                point[key]["mean_gate"] = float(weights.gate(xr).mean())
            if args.attributes:
                from training.model.train import write_model

                name = f"{s.replace('/', '-').lower()}-{size}"[:64]
                rows = [TrainingRow(products[i], gold[i], records[i].get("gold_attributes") or {}) for i in train_rows]
                metrics = {"benchmark": "learning", "store": s, "n": n}
                write_model(
                    models_root,
                    name,
                    weights,
                    metrics,
                    attribute_priors(rows),
                    taxonomy.version,
                    args.taxonomy,
                    overwrite=True,
                )
                point["model_dir"] = str(models_root / name)
            results.append(point)
            console.print(
                f"{s} N={n}: own hF1 {_f(point['own']['hierarchical_f1'])}, other {_f(point['other']['hierarchical_f1'])}"
            )

    if args.attributes:
        attribute_f1(results, records, split, stores, args.taxonomy, console)

    table = Table(title="learning curve: trained CPU model on the dev stores (text only), full 2024-07 taxonomy")
    for col in ("store", "N", "alpha", "test", "acc", "hF1", "attr F1", "other store: acc", "hF1", "attr F1"):
        table.add_column(col, justify="left" if col == "store" else "right")
    for p in results:
        table.add_row(
            p["store"],
            str(p["n"]),
            f"{p['alpha']:.2f}",
            str(p["test"]),
            _f(p["own"]["accuracy"]),
            _f(p["own"]["hierarchical_f1"]),
            _f(p["own"].get("attribute_f1")),
            _f(p["other"]["accuracy"]),
            _f(p["other"]["hierarchical_f1"]),
            _f(p["other"].get("attribute_f1")),
        )
    Console(width=170).print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "learning",
        "golden": str(args.golden),
        "taxonomy": args.taxonomy,
        "test_share": args.test_share,
        "seed": SEED,
        "seconds": round(time.monotonic() - started, 1),
        "points": results,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    Console().print(f"wrote {out}")


def attribute_f1(
    results: list[dict[str, Any]],
    records: list[dict[str, Any]],
    split: dict[str, tuple[list[int], list[int]]],
    stores: list[str],
    taxonomy: str,
    console: Console,
) -> None:
    """Attribute micro F1 of each point on its store's and the other store's test products,
    through the evaluate pipeline (extract answers for the category each model chose)."""
    from pipelines.evaluate import evaluation_options, run
    from transforms.model.client import InProcessBaseline
    from transforms.model.trained import InProcessTrained

    with tempfile.TemporaryDirectory(prefix="productlens-learning-") as tmp:
        goldens = {}
        for s in stores:
            for key, rows in (("own", split[s][1]), ("other", [t for o in stores if o != s for t in split[o][1]])):
                path = Path(tmp) / f"{s.replace('/', '-')}-{key}.jsonl"
                path.write_text(
                    "".join(
                        json.dumps({k: v for k, v in records[i].items() if not k.startswith("_")}) + "\n" for i in rows
                    )
                )
                goldens[(s, key)] = path
        for k, p in enumerate(results):
            for key in ("own", "other"):
                factory = (
                    InProcessTrained(p["model_dir"], taxonomy) if "model_dir" in p else InProcessBaseline(taxonomy)
                )
                options = evaluation_options(
                    str(goldens[(p["store"], key)]), str(Path(tmp) / f"run-{k}-{key}"), taxonomy=taxonomy, images=False
                )
                metrics = run(options, model=factory).metrics
                p[key]["attribute_f1"] = metrics["attributes"]["micro_f1"]
                p[key]["evaluate_hierarchical_f1"] = metrics["category"]["hierarchical_f1"]
            console.print(f"{p['store']} N={p['n']}: attribute F1 {_f(p['own']['attribute_f1'])}")


if __name__ == "__main__":
    main()
