"""Kafka IO for Beam in Python, over confluent-kafka (Beam's ReadFromKafka is a Java
cross-language transform; this one runs in the Python SDK harness, locally and on Dataflow).

Source: `ReadFromKafka` is a splittable DoFn with one element per topic-partition, read with
`assign()`. Bounded mode reads up to end offsets fixed at start (backfills) and commits
nothing itself: the caller commits those ends after the pipeline succeeded; unbounded
mode reads forever, with a watermark from record timestamps that idle partitions (caught
up to their end) do not hold back. Offsets are committed to the consumer group on bundle
finalisation, i.e. only after the runner has durably accepted everything the bundle
produced.

Sink: `WriteToKafka` produces keyed records with headers; `finish_bundle` flushes and raises
when any record was not delivered, so the bundle is retried instead of losing records
(at-least-once; `prediction_id` makes the duplicates identical).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.config import StreamSettings, default_of
from transforms.model.retry import RetryPolicy, call_with_retries

__all__ = [
    "UNBOUNDED",
    "KafkaConfig",
    "KafkaRecord",
    "ReadConfig",
    "KafkaPartition",
    "partitions_of",
    "end_offsets",
    "commit_offsets",
    "ReadFromKafka",
    "OutgoingRecord",
    "KafkaDeliveryError",
    "WriteToKafka",
    "RANGES",
    "ReadRange",
    "DoneSignal",
    "DoneBuffer",
    "runs_of",
]

log = logging.getLogger(__name__)

UNBOUNDED = sys.maxsize


@dataclass(frozen=True)
class KafkaConfig:
    """Connection settings. `extra` passes straight to librdkafka, which is where SASL/SSL
    go (security.protocol, sasl.mechanisms, sasl.username, sasl.password, ssl.ca.location)."""

    bootstrap_servers: str
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ValueError("bootstrap_servers is required, e.g. 127.0.0.1:9092")

    @classmethod
    def from_options(cls, bootstrap: str, settings: Iterable[str] = ()) -> KafkaConfig:
        """`settings` are `key=value` strings (the CLI's repeatable --kafka-config)."""
        pairs = []
        for s in settings:
            key, sep, value = s.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"Kafka setting {s!r} is not key=value")
            pairs.append((key.strip(), value.strip()))
        return cls(bootstrap, tuple(pairs))

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers, **dict(self.extra), **overrides}


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class ReadConfig:
    kafka: KafkaConfig
    topics: tuple[str, ...]
    group_id: str
    bounded: bool = False
    # Where a partition starts when the group has no committed offset.
    start_from: str = default_of(StreamSettings, "start_from")  # defaults live in transforms/config.py
    max_records_per_poll: int = 500
    poll_timeout_s: float = 0.2
    # How long one process() call reads before it checkpoints (unbounded), so that the
    # runner can finalise bundles and commit offsets regularly.
    max_bundle_s: float = default_of(StreamSettings, "max_bundle_s")
    # An idle partition's watermark advances to wall time minus this slack.
    idle_watermark_slack_s: float = 1.0
    idle_resume_s: float = 0.5
    # Bounded only: (topic, partition, end offset) fixed by the caller before the run. A
    # bounded read never commits offsets itself: outputs behind a shuffle are written after
    # the source's bundles finish, so the caller commits these ends once the whole pipeline
    # succeeded (`commit_offsets`). None: each partition's end offset at start, no commit.
    stop_offsets: tuple[tuple[str, int, int], ...] | None = None
    # Unbounded only. True: commit a bundle's offsets when the runner finalises it (right
    # only when every output is written in the source's fused stage). False: commit
    # nothing on finalisation; the read emits a `ReadRange` per bundle on its `ranges`
    # output and the sink side commits (transforms/io/kafka_commit.py, the stream).
    commit_on_finalize: bool = True

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("at least one topic is required")
        if self.start_from not in ("earliest", "latest"):
            raise ValueError(f"start_from must be earliest or latest, got {self.start_from!r}")


@dataclass(frozen=True)
class KafkaPartition:
    """The SDF's element. It carries its read config so that the (stateless) restriction
    provider, which Beam needs at class-definition time, can find the broker."""

    topic: str
    partition: int
    config: ReadConfig


# Sink-side offset commits (transforms/io/kafka_commit.py) -----------------------------

RANGES = "ranges"


