"""The local runtime from DESIGN.md: a real Kafka broker (KRaft, one node, Maven Central
jars) started by deploy/local/kafka/kafka.sh, and Beam's Prism runner built by
deploy/local/prism/prism.sh.

The broker runs once per module on free ports with a temporary data dir and is wiped at the
end. Skipped with a reason when java/mvn (Kafka) or go (Prism) are missing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.kafka_stack import Broker, new_broker, prism_binary

pytestmark = pytest.mark.integration

EVENTS = "product-events"
PREDICTIONS = "product-predictions"
DLQ = "product-events-dlq"
BULK = "bulk-results"
# Not the script's default (4): proves the partition count really comes from the env.
PARTITIONS = 3


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = new_broker(tmp_path_factory.mktemp("kafka"), partitions=PARTITIONS)
    data_dir = b.data_dir
    t0 = time.monotonic()
    try:
        up = b.sh("up")
        print(f"kafka.sh up took {time.monotonic() - t0:.1f}s\n{up.stderr}")
        assert f"KAFKA_BOOTSTRAP={b.bootstrap}" in up.stdout
        yield b
    finally:
        b.sh("down", "--wipe", check=False)
    assert not data_dir.exists(), "down --wipe left the data dir behind"


def _admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def _topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.TOPIC, topic)
    admin = _admin(bootstrap)  # keep a reference: a collected client cancels its futures
    return {k: e.value for k, e in admin.describe_configs([res])[res].result(timeout=30).items()}


def _produce(bootstrap: str, topic: str, records: list[tuple[str, str]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(f"{msg.key()}: {err}")

    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value.encode(), on_delivery=on_delivery)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages still undelivered after 30s"
    assert not errors, errors


def _read_to_end(bootstrap: str, topic: str, timeout_s: float = 30) -> list[tuple[int, int, str, str]]:
    """Every message now in `topic`: assign all partitions from the low watermark and read
    until each partition reaches the high watermark taken at the start."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends: dict[int, int] = {}
        assignment = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, low))
        consumer.assign(assignment)
        out: list[tuple[int, int, str, str]] = []
        deadline = time.monotonic() + timeout_s
        pending = dict(ends)
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))
            if msg.offset() + 1 >= pending.get(msg.partition(), 0):
                pending.pop(msg.partition(), None)
        assert not pending, f"did not reach the end offsets of {pending} within {timeout_s}s"
        return out
    finally:
        consumer.close()


# --------------------------------------------------------------------------------------------
# Kafka


def test_topics_exist_with_configs(broker: Broker) -> None:
    md = _admin(broker.bootstrap).list_topics(timeout=10)
    partitions = {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}
    assert partitions == {EVENTS: PARTITIONS, PREDICTIONS: PARTITIONS, DLQ: 1, BULK: PARTITIONS}

    assert _topic_configs(broker.bootstrap, PREDICTIONS)["cleanup.policy"] == "compact"
    for topic in (EVENTS, DLQ, BULK):
        assert _topic_configs(broker.bootstrap, topic)["cleanup.policy"] == "delete", topic

    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.BROKER, "1")
    admin = _admin(broker.bootstrap)
    cfg = admin.describe_configs([res])[res].result(timeout=30)
    assert cfg["auto.create.topics.enable"].value == "false"
    assert cfg["process.roles"].value == "broker,controller"

    listing = broker.sh("topics").stdout
    assert PREDICTIONS in listing and "compact" in listing


def test_up_when_already_up_is_a_noop(broker: Broker) -> None:
    pid = broker.pid()
    again = broker.sh("up")
    assert "already up" in again.stderr
    assert broker.pid() == pid
    assert broker.sh("status").stdout.startswith(f"up: pid {pid}")


def test_produce_and_consume_100_messages(broker: Broker) -> None:
    run = uuid.uuid4().hex[:8]
    records = [(f"product-{i % 17}", f"{run}:{i}") for i in range(100)]
    _produce(broker.bootstrap, EVENTS, records)

    got = [m for m in _read_to_end(broker.bootstrap, EVENTS) if m[3].startswith(f"{run}:")]
    assert sorted(v for *_, v in got) == sorted(v for _, v in records)
    assert len({p for p, *_ in got}) > 1, "17 keys all landed in one partition"
    # Per key, Kafka keeps produce order within the key's partition.
    by_key: dict[str, list[int]] = {}
    for _, _, key, value in sorted(got, key=lambda m: (m[0], m[1])):
        by_key.setdefault(key, []).append(int(value.split(":")[1]))
    assert all(seq == sorted(seq) for seq in by_key.values())


def test_restart_keeps_messages(broker: Broker) -> None:
    run = uuid.uuid4().hex[:8]
    events = [(f"product-{i}", f"{run}:{i}") for i in range(50)]
    predictions = [(f"product-{i}", f"{run}:pred:{i}") for i in range(10)]
    _produce(broker.bootstrap, EVENTS, events)
    _produce(broker.bootstrap, PREDICTIONS, predictions)
    before = _read_to_end(broker.bootstrap, EVENTS)
    old_pid = broker.pid()

    broker.sh("down")
    assert broker.sh("status", check=False).returncode == 1
    t0 = time.monotonic()
    up = broker.sh("up")
    print(f"restart (up on existing data) took {time.monotonic() - t0:.1f}s")
    assert "formatting" not in up.stderr, "restart re-formatted the existing data dir"
    assert broker.pid() != old_pid

    after = _read_to_end(broker.bootstrap, EVENTS)
    assert sorted(after) == sorted(before)
    assert {v for *_, v in after} >= {v for _, v in events}
    preds = {k: v for *_, k, v in _read_to_end(broker.bootstrap, PREDICTIONS) if v.startswith(f"{run}:")}
    assert preds == dict(predictions)
    assert _topic_configs(broker.bootstrap, PREDICTIONS)["cleanup.policy"] == "compact"


# --------------------------------------------------------------------------------------------
# Prism


@pytest.fixture(scope="module", name="prism_binary")
def prism_binary_fixture() -> str:
    path = prism_binary()
    assert os.access(path, os.X_OK), path
    return path


def _prism_options(prism: str):
    from apache_beam.options.pipeline_options import PipelineOptions

    # Beam would otherwise download Prism from GitHub releases, which is not reachable here.
    return PipelineOptions(["--runner=PrismRunner", f"--prism_location={prism}"])


@pytest.mark.timeout(1800)  # the first build compiles Beam's Go SDK: minutes
def test_prism_runs_a_beam_pipeline(prism_binary: str) -> None:
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    with TestPipeline(options=_prism_options(prism_binary)) as p:
        nums = p | beam.Create([1, 2, 3])
        assert_that(nums | "Times10" >> beam.Map(lambda x: x * 10), equal_to([10, 20, 30]), label="Map")
        # A shuffle, so Prism runs more than one fused stage.
        summed = nums | beam.Map(lambda x: (x % 2, x)) | beam.CombinePerKey(sum)
        assert_that(summed, equal_to([(0, 2), (1, 4)]), label="CombinePerKey")


@pytest.mark.timeout(1800)
def test_prism_reports_a_failed_assert(prism_binary: str) -> None:
    """The passing test above only means something if a wrong answer fails on Prism."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    with pytest.raises(Exception, match="failed in state FAILED") as info:
        with TestPipeline(options=_prism_options(prism_binary)) as p:
            assert_that(p | beam.Create([1, 2, 3]), equal_to([1, 2, 4]))
    assert "BeamAssertException" in str(info.value)
