"""Merchant feedback to Kafka (`--feedback-kafka`, topic `product-feedback`), so batch jobs
(training sets, re-prediction) can use it without reading the review store.

The review store is the source of truth: feedback is committed there before it is
published, so a Kafka outage delays the topic, it never loses feedback or fails the
request. Records are keyed by prediction id (a replay lands in the same partition, and a
compacted topic keeps one record per key and action, as the store does) and carry the
store's routing outcome.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

__all__ = ["FeedbackPublisher"]

log = logging.getLogger("productlens.serve.feedback")


class FeedbackPublisher:
    def __init__(self, bootstrap_servers: str, topic: str, *, extra: dict[str, Any] | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        # Idempotent producer, all in-sync replicas: a broker failover neither loses nor
        # duplicates a record.
        config = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "client.id": "productlens-serve",
            **(extra or {}),
        }
        self._producer = Producer(config)
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def publish(self, key: str, record: dict[str, Any]) -> None:
        """Queue one record (never blocks the request; delivery is reported by callback)."""

        def delivered(err: Any, msg: Any) -> None:
            with self._lock:
                if err is None:
                    self.delivered += 1
                else:
                    self.failed += 1
            if err is not None:
                log.warning("feedback for %s not delivered to %s: %s", key, self.topic, err)

        try:
            self._producer.produce(
                self.topic, key=key.encode(), value=json.dumps(record).encode(), on_delivery=delivered
            )
        except BufferError:
            # The local queue is full (Kafka down for long): the store still has it.
            with self._lock:
                self.failed += 1
            log.warning("feedback for %s not queued for %s: the producer's queue is full", key, self.topic)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 10.0) -> int:
        """Wait for queued records; the number still undelivered."""
        return self._producer.flush(timeout_s)

    def close(self) -> None:
        left = self.flush()
        if left:
            log.warning("%d feedback records were not delivered to %s before shutdown", left, self.topic)