def runs_of(offsets: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Ascending offsets as [start, end) runs: (5, 6, 7, 9) -> ((5, 8), (9, 10))."""
    runs: list[list[int]] = []
    for o in sorted(set(offsets)):
        if runs and runs[-1][1] == o:
            runs[-1][1] = o + 1
        else:
            runs.append([o, o + 1])
    return tuple((a, b) for a, b in runs)


@dataclass(frozen=True)
class ReadRange:
    """What one source bundle read of a partition: offsets [start, end), of which `runs`
    hold records. A partition's ranges are contiguous (each starts where the last ended)."""

    topic: str
    partition: int
    start: int
    end: int
    runs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class DoneSignal:
    """Offsets of a partition whose records are done on `path`: an output carrying them
    was acknowledged by the broker (or, for a counted skip, emitted)."""

    topic: str
    partition: int
    path: str
    runs: tuple[tuple[int, int], ...]


class DoneBuffer:
    """A bundle's positions, emitted at its end as one DoneSignal per partition (a DoFn's
    finish_bundle outputs need a window and a timestamp: the global window, and the
    earliest timestamp among the partition's elements)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.clear()

    def clear(self) -> None:
        self._offsets: dict[tuple[str, int], list[int]] = {}
        self._stamps: dict[tuple[str, int], Timestamp] = {}

    def add(self, source: tuple[str, int, int] | None, timestamp: Any) -> bool:
        if source is None:
            return False
        topic, partition, offset = source
        key = (topic, partition)
        self._offsets.setdefault(key, []).append(offset)
        if isinstance(timestamp, Timestamp) and (key not in self._stamps or timestamp < self._stamps[key]):
            self._stamps[key] = timestamp
        return True

    def drain(self) -> Iterator[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.timestamp import MIN_TIMESTAMP
        from apache_beam.utils.windowed_value import WindowedValue

        for (topic, partition), offsets in self._offsets.items():
            signal = DoneSignal(topic, partition, self.path, runs_of(offsets))
            yield WindowedValue(signal, self._stamps.get((topic, partition), MIN_TIMESTAMP), (GlobalWindow(),))
        self.clear()


def _consumer(config: ReadConfig) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        config.kafka.client_config(
            **{
                # librdkafka prefetches up to 64 MiB per partition by default; a worker keeps
                # one consumer per partition it reads (see _PartitionReaders).
                "queued.max.messages.kbytes": 16384,
                **dict(config.kafka.extra),
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": config.start_from,
                "enable.partition.eof": False,
            }
        )
    )


_KAFKA_RETRY = RetryPolicy(max_attempts=20, initial_backoff_s=0.2, max_backoff_s=2.0, budget_s=60.0)


def _retriable(exc: BaseException) -> bool:
    """Transient broker states: librdkafka's retriable flag, plus the coordinator codes it
    reports unflagged from committed() while a fresh broker loads its offsets topic."""
    from confluent_kafka import KafkaError

    err = exc.args[0] if getattr(exc, "args", None) else None
    if not isinstance(err, KafkaError):
        return False
    transient = {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
    return err.retriable() or err.code() in transient


class _PartitionOffsetTracker(OffsetRestrictionTracker):
    """Offsets of one partition, split only at checkpoints.

    A fractional split of [start, MAX) would hand offsets from 2**62 onwards to a second
    reader (Prism does this), and Kafka resets an out-of-range assignment to the earliest
    offset. A partition is read in order by one reader anyway, and one reader per
    partition keeps the committed offset monotonic.
    """

    def try_split(self, fraction_of_remainder: float) -> tuple[OffsetRange, OffsetRange] | None:
        if fraction_of_remainder > 0:
            return None
        return super().try_split(fraction_of_remainder)


class _PartitionOffsets(RestrictionProvider):
    def initial_restriction(self, element: KafkaPartition) -> OffsetRange:
        from confluent_kafka import TopicPartition

        config = element.config
        consumer = _consumer(config)
        try:
            tp = TopicPartition(element.topic, element.partition)
            low, high = call_with_retries(
                lambda: consumer.get_watermark_offsets(tp, timeout=30), _KAFKA_RETRY, _retriable
            )
            # A fresh broker answers NOT_COORDINATOR while it loads the offsets topic.
            committed = call_with_retries(lambda: consumer.committed([tp], timeout=30), _KAFKA_RETRY, _retriable)[
                0
            ].offset
        finally:
            consumer.close()
        if committed >= 0:
            start = max(committed, low)
        else:
            start = low if config.start_from == "earliest" else high
            if not config.bounded and not config.commit_on_finalize:
                # Sink-side commits: the committer starts each partition at the group's
                # committed offset, so there must be one; committing where nothing was read
                # yet is always safe (and a restart then resumes here, not at a new "latest").
                commit_offsets(config, ((element.topic, element.partition, start),))
        stop = high if config.bounded else UNBOUNDED
        if config.bounded and config.stop_offsets is not None:
            ends = {(t, p): end for t, p, end in config.stop_offsets}
            stop = ends.get((element.topic, element.partition), start)  # a partition added since: none
        return OffsetRange(start, max(start, stop))

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return _PartitionOffsetTracker(restriction)

    def restriction_size(self, element: KafkaPartition, restriction: OffsetRange) -> int:
        return 1 if restriction.stop == UNBOUNDED else restriction.size()

    def split(self, element: KafkaPartition, restriction: OffsetRange) -> Iterator[OffsetRange]:
        yield restriction  # a partition is read in order by one reader


@dataclass
class _PartitionReader:
    consumer: Any
    # The offset the consumer returns next (-1: unknown, re-assign before reading).
    position: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def close(self) -> None:
        """Call with `lock` held. A bundle still reading (a worker shutting down) sees
        `closed` and checkpoints instead of failing on a closed consumer."""
        self.closed = True
        self.consumer.close()


class _PartitionReaders:
    """One consumer per partition per worker process, kept between bundles.

    librdkafka prefetches an assigned partition in the background. Re-assigning one
    consumer to whichever partition the next bundle reads threw that prefetch away, and on
    a loaded machine (fetch round trip longer than the poll timeout) a reader then never
    saw a record: a livelock. A partition is read by one bundle at a time (its restriction
    is never split), so its consumer is too; offset commits from bundle finalisers share
    the consumer under its lock. Like transforms/shared.py, one copy per worker process
    rather than per DoFn instance; the consumers close with the last instance's teardown().
    """

    def __init__(self, max_open: int) -> None:
        self.max_open = max_open
        self._readers: OrderedDict[tuple[Any, ...], _PartitionReader] = OrderedDict()
        self._lock = threading.Lock()
        self._users = 0

    def acquire(self) -> None:
        """A DoFn instance's setup(): the consumers live while any instance uses them."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """A DoFn instance's teardown(): the last one closes every consumer."""
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            readers, self._readers = list(self._readers.values()), OrderedDict()
        for reader in readers:
            with reader.lock:
                reader.close()

    def get(self, config: ReadConfig, topic: str, partition: int) -> _PartitionReader:
        key = (config.kafka, config.group_id, topic, partition)
        with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                reader = self._readers[key] = _PartitionReader(_consumer(config))
                self._evict()
            self._readers.move_to_end(key)
            return reader

    def _evict(self) -> None:
        for key in list(self._readers)[: max(0, len(self._readers) - self.max_open)]:
            reader = self._readers[key]
            if reader.lock.acquire(blocking=False):  # never close one a bundle is using
                del self._readers[key]
                reader.close()
                reader.lock.release()

    def discard(self, config: ReadConfig, topic: str, partition: int) -> None:
        with self._lock:
            reader = self._readers.pop((config.kafka, config.group_id, topic, partition), None)
        if reader is not None:
            with reader.lock:
                reader.close()


# A module-level pool, not Beam's `Shared` (which transforms/shared.py uses): `Shared`
# frees an object by garbage collection once no DoFn references it and has no release
# hook, while these consumers must be closed explicitly (leave the group, stop
# librdkafka's fetch threads) at the last teardown(), evicted past max_open while other
# partitions stay open, and found again by bundle finalisers that commit offsets.
_READERS = _PartitionReaders(max_open=64)


class _ReadPartition(beam.DoFn):
    def __init__(self, config: ReadConfig) -> None:
        self.config = config
        self.records = Metrics.counter("kafka", "records_read")
        self.commits = Metrics.counter("kafka", "offset_commits")
        self.commit_failures = Metrics.counter("kafka", "offset_commit_failures")

    def setup(self) -> None:
        _READERS.acquire()

    def teardown(self) -> None:
        _READERS.release()

    def _reader(self, topic: str, partition: int, offset: int) -> _PartitionReader:
        """The partition's consumer, positioned at `offset`. A consumer already there keeps
        its prefetched records; one elsewhere (a retried bundle, a fresh one) is assigned."""
        from confluent_kafka import TopicPartition

        reader = _READERS.get(self.config, topic, partition)
        with reader.lock:
            if not reader.closed and reader.position != offset:
                reader.consumer.assign([TopicPartition(topic, partition, offset)])
                reader.position = offset
        return reader

    def _commit(self, topic: str, partition: int, offset: int) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            reader = _READERS.get(self.config, topic, partition)
            with reader.lock:
                if not reader.closed:
                    reader.consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
                else:  # closed by a teardown since: any consumer of the group can commit
                    commit_offsets(self.config, ((topic, partition, offset),))
            self.commits.inc()
        except KafkaException as exc:
            # Not fatal: the next finalised bundle commits a later offset, and until then a
            # restart re-reads a little (at-least-once).
            self.commit_failures.inc()
            log.warning("offset commit %s[%d]@%d failed: %s", topic, partition, offset, exc)

    def process(
        self,
        element: KafkaPartition,
        # Positional placeholders first: Beam passes the tracker and the watermark estimator
        # by keyword, and the finaliser by position.
        finalizer: Any = beam.DoFn.BundleFinalizerParam,
        tracker: OffsetRestrictionTracker = beam.DoFn.RestrictionParam(_PartitionOffsets()),
        watermark: ManualWatermarkEstimator = beam.DoFn.WatermarkEstimatorParam(
            ManualWatermarkEstimator.default_provider()
        ),
    ) -> Iterator[Any]:
        if self.config.bounded or self.config.commit_on_finalize:
            yield from self._read(element, finalizer, tracker, watermark, None)
            return
        # Sink-side commits: what this bundle read, for the committer (which offsets exist
        # in [start, end): compaction and transaction markers leave gaps).
        start = tracker.current_restriction().start
        claimed: list[int] = []
        last_ts: Timestamp | None = None
        for out in self._read(element, finalizer, tracker, watermark, claimed):
            last_ts = out.timestamp
            yield out
        if claimed:
            read = ReadRange(element.topic, element.partition, start, claimed[-1] + 1, runs_of(claimed))
            yield beam.pvalue.TaggedOutput(RANGES, beam.window.TimestampedValue(read, last_ts))

    def _read(
        self,
        element: KafkaPartition,
        finalizer: Any,
        tracker: OffsetRestrictionTracker,
        watermark: ManualWatermarkEstimator,
        claimed: list[int] | None,
    ) -> Iterator[Any]:
        from confluent_kafka import KafkaError

        c = self.config
        restriction = tracker.current_restriction()
        if c.bounded and restriction.start >= restriction.stop:
            return  # nothing new since the committed offset
        reader = self._reader(element.topic, element.partition, restriction.start)
        deadline = time.monotonic() + c.max_bundle_s
        last: int | None = None
        try:
            while True:
                with reader.lock:
                    if reader.closed:  # the worker is shutting down: resume from here later
                        tracker.defer_remainder()
                        return
                    messages = reader.consumer.consume(num_messages=c.max_records_per_poll, timeout=c.poll_timeout_s)
                    fetched = [m.offset() for m in messages if m.error() is None]
                    if fetched:
                        reader.position = fetched[-1] + 1
                if not messages:
                    if c.bounded and self._at_end(element, reader, restriction):
                        tracker.try_claim(restriction.stop)  # gaps (compaction, markers) end here
                        _READERS.discard(c, element.topic, element.partition)  # read once
                        return
                    if not c.bounded:
                        # Idle only when caught up: an empty poll also happens before the
                        # first fetch, and moving the watermark to wall time then would make
                        # every record still unread late (event-time timers fire too early).
                        if self._caught_up(element, reader):
                            now = Timestamp.now() - Duration.of(c.idle_watermark_slack_s)
                            if watermark.current_watermark() is None or now > watermark.current_watermark():
                                watermark.set_watermark(now)
                        tracker.defer_remainder(Duration.of(c.idle_resume_s))
                        return
                    continue
                for m in messages:
                    if m.error() is not None:
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise RuntimeError(f"Kafka error on {element.topic}[{element.partition}]: {m.error()}")
                    if m.offset() < restriction.start:
                        continue  # before our range (the broker reset an assignment)
                    if not tracker.try_claim(m.offset()):
                        reader.position = -1  # consumed past the claim: re-assign next time
                        return
                    ts_ms = m.timestamp()[1]
                    ts = Timestamp.of(ts_ms / 1000.0)
                    current = watermark.current_watermark()
                    if current is None or ts > current:
                        watermark.set_watermark(ts)
                    last = m.offset()
                    if claimed is not None:
                        claimed.append(last)
                    self.records.inc()
                    yield beam.window.TimestampedValue(
                        KafkaRecord(
                            m.topic(), m.partition(), m.offset(), m.key(), m.value(), ts_ms, tuple(m.headers() or ())
                        ),
                        ts,
                    )
                if not c.bounded and time.monotonic() > deadline:
                    tracker.defer_remainder()
                    return
        finally:
            if last is not None and not c.bounded and c.commit_on_finalize:
                topic, partition, offset = element.topic, element.partition, last + 1
                finalizer.register(lambda: self._commit(topic, partition, offset))
            else:
                # Prism asks every bundle of this stage to finalise; a bundle that registered
                # nothing has been released by then and the SDK logs an error for it.
                finalizer.register(lambda: None)

    def _caught_up(self, element: KafkaPartition, reader: _PartitionReader) -> bool:
        """Whether the reader is at the partition's end as of its last fetch (the high
        watermark librdkafka cached from it; unknown before the first fetch)."""
        from confluent_kafka import TopicPartition

        tp = TopicPartition(element.topic, element.partition)
        with reader.lock:
            if reader.closed:
                return False
            _, high = reader.consumer.get_watermark_offsets(tp, cached=True)
            # librdkafka's own position also moves past trailing transaction markers.
            position = max(reader.position, reader.consumer.position([tp])[0].offset)
        return high >= 0 and position >= high

    def _at_end(self, element: KafkaPartition, reader: _PartitionReader, restriction: OffsetRange) -> bool:
        """Whether a bounded read has consumed up to its stop offset. librdkafka's position
        also moves past offsets that hold no record (compaction, transaction markers); it
        is unknown (negative) until the consumer fetched something."""
        from confluent_kafka import TopicPartition

        with reader.lock:
            if reader.closed:
                return False
            position = reader.consumer.position([TopicPartition(element.topic, element.partition)])[0].offset
        return max(position, reader.position, restriction.start) >= restriction.stop


class _ReadPartitionUnbounded(_ReadPartition):
    """The unbounded read, declared so: without `unbounded_per_element` Beam marks the
    output bounded (its input, the partitions, is), and a step that picks its mode by
    boundedness (the refresh trigger, content dedupe) then ran its batch form on the stream:
    a GroupByKey in the global window that never fires."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: KafkaPartition,
        finalizer: Any = beam.DoFn.BundleFinalizerParam,
        tracker: OffsetRestrictionTracker = beam.DoFn.RestrictionParam(_PartitionOffsets()),
        watermark: ManualWatermarkEstimator = beam.DoFn.WatermarkEstimatorParam(
            ManualWatermarkEstimator.default_provider()
        ),
    ) -> Iterator[Any]:
        yield from super().process(element, finalizer, tracker, watermark)


