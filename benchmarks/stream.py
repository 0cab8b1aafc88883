"""End-to-end events/s of the streaming pipeline on this machine, against the Kafka-only
passthrough rate.

    .venv/bin/python benchmarks/stream.py [--passthrough-events 5000] [--baseline-events 600]
                                          [--simulator-events 300] [--json out/benchmarks/stream.json]

Everything is real but the GPU: a Kafka broker (deploy/local/kafka/kafka.sh, free ports,
temporary data), Beam's Prism runner, the stream pipeline of pipelines/stream.py, and for
the third row the real tritonserver serving the **GPU-cost simulator**
(benchmarks/model_repository/gpu_cost_simulator, 20 requests/s; see benchmarks/README.md).

Rows:
- passthrough: ReadFromKafka -> WriteToKafka with no processing (the reference);
- baseline: the full two-step flow with the in-process CPU baseline model;
- baseline + refresh + dedupe: the same with the refresh trigger and content dedupe on
  (keyed state between source and sink, as `productlens stream` runs by default), quiet
  period `--refresh-quiet-s` (default 0: the trigger's state and timers run, but no event
  waits for a quiet period, which is latency by design, not throughput), dedupe wait 1 s;
- simulator: the full flow with the model behind Triton = a simulated H100.

Method: start the pipeline on an empty topic, send WARMUP events and wait for their
outputs (runner start-up, model load), then send n events at t0 and wait for n more
outputs. Rate = n / (Kafka timestamp of the last output - t0): end to end, after start-up.
Outputs leave in bundles, so a rate from the spread of output timestamps alone would be
meaningless; t0 is taken when the events are produced. Wall time from pipeline start to the
last record is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.saturation import SIMULATOR, _free_ports, make_events, simulator_params  # noqa: E402
from pipelines import stream  # noqa: E402
from pipelines.backfill import model_factory, predict_config  # noqa: E402
from transforms.io.kafka import KafkaConfig, OutgoingRecord, ReadConfig, ReadFromKafka, WriteToKafka  # noqa: E402

KAFKA_SH = ROOT / "deploy" / "local" / "kafka" / "kafka.sh"
PRISM_SH = ROOT / "deploy" / "local" / "prism" / "prism.sh"
TRITON = ROOT / "deploy" / "local" / "triton" / "server.py"
console = Console(width=150)


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topics(bootstrap: str, *names: str, partitions: int = 4) -> None:
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap)
    for f in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        f.result(timeout=30)


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for line in lines:
        p.produce(topic, value=line, key=json.loads(line)["product_id"].encode())
        p.poll(0)
    assert p.flush(60) == 0


def output_timestamps(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    admin = _admin(bootstrap)
    parts = admin.list_topics(topic, timeout=30).topics[topic].partitions
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}", "enable.auto.commit": False})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    stamps, done = [], {p for p, e in ends.items() if e == 0}
    while len(done) < len(parts):
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        stamps.append(m.timestamp()[1])
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    return sorted(stamps)


def count(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    admin = _admin(bootstrap)
    parts = admin.list_topics(topic, timeout=30).topics[topic].partitions
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count"})
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts)
    c.close()
    return total


WARMUP = 5


def run_until(
    build: Callable[[beam.Pipeline], None],
    options: PipelineOptions,
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    lines: list[bytes],
) -> tuple[float, float]:
    """Start the pipeline, warm it up, send `lines[WARMUP:]` and wait for their outputs.
    Returns (t0 in epoch seconds when the measured events were sent, wall seconds)."""
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    start = time.perf_counter()
    result = pipeline.run()

    def wait(n: int) -> None:
        while count(bootstrap, out_topic) < n:
            if result.state in ("FAILED", "CANCELLED", "DONE"):
                raise RuntimeError(f"pipeline ended early: {result.state}")
            time.sleep(0.5)

    try:
        produce(bootstrap, in_topic, lines[:WARMUP])
        wait(WARMUP)
        t0 = time.time()
        produce(bootstrap, in_topic, lines[WARMUP:])
        wait(len(lines))
    finally:
        result.cancel()
    return t0, time.perf_counter() - start


def measure(name: str, bootstrap: str, out_topic: str, n: int, t0: float, wall: float) -> dict[str, Any]:
    stamps = output_timestamps(bootstrap, out_topic)
    seconds = stamps[-1] / 1000.0 - t0
    return {
        "row": name,
        "events": n,
        "output_records": len(stamps),
        "seconds_after_warmup": round(seconds, 2),
        "events_per_s": round(n / seconds, 2),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passthrough-events", type=int, default=5000)
    parser.add_argument("--baseline-events", type=int, default=600)
    parser.add_argument("--simulator-events", type=int, default=300)
    parser.add_argument("--json", default=str(ROOT / "out" / "benchmarks" / "stream.json"))
    parser.add_argument("--max-bundle-s", type=float, default=None, help="source bundle length (stream --max_bundle_s)")
    parser.add_argument(
        "--keyed-events", type=int, default=None, help="events of the refresh + dedupe row (default: --baseline-events)"
    )
    parser.add_argument("--refresh-quiet-s", type=float, default=0.0, help="quiet period of the refresh + dedupe row")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="productlens-stream-bench-"))
    port, controller = _free_ports(2)
    kenv = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_DATA_DIR": str(work / "kafka"),
    }
    subprocess.run([str(KAFKA_SH), "up"], env=kenv, check=True, capture_output=True)
    bootstrap = f"127.0.0.1:{port}"
    prism = subprocess.run([str(PRISM_SH)], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    base_flags = ["--runner=PrismRunner", f"--prism_location={prism}", "--streaming", f"--kafka_bootstrap={bootstrap}"]
    rows: list[dict[str, Any]] = []
    triton_state = work / "triton"
    try:
        # 1. passthrough
        t_in, t_out = "pt-in", "pt-out"
        create_topics(bootstrap, t_in, t_out)
        lines = [x.encode() for x in make_events(args.passthrough_events + WARMUP, work).read_text().splitlines()]
        kafka = KafkaConfig(bootstrap)

        def passthrough(p: beam.Pipeline) -> None:
            _ = (
                p
                | ReadFromKafka(ReadConfig(kafka, (t_in,), "bench-pt"))
                | beam.Map(lambda r: OutgoingRecord(t_out, r.key or b"", r.value))
                | beam.ParDo(WriteToKafka(kafka))
            )

        console.print(f"passthrough: {len(lines)} events ...")
        t0, wall = run_until(passthrough, PipelineOptions(base_flags), bootstrap, t_in, t_out, lines)
        rows.append(measure("passthrough (Kafka only)", bootstrap, t_out, len(lines) - WARMUP, t0, wall))

        # 2. and 3. the full flow, in-process baseline and GPU-cost simulator behind Triton
        flows: list[tuple[str, int, list[str]]] = [("baseline (in-process CPU model)", args.baseline_events, [])]
        keyed = args.baseline_events if args.keyed_events is None else args.keyed_events
        if keyed:
            flows.append(
                (
                    f"baseline + refresh (quiet {args.refresh_quiet_s:g} s) + dedupe",
                    keyed,
                    [f"--refresh_quiet_s={args.refresh_quiet_s}", "--dedupe"],
                )
            )
        if args.simulator_events:
            repo = work / "repo"
            repo.mkdir()
            (repo / SIMULATOR).symlink_to(ROOT / "benchmarks" / "model_repository" / SIMULATOR)
            h, g, m = _free_ports(3)
            subprocess.run(
                [
                    sys.executable,
                    str(TRITON),
                    "up",
                    f"--state-dir={triton_state}",
                    f"--model-repository={repo}",
                    f"--models={SIMULATOR}",
                    f"--http-port={h}",
                    f"--grpc-port={g}",
                    f"--metrics-port={m}",
                ],
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            flows.append(
                (
                    "GPU-COST SIMULATOR via Triton",
                    args.simulator_events,
                    [f"--triton_url=127.0.0.1:{g}", f"--model_name={SIMULATOR}"],
                )
            )
        for i, (name, n, extra) in enumerate(flows):
            topics = {k: f"flow{i}-{k}" for k in ("events", "predictions", "dlq")}
            create_topics(bootstrap, *topics.values())
            sub = work / f"flow{i}"
            sub.mkdir()
            flow_lines = [x.encode() for x in make_events(n + WARMUP, sub).read_text().splitlines()]
            flags = [
                *base_flags,
                *extra,
                *([f"--max_bundle_s={args.max_bundle_s}"] if args.max_bundle_s else []),
                f"--events_topic={topics['events']}",
                f"--predictions_topic={topics['predictions']}",
                f"--dlq_topic={topics['dlq']}",
                f"--group_id=bench-{i}",
                f"--image_base_dir={ROOT / 'examples'}",  # make_events names examples/ images by absolute path
            ]
            options = PipelineOptions(flags)
            config = predict_config(options, model_factory(options))
            console.print(f"{name}: {n} events ...")
            t0, wall = run_until(
                lambda p, options=options, config=config: stream.build_pipeline(p, options, config),
                options,
                bootstrap,
                topics["events"],
                topics["predictions"],
                flow_lines,
            )
            rows.append(measure(name, bootstrap, topics["predictions"], n, t0, wall))
    finally:
        subprocess.run(
            [sys.executable, str(TRITON), "down", f"--state-dir={triton_state}"], capture_output=True, cwd=ROOT
        )
        subprocess.run([str(KAFKA_SH), "down", "--wipe"], env=kenv, capture_output=True)

    reference = rows[0]["events_per_s"]
    for r in rows:
        r["ratio_to_passthrough"] = round(r["events_per_s"] / reference, 4)
    table = Table(title="stream pipeline on Prism, events/s (simulator row: a GPU-COST SIMULATOR, not a GPU)")
    for col in (
        "row",
        "events",
        "seconds after warm-up",
        "events/s",
        "ratio to passthrough",
        "wall s (incl. start-up)",
    ):
        table.add_column(col, justify="left" if col == "row" else "right")
    for r in rows:
        table.add_row(
            r["row"],
            str(r["events"]),
            f"{r['seconds_after_warmup']:.1f}",
            f"{r['events_per_s']:.1f}",
            f"{r['ratio_to_passthrough']:.3f}",
            f"{r['wall_s']:.1f}",
        )
    console.print(table)
    report = {
        "benchmark": "stream",
        "rows": rows,
        "simulator": simulator_params(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
