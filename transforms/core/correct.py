"""Category correction against the taxonomy, Beam-free: after step 1.

This is half of the guarantee that no prediction names a category the taxonomy does not
have: whatever the model said, only a taxonomy category (or none) comes out.
"""

from __future__ import annotations

from dataclasses import replace

from taxonomy.corrector import CategoryCorrector
from transforms.core.dead_letters import guarded
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.records import CategoryCandidate, DeadLetter, PredictedCategory, WorkItem

__all__ = ["STAGE", "correct_category"]

STAGE = "correct_category"


def _correct(item: WorkItem, corrector: CategoryCorrector, metrics: MetricsSink) -> WorkItem:
    result = corrector.correct(item.raw_category)
    if result.category is None:
        metrics.inc("correction", "category_unresolved")
        warning = f"category {item.raw_category!r} matches no taxonomy category (best score {result.score:.2f})"
        # The item goes on with category None (status "unresolved", it goes to review):
        # later stages pass it through, so the Beam flow needs no separate output and
        # Flatten (on Prism a Flatten breaks the fused stage that makes the stream's
        # offset commits follow its writes).
        return replace(item, warnings=(*item.warnings, warning))
    # A corrected path is only as sure as both the model and the match.
    score = item.confidence * result.score if result.corrected else item.confidence
    predicted = PredictedCategory(
        id=result.category.id,
        full_name=result.category.full_name,
        score=round(min(1.0, max(0.0, score)), 4),
        corrected=result.corrected,
        raw=item.raw_category,
        # A corrected category is not the one the model backed off to: the depth would lie.
        backed_off_from_depth=None if result.corrected else item.backed_off_from_depth,
        candidates=_corrected_candidates(item, corrector, metrics),
    )
    # Counted once the category is built: a product that fails here is a dead letter only.
    metrics.inc("correction", "category_corrected" if result.corrected else "category_exact")
    return replace(item, category=predicted)


def _corrected_candidates(
    item: WorkItem, corrector: CategoryCorrector, metrics: MetricsSink
) -> tuple[CategoryCandidate, ...]:
    """The answer's candidates as taxonomy categories, best first: each corrected like the
    category, an unknown one dropped (counted), a repeat keeping its first (best) score."""
    out: dict[str, CategoryCandidate] = {}
    for raw, candidate_score in item.raw_candidates:
        result = corrector.correct(raw)
        if result.category is None:
            metrics.inc("correction", "candidate_dropped")
            continue
        score = candidate_score * result.score if result.corrected else candidate_score
        out.setdefault(
            result.category.id,
            CategoryCandidate(
                id=result.category.id,
                full_name=result.category.full_name,
                score=round(min(1.0, max(0.0, score)), 4),
            ),
        )
    return tuple(out.values())


def correct_category(
    item: WorkItem, corrector: CategoryCorrector, metrics: MetricsSink = NO_METRICS
) -> WorkItem | DeadLetter:
    """WorkItem with raw_category -> WorkItem with `category` (exact or corrected), or with
    category None and a warning when no category can be trusted. Counts
    `correction/category_exact`, `category_corrected`, `category_unresolved`."""
    return guarded(STAGE, metrics, _correct, item, corrector, metrics)
