"""The Kafka source's reader against a real broker, driven bundle by bundle the way a
streaming runner drives it: one partition per call, checkpointing, then the next partition.

Regression for a livelock seen on loaded CI machines: the reader re-assigned one consumer to
whichever partition the next bundle read, which threw away librdkafka's prefetch; when a
fetch round trip took longer than the poll timeout, no bundle ever saw a record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
)

from tests.integration.kafka_stack import Broker, start_broker, topic_names
from transforms.io.kafka import (
    UNBOUNDED,
    KafkaConfig,
    KafkaPartition,
    KafkaRecord,
    ReadConfig,
    _PartitionOffsets,
    _PartitionOffsetTracker,
    _ReadPartition,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("kafka"))
    yield b
    b.sh("down", "--wipe", check=False)


class _Finalizer:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def register(self, callback: Any) -> None:
        self.callbacks.append(callback)


def _bundle(
    fn: _ReadPartition,
    element: KafkaPartition,
    restriction: OffsetRange,
    watermark: ManualWatermarkEstimator | None = None,
) -> tuple[list[KafkaRecord], OffsetRange | None, _Finalizer]:
    """One process() call: the records it emitted, its residual restriction, its finaliser."""
    threadsafe = ThreadsafeRestrictionTracker(_PartitionOffsetTracker(restriction))
    finalizer = _Finalizer()
    out = fn.process(
        element,
        finalizer,
        tracker=RestrictionTrackerView(threadsafe),  # type: ignore[arg-type]
        watermark=watermark or ManualWatermarkEstimator(None),
    )
    records = [tv.value for tv in out]
    deferred = threadsafe.deferred_status()
    return records, (deferred[0] if deferred else None), finalizer


def _produce(broker: Broker, topic: str, per_partition: int, timestamp_ms: int = 0) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for p in range(PARTITIONS):
        for i in range(per_partition):
            producer.produce(topic, value=f"{p}-{i}".encode(), partition=p, timestamp=timestamp_ms)
    assert producer.flush(30) == 0


def test_round_robin_bundles_keep_each_partitions_prefetch(broker: Broker) -> None:
    topic = topic_names("roundrobin")["events"]
    broker.create_topics(topic, partitions=PARTITIONS)
    _produce(broker, topic, per_partition=50)
    # A poll timeout far below a fetch round trip: a reader that loses its prefetch between
    # bundles reads nothing, however many rounds it gets.
    config = ReadConfig(
        KafkaConfig(broker.bootstrap),
        (topic,),
        "group-roundrobin",
        poll_timeout_s=0.001,
        max_bundle_s=0.05,
        idle_resume_s=0.0,
    )
    fn = _ReadPartition(config)
    fn.setup()
    elements = [KafkaPartition(topic, p, config) for p in range(PARTITIONS)]
    restrictions = {e.partition: _PartitionOffsets().initial_restriction(e) for e in elements}
    assert all(r == OffsetRange(0, UNBOUNDED) for r in restrictions.values())
    seen: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    for _ in range(400):
        for e in elements:
            records, residual, finalizer = _bundle(fn, e, restrictions[e.partition])
            assert residual is not None, "an unbounded read always checkpoints"
            seen[e.partition] += [r.offset for r in records]
            restrictions[e.partition] = residual
            for callback in finalizer.callbacks:
                callback()
        if all(len(v) == 50 for v in seen.values()):
            break
    fn.teardown()
    assert seen == {p: list(range(50)) for p in range(PARTITIONS)}, {p: len(v) for p, v in seen.items()}
    # The finalisers committed where the group resumes: a fresh restriction starts at the end.
    assert all(_PartitionOffsets().initial_restriction(e).start == 50 for e in elements)


def test_a_retried_bundle_rereads_from_its_own_start(broker: Broker) -> None:
    topic = topic_names("retry")["events"]
    broker.create_topics(topic, partitions=PARTITIONS)
    _produce(broker, topic, per_partition=20)
    config = ReadConfig(KafkaConfig(broker.bootstrap), (topic,), "group-retry", max_bundle_s=0.5, idle_resume_s=0.0)
    fn = _ReadPartition(config)
    fn.setup()
    element = KafkaPartition(topic, 1, config)
    first: list[KafkaRecord] = []
    while len(first) < 20:
        records, _, _ = _bundle(fn, element, OffsetRange(0, UNBOUNDED))
        first = records or first
    # The runner lost that bundle (a crash before finalisation) and runs it again: the
    # consumer, now positioned at 20, must go back to 0 rather than serve what follows.
    again: list[KafkaRecord] = []
    while not again:  # a re-assigned consumer fetches afresh: a bundle may end empty first
        again, residual, _ = _bundle(fn, element, OffsetRange(0, UNBOUNDED))
    assert [r.offset for r in again] == list(range(20))
    assert [r.value for r in again] == [f"1-{i}".encode() for i in range(20)]
    fn.teardown()
    assert residual is not None and residual.start == 20


def test_the_watermark_waits_for_records_not_yet_fetched(broker: Broker) -> None:
    import time

    from apache_beam.utils.timestamp import Timestamp

    topic = topic_names("watermark")["events"]
    broker.create_topics(topic, partitions=PARTITIONS)
    an_hour_ago_ms = int((time.time() - 3600) * 1000)
    _produce(broker, topic, per_partition=5, timestamp_ms=an_hour_ago_ms)
    # Empty polls happen before the first fetch: they must not pass for an idle partition.
    config = ReadConfig(
        KafkaConfig(broker.bootstrap),
        (topic,),
        "group-watermark",
        poll_timeout_s=0.001,
        max_bundle_s=0.05,
        idle_resume_s=0.0,
    )
    fn = _ReadPartition(config)
    fn.setup()
    element = KafkaPartition(topic, 2, config)
    estimator = ManualWatermarkEstimator(None)
    restriction: OffsetRange | None = OffsetRange(0, UNBOUNDED)
    read: list[KafkaRecord] = []
    for _ in range(400):
        assert restriction is not None
        records, restriction, _ = _bundle(fn, element, restriction, estimator)
        read += records
        if len(read) < 5:
            current = estimator.current_watermark()
            assert current is None or current <= Timestamp.of(an_hour_ago_ms / 1000), current
        else:
            break
    assert [r.offset for r in read] == list(range(5))
    # Caught up now: an empty poll moves an idle partition's watermark to about wall time.
    for _ in range(50):
        assert restriction is not None
        _, restriction, _ = _bundle(fn, element, restriction, estimator)
        if estimator.current_watermark() > Timestamp.now() - 60:
            break
    fn.teardown()
    assert estimator.current_watermark() > Timestamp.now() - 60


def test_a_teardown_during_a_bundle_checkpoints_it(broker: Broker) -> None:
    """A worker shutting down closes the consumers while a bundle may still be reading:
    the bundle checkpoints where it is instead of failing on a closed consumer."""
    topic = topic_names("teardown")["events"]
    broker.create_topics(topic, partitions=PARTITIONS)
    _produce(broker, topic, per_partition=20)
    config = ReadConfig(
        KafkaConfig(broker.bootstrap),
        (topic,),
        "group-teardown",
        max_records_per_poll=1,
        max_bundle_s=30,
        idle_resume_s=0.0,
    )
    fn = _ReadPartition(config)
    fn.setup()
    element = KafkaPartition(topic, 0, config)
    threadsafe = ThreadsafeRestrictionTracker(_PartitionOffsetTracker(OffsetRange(0, UNBOUNDED)))
    out = fn.process(
        element,
        _Finalizer(),
        tracker=RestrictionTrackerView(threadsafe),  # type: ignore[arg-type]
        watermark=ManualWatermarkEstimator(None),
    )
    first = next(out)
    fn.teardown()
    rest = list(out)
    read = [first.value.offset] + [tv.value.offset for tv in rest]
    deferred = threadsafe.deferred_status()
    assert read == list(range(len(read))) and len(read) < 20
    assert deferred is not None and deferred[0].start == len(read)


def test_a_bounded_read_stops_at_its_fixed_ends_and_commits_nothing_itself(broker: Broker) -> None:
    from transforms.io.kafka import commit_offsets, end_offsets

    topic = topic_names("bounded")["events"]
    broker.create_topics(topic, partitions=PARTITIONS)
    _produce(broker, topic, per_partition=10)
    config = ReadConfig(KafkaConfig(broker.bootstrap), (topic,), "group-bounded", bounded=True)
    ends = end_offsets(config)
    assert ends == tuple((topic, p, 10) for p in range(PARTITIONS))
    _produce(broker, topic, per_partition=5)  # after the ends were fixed: not this run's
    fixed = ReadConfig(KafkaConfig(broker.bootstrap), (topic,), "group-bounded", bounded=True, stop_offsets=ends)
    fn = _ReadPartition(fixed)
    fn.setup()
    read: list[int] = []
    for p in range(PARTITIONS):
        element = KafkaPartition(topic, p, fixed)
        restriction = _PartitionOffsets().initial_restriction(element)
        assert restriction == OffsetRange(0, 10)
        records, residual, finalizer = _bundle(fn, element, restriction)
        for callback in finalizer.callbacks:
            callback()
        assert residual is None
        read += [r.offset for r in records]
    fn.teardown()
    assert sorted(read) == sorted(list(range(10)) * PARTITIONS)
    # Finalising the bundles committed nothing: outputs behind a shuffle are not written yet.
    element = KafkaPartition(topic, 0, config)
    assert _PartitionOffsets().initial_restriction(element).start == 0
    commit_offsets(fixed, ends)  # what backfill does once its pipeline succeeded
    assert _PartitionOffsets().initial_restriction(element) == OffsetRange(10, 15)
