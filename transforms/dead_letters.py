"""Dead letters: a real, replayable output of every stage, never a log line."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.records import DeadLetter, ProductEvent, WorkItem

DEAD_LETTER = "dead_letter"


def _payload_text(payload: Any) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="backslashreplace")
    if isinstance(payload, WorkItem):
        return payload.event.model_dump_json()
    if isinstance(payload, ProductEvent):
        return payload.model_dump_json()
    if isinstance(payload, str):
        return payload
    return json.dumps(payload, default=str)


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
        message=message,
        original_payload=_payload_text(payload),
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
