"""Label correction by a judge model.

A judge answers, per product, the category it believes in and how sure it is. One rule
(`decide`) turns that answer and the merchant label into a verdict, so every judge (the
in-process CPU baseline, a predictions JSONL from any model: a VLM behind Triton, an
OpenAI-compatible server, a later fine-tune) is held to the same rule:

- confirm: the judge's answer is on the label's lineage (the label itself, an ancestor
  the judge backed off to, or a descendant that refines it);
- replace: the answer is off the lineage and the judge is confident
  (probability >= threshold): the judge's category becomes the label;
- flag: off the lineage without confidence, or no answer: the merchant label is kept and
  marked, so training can weight or drop it knowingly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from taxonomy.model import Category, Taxonomy
from training.dataset.sources import LabelledRecord, ModelOpinion, Problem, read_predictions

__all__ = [
    "JudgeAnswer",
    "Verdict",
    "Judge",
    "PredictionsJudge",
    "BaselineJudge",
    "decide",
    "DEFAULT_REPLACE_THRESHOLD",
]

DEFAULT_REPLACE_THRESHOLD = 0.8


@dataclass(frozen=True)
class JudgeAnswer:
    category_id: str
    probability: float | None


@dataclass(frozen=True)
class Verdict:
    status: str  # confirmed | replaced | flagged
    category: Category
    label_source: str  # merchant | judge
    reason: str


class Judge(Protocol):
    """Anything that answers a category per product (None: no answer for that product)."""

    name: str

    def answer(self, records: Sequence[LabelledRecord]) -> list[JudgeAnswer | None]: ...


def decide(
    taxonomy: Taxonomy,
    label: Category,
    answer: JudgeAnswer | None,
    judge_name: str,
    threshold: float = DEFAULT_REPLACE_THRESHOLD,
) -> Verdict:
    if answer is None:
        return Verdict("flagged", label, "merchant", f"{judge_name}: no answer for this product")
    judged = taxonomy.get(answer.category_id)
    if judged is None:
        return Verdict("flagged", label, "merchant", f"{judge_name}: answered {answer.category_id!r}, not in taxonomy")
    p = answer.probability
    shown = "?" if p is None else f"{p:.2f}"
    if judged.id == label.id or judged.id in label.ancestor_ids or label.id in judged.ancestor_ids:
        return Verdict("confirmed", label, "merchant", f"{judge_name}: {judged.full_name} (p={shown}) on the lineage")
    if p is not None and p >= threshold:
        return Verdict(
            "replaced",
            judged,
            "judge",
            f"{judge_name}: {judged.full_name} (p={shown} >= {threshold}) off the label's lineage",
        )
    return Verdict(
        "flagged", label, "merchant", f"{judge_name}: {judged.full_name} (p={shown} < {threshold}) disagrees"
    )


class PredictionsJudge:
    """Answers from a predictions JSONL (any model), joined by product id."""

    def __init__(self, path: str | Path) -> None:
        self.name = f"predictions:{Path(path).name}"
        self.opinions: dict[str, ModelOpinion]
        self.problems: list[Problem]
        self.opinions, self.problems = read_predictions(path)

    def answer(self, records: Sequence[LabelledRecord]) -> list[JudgeAnswer | None]:
        out: list[JudgeAnswer | None] = []
        for r in records:
            op = self.opinions.get(r.product_id)
            out.append(JudgeAnswer(op.category_id, op.probability) if op and op.category_id else None)
        return out


class BaselineJudge:
    """The default CPU model (`BaselineModel`) run in-process. The model is built on first
    use (loading the embedder and the index takes seconds); tests inject a fake `model`
    with the same `rank` / `retriever.tree.ids` surface."""

    name = "baseline"

    def __init__(self, taxonomy: Taxonomy, model: Any = None, batch_size: int = 64) -> None:
        self.taxonomy = taxonomy
        self._model = model
        self.batch_size = batch_size

    def _load(self) -> Any:
        if self._model is None:
            from model_repository.product_baseline.engine import BaselineModel

            self._model = BaselineModel(self.taxonomy)
        return self._model

    def answer(self, records: Sequence[LabelledRecord]) -> list[JudgeAnswer | None]:
        from model_repository.contract import ModelProduct

        model = self._load()
        ids = model.retriever.tree.ids
        out: list[JudgeAnswer | None] = []
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            products = [
                ModelProduct(
                    title=r.title,
                    description=r.description[:5000],
                    product_type=r.product_type,
                    vendor=r.vendor,
                    tags=r.tags,
                    variant_options=dict(r.variant_options),
                )
                for r in batch
            ]
            for ranking in model.rank(products):
                out.append(JudgeAnswer(ids[ranking.index], float(ranking.probability)))
        return out
