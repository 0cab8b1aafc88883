"""Calibration of the baseline's category probabilities (Platt scaling on the log-odds).

The retriever's subtree mass (retrieval.py) ranks well but is not a probability anyone
should act on: a softmax over 10,000 categories at a fixed temperature is over- or
under-confident depending on the catalog. `Calibrator` maps a mass m to
sigmoid(a * logit(m) + b), fitted by maximum likelihood on labelled products where
"right" means the answered category lies on the gold category's lineage (itself or an
ancestor), the same definition the evaluation's ECE uses (docs/EVALUATION.md).

The shipped parameters were fitted on the project's own labelled examples
(`examples/events.jsonl` + `examples/expected_categories.json`) with
`python -m model_repository.product_baseline.calibration`; never on the dev datasets,
which are third-party data that no shipped model may be trained on. The dev sets measure
the result (expected calibration error in benchmarks/quality.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = ["Calibrator", "fit_platt"]

_EPS = 1e-6


def _logit(p: float) -> float:
    p = min(1.0 - _EPS, max(_EPS, p))
    return math.log(p / (1.0 - p))


@dataclass(frozen=True, slots=True)
class Calibrator:
    """probability = sigmoid(slope * logit(mass) + intercept)."""

    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def default(cls) -> Calibrator:
        return cls(slope=SHIPPED_SLOPE, intercept=SHIPPED_INTERCEPT)

    def probability(self, mass: float) -> float:
        z = self.slope * _logit(mass) + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def fit_platt(masses: Sequence[float], correct: Sequence[bool]) -> Calibrator:
    """Maximum-likelihood (slope, intercept) with a small ridge, so that a separable set
    does not run to infinity (scipy's L-BFGS on the log-loss)."""
    x = np.array([_logit(m) for m in masses], dtype=np.float64)
    y = np.array(correct, dtype=np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = w[0] * x + w[1]
        # log(1 + e^z) - y z, stable for large |z|
        value = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5e-2 * w @ w)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        gradient = np.array([np.sum((p - y) * x), np.sum(p - y)]) + 1e-2 * w
        return value, gradient

    result = optimize.minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Calibrator(slope=float(result.x[0]), intercept=float(result.x[1]))


# Fitted on examples/ (module docstring); refit with `python -m ...calibration` after
# changing the retriever's weights or temperature.
SHIPPED_SLOPE = 1.0499
SHIPPED_INTERCEPT = 0.5576


def _fit_on_examples() -> None:
    """Fit on examples/ with the default model and print the parameters to ship."""
    import json
    from pathlib import Path

    from model_repository.contract import ModelProduct
    from model_repository.product_baseline.engine import BaselineModel
    from transforms.sanitise import html_to_text

    root = Path(__file__).resolve().parents[2] / "examples"
    expected = json.loads((root / "expected_categories.json").read_text())
    products, gold = [], []
    for line in (root / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        p = event.get("product")
        if not isinstance(p, dict) or event.get("product_id") not in expected:
            continue
        products.append(
            ModelProduct(
                title=p.get("title") or "",
                description=html_to_text(p.get("description_html") or "")[0],
                product_type=p.get("product_type") or "",
                vendor=p.get("vendor") or "",
                tags=tuple(p.get("tags") or ()),
            )
        )
        gold.append(expected[event["product_id"]])
    import sys

    model = BaselineModel(sys.argv[1] if len(sys.argv) > 1 else None, backoff_threshold=0.0, calibrator=Calibrator())
    tree = model.retriever.tree
    masses, correct = [], []
    for ranking, path in zip(model.rank(products), gold):
        category = model.taxonomy.by_full_name(path)
        answered = model.taxonomy.categories[tree.ids[ranking.index]]
        masses.append(ranking.probability)  # the identity calibrator: the raw mass
        # Right = on the gold lineage. examples/ was labelled against a shallower excerpt of
        # the taxonomy, so an answer inside the gold's subtree is right too.
        correct.append(
            category is not None
            and (category.id in {answered.id, *answered.ancestor_ids} or answered.id in category.ancestor_ids)
        )
    fitted = fit_platt(masses, correct)
    print("masses (min, median, max):", min(masses), sorted(masses)[len(masses) // 2], max(masses))
    print(f"{len(masses)} examples, {sum(correct)} right; SHIPPED_SLOPE = {fitted.slope:.4f}")
    print(f"SHIPPED_INTERCEPT = {fitted.intercept:.4f}")


if __name__ == "__main__":
    _fit_on_examples()
