"""A second model opinion on a merchant's correction.

Every correction is scored by a model before anyone looks at it: how much probability does
the model give the merchant's category (the subtree mass: a merchant who picks a parent of
the model's leaf is not contradicting it)? When the model agrees, the vetting policy may
auto-vet the correction (never in a sensitive subtree); when it disagrees, people decide.

Two judges:
- `BaselineOpinion`: the CPU baseline model (`BaselineModel`) re-reads the product; the
  merchant's category agrees when its subtree mass is at least the policy's threshold, or
  when it lies on the lineage of the model's own top-1 leaf (ancestor-or-self either way).
- `CandidatesOpinion`: no model call at all; it reads the served prediction's own top
  candidates (the mass of those in the merchant's subtree) and lineage. The cheap fallback
  when the baseline is not loaded, and what the service uses while it is loading.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from model_repository.product_baseline.engine import BaselineModel
    from taxonomy.model import Taxonomy

__all__ = ["DEFAULT_AGREE_THRESHOLD", "BaselineOpinion", "CandidatesOpinion", "Opinion", "SecondOpinion", "on_lineage"]

DEFAULT_AGREE_THRESHOLD = 0.3
_SEP = " > "


@dataclass(frozen=True)
class Opinion:
    """`merchant_score`: the model's probability mass on the merchant's category (0..1);
    `model_category_id`: the model's own top-1; `agrees`: the judge's verdict."""

    merchant_score: float
    model_category_id: str | None
    agrees: bool
    judge: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class SecondOpinion(Protocol):
    def judge(self, product: Mapping[str, Any], merchant_category_id: str, predicted: Mapping[str, Any]) -> Opinion: ...


def on_lineage(taxonomy: Taxonomy, a: str | None, b: str | None) -> bool:
    """True when one category is an ancestor-or-self of the other."""
    if not a or not b:
        return False
    ca, cb = taxonomy.get(a), taxonomy.get(b)
    if ca is None or cb is None:
        return False
    return ca.id == cb.id or ca.id in cb.ancestor_ids or cb.id in ca.ancestor_ids


def _model_product(product: Mapping[str, Any]) -> Any:
    from model_repository.contract import ModelProduct
    from transforms.sanitise import html_to_text

    description = str(product.get("description_html") or product.get("description") or "")
    text, _ = html_to_text(description)
    tags = product.get("tags") or ()
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    options = {
        str(o.get("name")): tuple(str(v) for v in o.get("values") or ())
        for o in product.get("variant_options") or ()
        if isinstance(o, Mapping) and o.get("name")
    }
    return ModelProduct(
        title=str(product.get("title") or ""),
        description=text,
        product_type=str(product.get("product_type") or ""),
        vendor=str(product.get("vendor") or ""),
        tags=tuple(str(t) for t in tags),
        variant_options=options,
    )


class BaselineOpinion:
    """The CPU baseline's opinion (`BaselineModel`, loaded by the caller). Thread-safe: the
    model is used by one thread at a time."""

    name = "baseline"

    def __init__(self, model: BaselineModel, threshold: float = DEFAULT_AGREE_THRESHOLD) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.model = model
        self.threshold = threshold
        self._index = {cid: i for i, cid in enumerate(model.retriever.tree.ids)}
        self._lock = threading.Lock()

    def judge(self, product: Mapping[str, Any], merchant_category_id: str, predicted: Mapping[str, Any]) -> Opinion:
        tree = self.model.retriever.tree
        with self._lock:
            own = self.model.retriever.probabilities([_model_product(product)])
            mass = tree.masses(own)
        best = tree.descend(own[0], mass[0])
        model_id = tree.ids[best]
        j = self._index.get(merchant_category_id)
        score = float(mass[0][j]) if j is not None else 0.0
        agrees = score >= self.threshold or on_lineage(self.model.taxonomy, merchant_category_id, model_id)
        return Opinion(
            merchant_score=round(min(1.0, score), 4), model_category_id=model_id, agrees=agrees, judge=self.name
        )


class CandidatesOpinion:
    """The served prediction's own opinion: the mass of its candidates in the merchant's
    subtree, and whether its category is on the merchant's category's lineage."""

    name = "served_candidates"

    def __init__(self, taxonomy: Taxonomy, threshold: float = DEFAULT_AGREE_THRESHOLD) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.taxonomy = taxonomy
        self.threshold = threshold

    def judge(self, product: Mapping[str, Any], merchant_category_id: str, predicted: Mapping[str, Any]) -> Opinion:
        category = predicted.get("category") or {}
        model_id = category.get("id")
        merchant = self.taxonomy.get(merchant_category_id)
        score = 0.0
        for c in category.get("candidates") or ():
            cid = c.get("id")
            found = self.taxonomy.get(cid) if cid else None
            if (
                merchant is not None
                and found is not None
                and (found.id == merchant.id or merchant.id in found.ancestor_ids)
            ):
                score += float(c.get("score") or 0.0)
        agrees = score >= self.threshold or on_lineage(self.taxonomy, merchant_category_id, model_id)
        return Opinion(
            merchant_score=round(min(1.0, score), 4), model_category_id=model_id, agrees=agrees, judge=self.name
        )
