"""The refresh trigger: predict a product only when the prediction can change.

DESIGN.md "Refresh trigger and caching": predict when the product is new, its content
hash changed, the model or taxonomy version changed, or the event forces it (``force`` or
type ``repredict``); otherwise skip and count. A burst of edits to one product within the
quiet period gives one prediction (of the latest event). A delete gives a tombstone and
clears the product's state.

Layers, so each part is testable without Beam:

- ``decide(last, element, config) -> Decision``: one event against the last prediction
  made for the product. Pure; deletes aside, it is ``staleness``
  (``transforms/freshness/staleness.py``), the decision the prediction store's
  ``SkipCurrent`` and ``pipelines/repredict.py`` make too.
- ``on_event`` / ``on_timer`` / ``on_known``: the per-product state machine (last
  prediction + at most one pending event, debounce deadline). Pure; the stateful DoFn,
  the batch replay and ``benchmarks/refresh.py`` all run this same code.
- ``RefreshDoFn``: the streaming form, a stateful DoFn keyed by product id with an
  event-time timer (state: the last predicted content hash, model and taxonomy version,
  plus the single pending event).
- ``RefreshTrigger(config)``: the composite used by pipelines.

Input of ``RefreshTrigger``: ``PCollection[WorkItem | ProductEvent]`` = decode's main
output (WorkItem, which already carries ``content_hash``) flattened with decode's
``deleted`` output (ProductEvent of type delete). WorkItem was chosen over ProductEvent so
the hash is computed once, in decode; deletes must enter the same keyed step because they
clear the product's state. Optionally ``{"events": that, "known": PCollection[(product_id,
KnownPrediction | (content_hash, model_version, taxonomy_version))]}`` seeds the state
with the last predictions already made (a predictions snapshot or the compacted
predictions topic), so a batch job skips products whose prediction is current.

Outputs (a dict): ``items`` = WorkItems that need a prediction; ``deleted`` = the delete
events (write tombstones); ``skipped`` = ``Skip`` records (``staleness.Skip``, the record
``SkipCurrent`` emits too: an event that needs no prediction of its own,
``skipped_unchanged``, or ``debounced`` when a later event of the same burst, a revert to
the predicted content, or a delete superseded it). Every input
event ends in exactly one of: a decision counter that later becomes a prediction, a
``skipped`` record or a ``deleted`` record — nothing disappears uncounted. Invariant of
the ``refresh`` counters: new + content_changed + model_changed + taxonomy_changed +
forced + repredict = predictions emitted + debounced (+ still pending).

Two execution modes (``mode="auto"`` picks by boundedness of the input):

- ``stream``: ``RefreshDoFn``. Event time is the element timestamp (the Kafka record
  timestamp). Events of one product are taken in arrival order (Kafka keeps per-key
  order), the timer is set to ``max(deadline, timestamp + quiet_period)``. A pending
  event whose deadline is at or before a newly arrived event's timestamp is emitted
  first, in ``process``, so decisions do not depend on when the runner fires the timer
  (only the emission time does); late data (a timestamp before an already fired
  deadline) starts a new burst. Seeds (``known``) are applied when they arrive and only
  fill an empty state: an event processed before its seed counts as ``new`` (at worst a
  redundant prediction with an identical prediction_id).
- ``batch``: CoGroupByKey of events and known predictions per product, then the same
  state machine replayed over the product's events sorted by ``occurred_at`` (a bounded
  input has no meaningful element timestamps and no per-key order); seeds are always
  applied first, pending events are flushed at the end.

The state records a prediction when the trigger *emits* the item, not when the model
answers: a product whose prediction then fails is in the dead-letter topic, and its
replay must be sent with ``force=True`` (or a repredict event) to pass the trigger.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.typehints import Tuple
from apache_beam.utils.timestamp import Timestamp

from transforms.config import RefreshConfig  # noqa: F401 - defined once in transforms/config.py
from transforms.freshness.staleness import DEBOUNCED, STALE, KnownPrediction, Reason, Skip, staleness
from transforms.records import EventType, ProductEvent, WorkItem, content_hash, prediction_id, source_of

NAMESPACE = "refresh"
DELETED = "deleted"
SKIPPED = "skipped"
MICROS = 1_000_000


# A request for one of these reasons in a burst survives later events of the burst, even
# one that goes back to the predicted content (see Pending.requested).
_REQUESTED = frozenset({Reason.REPREDICT, Reason.FORCED})
# An event that reached the trigger after a later event of its product (Kafka order): a
# `debounced` Skip, counted apart so the decision counters' invariant holds.
OUT_OF_ORDER = "out_of_order"
COUNTERS: tuple[str, ...] = (*(r.value for r in Reason), DEBOUNCED, OUT_OF_ORDER)


@dataclass(frozen=True)
class Decision:
    reason: Reason

    @property
    def predict(self) -> bool:
        return self.reason in STALE


@dataclass(frozen=True)
class Pending:
    item: WorkItem
    reason: Reason
    deadline: int  # event time, microseconds since the epoch
    # A force / repredict request made earlier in the burst: it stands until predicted,
    # even when the burst ends on the content that was predicted before.
    requested: Reason | None = None


@dataclass(frozen=True)
class RefreshState:
    last: KnownPrediction | None = None
    pending: Pending | None = None
    # Stream: the Kafka position (topic, partition, offset) of the newest event taken. The
    # runner may hand a product's events over out of Kafka order; an older one arriving
    # after a newer one is superseded (`out_of_order`), so the latest content still wins.
    newest: tuple[str, int, int] | None = None


EMPTY = RefreshState()


@dataclass(frozen=True)
class Effects:
    """What one step of the state machine does, in order: ``predict`` first (a flushed
    pending event), then this event's outputs."""

    predict: tuple[WorkItem, ...] = ()
    deleted: tuple[ProductEvent, ...] = ()
    skipped: tuple[Skip, ...] = ()
    counts: tuple[str, ...] = ()
    timer_at: int | None = None  # set (or reset) the timer to this event time

    def __add__(self, other: Effects) -> Effects:
        return Effects(
            self.predict + other.predict,
            self.deleted + other.deleted,
            self.skipped + other.skipped,
            self.counts + other.counts,
            other.timer_at if other.timer_at is not None else self.timer_at,
        )


