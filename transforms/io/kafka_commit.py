"""Sink-side Kafka offset commits: an offset is committed only once every output that
depends on its record was acknowledged, across keyed state too.

The source (`ReadFromKafka` with `commit_on_finalize=False`) commits nothing itself; it
emits, per bundle and partition, a `ReadRange`: offsets [start, end) read, and which of
them hold records. Each record's position (topic, partition, offset) rides on what the
pipeline makes of it (`transforms.records.source_of`: the event of a WorkItem, a
Prediction, a DeadLetter, a tombstone's event, a freshness Skip). The writers
(`WriteToKafka(track=path)`) emit a `DoneSignal` with the positions of a bundle once all of
its records are acknowledged; a counted skip is done when it is emitted (`SignalDone`).

`CommitOffsets` keys ranges and signals by partition; per partition a stateful DoFn keeps a
ledger (`Ledger`): the frontier (everything below it is done), the records read above it,
and the done offsets per path. An offset is done when every path has it: "predict" (its
prediction, tombstone, dead letter or skip) and, with bulk results on, "bulk" (its request's
completion record, or not part of a request). The frontier moves to the lowest offset read
but not done: a watermark over an out-of-order set. At the end of each bundle the committer
commits the frontiers that moved, from a consumer of the group (no subscription, like
`commit_offsets`).

A record held in keyed state (a burst's quiet period, the dedupe buffer, an open bulk
request) is not done, so its offset and every later one of its partition stay uncommitted
until its outputs are written; after a crash they are read again and re-processed
(at-least-once; a prediction's `prediction_id` is deterministic, so duplicates are
identical). The cost: the committed offset lags by the longest hold (quiet period, dedupe
wait), and a restart re-processes that much.

Several sink workers: each writer emits its own signals; the one committer per partition
(the key) sees them all, so commits per partition are monotonic.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import GlobalWindows
from apache_beam.typehints import Tuple

from transforms.io.kafka import (
    _KAFKA_RETRY,
    DoneBuffer,
    DoneSignal,
    ReadConfig,
    ReadRange,
    _consumer,
    _retriable,
)
from transforms.model.retry import call_with_retries
from transforms.records import source_of

__all__ = [
    "PREDICT",
    "BULK",
    "Intervals",
    "Ledger",
    "SignalDone",
    "CommitOffsets",
]

log = logging.getLogger(__name__)

# Done paths: every record needs "predict"; with bulk results on, "bulk" too.
PREDICT = "predict"
BULK = "bulk"


class Intervals:
    """A set of ints as sorted, disjoint, non-adjacent [start, end) intervals."""

    def __init__(self, runs: Iterable[tuple[int, int]] = ()) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for a, b in runs:
            self.add(a, b)

    def add(self, a: int, b: int) -> None:
        if a >= b:
            return
        # Every interval that overlaps or touches [a, b) merges into it.
        i = bisect.bisect_left(self.ends, a)
        j = bisect.bisect_right(self.starts, b)
        if i < j:
            a, b = min(a, self.starts[i]), max(b, self.ends[j - 1])
        self.starts[i:j] = [a]
        self.ends[i:j] = [b]

    def first_gap(self, a: int, b: int) -> int:
        """The first x in [a, b) not in the set, or b."""
        i = bisect.bisect_right(self.starts, a) - 1
        if i >= 0 and self.ends[i] > a:
            return min(self.ends[i], b)
        return a

    def drop_below(self, x: int) -> None:
        i = bisect.bisect_right(self.ends, x)
        del self.starts[:i], self.ends[:i]
        if self.starts and self.starts[0] < x:
            self.starts[0] = x

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))

    def __len__(self) -> int:
        return len(self.starts)


@dataclass
class Ledger:
    """One partition. `frontier`: every offset below it is done (the next commit);
    `chain_end`: the ranges read so far are contiguous from the frontier up to here;
    `read`: offsets in [frontier, chain_end) that hold records; `early`: ranges that
    arrived before the one they follow; `done`: per path, done offsets at or above the
    frontier."""

    frontier: int
    chain_end: int
    read: Intervals = field(default_factory=Intervals)
    early: dict[int, ReadRange] = field(default_factory=dict)
    done: dict[str, Intervals] = field(default_factory=dict)

    def add_range(self, r: ReadRange) -> None:
        if r.end <= self.chain_end:
            return  # read again (a retried bundle) or before the frontier
        if r.start > self.chain_end:
            self.early[r.start] = r
            return
        for a, b in r.runs:
            self.read.add(max(a, self.chain_end), b)
        self.chain_end = r.end
        following = self.early.pop(self.chain_end, None)
        if following is not None:
            self.add_range(following)
        # Ranges now wholly below the chain's end (duplicates) are dropped.
        for start in [s for s, e in self.early.items() if e.end <= self.chain_end]:
            del self.early[start]

    def add_done(self, path: str, runs: Iterable[tuple[int, int]]) -> None:
        done = self.done.setdefault(path, Intervals())
        for a, b in runs:
            done.add(max(a, self.frontier), b)

    def advance(self, paths: Iterable[str]) -> int:
        """Move the frontier to the lowest offset read and not done on every path (or to
        the chain's end when all are); returns the frontier."""
        done = [self.done.get(p) or Intervals() for p in paths]
        x = self.frontier
        for a, b in self.read.runs():
            a = max(a, x)
            if a >= b:
                continue
            gap = min(d.first_gap(a, b) for d in done) if done else a
            if gap < b:
                x = gap
                break
        else:
            x = self.chain_end
        if x > self.frontier:
            self.frontier = x
            self.read.drop_below(x)
            for d in self.done.values():
                d.drop_below(x)
        return self.frontier


class SignalDone(beam.DoFn):
    """Outputs that need no write (counted skips) -> DoneSignal per partition at bundle end."""

    def __init__(self, path: str = PREDICT) -> None:
        self.path = path
        self.untracked = Metrics.counter("kafka", "outputs_without_source")

    def start_bundle(self) -> None:
        self._done = DoneBuffer(self.path)

    def process(self, element: Any, timestamp: Any = beam.DoFn.TimestampParam) -> None:
        if not self._done.add(source_of(element), timestamp):
            self.untracked.inc()

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._done.drain()


def _partition_key(element: ReadRange | DoneSignal) -> tuple[str, Any]:
    return f"{element.partition}:{element.topic}", element


class _Commit(beam.DoFn):
    """(partition key, ReadRange | DoneSignal) -> nothing; commits offsets at bundle end."""

    LEDGER = ReadModifyWriteStateSpec("ledger", coders.PickleCoder())

    def __init__(self, read: ReadConfig, paths: tuple[str, ...]) -> None:
        self.read = read
        self.paths = paths
        self.commits = Metrics.counter("kafka", "offset_commits")
        self.commit_failures = Metrics.counter("kafka", "offset_commit_failures")
        self.lag = Metrics.distribution("kafka", "uncommitted_records")

    def setup(self) -> None:
        self._consumer = _consumer(self.read)
        # (topic, partition) -> the offset last committed by this instance.
        self._committed: dict[tuple[str, int], int] = {}

    def teardown(self) -> None:
        consumer = getattr(self, "_consumer", None)
        if consumer is not None:
            consumer.close()

    def start_bundle(self) -> None:
        self._to_commit: dict[tuple[str, int], int] = {}

    def _committed_offset(self, topic: str, partition: int) -> int:
        from confluent_kafka import TopicPartition

        tp = TopicPartition(topic, partition)
        found = call_with_retries(lambda: self._consumer.committed([tp], timeout=30), _KAFKA_RETRY, _retriable)
        return found[0].offset

    def process(self, element: tuple[str, Any], ledger_state: Any = beam.DoFn.StateParam(LEDGER)) -> None:
        _, item = element
        tp = (item.topic, item.partition)
        ledger: Ledger | None = ledger_state.read()
        if ledger is None:
            # The source started this partition at the group's committed offset (it commits
            # its start when the group has none), so that is where the chain begins.
            committed = self._committed_offset(*tp)
            if committed < 0:
                if not isinstance(item, ReadRange):
                    return  # cannot happen once the source committed its start
                committed = item.start
            ledger = Ledger(committed, committed)
            self._committed.setdefault(tp, committed)
        if isinstance(item, ReadRange):
            ledger.add_range(item)
        else:
            ledger.add_done(item.path, item.runs)
        frontier = ledger.advance(self.paths)
        ledger_state.write(ledger)
        self.lag.update(ledger.chain_end - frontier)
        if frontier > self._committed.get(tp, -1):
            self._to_commit[tp] = frontier

    def finish_bundle(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        if not self._to_commit:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._to_commit.items())]
        try:
            call_with_retries(
                lambda: self._consumer.commit(offsets=offsets, asynchronous=False), _KAFKA_RETRY, _retriable
            )
        except KafkaException as exc:
            # Not fatal: the partition's next signal commits again (a later offset), and until
            # then a restart re-reads a little more (at-least-once).
            self.commit_failures.inc()
            log.warning("offset commit %s failed: %s", self._to_commit, exc)
            return
        self.commits.inc(len(offsets))
        for tp, o in self._to_commit.items():
            self._committed[tp] = max(o, self._committed.get(tp, -1))


class CommitOffsets(beam.PTransform):
    """{name: ranges (ReadRange) or done signals (DoneSignal)} -> commits; an offset is
    committed once its record is done on every one of `paths`."""

    def __init__(self, read: ReadConfig, paths: tuple[str, ...] = (PREDICT,)) -> None:
        super().__init__()
        if read.bounded or read.commit_on_finalize:
            raise ValueError("CommitOffsets needs an unbounded read with commit_on_finalize=False")
        self.read = read
        self.paths = paths

    def expand(self, parts: dict[str, beam.PCollection]) -> beam.PCollection:  # type: ignore[override]
        return (
            tuple(parts.values())
            | "Signals" >> beam.Flatten()
            | "Global" >> beam.WindowInto(GlobalWindows())
            # Typed, so that the state's key coder is the deterministic one for str.
            | "ByPartition" >> beam.Map(_partition_key).with_output_types(Tuple[str, Any])
            | "Commit" >> beam.ParDo(_Commit(self.read, self.paths))
        )
