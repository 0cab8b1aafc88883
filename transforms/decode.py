"""Decode + validate raw product events; everything unusable becomes a dead letter."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp
from pydantic import ValidationError

from transforms.dead_letters import dead_letter
from transforms.records import EventType, ProductEvent, WorkItem, content_hash
from transforms.sanitise import html_to_text

STAGE = "decode"
DELETED = "deleted"


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def _event_time(timestamp: Any) -> float | None:
    """A real event time (a Kafka record's), not a bounded read's MIN or a window end."""
    if not isinstance(timestamp, Timestamp) or not MIN_TIMESTAMP < timestamp < GlobalWindow().max_timestamp():
        return None
    return timestamp.micros / 1e6


class DecodeEvents(beam.DoFn):
    """bytes (a JSONL line or a Kafka value) or a dict (a Parquet row) -> WorkItem.

    Outputs: main = WorkItem for create/update/repredict; `deleted` = ProductEvent of a
    delete (no model call); `dead_letter` = DeadLetter at stage `decode`.
    """

    def __init__(self) -> None:
        self.events = Metrics.counter("productlens", "events")
        self.decoded = Metrics.counter("productlens", "decoded")
        self.deletes = Metrics.counter("productlens", "deletes")

    def process(
        self, element: bytes | str | dict[str, Any] | None, timestamp: Timestamp = beam.DoFn.TimestampParam
    ) -> Iterator[Any]:
        self.events.inc()
        if element is None:
            yield dead_letter(STAGE, "EmptyRecord", "the record has no value (a null Kafka value is not an event)", b"")
            return
        try:
            if isinstance(element, dict):
                data: Any = element
            else:
                raw = element.encode() if isinstance(element, str) else element
                text = raw.decode("utf-8")  # strict: bad bytes are the merchant's to fix
                data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"an event must be a JSON object, got a JSON {type(data).__name__}")
            event = ProductEvent.model_validate(data)
        except UnicodeDecodeError as exc:
            yield dead_letter(STAGE, "InvalidUtf8", f"event is not valid UTF-8: {exc.reason} at byte {exc.start}", element)
            return
        except json.JSONDecodeError as exc:
            yield dead_letter(STAGE, "MalformedJson", f"event is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", element)
            return
        except ValidationError as exc:
            yield dead_letter(STAGE, "InvalidEvent", _validation_message(exc), element)
            return
        except TypeError as exc:
            yield dead_letter(STAGE, "InvalidEvent", str(exc), element)
            return
        self.decoded.inc()
        if event.type is EventType.DELETE:
            self.deletes.inc()
            yield beam.pvalue.TaggedOutput(DELETED, event)
            return
        assert event.product is not None
        text, warnings = html_to_text(event.product.description_html)
        event_time = _event_time(timestamp)
        item = WorkItem(event=event, content_hash=content_hash(event.product), event_time=event_time)
        yield replace(item, description_text=text, warnings=tuple(warnings))