def _event_of(element: WorkItem | ProductEvent) -> ProductEvent:
    return element.event if isinstance(element, WorkItem) else element


def _hash_of(element: WorkItem | ProductEvent) -> str:
    if isinstance(element, WorkItem):
        return element.content_hash
    return content_hash(element.product) if element.product is not None else ""


def decide(last: KnownPrediction | None, element: WorkItem | ProductEvent, config: RefreshConfig) -> Decision:
    """One event against the last prediction made for its product: a delete, else
    ``staleness`` (a request is a ``repredict`` event or ``force``), else unchanged."""
    event = _event_of(element)
    if event.type is EventType.DELETE:
        return Decision(Reason.DELETED)
    reason = staleness(
        last,
        _hash_of(element),
        config.model_version,
        config.taxonomy_version,
        force=event.force,
        repredict=event.type is EventType.REPREDICT,
    )
    return Decision(reason or Reason.SKIPPED_UNCHANGED)


def _older(source: tuple[str, int, int] | None, newest: tuple[str, int, int] | None) -> bool:
    """Whether `source` is an earlier record of the same partition than `newest`."""
    return source is not None and newest is not None and source[:2] == newest[:2] and source[2] < newest[2]


def _superseded(pending: Pending) -> Skip:
    return Skip.of_event(pending.item.event, DEBOUNCED, pending.item.content_hash)


def _unchanged(element: WorkItem | ProductEvent, config: RefreshConfig) -> Skip:
    """The event's content was predicted with the current versions: that prediction stands."""
    event, chash = _event_of(element), _hash_of(element)
    pid = prediction_id(event.product_id, chash, config.model_version, config.taxonomy_version)
    return Skip.of_event(event, Reason.SKIPPED_UNCHANGED, chash, pid)


def on_timer(state: RefreshState, now: int, config: RefreshConfig) -> tuple[RefreshState, Effects]:
    """The quiet period may have ended at event time ``now``: emit the pending event."""
    p = state.pending
    if p is None or p.deadline > now:
        return state, Effects()
    last = KnownPrediction(p.item.content_hash, config.model_version, config.taxonomy_version)
    return RefreshState(last, None, state.newest), Effects(predict=(p.item,))


