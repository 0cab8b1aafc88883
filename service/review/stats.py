"""The dashboard's figures: merchant acceptance, correction and rejection rates with Wilson
95% intervals, and annotator agreement as Cohen's kappa.

Why Wilson: the rates are often computed over small slices (a new model version, a small
vertical) where the normal approximation gives intervals below 0 or above 1 and far too
narrow at p near 0 or 1; Wilson's score interval stays inside [0, 1] and has close to its
nominal coverage there (Brown, Cai & DasGupta 2001). Why kappa: raw agreement between two
annotators is inflated by chance when one verdict dominates (most predictions are right);
Cohen's kappa corrects for the agreement their own verdict frequencies would give.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

__all__ = [
    "Z95",
    "DashboardStats",
    "FeedbackRow",
    "KappaResult",
    "Rate",
    "RatingRow",
    "cohen_kappa",
    "compute_dashboard",
    "mean_pairwise_kappa",
    "rate",
    "wilson_interval",
]

Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0.0, 1.0) when there are no trials."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """`successes` of `trials`, the point estimate (None without trials) and its 95% Wilson interval."""

    successes: int
    trials: int
    value: float | None
    low: float
    high: float


def rate(successes: int, trials: int) -> Rate:
    low, high = wilson_interval(successes, trials)
    return Rate(successes, trials, successes / trials if trials else None, low, high)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two annotators' verdicts on the same items (sklearn's); None when it
    is undefined (fewer than two items, or both annotators gave one verdict to everything
    and so chance agreement is 1)."""
    if len(a) != len(b):
        raise ValueError("both annotators must rate the same items")
    if len(a) < 2:
        return None
    if len(set(a) | set(b)) == 1:
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        k = float(cohen_kappa_score(list(a), list(b)))
    return None if math.isnan(k) else k


@dataclass(frozen=True)
class RatingRow:
    prediction_id: str
    annotator: str
    verdict: str


@dataclass(frozen=True)
class KappaResult:
    """Kappa averaged over annotator pairs with a defined kappa; `pairs`: the number of
    predictions rated by both annotators of a pair, summed over pairs (doubly rated items);
    `annotator_pairs`: the pairs averaged; `per_pair`: ((a, b), kappa, items) each."""

    kappa: float | None
    pairs: int
    annotator_pairs: int
    per_pair: tuple[tuple[tuple[str, str], float | None, int], ...] = ()


def mean_pairwise_kappa(ratings: Iterable[RatingRow]) -> KappaResult:
    by_prediction: dict[str, dict[str, str]] = defaultdict(dict)
    for r in ratings:
        by_prediction[r.prediction_id][r.annotator] = r.verdict
    pair_items: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for verdicts in by_prediction.values():
        for x, y in combinations(sorted(verdicts), 2):
            pair_items[(x, y)].append((verdicts[x], verdicts[y]))
    per_pair = []
    values = []
    for pair, items in sorted(pair_items.items()):
        k = cohen_kappa([i[0] for i in items], [i[1] for i in items])
        per_pair.append((pair, k, len(items)))
        if k is not None:
            values.append(k)
    return KappaResult(
        kappa=sum(values) / len(values) if values else None,
        pairs=sum(len(v) for v in pair_items.values()),
        annotator_pairs=len(values),
        per_pair=tuple(per_pair),
    )


@dataclass(frozen=True)
class FeedbackRow:
    action: str
    vertical: str | None
    model_version: str


@dataclass(frozen=True)
class DashboardStats:
    """What the dashboard page shows. Acceptance = accept / (accept + correct + delete);
    correction rate = correct / feedback; rejection rate = rejected / decided items
    (approved + rejected)."""

    acceptance: Rate
    acceptance_by_vertical: dict[str, Rate]
    acceptance_by_model_version: dict[str, Rate]
    correction_rate: Rate
    deletion_rate: Rate
    rejection_rate: Rate
    kappa: KappaResult
    counts: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)


def _acceptance(rows: Sequence[FeedbackRow]) -> Rate:
    return rate(sum(1 for r in rows if r.action == "accept"), len(rows))


def compute_dashboard(
    feedback: Sequence[FeedbackRow],
    item_statuses: Sequence[str],
    ratings: Sequence[RatingRow],
    served: int = 0,
) -> DashboardStats:
    by_vertical: dict[str, list[FeedbackRow]] = defaultdict(list)
    by_version: dict[str, list[FeedbackRow]] = defaultdict(list)
    for r in feedback:
        by_vertical[r.vertical or "(none)"].append(r)
        by_version[r.model_version].append(r)
    actions = Counter(r.action for r in feedback)
    statuses = Counter(item_statuses)
    decided = statuses["approved"] + statuses["rejected"]
    counts = {
        "served": served,
        "feedback": len(feedback),
        **{f"feedback_{a}": actions[a] for a in ("accept", "correct", "delete")},
        "items": len(item_statuses),
        **{f"items_{s}": statuses[s] for s in ("pending", "approved", "rejected", "auto_vetted", "not_sampled")},
        "ratings": len(ratings),
    }
    return DashboardStats(
        acceptance=_acceptance(feedback),
        acceptance_by_vertical={k: _acceptance(v) for k, v in sorted(by_vertical.items())},
        acceptance_by_model_version={k: _acceptance(v) for k, v in sorted(by_version.items())},
        correction_rate=rate(actions["correct"], len(feedback)),
        deletion_rate=rate(actions["delete"], len(feedback)),
        rejection_rate=rate(statuses["rejected"], decided),
        kappa=mean_pairwise_kappa(ratings),
        counts=counts,
        verdicts=dict(Counter(r.verdict for r in ratings)),
    )
