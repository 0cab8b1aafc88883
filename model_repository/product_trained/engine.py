"""A trained classifier on top of the CPU baseline's features (`productlens train`).

A trained model is its own Triton model directory, `model_repository/<name>/`, in the
standard layout: `config.pbtxt` (model_version, taxonomy_version, taxonomy_path), `1/model.py`
(the Python-backend entry point, a copy of `triton_model.py`), `1/weights.npz`,
`1/priors.json` and `metrics.json` (its validation split). Inference is numpy only: the
Triton venv has numpy 1.x and no scikit-learn, so training (training/model/) exports a
softmax layer and this module runs its forward pass.

How it classifies, per product:
1. features: the MiniLM embedding of "title. product type" (384-d) and the baseline's
   zero-shot own probability and subtree mass of each category that had training data;
2. a multinomial logistic layer gives p_trained over those categories;
3. own = (1 - a) * zero-shot own + a * p_trained (scattered to their indexes), with
   a = alpha * gate: alpha is chosen on the validation split, and the gate (0..1) says how
   close the product is to what the model was trained on (cosine of its embedding with the
   nearest trained category's centroid, between two levels fitted on the training rows).
   A product unlike any training row (a ring, for a model trained on one football store)
   keeps its zero-shot probabilities: categories without training data remain reachable;
4. the baseline's tree masses, descent, calibration and back-off (`BaselineModel._decide`).
Extract is the baseline's, with values ordered by how often the training rows of the
answered category carried them (a prior used as a tie-break: it never adds a value).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model_repository.contract import ModelProduct, ModelRequest, Task
from model_repository.product_baseline.embedder import EMBEDDING_DIM
from model_repository.product_baseline.engine import BaselineModel, CategoryRanking
from model_repository.product_baseline.engine import _describe as describe_image
from model_repository.product_baseline.text import simplify_description
from taxonomy.model import Taxonomy

__all__ = ["TrainedModel", "TrainedWeights", "read_parameters", "features", "blend"]

WEIGHTS_FILE = "weights.npz"
PRIORS_FILE = "priors.json"
VERSION_DIR = "1"


class TrainedWeights:
    """The exported layer: classes (taxonomy ids), standardisation, coefficients, alpha."""

    def __init__(
        self,
        classes: Sequence[str],
        mean: np.ndarray,
        scale: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        alpha: float,
        centroids: np.ndarray | None = None,
        gate_low: float = -1.0,
        gate_high: float = -1.0,
    ) -> None:
        self.classes = tuple(str(c) for c in classes)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.coef = np.asarray(coef, dtype=np.float32)  # (K, F)
        self.intercept = np.asarray(intercept, dtype=np.float32)  # (K,)
        self.alpha = float(alpha)
        # (K, 384) unit-norm mean embedding per class; None: no gate (always trained).
        self.centroids = None if centroids is None or not len(centroids) else np.asarray(centroids, np.float32)
        self.gate_low, self.gate_high = float(gate_low), float(gate_high)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            classes=np.array(self.classes, dtype=np.str_),
            mean=self.mean,
            scale=self.scale,
            coef=self.coef,
            intercept=self.intercept,
            alpha=np.array(self.alpha, dtype=np.float64),
            centroids=np.zeros((0, 0), np.float32) if self.centroids is None else self.centroids,
            gate=np.array([self.gate_low, self.gate_high], dtype=np.float64),
        )

    @classmethod
    def load(cls, path: Path) -> TrainedWeights:
        with np.load(path, allow_pickle=False) as z:  # no pickles: the file is data, not code
            gate = z["gate"] if "gate" in z else np.array([-1.0, -1.0])
            centroids = z["centroids"] if "centroids" in z else None
            return cls(
                z["classes"].tolist(),
                z["mean"],
                z["scale"],
                z["coef"],
                z["intercept"],
                float(z["alpha"]),
                centroids,
                float(gate[0]),
                float(gate[1]),
            )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, F) features -> (n, K) probabilities over `classes`."""
        if len(self.classes) == 1:  # one class seen in training: it is certain
            return np.ones((len(x), 1), dtype=np.float32)
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        return z / z.sum(axis=1, keepdims=True)

    def gate(self, x: np.ndarray) -> np.ndarray:
        """(n,) in 0..1: how close each product is to the training data (module docstring)."""
        if self.centroids is None or self.gate_high <= self.gate_low:
            return np.ones(len(x), dtype=np.float32)
        return np.clip((nearest_similarity(x, self.centroids) - self.gate_low) / (self.gate_high - self.gate_low), 0, 1)


