"""Decode + validate one raw product event, Beam-free: the core's first stage.

Events are untrusted (DESIGN.md "Untrusted input"). `decode_event` bounds what one event
may cost before anything expensive runs on it: its size and its JSON nesting depth are
checked before parsing (the json module recurses per nesting level, so 2,000 levels in a
4 KB line raised RecursionError and failed the job), duplicate keys are refused rather
than letting the last one win silently, and the product's fields are bounded by the
pydantic models (transforms.records). Whatever goes wrong becomes a DecodeError, which
`decode` turns into a dead letter: nothing escapes to fail the caller.

`transforms.decode` re-exports these names and wraps `decode` in the `DecodeEvents` DoFn.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from model_repository.contract import json_nesting_depth
from transforms.config import EventLimits
from transforms.core.dead_letters import guarded, new_dead_letter
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.records import DeadLetter, EventType, ProductEvent, WorkItem, content_hash
from transforms.sanitise import html_to_text

__all__ = [
    "STAGE",
    "DecodeError",
    "decode",
    "decode_event",
    "json_depth",
    "parse_event_object",
    "value_depth",
]

STAGE = "decode"

_BOM = b"\xef\xbb\xbf"


class DecodeError(Exception):
    """An event that cannot become a ProductEvent. `error_type` names the reason for the
    dead letter (EventTooLarge, TooDeeplyNested, InvalidUtf8, MalformedJson, DuplicateKey,
    InvalidEvent, EmptyRecord, or an unexpected exception's type name)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Beam workers
        return (DecodeError, (self.error_type, self.message))


def json_depth(raw: bytes | str) -> int:
    """The deepest nesting of arrays and objects in a JSON text, in linear time without
    recursion (`model_repository.contract.json_nesting_depth`, the one implementation)."""
    return json_nesting_depth(raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace"))


def value_depth(value: Any, limit: int) -> int:
    """The nesting depth of a decoded value (a Parquet row), with an explicit stack rather
    than recursion; stops as soon as it passes `limit`, so a hostile row costs at most
    its size."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a JSON object that names a key twice is ambiguous (which value
    did the merchant mean?), so it is refused rather than the last value silently winning."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DecodeError("DuplicateKey", f"the JSON object has the key {key[:100]!r} more than once")
            seen.add(key)
    return obj


def _too_deep(depth: int | None, limits: EventLimits) -> DecodeError:
    levels = f"{depth:,}" if depth is not None else f"more than {limits.max_depth}"
    return DecodeError(
        "TooDeeplyNested", f"event nests arrays/objects {levels} levels deep; at most {limits.max_depth} are allowed"
    )


def _too_large(size: int, limits: EventLimits) -> DecodeError:
    return DecodeError("EventTooLarge", f"event is {size:,} bytes; at most {limits.max_event_bytes:,} are allowed")


def parse_event_object(
    element: bytes | str | dict[str, Any] | None, limits: EventLimits = EventLimits()
) -> dict[str, Any]:
    """A raw event as a JSON object, with the size, depth, UTF-8 and duplicate-key checks
    but without validating it as an event: for code that must look into raw events
    leniently (bulk request ids, prediction-store keys) without `json.loads`' recursion
    on hostile nesting. Raises DecodeError."""
    if element is None:
        raise DecodeError("EmptyRecord", "the record has no value (a null Kafka value is not an event)")
    try:
        data = _load(element, limits)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the last resort: see decode_event
        raise DecodeError(type(exc).__name__, f"unexpected error reading the event: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise DecodeError("InvalidEvent", f"an event must be a JSON object, got a JSON {type(data).__name__}")
    return data


def _load(element: bytes | str | dict[str, Any], limits: EventLimits) -> Any:
    """The checked, parsed JSON value of a raw event (not yet validated as an event)."""
    if isinstance(element, dict):
        if value_depth(element, limits.max_depth) > limits.max_depth:
            raise _too_deep(None, limits)  # the walk stopped at the limit: the depth is unknown
        return element
    if isinstance(element, str):
        # A str holds at least one byte per character: refuse a huge one before encoding.
        if len(element) > limits.max_event_bytes:
            raise _too_large(len(element), limits)
        raw = element.encode("utf-8", errors="surrogatepass")
    elif isinstance(element, (bytes, bytearray, memoryview)):
        raw = bytes(element)
    else:
        raise DecodeError("InvalidEvent", f"an event must be JSON bytes or an object, got a {type(element).__name__}")
    if len(raw) > limits.max_event_bytes:
        raise _too_large(len(raw), limits)
    raw = raw.removeprefix(_BOM)  # Windows tools write one; it is not part of the JSON
    try:
        text = raw.decode("utf-8")  # strict: bad bytes are the merchant's to fix
    except UnicodeDecodeError as exc:
        raise DecodeError("InvalidUtf8", f"event is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    depth = json_depth(text)  # before json.loads, which recurses once per level
    if depth > limits.max_depth:
        raise _too_deep(depth, limits)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            "MalformedJson", f"event is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise DecodeError("MalformedJson", f"event is not valid JSON: {str(exc)[:200]}") from None


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "; ".join(parts) + more


def decode_event(element: bytes | str | dict[str, Any] | None, limits: EventLimits = EventLimits()) -> ProductEvent:
    """A raw event (a JSONL line or Kafka value as bytes/str, a Parquet row as a dict) ->
    a validated ProductEvent. Raises DecodeError, and only DecodeError, naming why not."""
    data = parse_event_object(element, limits)
    try:
        return ProductEvent.model_validate(data)
    except ValidationError as exc:
        raise DecodeError("InvalidEvent", _validation_message(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the last resort: an event never fails the job
        # RecursionError included: the depth checks should make it impossible, but an
        # escaped exception would fail the bundle (and, on a stream, retry it forever).
        raise DecodeError(type(exc).__name__, f"unexpected error decoding the event: {str(exc)[:200]}") from None


def _decode(
    element: bytes | str | dict[str, Any] | None, limits: EventLimits, event_time: float | None, metrics: MetricsSink
) -> WorkItem | ProductEvent | DeadLetter:
    metrics.inc("productlens", "events")
    try:
        event = decode_event(element, limits)
    except DecodeError as exc:
        return new_dead_letter(STAGE, exc.error_type, exc.message, b"" if element is None else element, metrics)
    metrics.inc("productlens", "decoded")
    if event.type is EventType.DELETE:
        metrics.inc("productlens", "deletes")
        return event
    assert event.product is not None
    text, warnings = html_to_text(event.product.description_html)
    item = WorkItem(event=event, content_hash=content_hash(event.product), event_time=event_time)
    return replace(item, description_text=text, warnings=tuple(warnings))


def decode(
    element: bytes | str | dict[str, Any] | None,
    limits: EventLimits = EventLimits(),
    event_time: float | None = None,
    metrics: MetricsSink = NO_METRICS,
) -> WorkItem | ProductEvent | DeadLetter:
    """A raw event -> a WorkItem to predict (create/update/repredict), the ProductEvent of a
    delete (no model call; the caller writes a tombstone), or a DeadLetter at `decode`.

    `event_time`: the event time (s since the epoch) the item keeps through the steps, when
    the source has one (a Kafka record's). Counts `productlens/events`, `decoded`, `deletes`.
    Behind decode_event's own handling, html_to_text or content_hash failing on some input
    nobody foresaw is a dead letter too."""
    return guarded(STAGE, metrics, _decode, element, limits, event_time, metrics)
