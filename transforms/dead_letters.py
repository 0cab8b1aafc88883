"""Dead letters: a real, replayable output of every stage, never a log line."""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.records import DeadLetter, ProductEvent, WorkItem

DEAD_LETTER = "dead_letter"

# A dead letter's message is for a person: long enough for a list of failed images, short
# enough that a hostile payload cannot multiply itself through error messages.
MAX_MESSAGE_CHARS = 2000
# The payload is kept whole up to the largest event decode accepts (so it can be
# replayed); only a refused oversized record is cut, and then marked as cut.
MAX_PAYLOAD_CHARS = 4 * 1024 * 1024

log = logging.getLogger(__name__)


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


def dead_letter(
    stage: str,
    error_type: str,
    message: str,
    payload: Any,
    *,
    attempt: int = 1,
) -> beam.pvalue.TaggedOutput:
    """A tagged dead-letter output, counted per stage in the `dead_letters` namespace."""
    Metrics.counter("dead_letters", stage).inc()
    event = payload.event if isinstance(payload, WorkItem) else payload
    letter = DeadLetter(
        stage=stage,
        error_type=error_type,
        message=truncate(message, MAX_MESSAGE_CHARS),
        original_payload=truncate(_payload_text(payload), MAX_PAYLOAD_CHARS),
        attempt=attempt,
        time=datetime.now(timezone.utc),
        product_id=getattr(event, "product_id", None),
        event_id=getattr(event, "event_id", None),
    )
    return beam.pvalue.TaggedOutput(DEAD_LETTER, letter)


def member_dead_letters(letter: beam.pvalue.TaggedOutput, item: object) -> list[beam.pvalue.TaggedOutput]:
    """The same failure for every product that shared this item's model path (content
    dedupe): each of them ends as a dead letter of its own, nothing silently lost."""
    out = []
    for event in getattr(item, "members", ()):
        d = letter.value
        out.append(beam.pvalue.TaggedOutput(DEAD_LETTER, d.model_copy(update={
            "original_payload": event.model_dump_json(), "product_id": event.product_id, "event_id": event.event_id,
        })))
    return out


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
                Metrics.counter("dead_letters", "unexpected_errors").inc()
                log.warning("unexpected %s at stage %s", type(exc).__name__, stage, exc_info=True)
                letter = dead_letter(stage, type(exc).__name__, f"unexpected error at {stage}: {exc!r}", _replayable(element))
                yield letter
                yield from member_dead_letters(letter, element)
                return
            yield from outputs

        return guarded

    return decorate


def _replayable(element: Any) -> Any:
    """What a dead letter should carry for an element: its event when it has one."""
    if isinstance(element, (bytes, str, dict, WorkItem, ProductEvent)) or element is None:
        return element if element is not None else b""
    value = getattr(element, "value", None)  # a Kafka record
    if isinstance(value, bytes):
        return value
    return str(element)