def partitions_of(kafka: KafkaConfig, topic: str) -> list[int]:
    """The topic's partition numbers; a clear error when it does not exist."""
    from confluent_kafka.admin import AdminClient

    info = AdminClient(kafka.client_config()).list_topics(topic, timeout=30).topics.get(topic)
    if info is None or info.error is not None:
        raise RuntimeError(f"Kafka topic {topic!r} does not exist or cannot be read: {info and info.error}")
    return sorted(info.partitions)


def end_offsets(config: ReadConfig) -> tuple[tuple[str, int, int], ...]:
    """(topic, partition, end offset) of every partition of the config's topics, now: the
    `stop_offsets` of a bounded read, looked up by the caller before the run."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(config)
    try:
        out = []
        for topic in config.topics:
            for p in partitions_of(config.kafka, topic):
                tp = TopicPartition(topic, p)
                _, high = call_with_retries(
                    lambda tp=tp: consumer.get_watermark_offsets(tp, timeout=30), _KAFKA_RETRY, _retriable
                )
                out.append((topic, p, high))
        return tuple(out)
    finally:
        consumer.close()


def commit_offsets(config: ReadConfig, offsets: tuple[tuple[str, int, int], ...]) -> None:
    """Commit a bounded read's end offsets for its group, after its pipeline succeeded: the
    next run starts there. A crash before this re-reads the range (at-least-once)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(config)
    try:
        tps = [TopicPartition(t, p, end) for t, p, end in offsets]
        if tps:
            call_with_retries(lambda: consumer.commit(offsets=tps, asynchronous=False), _KAFKA_RETRY, _retriable)
    finally:
        consumer.close()