def on_event(
    state: RefreshState, element: WorkItem | ProductEvent, ts: int, config: RefreshConfig
) -> tuple[RefreshState, Effects]:
    """One event of the product at event time ``ts`` (microseconds)."""
    source = source_of(element)
    if _older(source, state.newest):
        # Kafka order says a later event of this product was taken already: this one is
        # superseded (a counted skip), whatever the order the runner delivered them in.
        event = _event_of(element)
        return state, Effects(skipped=(Skip.of_event(event, DEBOUNCED, _hash_of(element)),), counts=(OUT_OF_ORDER,))
    if source is not None:
        state = replace(state, newest=source)
    # A pending event whose quiet period ended before this event is due first, whether or
    # not the runner has fired its timer yet.
    state, effects = on_timer(state, ts, config)
    decision = decide(state.last, element, config)
    p = state.pending
    if decision.reason is Reason.DELETED:
        event = _event_of(element)
        skipped = (_superseded(p),) if p else ()
        counts = (Reason.DELETED.value, *((DEBOUNCED,) if p else ()))
        return RefreshState(newest=state.newest), effects + Effects(deleted=(event,), skipped=skipped, counts=counts)
    if decision.predict:
        assert isinstance(element, WorkItem), "an event needing a prediction must be a decoded WorkItem"
        deadline = ts + config.quiet_micros
        if p is not None:
            deadline = max(deadline, p.deadline)
        requested = decision.reason if decision.reason in _REQUESTED else (p.requested if p else None)
        pending = Pending(element, decision.reason, deadline, requested)
        skipped = (_superseded(p),) if p else ()
        counts = (decision.reason.value, *((DEBOUNCED,) if p else ()))
        new_state = RefreshState(state.last, pending, state.newest)
        return new_state, effects + Effects(skipped=skipped, counts=counts, timer_at=deadline)
    # Unchanged against the last prediction.
    if p is not None and p.requested is not None:
        # A request earlier in the burst stands: this event inherits it and becomes the
        # pending one, so the prediction is of the burst's final content.
        assert isinstance(element, WorkItem)
        deadline = max(ts + config.quiet_micros, p.deadline)
        pending = Pending(element, p.requested, deadline, p.requested)
        return RefreshState(state.last, pending, state.newest), effects + Effects(
            skipped=(_superseded(p),), counts=(p.requested.value, DEBOUNCED), timer_at=deadline
        )
    own = _unchanged(element, config)
    if p is not None:
        # The burst went back to the predicted content: the pending change is moot.
        return RefreshState(state.last, None, state.newest), effects + Effects(
            skipped=(_superseded(p), own), counts=(Reason.SKIPPED_UNCHANGED.value, DEBOUNCED)
        )
    return state, effects + Effects(skipped=(own,), counts=(Reason.SKIPPED_UNCHANGED.value,))


def on_known(state: RefreshState, known: KnownPrediction) -> RefreshState:
    """Seed from an existing prediction; never overrides what this trigger saw itself."""
    if state.last is not None:
        return state
    return replace(state, last=known)


def _counters() -> dict[str, Any]:
    return {name: Metrics.counter(NAMESPACE, name) for name in (*COUNTERS, "seeded")}


def _emit(effects: Effects, counters: dict[str, Any]) -> Iterator[Any]:
    for name in effects.counts:
        counters[name].inc()
    yield from effects.predict
    for event in effects.deleted:
        yield beam.pvalue.TaggedOutput(DELETED, event)
    for s in effects.skipped:
        yield beam.pvalue.TaggedOutput(SKIPPED, s)


class RefreshDoFn(beam.DoFn):
    """Streaming refresh trigger. Input: (product_id, WorkItem | ProductEvent |
    KnownPrediction) in the global window."""

    # (KnownPrediction | None, newest Kafka position | None): one state cell, one read.
    LAST = ReadModifyWriteStateSpec("last", coders.PickleCoder())
    PENDING = ReadModifyWriteStateSpec("pending", coders.PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, config: RefreshConfig) -> None:
        self.config = config
        self.counters = _counters()

    @staticmethod
    def _read(last: Any, pending: Any) -> RefreshState:
        known, newest = last.read() or (None, None)
        return RefreshState(known, pending.read(), newest)

    @staticmethod
    def _write(state: RefreshState, last: Any, pending: Any) -> None:
        # The newest position is kept after a delete too: an older create stays stale.
        if state.last is None and state.newest is None:
            last.clear()
        else:
            last.write((state.last, state.newest))
        if state.pending is None:
            pending.clear()
        else:
            pending.write(state.pending)

    def process(
        self,
        element: tuple[str, Any],
        timestamp: Timestamp = beam.DoFn.TimestampParam,
        last: Any = beam.DoFn.StateParam(LAST),
        pending: Any = beam.DoFn.StateParam(PENDING),
        timer: Any = beam.DoFn.TimerParam(FLUSH),
    ) -> Iterator[Any]:
        _, value = element
        state = self._read(last, pending)
        if isinstance(value, KnownPrediction):
            new = on_known(state, value)
            if new is not state:
                self.counters["seeded"].inc()
                self._write(new, last, pending)
            return
        state, effects = on_event(state, value, timestamp.micros, self.config)
        self._write(state, last, pending)
        if effects.timer_at is not None:
            timer.set(Timestamp(micros=effects.timer_at))
        yield from _emit(effects, self.counters)

    @userstate.on_timer(FLUSH)
    def flush(
        self,
        fired_at: Timestamp = beam.DoFn.TimestampParam,
        last: Any = beam.DoFn.StateParam(LAST),
        pending: Any = beam.DoFn.StateParam(PENDING),
    ) -> Iterator[Any]:
        state, effects = on_timer(self._read(last, pending), fired_at.micros, self.config)
        self._write(state, last, pending)
        yield from _emit(effects, self.counters)


