"""Decode + validate raw product events; everything unusable becomes a dead letter.

Events are untrusted (DESIGN.md "Untrusted input"). `decode_event` bounds what one event
may cost before anything expensive runs on it: its size and its JSON nesting depth are
checked before parsing (the json module recurses per nesting level, so 2,000 levels in a
4 KB line raised RecursionError and failed the job), duplicate keys are refused rather
than letting the last one win silently, and the product's fields are bounded by the
pydantic models (transforms.records). Whatever goes wrong becomes a DecodeError, which the
DoFn turns into a dead letter: nothing escapes to fail the bundle.

The decoding itself is the product core's (`transforms.core.decode`, Beam-free, re-exported
here); this module keeps the Beam side: `DecodeEvents`, event times, oversized lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from transforms.config import EventLimits  # noqa: F401 - defined once in transforms/config.py
from transforms.core.decode import (  # re-exported: the decoding lives in the core
    STAGE,
    DecodeError,
    decode,
    decode_event,
    json_depth,
    parse_event_object,
    value_depth,
)
from transforms.dead_letters import BeamMetrics, dead_letter, guard_stage, tagged
from transforms.io.files import OversizedLine
from transforms.records import DeadLetter, ProductEvent, WorkItem, with_source

__all__ = [
    "DELETED",
    "STAGE",
    "DecodeError",
    "DecodeEvents",
    "EventLimits",
    "decode",
    "decode_event",
    "json_depth",
    "parse_event_object",
    "value_depth",
]

DELETED = "deleted"


def _oversized_line_message(line: OversizedLine) -> str:
    limit = f" (the limit is {line.limit:,})" if line.limit else ""
    return (
        f"line {line.line_number} of {line.path} is {line.size:,} bytes{limit}; it was skipped "
        f"unread, and the payload holds only its first {len(line.head):,} bytes"
    )


def _event_time(timestamp: Any) -> float | None:
    """A real event time (a Kafka record's), not a bounded read's MIN or a window end."""
    if not isinstance(timestamp, Timestamp) or not MIN_TIMESTAMP < timestamp < GlobalWindow().max_timestamp():
        return None
    return timestamp.micros / 1e6


def _kafka_position(element: Any) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of a Kafka record (transforms.io.kafka.KafkaRecord), else None."""
    offset = getattr(element, "offset", None)
    if isinstance(offset, int) and hasattr(element, "partition") and hasattr(element, "value"):
        return (element.topic, element.partition, offset)
    return None


class DecodeEvents(beam.DoFn):
    """bytes (a JSONL line or a Kafka value), a dict (a Parquet row) or a Kafka record (the
    stream: its outputs carry the record's position) -> WorkItem.

    Outputs: main = WorkItem for create/update/repredict; `deleted` = ProductEvent of a
    delete (no model call); `dead_letter` = DeadLetter at stage `decode`. An OversizedLine
    (a JSONL line too long to read, see transforms.io.files) is a dead letter
    `EventTooLarge` holding the line's first bytes.
    """

    def __init__(self, limits: EventLimits = EventLimits()) -> None:
        self.limits = limits
        # productlens/events, decoded, deletes and dead_letters/decode: counted by the core.
        self.metrics = BeamMetrics()

    def process(self, element: Any, timestamp: Timestamp = beam.DoFn.TimestampParam) -> Iterator[Any]:
        source = _kafka_position(element)
        if source is None:
            yield from self._decode(element, timestamp)
            return
        # A Kafka record of the stream: every output carries the record's position, which
        # the sink-side offset commit follows to the acknowledged writes.
        for out in self._decode(element.value, timestamp):
            if isinstance(out, beam.pvalue.TaggedOutput):
                with_source(out.value, source)
            elif isinstance(out, WorkItem):
                with_source(out.event, source)
            yield out

    # The core guards its own decoding; this guard covers the Beam side (an OversizedLine,
    # the event time), so nothing here can fail a bundle either.
    @guard_stage(STAGE)
    def _decode(
        self,
        element: bytes | str | dict[str, Any] | OversizedLine | None,
        timestamp: Timestamp,
    ) -> Iterator[Any]:
        if isinstance(element, OversizedLine):
            self.metrics.inc("productlens", "events")
            yield dead_letter(STAGE, "EventTooLarge", _oversized_line_message(element), element.head)
            return
        out = decode(element, self.limits, _event_time(timestamp), self.metrics)
        if isinstance(out, DeadLetter):
            yield tagged(out)
        elif isinstance(out, ProductEvent):
            yield beam.pvalue.TaggedOutput(DELETED, out)
        else:
            yield out
