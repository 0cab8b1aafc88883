"""Train a classifier over the CPU baseline's features and write it as a Triton model.

Features and the blend are `model_repository/product_trained/engine.py`'s (the same code
serves it). scikit-learn's multinomial LogisticRegression fits the layer; its
coefficients are exported to npz so that inference needs numpy only. The blend weight
alpha between the trained and the zero-shot probabilities is picked on the validation
split by hierarchical F1 (0.7 when there is no validation split).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_repository.product_baseline.engine import BaselineModel
from model_repository.product_trained import engine
from taxonomy.model import Taxonomy
from training.model.data import TrainingRow
from transforms.evaluation.metrics import hierarchical_counts, hierarchical_scores

__all__ = ["TrainResult", "train", "write_model", "evaluate_rows", "NAME_PATTERN", "ALPHAS"]

log = logging.getLogger(__name__)

# A Triton model name that is also a safe directory name.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ALPHAS = (0.0, 0.25, 0.5, 0.7, 0.85, 1.0)
DEFAULT_ALPHA = 0.7
TRITON_TEMPLATE = Path(engine.__file__).with_name("triton_model.py")


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]


def _fit(
    x: np.ndarray, y: np.ndarray, n_classes: int, c: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, coef, intercept) of a standardised multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # constant features (one class, one row) must not divide by 0
    if n_classes == 1:
        return mean, scale, np.zeros((1, x.shape[1]), np.float32), np.zeros(1, np.float32)
    clf = LogisticRegression(C=c, max_iter=1000)
    clf.fit((x - mean) / scale, y)
    coef, intercept = clf.coef_, clf.intercept_
    if n_classes == 2:  # sklearn's binary form: one row for class 1; as a softmax: [-w/2, w/2]
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return mean, scale, coef.astype(np.float32), intercept.astype(np.float32)


# The gate is fully open at this quantile of the training rows' similarity to their nearest
# centroid, and closed GATE_WIDTH below it: MiniLM cosines of unrelated products sit far lower.
GATE_QUANTILE = 0.1
GATE_WIDTH = 0.25


def fit_gate(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, float, float]:
    """Unit-norm class centroids of the embeddings, and the gate's (low, high) levels."""
    emb = x[:, : engine.EMBEDDING_DIM]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
    centroids = np.stack([emb[y == k].mean(axis=0) for k in range(n_classes)])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
    high = float(np.quantile(engine.nearest_similarity(x, centroids), GATE_QUANTILE))
    return centroids.astype(np.float32), high - GATE_WIDTH, high


def evaluate_rows(
    taxonomy: Taxonomy, predicted_ids: Sequence[str], gold_ids: Sequence[str]
) -> dict[str, float | int | None]:
    """Accuracy and micro hierarchical P/R/F1 (transforms/evaluation/metrics definitions)."""
    inter = pred = gold = exact = 0
    for p, g in zip(predicted_ids, gold_ids):
        counts = hierarchical_counts(taxonomy, taxonomy.get(p), taxonomy.categories[g])
        inter, pred, gold = inter + counts.intersection, pred + counts.predicted, gold + counts.gold
        exact += p == g
    hp, hr, hf = hierarchical_scores(inter, pred, gold)
    n = len(gold_ids)
    return {
        "n": n,
        "accuracy": exact / n if n else None,
        "hierarchical_precision": hp,
        "hierarchical_recall": hr,
        "hierarchical_f1": hf,
    }


def _decide_ids(baseline: BaselineModel, own: np.ndarray) -> list[str]:
    mass = baseline.retriever.tree.masses(own)
    ids = baseline.retriever.tree.ids
    return [ids[baseline._decide(o, m).index] for o, m in zip(own, mass)]


def attribute_priors(rows: Sequence[TrainingRow]) -> dict[str, dict[str, dict[str, int]]]:
    """category id -> handle -> lower-cased value name -> training rows that carry it."""
    counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for r in rows:
        for handle, values in r.attributes.items():
            for v in set(x.lower() for x in values):
                counts[r.category_id][handle][v] += 1
    return {c: {h: dict(v.most_common()) for h, v in hs.items()} for c, hs in sorted(counts.items())}


