"""Reading a finished pipeline's Beam metrics (shared by the pipelines' summaries)."""

from __future__ import annotations

from typing import Any

from apache_beam.metrics.metric import MetricsFilter

__all__ = [
    "counter_totals",
]


def counter_totals(result: Any, namespace: str, name: str | None = None) -> dict[str, int]:
    """Committed counter values of one namespace, summed over steps, by counter name."""
    f = MetricsFilter().with_namespace(namespace)
    if name:
        f = f.with_name(name)
    totals: dict[str, int] = {}
    for c in result.metrics().query(f)["counters"]:
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + c.committed
    return totals
