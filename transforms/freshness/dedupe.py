"""Content dedupe: products in flight that share a content hash get one model call.

``DedupeByContent(inner)`` wraps the model path (``inner``: PCollection[WorkItem] ->
PCollection[WorkItem] with the model's results filled in, or a dict whose ``items`` is
that). Items are keyed by ``content_hash`` and grouped; one representative per group goes
through ``inner`` carrying the others' events (``DedupedItem``, a WorkItem subclass that
``dataclasses.replace`` in every stage preserves); after ``inner`` every member gets a
plain WorkItem with the representative's results and its own event, so the encoder gives
each product its own prediction record and ``prediction_id`` (hash of its own product id
with the shared content hash and versions). Metric: ``dedupe/calls_saved`` = products that
rode on another product's model path (each saves a classify and an extract call).

Grouping: in batch (bounded input) a GroupByKey on the content hash; in streaming a
stateful buffer per content hash that waits ``max_wait_s`` of event time after the first
item (an event-time timer), so "in flight" means "within max_wait_s of each other".

Caveats:

- Delivery: the grouping is a shuffle (GroupByKey / stateful step) between the Kafka
  source and the sink, and buffered items are held in state. The stream commits offsets
  from the sink side (``transforms/io/kafka_commit.py``): an item's offset is committed
  only once its own prediction (or dead letter) was written, so a crash re-reads what the
  buffer held. Every member's event keeps its Kafka position through ``fan_out`` and
  ``member_letters``.
- Dead letters: a failure inside ``inner`` that ends the representative (any stage's
  unexpected error through ``guard_stage``, a failed model call or answer in the model
  steps) is dead-lettered for every member of its group too, each with its own event as
  the replay payload (``transforms.dead_letters.member_dead_letters``). A stage that
  ends a product with a dead letter of its own must do the same, or the members are
  lost. ``prepare_images``' dead letters name the representative only: they are partial
  (the product, and so every member, continues without the image).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Literal

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
)
from apache_beam.transforms.window import GlobalWindows
from apache_beam.typehints import Tuple
from apache_beam.utils.timestamp import Timestamp

from transforms.config import DedupeConfig  # noqa: F401 - defined once in transforms/config.py
from transforms.records import ProductEvent, WorkItem

__all__ = [
    "NAMESPACE",
    "DedupedItem",
    "representative",
    "fan_out",
    "DedupeByContent",
]

NAMESPACE = "dedupe"
_WORK_FIELDS = tuple(f.name for f in fields(WorkItem))


@dataclass(frozen=True)
class DedupedItem(WorkItem):
    """A representative that carries the events of the products sharing its content."""

    members: tuple[ProductEvent, ...] = ()


def _order(item: WorkItem) -> tuple[str, str]:
    return (item.event.product_id, item.event.event_id)


def representative(items: Iterable[WorkItem]) -> WorkItem:
    """One item per content hash, carrying the others' events; deterministic (lowest
    product id, then event id), so a replay picks the same one."""
    ordered = sorted(items, key=_order)
    head = ordered[0]
    if len(ordered) == 1:
        return head
    return DedupedItem(**{f: getattr(head, f) for f in _WORK_FIELDS}, members=tuple(i.event for i in ordered[1:]))


def fan_out(result: WorkItem) -> Iterator[WorkItem]:
    """After the model path: every member gets the representative's results, its own event."""
    base = {f: getattr(result, f) for f in _WORK_FIELDS}
    yield WorkItem(**base)
    for event in getattr(result, "members", ()):
        yield WorkItem(**{**base, "event": event})


class _Count(beam.DoFn):
    def __init__(self) -> None:
        self.groups = Metrics.counter(NAMESPACE, "groups")
        self.saved = Metrics.counter(NAMESPACE, "calls_saved")

    def _count(self, item: WorkItem) -> WorkItem:
        self.groups.inc()
        self.saved.inc(len(getattr(item, "members", ())))
        return item


class _GroupedRepresentative(_Count):
    def process(self, element: tuple[str, Iterable[WorkItem]]) -> Iterator[WorkItem]:
        yield self._count(representative(element[1]))


class _BufferByContent(_Count):
    """Streaming: buffer items of one content hash until max_wait_s after the first."""

    BUFFER = BagStateSpec("buffer", coders.PickleCoder())
    ARMED = ReadModifyWriteStateSpec("armed", coders.BooleanCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, config: DedupeConfig) -> None:
        super().__init__()
        self.config = config

    def process(
        self,
        element: tuple[str, WorkItem],
        timestamp: Timestamp = beam.DoFn.TimestampParam,
        buffer: Any = beam.DoFn.StateParam(BUFFER),
        armed: Any = beam.DoFn.StateParam(ARMED),
        timer: Any = beam.DoFn.TimerParam(FLUSH),
    ) -> None:
        buffer.add(element[1])
        if not armed.read():
            armed.write(True)
            timer.set(Timestamp(micros=timestamp.micros + int(round(self.config.max_wait_s * 1_000_000))))

    @userstate.on_timer(FLUSH)
    def flush(
        self,
        buffer: Any = beam.DoFn.StateParam(BUFFER),
        armed: Any = beam.DoFn.StateParam(ARMED),
    ) -> Iterator[WorkItem]:
        items = list(buffer.read())
        buffer.clear()
        armed.clear()
        if items:
            yield self._count(representative(items))


class _FanOut(beam.DoFn):
    def __init__(self) -> None:
        self.items = Metrics.counter(NAMESPACE, "items_out")

    def process(self, result: WorkItem) -> Iterator[WorkItem]:
        for item in fan_out(result):
            self.items.inc()
            yield item


class DedupeByContent(beam.PTransform):
    """PCollection[WorkItem] -> inner's output with ``items`` fanned back out per product.

    Returns a PCollection when ``inner`` returns one, else ``inner``'s dict with ``items``
    replaced (other outputs, e.g. dead letters, pass through unchanged)."""

    def __init__(
        self,
        inner: beam.PTransform,
        config: DedupeConfig | None = None,
        mode: Literal["auto", "stream", "batch"] = "auto",
    ) -> None:
        super().__init__()
        if mode not in ("auto", "stream", "batch"):
            raise ValueError(f"DedupeByContent mode must be auto, stream or batch, got {mode!r}")
        self.inner = inner
        self.config = config or DedupeConfig()
        self.mode = mode

    def expand(self, items: beam.PCollection) -> Any:  # type: ignore[override]
        mode = self.mode if self.mode != "auto" else ("batch" if items.is_bounded else "stream")
        keyed = items | "KeyByContent" >> beam.Map(lambda i: (i.content_hash, i)).with_output_types(Tuple[str, Any])
        if mode == "batch":
            reps = (
                keyed | "GroupByContent" >> beam.GroupByKey() | "Representative" >> beam.ParDo(_GroupedRepresentative())
            )
        else:
            reps = (
                keyed
                | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
                | "BufferByContent" >> beam.ParDo(_BufferByContent(self.config))
                # A fusion break: the flush timer's bundle then ends at the buffer instead of
                # running the model path, and Prism does not split it (a split bundle with
                # timers loses them: apache/beam#35771; the items stayed buffered).
                | "AfterBuffer" >> beam.Reshuffle()
            )
        out = reps | "Inner" >> self.inner
        if isinstance(out, dict):
            result = dict(out)
            result["items"] = out["items"] | "FanOut" >> beam.ParDo(_FanOut())
            return result
        return out | "FanOut" >> beam.ParDo(_FanOut())