def train(
    rows: Sequence[TrainingRow],
    baseline: BaselineModel,
    *,
    regularisation: float = 1.0,
    alpha: float | None = None,
) -> tuple[engine.TrainedWeights, dict[str, Any], dict[str, dict[str, dict[str, int]]]]:
    """The weights, their validation metrics (with the zero-shot figures beside them) and
    the attribute priors. Rows whose category is not in the baseline's taxonomy are
    counted and left out."""
    started = time.monotonic()
    tree_index = {cid: i for i, cid in enumerate(baseline.retriever.tree.ids)}
    known = [r for r in rows if r.category_id in tree_index]
    unknown = len(rows) - len(known)
    train_rows = [r for r in known if r.split == "train"]
    valid_rows = [r for r in known if r.split == "validation"]
    if not train_rows:
        raise ValueError(
            f"no training rows: {len(rows)} rows, {unknown} with a category outside taxonomy "
            f"{baseline.taxonomy.version}, none with split 'train'"
        )
    classes = sorted({r.category_id for r in train_rows})
    class_index = np.array([tree_index[c] for c in classes], dtype=np.int64)
    position = {c: k for k, c in enumerate(classes)}
    x, _ = engine.features(baseline, [r.product for r in train_rows], class_index)
    y = np.array([position[r.category_id] for r in train_rows])
    mean, scale, coef, intercept = _fit(x, y, len(classes), regularisation)
    centroids, low, high = fit_gate(x, y, len(classes))
    weights = engine.TrainedWeights(
        classes, mean, scale, coef, intercept, DEFAULT_ALPHA if alpha is None else alpha, centroids, low, high
    )

    metrics: dict[str, Any] = {
        "rows": len(rows),
        "unknown_category_rows": unknown,
        "train_rows": len(train_rows),
        "validation_rows": len(valid_rows),
        "trained_categories": len(classes),
        "taxonomy_version": baseline.taxonomy.version,
    }
    if valid_rows:
        xv, own = engine.features(baseline, [r.product for r in valid_rows], class_index)
        p, gate = weights.predict(xv), weights.gate(xv)
        gold = [r.category_id for r in valid_rows]
        by_alpha = {
            a: evaluate_rows(baseline.taxonomy, _decide_ids(baseline, engine.blend(own, p, class_index, a, gate)), gold)
            for a in ALPHAS
        }
        if alpha is None:
            # Ties go to the larger alpha: the trained layer is what the data was given for.
            weights.alpha = max(ALPHAS, key=lambda a: ((by_alpha[a]["hierarchical_f1"] or 0.0), a))
        metrics["validation"] = by_alpha.get(weights.alpha) or evaluate_rows(
            baseline.taxonomy, _decide_ids(baseline, engine.blend(own, p, class_index, weights.alpha, gate)), gold
        )
        metrics["validation_zero_shot"] = by_alpha[0.0]
        metrics["validation_by_alpha"] = {str(a): m["hierarchical_f1"] for a, m in by_alpha.items()}
    metrics["alpha"] = weights.alpha
    metrics["train_seconds"] = round(time.monotonic() - started, 2)
    return weights, metrics, attribute_priors(train_rows)


def _pbtxt_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def config_text(name: str, taxonomy_version: str, taxonomy_path: str) -> str:
    baseline_config = Path(engine.__file__).parents[1] / "product_baseline" / "config.pbtxt"
    text = baseline_config.read_text(encoding="utf-8")
    # Same inputs, outputs, batching and instance group as the baseline; own name and versions.
    head, _, _ = text.partition("parameters [")
    head = head.replace('name: "product_baseline"', f'name: "{name}"')
    head = re.sub(r"^# .*\n", "", head, flags=re.M)
    params = {
        "model_version": name,
        "taxonomy_version": taxonomy_version,
        "taxonomy_path": taxonomy_path,
        "backoff_threshold": "",
    }
    body = ",\n".join(
        f'  {{\n    key: "{k}"\n    value: {{ string_value: "{_pbtxt_string(v)}" }}\n  }}' for k, v in params.items()
    )
    return (
        f"# A trained model (productlens train, model_repository/product_trained/engine.py).\n"
        f"{head.lstrip()}parameters [\n{body}\n]\n"
    )


def write_model(
    out_root: Path,
    name: str,
    weights: engine.TrainedWeights,
    metrics: dict[str, Any],
    priors: dict[str, dict[str, dict[str, int]]],
    taxonomy_version: str,
    taxonomy_path: str | None,
    *,
    overwrite: bool = False,
) -> Path:
    """`out_root/name/` in Triton's layout: config.pbtxt, metrics.json, 1/{model.py, weights.npz, priors.json}."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"model name {name!r}: use lower-case letters, digits, '_', '-', '.' (at most 64)")
    model_dir = out_root / name
    if model_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{model_dir} exists; pick another --name or pass --overwrite")
        shutil.rmtree(model_dir)
    version_dir = model_dir / engine.VERSION_DIR
    version_dir.mkdir(parents=True)
    weights.save(version_dir / engine.WEIGHTS_FILE)
    (version_dir / engine.PRIORS_FILE).write_text(json.dumps(priors, ensure_ascii=False, indent=1) + "\n")
    shutil.copyfile(TRITON_TEMPLATE, version_dir / "model.py")
    (model_dir / "config.pbtxt").write_text(config_text(name, taxonomy_version, taxonomy_path or ""))
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return model_dir
