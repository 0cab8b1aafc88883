"""Counting without Beam: the product core reports what it did through a `MetricsSink`.

The core's stage functions count exactly what the Beam DoFns counted before the core
existed, under the same namespaces and names (`productlens`, `model`, `correction`,
`dead_letters`), so the pipelines' summaries and their tests read the same numbers. A
DoFn passes a sink that forwards to Beam's `Metrics` (`transforms.dead_letters.BeamMetrics`);
the core's own batch flow (`ProductCore`) counts into a `CountingMetrics`, so a service or
a test sees the same counters a pipeline would have reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CountingMetrics", "DistributionSummary", "MetricsSink", "NO_METRICS", "NoMetrics"]


class MetricsSink(Protocol):
    """Where a stage counts. `inc` is a Beam counter, `update` a Beam distribution."""

    def inc(self, namespace: str, name: str, n: int = 1) -> None: ...

    def update(self, namespace: str, name: str, value: int) -> None: ...


class NoMetrics:
    """A sink that forgets: for callers that only want the outputs."""

    def inc(self, namespace: str, name: str, n: int = 1) -> None:
        pass

    def update(self, namespace: str, name: str, value: int) -> None:
        pass


NO_METRICS: MetricsSink = NoMetrics()


@dataclass
class DistributionSummary:
    """What Beam keeps of a distribution: count, sum, min and max."""

    count: int = 0
    sum: int = 0
    min: int | None = None
    max: int | None = None

    def add(self, value: int) -> None:
        self.count += 1
        self.sum += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)


@dataclass
class CountingMetrics:
    """Counters and distributions in memory, keyed by (namespace, name) like Beam's.

    Not thread-safe: one `ProductCore` call counts into one instance on one thread."""

    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    distributions: dict[tuple[str, str], DistributionSummary] = field(default_factory=dict)

    def inc(self, namespace: str, name: str, n: int = 1) -> None:
        key = (namespace, name)
        self.counters[key] = self.counters.get(key, 0) + n

    def update(self, namespace: str, name: str, value: int) -> None:
        self.distributions.setdefault((namespace, name), DistributionSummary()).add(value)

    def namespace(self, namespace: str) -> dict[str, int]:
        """The counters of one namespace by name (what `pipelines.results.counter_totals`
        gives for a Beam result)."""
        return {name: n for (ns, name), n in self.counters.items() if ns == namespace}
