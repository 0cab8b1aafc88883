"""Retries: only transient errors, capped exponential backoff with jitter, a total budget.

Small and injected (clock, sleep, random) so the tests check the schedule exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "T",
    "TRANSIENT_STATUSES",
    "RetryPolicy",
    "RetriesExhausted",
    "call_with_retries",
]

T = TypeVar("T")

# gRPC status names Triton's client reports for conditions that go away on their own:
# a restarting server, a full queue, a slow answer.
TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    # Stop retrying once this much time has passed since the first attempt, so a dead
    # server turns into dead letters instead of a stuck job.
    budget_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.multiplier < 1 or self.budget_s <= 0:
            raise ValueError("multiplier must be >= 1 and budget_s > 0")

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Sleep before attempt `attempt + 1` (attempt counts from 1): full jitter over a
        capped exponential, so clients restarting together do not retry in lockstep."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return cap * (0.5 + 0.5 * rand())


class RetriesExhausted(Exception):
    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.attempts = attempts
        self.last = last


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    *,
    on_retry: Callable[[int, BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """Call `fn`; retry transient failures; re-raise permanent ones at once."""
    start = clock()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified just below
            if not is_transient(exc):
                raise
            if attempt >= policy.max_attempts:
                raise RetriesExhausted(attempt, exc) from exc
            delay = policy.backoff(attempt, rand)
            if clock() - start + delay > policy.budget_s:
                raise RetriesExhausted(attempt, exc) from exc
            if on_retry:
                on_retry(attempt, exc)
            sleep(delay)
            attempt += 1