class _ListPartitions(beam.DoFn):
    """topic -> KafkaPartition per partition, looked up on the worker at run time."""

    def __init__(self, config: ReadConfig) -> None:
        self.config = config

    def process(self, topic: str) -> Iterator[KafkaPartition]:
        for p in partitions_of(self.config.kafka, topic):
            yield KafkaPartition(topic, p, self.config)


class ReadFromKafka(beam.PTransform):
    """PBegin -> PCollection[KafkaRecord] (timestamped with the record timestamps); with
    `commit_on_finalize=False` (unbounded) -> {"records": that, "ranges": ReadRange per
    bundle}, for `transforms.io.kafka_commit.CommitOffsets`."""

    def __init__(self, config: ReadConfig) -> None:
        super().__init__()
        self.config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> Any:  # type: ignore[override]
        partitions = (
            pbegin
            | "Topics" >> beam.Create(list(self.config.topics))
            | "Partitions" >> beam.ParDo(_ListPartitions(self.config))
        )
        if self.config.bounded:
            return partitions | "Read" >> beam.ParDo(_ReadPartition(self.config))
        if self.config.commit_on_finalize:
            return partitions | "Read" >> beam.ParDo(_ReadPartitionUnbounded(self.config))
        read = partitions | "Read" >> beam.ParDo(_ReadPartitionUnbounded(self.config)).with_outputs(
            RANGES, main="records"
        )
        return {"records": read.records, "ranges": read[RANGES]}


