"""Dead letters: a real, replayable output of every stage, never a log line.

The DeadLetter values are built by the product core (`transforms.core.dead_letters`,
Beam-free); this module is their Beam side: the tagged output, Beam counters
(`BeamMetrics`, the core's counting forwarded to Beam's `Metrics`) and `guard_stage`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.core.dead_letters import (  # re-exported: DeadLetter values are the core's
    MAX_MESSAGE_CHARS,
    MAX_PAYLOAD_CHARS,
    make_dead_letter,
    member_letters,
    new_dead_letter,
    truncate,
    unexpected_dead_letter,
)
from transforms.records import DeadLetter

__all__ = [
    "DEAD_LETTER",
    "MAX_MESSAGE_CHARS",
    "MAX_PAYLOAD_CHARS",
    "BeamMetrics",
    "dead_letter",
    "guard_stage",
    "make_dead_letter",
    "member_dead_letters",
    "tagged",
    "truncate",
]

DEAD_LETTER = "dead_letter"


class BeamMetrics:
    """The core's `MetricsSink` on Beam's `Metrics`: a DoFn hands this to the core's stage
    functions, so the core counts under the same names whichever path runs it. Counter and
    distribution handles are made once per name (not per element) and are picklable, so a
    DoFn can hold one from its constructor."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], Any] = {}
        self._distributions: dict[tuple[str, str], Any] = {}

    def inc(self, namespace: str, name: str, n: int = 1) -> None:
        counter = self._counters.get((namespace, name))
        if counter is None:
            counter = self._counters[(namespace, name)] = Metrics.counter(namespace, name)
        counter.inc(n)

    def update(self, namespace: str, name: str, value: int) -> None:
        dist = self._distributions.get((namespace, name))
        if dist is None:
            dist = self._distributions[(namespace, name)] = Metrics.distribution(namespace, name)
        dist.update(value)


# Stateless: dead_letter() and guard_stage count through one module-level sink.
_METRICS = BeamMetrics()


def tagged(letter: DeadLetter) -> beam.pvalue.TaggedOutput:
    """A DeadLetter (already counted by whoever made it) on the dead-letter output."""
    return beam.pvalue.TaggedOutput(DEAD_LETTER, letter)


def dead_letter(
    stage: str,
    error_type: str,
    message: str,
    payload: Any,
    *,
    attempt: int = 1,
) -> beam.pvalue.TaggedOutput:
    """A tagged dead-letter output, counted per stage in the `dead_letters` namespace."""
    return tagged(new_dead_letter(stage, error_type, message, payload, _METRICS, attempt=attempt))


def member_dead_letters(letter: beam.pvalue.TaggedOutput, item: object) -> list[beam.pvalue.TaggedOutput]:
    """The same failure for every product that shared this item's model path (content
    dedupe): each of them ends as a dead letter of its own, nothing silently lost."""
    return [tagged(m) for m in member_letters(letter.value, item)]


def guard_stage(stage: str) -> Callable[[Callable[..., Any]], Callable[..., Iterator[Any]]]:
    """Decorate a DoFn's `process`: any exception its specific handling did not foresee
    becomes a dead letter at `stage` naming the exception type, so one bad product never
    fails a job (a failed bundle is retried forever on a stream, and a poison Kafka
    record would stop its partition).

    Outputs are buffered per element and emitted only when the element succeeded: a
    failing element gives a dead letter and nothing else, never a partial result. Beam's
    own `with_exception_handling()` does the same but puts (element, exc_info) on an extra
    output; here the DeadLetter joins the stage's existing dead-letter output, so the
    graph needs no extra Flatten (on Prism a Flatten splits the fused stage whose offset
    commits must follow the writes). `functools.wraps` keeps the signature, so Beam still
    injects DoFn params (TimestampParam, WindowParam) the method declares.
    """

    def decorate(process: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
        @functools.wraps(process)
        def guarded(self: Any, element: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                result = process(self, element, *args, **kwargs)
                outputs = list(result) if result is not None else []
            except Exception as exc:  # noqa: BLE001 - the last resort behind specific handling
                letter = tagged(unexpected_dead_letter(stage, exc, element, _METRICS))
                yield letter
                yield from member_dead_letters(letter, element)
                return
            yield from outputs

        return guarded

    return decorate
