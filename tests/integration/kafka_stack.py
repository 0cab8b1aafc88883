"""A real Kafka broker (deploy/local/kafka/kafka.sh) and the streaming pipeline (on Prism)
as subprocesses, for integration tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.triton_server import free_ports

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "local" / "kafka" / "kafka.sh"
PRISM_SH = ROOT / "deploy" / "local" / "prism" / "prism.sh"


def skip_without_kafka() -> None:
    if shutil.which("java") is None:
        pytest.skip("java is not on PATH: the local Kafka broker needs Java 17+")
    if shutil.which("mvn") is None and not any((ROOT / ".cache" / "kafka").glob("*/libs/.complete")):
        pytest.skip("mvn is not on PATH and no Kafka jars are cached under .cache/kafka")


def prism_binary() -> str:
    if shutil.which("go") is None and not list((ROOT / ".cache" / "prism").glob("*/bin/prism")):
        pytest.skip("go is not on PATH and no Prism binary is cached: cannot build the streaming runner")
    t0 = time.monotonic()
    out = subprocess.run([str(PRISM_SH)], capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, f"prism.sh failed:\n{out.stderr[-6000:]}"
    print(f"prism.sh took {time.monotonic() - t0:.1f}s\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Broker:
    bootstrap: str
    data_dir: Path
    env: dict[str, str]

    def sh(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(KAFKA_SH), *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kafka.sh {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
            )
        return proc

    def pid(self) -> int:
        return int((self.data_dir / "kafka.pid").read_text().strip())

    def create_topics(self, *names: str, partitions: int = 3, compacted: tuple[str, ...] = ()) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})  # keep a reference: futures die with it
        topics = [
            NewTopic(n, partitions, 1, config={"cleanup.policy": "compact"} if n in compacted else {}) for n in names
        ]
        for future in admin.create_topics(topics).values():
            future.result(timeout=30)

    def produce(self, topic: str, values: list[bytes]) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True})
        for v in values:
            try:
                key = json.loads(v).get("product_id")
            except (ValueError, AttributeError, RecursionError):  # poison records go as they are
                key = None
            producer.produce(topic, key=str(key).encode() if key else None, value=v)
        assert producer.flush(60) == 0

    def read_all(self, topic: str, timeout_s: float = 30) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
        """Every record now in `topic` (key, value, headers), reading each partition to the
        high watermark found at the start."""
        from confluent_kafka import Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        partitions = admin.list_topics(topic, timeout=30).topics[topic].partitions
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": f"reader-{uuid.uuid4()}", "enable.auto.commit": False}
        )
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(partitions) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.key(), msg.value(), dict(msg.headers() or [])))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        consumer.close()
        return out


def new_broker(tmp: Path, partitions: int | None = None) -> Broker:
    """A broker on free ports with its data under `tmp`, not started yet (skips with the
    reason when Java, the jars or confluent-kafka are missing)."""
    skip_without_kafka()
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed in this venv")
    port, controller = free_ports(2)
    data_dir = tmp / "kafka-data"
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_DATA_DIR": str(data_dir),
    }
    if partitions is not None:
        env["KAFKA_PARTITIONS"] = str(partitions)
    return Broker(f"127.0.0.1:{port}", data_dir, env)


def start_broker(tmp: Path) -> Broker:
    broker = new_broker(tmp)
    broker.sh("up")
    return broker


@dataclass
class StreamJob:
    """`productlens stream` in its own process group (the Prism runner is its child)."""

    broker: Broker
    topics: dict[str, str]
    group_id: str
    log: Path
    prism: str
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        cmd = [
            str(ROOT / ".venv" / "bin" / "productlens")
            if (ROOT / ".venv" / "bin" / "productlens").exists()
            else "productlens",
            "stream",
            f"--bootstrap-servers={self.broker.bootstrap}",
            f"--events-topic={self.topics['events']}",
            f"--predictions-topic={self.topics['predictions']}",
            f"--dlq-topic={self.topics['dlq']}",
            f"--group-id={self.group_id}",
            f"--image-base-dir={ROOT / 'examples'}",
            f"--beam-arg=--prism_location={self.prism}",
            *self.extra,
        ]
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_for(predicate: Any, timeout_s: float, job: StreamJob | None = None, interval_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if job is not None and not job.alive():
            raise AssertionError(f"the stream job died:\n{job.log.read_text()[-4000:]}")
        time.sleep(interval_s)
    return False


def topic_names(prefix: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {k: f"{prefix}-{k}-{run}" for k in ("events", "predictions", "dlq")}


__all__ = ["Broker", "StreamJob", "new_broker", "prism_binary", "start_broker", "topic_names", "wait_for"]
