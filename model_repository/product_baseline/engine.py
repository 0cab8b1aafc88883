"""The CPU baseline model: answers the two-step contract without a GPU.

- classify: hybrid retrieval (BM25 over the category names in every language the taxonomy
  has + all-MiniLM-L6-v2 embeddings, `retrieval.py`) gives every category a probability;
  the answer descends the tree, carries a calibrated probability (`calibration.py`) and
  backs off to an ancestor when its leaf is not probable enough (`backed_off_from_depth`),
  with the top-k candidates; plus a simplified description and an image description
  from the image's dominant colours.
- extract (`attributes.py`): for each attribute in the request, the allowed values
  evidenced in the title, description, tags and variant options; colour falls back to the
  image's subject colour.

It is the reference the GPU model is compared with and the default of the local runtime:
in-process (`transforms.model.client.InProcessBaseline`) or behind Triton as a Python-backend
model (`product_baseline/1/model.py`). It carries its own category indexes, built for one
taxonomy version and cached on disk (the bundled taxonomy's vectors ship with it).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_repository.contract import ModelCandidate, ModelProduct, ModelRequest, Task
from model_repository.product_baseline.attributes import AttributeExtractor
from model_repository.product_baseline.calibration import Calibrator
from model_repository.product_baseline.embedder import MiniLMEmbedder
from model_repository.product_baseline.image_features import summarise_image
from model_repository.product_baseline.retrieval import HybridRetriever
from model_repository.product_baseline.text import simplify_description
from taxonomy.loader import default_cache_dir, load_taxonomy
from taxonomy.model import Taxonomy

__all__ = [
    "MODEL_NAME",
    "MODEL_VERSION",
    "DEFAULT_BACKOFF_THRESHOLD",
    "DEFAULT_TOP_K",
    "CategoryRanking",
    "BaselineModel",
]

log = logging.getLogger(__name__)

MODEL_NAME = "product_baseline"
MODEL_VERSION = "baseline-hybrid-3"
# Below this calibrated probability the answer backs off to the deepest ancestor that
# clears it (`backed_off_from_depth` says so). Chosen on examples/ and the dev stores'
# coverage curves: see docs/ARCHITECTURE.md.
DEFAULT_BACKOFF_THRESHOLD = 0.5
# Candidates a classify answer carries (for review and for candidate prompts).
DEFAULT_TOP_K = 10


@dataclass(frozen=True, slots=True)
class CategoryRanking:
    """One product's classification: indexes into the retriever's category order."""

    index: int
    probability: float
    backed_off_from_depth: int | None
    candidates: tuple[tuple[int, float], ...]


class BaselineModel:
    """In-process implementation of the contract. Not thread-safe for `load`; `infer_batch`
    is safe to call from one thread at a time (Triton's Python backend does exactly that)."""

    def __init__(
        self,
        taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
        embedder: MiniLMEmbedder | None = None,
        cache_dir: Path | None = None,
        *,
        calibrator: Calibrator | None = None,
        backoff_threshold: float | None = None,
        top_k: int = DEFAULT_TOP_K,
    ) -> None:
        self.taxonomy = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
        self.embedder = embedder or MiniLMEmbedder()
        self._cache_dir = cache_dir or default_cache_dir().parent / "index"
        self.retriever = HybridRetriever(
            self.taxonomy, self.embedder, cache_dir or default_cache_dir().parent / "index"
        )
        self._paths = self.retriever.paths
        self.calibrator = calibrator or Calibrator.default()
        self.backoff_threshold = DEFAULT_BACKOFF_THRESHOLD if backoff_threshold is None else backoff_threshold
        self.top_k = top_k
        self._attributes = AttributeExtractor()

    # -- metadata --------------------------------------------------------------------

    @property
    def parameters(self) -> dict[str, str]:
        return {
            "model_name": MODEL_NAME,
            "model_version": MODEL_VERSION,
            "taxonomy_version": self.taxonomy.version,
        }

    # -- the contract ----------------------------------------------------------------

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        """One response per request, in order. A request that fails gets an error JSON
        answer rather than failing its neighbours (Triton: failures go on the response)."""
        parsed: list[ModelRequest | Exception] = []
        for raw, _ in requests:
            try:
                parsed.append(ModelRequest.model_validate_json(raw))
            except Exception as exc:  # noqa: BLE001 - reported on the response
                parsed.append(exc)
        responses: list[bytes] = [b""] * len(requests)
        classify = [i for i, r in enumerate(parsed) if isinstance(r, ModelRequest) and r.task is Task.CLASSIFY]
        if classify:
            answers = self._classify([parsed[i] for i in classify], [requests[i][1] for i in classify])  # type: ignore[misc]
            for i, a in zip(classify, answers):
                responses[i] = a
        for i, r in enumerate(parsed):
            if isinstance(r, Exception):
                responses[i] = json.dumps({"error": f"bad request: {r}"}).encode()
            elif r.task is Task.EXTRACT:
                responses[i] = self._extract(r, requests[i][1])
        return responses

    def rank(self, products: Sequence[ModelProduct]) -> list[CategoryRanking]:
        """Per product: the chosen category, its calibrated probability, where it backed off
        from, and the top candidates (module docstring of retrieval.py for the method)."""
        own = self.retriever.probabilities(products)
        mass = self.retriever.tree.masses(own)
        return [self._decide(own_row, mass_row) for own_row, mass_row in zip(own, mass)]

    def _decide(self, own: np.ndarray, mass: np.ndarray) -> CategoryRanking:
        tree = self.retriever.tree
        best = tree.descend(own, mass)
        answer, backed_off_from = best, None
        probability = self.calibrator.probability(float(mass[best]))
        if probability < self.backoff_threshold:
            for ancestor in tree.ancestors(best):
                answer = ancestor
                probability = self.calibrator.probability(float(mass[ancestor]))
                if probability >= self.backoff_threshold:
                    break
            backed_off_from = int(tree.depth[best])
        top = _best(own, self.top_k)
        return CategoryRanking(
            index=answer,
            probability=probability,
            backed_off_from_depth=backed_off_from,
            candidates=tuple((int(j), float(own[j])) for j in top),
        )

    def candidates(self, products: Sequence[ModelProduct], k: int) -> list[list[ModelCandidate]]:
        """The top-k taxonomy categories for each product, best first, with their own
        probabilities: what candidate mode puts into an off-the-shelf VLM's classify prompt."""
        own = self.retriever.probabilities(products)
        out = []
        for row in own:
            top = _best(row, k)
            out.append(
                [
                    ModelCandidate(
                        id=self.retriever.tree.ids[j], full_name=self._paths[j], score=round(float(row[j]), 4)
                    )
                    for j in top
                ]
            )
        return out

    def _classify(self, requests: list[ModelRequest], images: list[bytes | None]) -> list[bytes]:
        rankings = self.rank([r.product for r in requests])
        out = []
        for r, img, ranking in zip(requests, images, rankings):
            answer: dict[str, object] = {
                "category": self._paths[ranking.index],
                "confidence": round(ranking.probability, 4),
                "simplified_description": simplify_description(r.product.description) or r.product.title,
                "image_description": _describe(img),
                "candidates": [
                    {"category": self._paths[j], "score": round(score, 4)} for j, score in ranking.candidates
                ],
            }
            if ranking.backed_off_from_depth is not None:
                answer["backed_off_from_depth"] = ranking.backed_off_from_depth
            out.append(json.dumps(answer).encode())
        return out

    def _extract(self, request: ModelRequest, image: bytes | None) -> bytes:
        return json.dumps({"attributes": self._attributes.extract(request, image)}).encode()


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k highest scores, best first (a partial sort: C is 10,000+)."""
    top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def _describe(image: bytes | None) -> str:
    if not image:
        return ""
    try:
        return summarise_image(image).describe()
    except Exception:  # noqa: BLE001 - an unreadable image only loses the description
        return ""
