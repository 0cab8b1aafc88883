"""Dead letters as values: what every stage gives for a product it cannot carry on.

Beam-free. `transforms.dead_letters` wraps these for Beam (a tagged output, a Beam
counter); the core and any other entry point use them directly, so a product fails the
same way, with the same stage, error type and payload, whichever path ran it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.records import DeadLetter, ProductEvent, WorkItem, source_of, with_source

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_PAYLOAD_CHARS",
    "count_dead_letter",
    "guarded",
    "make_dead_letter",
    "member_letters",
    "new_dead_letter",
    "replayable",
    "truncate",
    "unexpected_dead_letter",
]

# A dead letter's message is for a person: long enough for a list of failed images, short
# enough that a hostile payload cannot multiply itself through error messages.
MAX_MESSAGE_CHARS = 2000
# The payload is kept whole up to the largest event decode accepts (so it can be
# replayed); only a refused oversized record is cut, and then marked as cut.
MAX_PAYLOAD_CHARS = 4 * 1024 * 1024

log = logging.getLogger(__name__)

R = TypeVar("R")


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marked with how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def _payload_text(payload: Any) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="backslashreplace")
    if isinstance(payload, WorkItem):
        return payload.event.model_dump_json()
    if isinstance(payload, ProductEvent):
        return payload.model_dump_json()
    if isinstance(payload, str):
        return payload
    try:
        return json.dumps(payload, default=str)
    except (ValueError, TypeError, RecursionError):  # e.g. a row nested past the recursion limit
        return f"<unserialisable {type(payload).__name__} payload>"


def make_dead_letter(
    stage: str,
    error_type: str,
    message: str,
    payload: Any,
    *,
    attempt: int = 1,
    now: datetime | None = None,
) -> DeadLetter:
    """The DeadLetter for `payload` (raw bytes, a row, a WorkItem or a ProductEvent) failing
    at `stage`; a WorkItem's or event's ids are kept so the letter can be found and replayed.
    Counts nothing: see `new_dead_letter`."""
    event = payload.event if isinstance(payload, WorkItem) else payload
    letter = DeadLetter(
        stage=stage,
        error_type=error_type,
        message=truncate(message, MAX_MESSAGE_CHARS),
        original_payload=truncate(_payload_text(payload), MAX_PAYLOAD_CHARS),
        attempt=attempt,
        time=now or datetime.now(UTC),
        product_id=getattr(event, "product_id", None),
        event_id=getattr(event, "event_id", None),
    )
    # On a stream, the letter carries its record's Kafka position (for the offset commit).
    return with_source(letter, source_of(event)) if isinstance(event, ProductEvent) else letter


def count_dead_letter(letter: DeadLetter, metrics: MetricsSink) -> DeadLetter:
    """Dead letters are counted per stage in the `dead_letters` namespace (once per failure,
    not once per product that shared the failed model path)."""
    metrics.inc("dead_letters", letter.stage)
    return letter


def new_dead_letter(
    stage: str, error_type: str, message: str, payload: Any, metrics: MetricsSink = NO_METRICS, *, attempt: int = 1
) -> DeadLetter:
    """`make_dead_letter`, counted."""
    return count_dead_letter(make_dead_letter(stage, error_type, message, payload, attempt=attempt), metrics)


def member_letters(letter: DeadLetter, item: object) -> list[DeadLetter]:
    """The same failure for every product that shared this item's model path (content
    dedupe's `members`): each of them ends as a dead letter of its own, nothing silently
    lost. Not counted again: the failure happened once."""
    return [
        with_source(
            letter.model_copy(
                update={
                    "original_payload": event.model_dump_json(),
                    "product_id": event.product_id,
                    "event_id": event.event_id,
                }
            ),
            source_of(event),  # the member's own Kafka position, not the representative's
        )
        for event in getattr(item, "members", ())
    ]


def replayable(element: Any) -> Any:
    """What a dead letter should carry for an element: its event when it has one."""
    if isinstance(element, (bytes, str, dict, WorkItem, ProductEvent)) or element is None:
        return element if element is not None else b""
    value = getattr(element, "value", None)  # a Kafka record
    if isinstance(value, bytes):
        return value
    return str(element)


def unexpected_dead_letter(stage: str, exc: Exception, element: Any, metrics: MetricsSink = NO_METRICS) -> DeadLetter:
    """The last resort behind a stage's own handling: an exception nobody foresaw becomes a
    dead letter at `stage` naming the exception type, so one bad product never fails a job
    (a failed bundle is retried forever on a stream, and a poison Kafka record would stop
    its partition)."""
    metrics.inc("dead_letters", "unexpected_errors")
    log.warning("unexpected %s at stage %s", type(exc).__name__, stage, exc_info=exc)
    return new_dead_letter(
        stage, type(exc).__name__, f"unexpected error at {stage}: {exc!r}", replayable(element), metrics
    )


def guarded(
    stage: str, metrics: MetricsSink, step: Callable[..., R], element: Any, *args: Any, **kwargs: Any
) -> R | DeadLetter:
    """`step(element, *args, **kwargs)`, or the dead letter of `unexpected_dead_letter` when
    it raises: the core's form of `transforms.dead_letters.guard_stage`."""
    try:
        return step(element, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the last resort behind the stage's specific handling
        return unexpected_dead_letter(stage, exc, element, metrics)