@dataclass(frozen=True)
class OutgoingRecord:
    """What WriteToKafka writes; `value` None is a tombstone (a compacted delete)."""

    topic: str
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(default=())


class KafkaDeliveryError(RuntimeError):
    pass


class WriteToKafka(beam.DoFn):
    """OutgoingRecord -> Kafka. The producer is made in setup(); finish_bundle flushes and
    fails the bundle when any record of it was not acknowledged.

    With `track` (a done path's name, the stream's sink-side commit): the input is
    (sources, OutgoingRecord | None), `sources` the Kafka positions of the input records
    the output completes (None: nothing to write, done now); once the bundle's records are
    all acknowledged, finish_bundle emits a `DoneSignal` per partition."""

    def __init__(self, kafka: KafkaConfig, flush_timeout_s: float = 60.0, track: str | None = None) -> None:
        self.kafka = kafka
        self.flush_timeout_s = flush_timeout_s
        self.track = track
        self.written = Metrics.counter("kafka", "records_written")
        self.untracked = Metrics.counter("kafka", "outputs_without_source")

    def setup(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            self.kafka.client_config(
                **{"enable.idempotence": True, "acks": "all", "linger.ms": 20, "compression.type": "lz4"}
            )
        )

    def start_bundle(self) -> None:
        self._errors: list[str] = []
        self._delivered_count = 0
        self._done = DoneBuffer(self.track or "")

    def _delivered(self, err: Any, msg: Any) -> None:
        # librdkafka calls this from poll()/flush(), i.e. on the bundle's own thread.
        if err is not None:
            self._errors.append(f"{msg.topic()} key={msg.key()!r}: {err}")
        else:
            self._delivered_count += 1

    def process(self, element: Any, timestamp: Any = beam.DoFn.TimestampParam) -> None:
        record = element
        if self.track is not None:
            sources, record = element
            for source in sources:
                if not self._done.add(source, timestamp):
                    self.untracked.inc()
            if record is None:
                return
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.5)  # local queue full: let deliveries drain
        self._producer.poll(0)

    def finish_bundle(self) -> Iterator[Any]:
        remaining = self._producer.flush(self.flush_timeout_s)
        if remaining or self._errors:
            raise KafkaDeliveryError(
                f"{remaining} records not delivered within {self.flush_timeout_s}s and {len(self._errors)} "
                f"failed ({'; '.join(self._errors[:3])}); the bundle will be retried"
            )
        self.written.inc(self._delivered_count)
        # Every record of the bundle is acknowledged: their inputs are done on this path.
        yield from self._done.drain()

    def teardown(self) -> None:
        if getattr(self, "_producer", None) is not None:
            self._producer.flush(self.flush_timeout_s)