def _occurred_micros(element: WorkItem | ProductEvent) -> int:
    return Timestamp.from_utc_datetime(_event_of(element).occurred_at).micros


class _ReplayProduct(beam.DoFn):
    """Batch form: one product's events sorted by occurred_at through the same machine."""

    def __init__(self, config: RefreshConfig) -> None:
        self.config = config
        self.counters = _counters()

    def process(self, element: tuple[str, dict[str, Iterable[Any]]]) -> Iterator[Any]:
        _, grouped = element
        state = EMPTY
        for known in grouped.get("known", ()):
            state = on_known(state, KnownPrediction.of(known))
            self.counters["seeded"].inc()
            break  # one prediction per product in a snapshot / compacted topic
        events = sorted(grouped.get("events", ()), key=lambda e: (_occurred_micros(e), _event_of(e).event_id))
        for e in events:
            ts = _occurred_micros(e)
            state, effects = on_event(state, e, ts, self.config)
            yield from _timestamped(_emit(effects, self.counters), ts)
        if state.pending is not None:
            # The end of the input ends the last burst: emit at its deadline.
            deadline = state.pending.deadline
            state, effects = on_timer(state, deadline, self.config)
            yield from _timestamped(_emit(effects, self.counters), deadline)


def _timestamped(outputs: Iterator[Any], micros: int) -> Iterator[Any]:
    ts = Timestamp(micros=micros)
    for out in outputs:
        if isinstance(out, beam.pvalue.TaggedOutput):
            yield beam.pvalue.TaggedOutput(out.tag, TimestampedValue(out.value, ts))
        else:
            yield TimestampedValue(out, ts)


def _product_id(element: WorkItem | ProductEvent) -> str:
    return _event_of(element).product_id


class RefreshTrigger(beam.PTransform):
    """PCollection[WorkItem | ProductEvent(delete)] or {"events": ..., "known": ...} ->
    {"items": WorkItem, "deleted": ProductEvent, "skipped": Skip}. See the module
    docstring for the modes and the seeding."""

    def __init__(self, config: RefreshConfig, mode: Literal["auto", "stream", "batch"] = "auto") -> None:
        super().__init__()
        if mode not in ("auto", "stream", "batch"):
            raise ValueError(f"RefreshTrigger mode must be auto, stream or batch, got {mode!r}")
        self.config = config
        self.mode = mode

    def expand(self, inputs: beam.PCollection | dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:  # type: ignore[override]
        if isinstance(inputs, dict):
            unknown = set(inputs) - {"events", "known"}
            if unknown or "events" not in inputs:
                raise ValueError(f"RefreshTrigger takes {{'events': ..., 'known': ...}}, got keys {sorted(inputs)}")
            events, known = inputs["events"], inputs.get("known")
        else:
            events, known = inputs, None
        mode = self.mode
        if mode == "auto":
            bounded = events.is_bounded and (known is None or known.is_bounded)
            mode = "batch" if bounded else "stream"
        keyed = events | "KeyByProduct" >> beam.Map(lambda e: (_product_id(e), e)).with_output_types(Tuple[str, Any])
        if mode == "batch":
            groups: dict[str, beam.PCollection] = {"events": keyed}
            if known is not None:
                groups["known"] = known
            out = (
                groups
                | "GroupByProduct" >> beam.CoGroupByKey()
                | "Replay" >> beam.ParDo(_ReplayProduct(self.config)).with_outputs(DELETED, SKIPPED, main="items")
            )
        else:
            merged = keyed
            if known is not None:
                seeds = known | "Seeds" >> beam.MapTuple(lambda pid, k: (pid, KnownPrediction.of(k))).with_output_types(
                    Tuple[str, Any]
                )
                merged = (keyed, seeds) | "WithSeeds" >> beam.Flatten()
            out = (
                merged
                | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
                | "Trigger" >> beam.ParDo(RefreshDoFn(self.config)).with_outputs(DELETED, SKIPPED, main="items")
            )
            # A fusion break: the flush timer's bundle ends here instead of running what
            # follows (the model path), so Prism does not split it (a split bundle with
            # timers loses them: apache/beam#35771).
            return {
                "items": out.items | "AfterTrigger" >> beam.Reshuffle(),
                DELETED: out[DELETED],
                SKIPPED: out[SKIPPED],
            }
        return {"items": out.items, DELETED: out[DELETED], SKIPPED: out[SKIPPED]}


__all__ = [
    "COUNTERS",
    "DEBOUNCED",
    "DELETED",
    "SKIPPED",
    "Decision",
    "Effects",
    "KnownPrediction",
    "Pending",
    "Reason",
    "RefreshConfig",
    "RefreshDoFn",
    "RefreshState",
    "RefreshTrigger",
    "Skip",
    "decide",
    "on_event",
    "on_known",
    "on_timer",
]
