"""`productlens dataset score-annotations`: annotators' verdicts on the annotation sample
-> label precision with Wilson 95% intervals, overall and per vertical.

Wilson rather than the normal approximation because annotation samples are small and
precision sits near 1, where the normal interval leaves [0, 1] and is far too narrow.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from training.dataset.sources import Problem

__all__ = ["Z_95", "wilson_interval", "Verdict", "read_verdicts", "score_annotations"]

# The 97.5th percentile of the standard normal, written out so scipy is not needed.
Z_95 = 1.959963984540054

_CORRECT = {"correct", "yes", "y", "true", "1", "ok", "right"}
_INCORRECT = {"incorrect", "no", "n", "false", "0", "wrong"}


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float | None, float | None, float | None]:
    """(proportion, low, high) of the Wilson score interval; Nones when n == 0."""
    if n <= 0:
        return None, None, None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, n], got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; floating point would give 1e-17 off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return p, low, high


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, extra="ignore")
    id: str = Field(min_length=1, max_length=512)
    verdict: bool
    vertical: str = ""

    @field_validator("verdict", mode="before")
    @classmethod
    def _verdict(cls, v: Any) -> bool:
        text = str(v).strip().casefold()
        if text in _CORRECT:
            return True
        if text in _INCORRECT:
            return False
        raise ValueError(f"verdict must be correct or incorrect, got {str(v)[:40]!r}")


def read_verdicts(path: str | Path) -> tuple[list[Verdict], list[Problem], int]:
    """Verdicts from CSV (columns id, verdict[, vertical]) or JSONL. Rows with an empty
    verdict are not yet annotated: counted apart, not as errors."""
    path = Path(path)
    rows: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            rows = list(enumerate(csv.DictReader(fh), 2))
    else:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append((n, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        problems.append(Problem("malformed_verdict", path.name, n, f"not JSON: {exc.msg}"))
    verdicts: list[Verdict] = []
    pending = 0
    for n, row in rows:
        if isinstance(row, dict) and not str(row.get("verdict") or "").strip():
            pending += 1
            continue
        try:
            verdicts.append(Verdict.model_validate(row))
        except ValidationError as exc:
            problems.append(Problem("malformed_verdict", path.name, n, str(exc.errors()[0].get("msg"))[:200]))
    return verdicts, problems, pending


def _summary(correct: int, n: int) -> dict[str, Any]:
    p, low, high = wilson_interval(correct, n)
    r = lambda x: None if x is None else round(x, 4)  # noqa: E731
    return {"annotated": n, "correct": correct, "precision": r(p), "ci95_low": r(low), "ci95_high": r(high)}


def score_annotations(verdicts_path: str | Path, sample_path: str | Path | None = None) -> dict[str, Any]:
    """Precision overall and per vertical. The vertical comes from the verdict row, else from
    the annotation sample (joined by id)."""
    verdicts, problems, pending = read_verdicts(verdicts_path)
    vertical_of: dict[str, str] = {}
    if sample_path is not None:
        with Path(sample_path).open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                vertical_of[row.get("id", "")] = row.get("vertical", "")
    seen: set[str] = set()
    duplicates = 0
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    total = [0, 0]
    for v in verdicts:
        if v.id in seen:  # two verdicts for one product would weigh it twice
            duplicates += 1
            continue
        seen.add(v.id)
        vertical = v.vertical or vertical_of.get(v.id) or "unknown"
        counts[vertical][0] += v.verdict
        counts[vertical][1] += 1
        total[0] += v.verdict
        total[1] += 1
    return {
        "overall": _summary(*total),
        "by_vertical": {k: _summary(*counts[k]) for k in sorted(counts)},
        "not_annotated": pending,
        "duplicate_verdicts": duplicates,
        "malformed_verdicts": len(problems),
        "problem_examples": [{"line": p.line, "reason": p.reason} for p in problems[:10]],
    }