def nearest_similarity(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine of each row's embedding (the first EMBEDDING_DIM features) with the nearest centroid."""
    emb = x[:, :EMBEDDING_DIM]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
    return (emb @ centroids.T).max(axis=1)


def query_text(p: ModelProduct) -> str:
    return ". ".join(x for x in (p.title, p.product_type) if x)


def features(
    baseline: BaselineModel, products: Sequence[ModelProduct], class_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(features, zero-shot own probabilities) for products; `class_index`: the tree indexes
    of the trained categories."""
    own = baseline.retriever.probabilities(products)
    mass = baseline.retriever.tree.masses(own)
    emb = baseline.embedder.encode([query_text(p) for p in products]).astype(np.float32)
    x = np.concatenate([emb, own[:, class_index], mass[:, class_index]], axis=1)
    return x, own


def blend(
    own: np.ndarray, p_trained: np.ndarray, class_index: np.ndarray, alpha: float, gate: np.ndarray | None = None
) -> np.ndarray:
    """Zero-shot own probabilities shrunk by (1 - a) plus a times the trained probabilities
    on their categories, a = alpha * gate per product: untrained categories keep a
    zero-shot share, all of it for a product unlike the training data."""
    a = np.full((len(own), 1), alpha, dtype=np.float32)
    if gate is not None:
        a *= gate.reshape(-1, 1)
    out = (1.0 - a) * own
    out[:, class_index] += a * p_trained
    return out


def read_parameters(config_path: Path) -> dict[str, str]:
    """`key: value` string parameters of a config.pbtxt (the subset this module writes)."""
    text = config_path.read_text(encoding="utf-8")
    pattern = r'key:\s*"([^"]+)"\s*value:\s*\{\s*string_value:\s*"((?:[^"\\]|\\.)*)"\s*\}'
    return {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in re.findall(pattern, text)}


def resolve_taxonomy_path(value: str, model_dir: Path) -> str | None:
    if not value:
        return None
    if os.path.isabs(value):
        return value
    return str(model_dir.resolve().parents[1] / value)  # relative to the repo root


class TrainedModel:
    """In-process implementation of the contract for one trained model directory."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
        *,
        baseline: BaselineModel | None = None,
        backoff_threshold: float | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.config = read_parameters(self.model_dir / "config.pbtxt")
        if baseline is None:
            if taxonomy is None:
                taxonomy = resolve_taxonomy_path(self.config.get("taxonomy_path", ""), self.model_dir)
            threshold = self.config.get("backoff_threshold", "").strip()
            if backoff_threshold is None and threshold:
                backoff_threshold = float(threshold)
            baseline = BaselineModel(taxonomy, backoff_threshold=backoff_threshold)
        self.baseline = baseline
        version_dir = self.model_dir / VERSION_DIR
        self.weights = TrainedWeights.load(version_dir / WEIGHTS_FILE)
        priors_path = version_dir / PRIORS_FILE
        self.priors: dict[str, dict[str, dict[str, int]]] = (
            json.loads(priors_path.read_text(encoding="utf-8")) if priors_path.is_file() else {}
        )
        index = {cid: i for i, cid in enumerate(self.baseline.retriever.tree.ids)}
        unknown = [c for c in self.weights.classes if c not in index]
        if unknown:
            raise ValueError(
                f"{self.model_dir}: {len(unknown)} trained categories are not in taxonomy "
                f"{self.baseline.taxonomy.version} (e.g. {unknown[0]}); load it with the taxonomy it was trained on"
            )
        self.class_index = np.array([index[c] for c in self.weights.classes], dtype=np.int64)

    @property
    def parameters(self) -> dict[str, str]:
        return {
            "model_name": self.config.get("model_name") or self.model_dir.name,
            "model_version": self.config.get("model_version") or self.model_dir.name,
            "taxonomy_version": self.baseline.taxonomy.version,
        }

    def own_probabilities(self, products: Sequence[ModelProduct]) -> np.ndarray:
        x, own = features(self.baseline, products, self.class_index)
        w = self.weights
        return blend(own, w.predict(x), self.class_index, w.alpha, w.gate(x))

    def rank(self, products: Sequence[ModelProduct]) -> list[CategoryRanking]:
        own = self.own_probabilities(products)
        mass = self.baseline.retriever.tree.masses(own)
        return [self.baseline._decide(o, m) for o, m in zip(own, mass)]

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        parsed: list[ModelRequest | Exception] = []
        for raw, _ in requests:
            try:
                parsed.append(ModelRequest.model_validate_json(raw))
            except Exception as exc:  # noqa: BLE001 - reported on the response
                parsed.append(exc)
        # Extract and bad requests are the baseline's; classify is ours (its descriptions the
        # baseline's functions), so the retrieval runs once per product.
        classify = [i for i, r in enumerate(parsed) if isinstance(r, ModelRequest) and r.task is Task.CLASSIFY]
        ours = set(classify)
        others = [i for i in range(len(requests)) if i not in ours]
        responses: list[bytes] = [b""] * len(requests)
        for i, reply in zip(others, self.baseline.infer_batch([requests[i] for i in others]) if others else []):
            responses[i] = reply
        if classify:
            rankings = self.rank([parsed[i].product for i in classify])  # type: ignore[union-attr]
            paths = self.baseline.retriever.paths
            for i, ranking in zip(classify, rankings):
                product = parsed[i].product  # type: ignore[union-attr]
                answer: dict[str, object] = {
                    "category": paths[ranking.index],
                    "confidence": round(ranking.probability, 4),
                    "simplified_description": simplify_description(product.description) or product.title,
                    "image_description": describe_image(requests[i][1]),
                    "candidates": [{"category": paths[j], "score": round(s, 4)} for j, s in ranking.candidates],
                }
                if ranking.backed_off_from_depth is not None:
                    answer["backed_off_from_depth"] = ranking.backed_off_from_depth
                responses[i] = json.dumps(answer).encode()
        for i, r in enumerate(parsed):
            if isinstance(r, ModelRequest) and r.task is Task.EXTRACT and r.category is not None:
                responses[i] = self._order_by_prior(responses[i], self.priors.get(r.category.id, {}))
        return responses

    @staticmethod
    def _order_by_prior(response: bytes, priors: dict[str, dict[str, int]]) -> bytes:
        """Values found for a handle, most frequent in the category's training rows first
        (stable): consumers that keep one value keep the likelier one; nothing is added."""
        if not priors:
            return response
        answer = json.loads(response)
        attrs = answer.get("attributes")
        if not isinstance(attrs, dict):
            return response
        for handle, values in attrs.items():
            counts = priors.get(handle)
            if counts and isinstance(values, list):
                attrs[handle] = sorted(values, key=lambda v: -counts.get(str(v).lower(), 0))
        return json.dumps(answer).encode()
