"""Prometheus metrics of the service (`GET /metrics`).

One registry per application instance, not the process-global default, so several apps in
one process (the tests) do not collide. Names are documented in docs/OPERATIONS.md and
used by the Grafana dashboard in deploy/monitoring/.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServiceMetrics"]

# Latency buckets from a cache hit (sub-millisecond) to a deadline (seconds).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "productlens_request_seconds",
            "HTTP request latency by route and status code",
            ("route", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "productlens_cache", "prediction cache look-ups by result (hit, miss, error)", ("result",), registry=r
        )
        self.coalesced = Counter(
            "productlens_coalesced", "products that waited for an identical content's model call in flight", registry=r
        )
        self.model_calls = Counter("productlens_model_calls", "model batches run (each classify + extract)", registry=r)
        self.model_batch_size = Histogram(
            "productlens_model_batch_size", "products per model batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.model_batch_seconds = Histogram(
            "productlens_model_batch_seconds", "seconds one model batch took", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("productlens_queue_depth", "products waiting for a model batch", registry=r)
        self.errors = Counter("productlens_errors", "failed requests and products by kind", ("kind",), registry=r)
        self.predictions = Counter(
            "productlens_predictions", "predictions served, by source (model, cache)", ("source",), registry=r
        )
        self.feedback = Counter(
            "productlens_feedback",
            "merchant feedback stored, by action and routing status",
            ("action", "status"),
            registry=r,
        )
        self.ready = Gauge("productlens_ready", "1 when the model and the taxonomy are loaded", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
