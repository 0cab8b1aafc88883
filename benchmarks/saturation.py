"""Does the pipeline keep a GPU model server saturated? Measured against a GPU-COST SIMULATOR.

    .venv/bin/python benchmarks/saturation.py [--products 300] [--json out/benchmarks/saturation.json]

What runs, all real but the GPU:
- the real tritonserver (deploy/local/triton/server.py) with a benchmark-only repository:
  `gpu_cost_simulator` (benchmarks/model_repository/, a Python-backend model that SLEEPS
  a + b*n seconds per batch of n, one batch at a time: a simulated H100 running a 7B
  vision LLM, parameters and sources in benchmarks/README.md) and the real
  `product_baseline` (for its own CPU throughput);
- the real backfill pipeline (FnApiRunner, decode, image preparation, both steps,
  correction) with `--triton-url`, under several client settings;
- the peer a Beam user would pick, measured in the same run: Beam's own `RunInference`
  with a `RemoteModelHandler` over the same simulated server (BatchElements 8..64, one
  batch at a time), after the same decode and image preparation, classify requests only
  (its "products/s" counts requests, so compare requests/s and saturation).

Figures:
- requests/s: model calls the pipeline completed per second of pipeline run time;
- busy: the simulator's busy fraction = Triton's compute_infer time for it / wall time;
- saturation = requests/s / simulator capacity (max_batch / (a + b*max_batch)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipelines.backfill import BackfillOptions, run  # noqa: E402

SERVER = ROOT / "deploy" / "local" / "triton" / "server.py"
SIMULATOR = "gpu_cost_simulator"
BASELINE = "product_baseline"
console = Console(width=150)


@dataclass(frozen=True)
class Setting:
    name: str
    batch_max: int
    max_in_flight: int
    batch_min: int = 8


SETTINGS = [
    Setting("serial: batch 8, 1 in flight", 8, 1),
    Setting("batch 64, 1 in flight", 64, 1),
    Setting("default: batch 64, 4 in flight", 64, 4),
    Setting("batch 64, 8 in flight", 64, 8),
    Setting("fixed batch 64, 4 in flight", 64, 4, 64),
]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def simulator_params() -> dict[str, float]:
    text = (ROOT / "benchmarks" / "model_repository" / SIMULATOR / "config.pbtxt").read_text()
    values = dict(re.findall(r'key: "(\w+)" value: \{ string_value: "([^"]*)" \}', text))
    max_batch = int(re.search(r"max_batch_size:\s*(\d+)", text).group(1))  # type: ignore[union-attr]
    a, b = float(values["batch_fixed_s"]), float(values["per_item_s"])
    return {"a_s": a, "b_s": b, "max_batch": max_batch, "capacity_rps": max_batch / (a + b * max_batch)}


def make_events(n: int, directory: Path) -> Path:
    """n create events cycled from examples/events.jsonl, new ids, absolute image paths."""
    source = [json.loads(line) for line in (ROOT / "examples" / "events.jsonl").read_text().splitlines()]
    source = [e for e in source if e["type"] == "create"]
    path = directory / "events.jsonl"
    with path.open("w") as out:
        for i in range(n):
            e = json.loads(json.dumps(source[i % len(source)]))
            e["event_id"] = f"bench-{i}"
            e["product_id"] = f"gid://shopify/Product/bench-{i}"
            e["product"]["title"] = f"{e['product']['title']} #{i}"  # distinct content
            e["product"]["image_urls"] = [str(ROOT / "examples" / u) for u in e["product"]["image_urls"]]
            out.write(json.dumps(e) + "\n")
    return path


def metrics(port: int, model: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for name in ("nv_inference_compute_infer_duration_us", "nv_inference_exec_count", "nv_inference_request_success"):
        m = re.search(rf'^{name}{{[^}}]*model="{model}"[^}}]*}} ([0-9.e+]+)$', text, re.MULTILINE)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def run_backfill(events: Path, out: Path, url: str, model: str, setting: Setting) -> tuple[float, int, int]:
    options = BackfillOptions(
        [
            f"--input={events}",
            f"--output={out}",
            f"--triton_url={url}",
            f"--model_name={model}",
            f"--batch_max={setting.batch_max}",
            f"--batch_min={setting.batch_min}",
            f"--max_in_flight={setting.max_in_flight}",
            f"--image_base_dir={ROOT / 'examples'}",  # the events name examples/ images by absolute path
        ]
    )
    summary = run(options)
    return summary.seconds, summary.predicted, summary.dead_letter_total


def run_inference_peer(events: Path, url: str, model: str, batch_min: int, batch_max: int) -> tuple[float, int]:
    """The peer a Beam user would pick: Beam's own RunInference with a RemoteModelHandler
    over the same Triton model, batched by BatchElements, after the same decode and image
    preparation. It sends the classify request of every product (one call each), one
    batch at a time per worker thread: no in-flight window. Returns (seconds, requests)."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RemoteModelHandler, RunInference
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from model_repository.contract import ModelRequest, Task
    from transforms.decode import decode_event
    from transforms.images.prepare import ImageConfig, fetch_image, prepare_image
    from transforms.model.steps import model_product
    from transforms.model.triton import TritonModel
    from transforms.records import WorkItem, content_hash
    from transforms.sanitise import html_to_text

    class ContractHandler(RemoteModelHandler):
        def __init__(self) -> None:
            super().__init__(namespace="saturation_peer", num_retries=0)

        def create_client(self):  # type: ignore[no-untyped-def]
            return TritonModel(url, model)()

        def request(self, batch, client, inference_args=None):  # type: ignore[no-untyped-def]
            return client.infer_batch(list(batch))

        def batch_elements_kwargs(self) -> dict[str, int]:
            return {"min_batch_size": batch_min, "max_batch_size": batch_max}

    images = ImageConfig()
    base_dir = str(ROOT / "examples")

    def to_request(line: bytes) -> tuple[bytes, bytes | None]:
        event = decode_event(line)
        text, _ = html_to_text(event.product.description_html)  # type: ignore[union-attr]
        item = WorkItem(event=event, content_hash=content_hash(event.product), description_text=text)  # type: ignore[arg-type]
        url_ = item.product.image_urls[0] if item.product.image_urls else None
        image = prepare_image(fetch_image(url_, images, base_dir), images, url_) if url_ else None
        return ModelRequest(task=Task.CLASSIFY, product=model_product(item)).model_dump_json().encode(), image

    lines = [line.encode() for line in events.read_text().splitlines() if line.strip()]
    start = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = (
            p
            | beam.Create(lines)
            | "Prepare" >> beam.Map(to_request)
            | RunInference(ContractHandler())
            | beam.combiners.Count.Globally()
        )
    return time.perf_counter() - start, len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=300, help="products per simulator run")
    parser.add_argument("--baseline-products", type=int, default=300)
    parser.add_argument("--settings", default="all", help="comma-separated setting indexes, or all")
    parser.add_argument("--json", default=str(ROOT / "out" / "benchmarks" / "saturation.json"))
    args = parser.parse_args()

    sim = simulator_params()
    work = Path(tempfile.mkdtemp(prefix="productlens-saturation-"))
    repo = work / "model_repository"
    repo.mkdir()
    (repo / SIMULATOR).symlink_to(ROOT / "benchmarks" / "model_repository" / SIMULATOR)
    (repo / BASELINE).symlink_to(ROOT / "model_repository" / BASELINE)
    http, grpc_port, metrics_port = _free_ports(3)
    state = work / "triton"
    up = subprocess.run(
        [
            sys.executable,
            str(SERVER),
            "up",
            f"--state-dir={state}",
            f"--model-repository={repo}",
            f"--models={SIMULATOR},{BASELINE}",
            f"--http-port={http}",
            f"--grpc-port={grpc_port}",
            f"--metrics-port={metrics_port}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if up.returncode != 0:
        console.print(up.stdout, up.stderr)
        raise SystemExit("tritonserver did not start; see the log above")
    url = f"127.0.0.1:{grpc_port}"
    results: list[dict[str, object]] = []
    try:
        events = make_events(args.products, work)
        chosen = SETTINGS if args.settings == "all" else [SETTINGS[int(i)] for i in args.settings.split(",")]

        def measure(name: str, batch_max: int, max_in_flight: int, job) -> dict[str, object]:  # type: ignore[no-untyped-def]
            """One simulator row: `job()` -> (seconds, products, dead letters), with the
            server's own counts from Triton's metrics around it."""
            before, t0 = metrics(metrics_port, SIMULATOR), time.perf_counter()
            seconds, products, dead = job()
            wall = time.perf_counter() - t0
            after = metrics(metrics_port, SIMULATOR)
            calls = after["nv_inference_request_success"] - before["nv_inference_request_success"]
            execs = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
            # The simulator sleeps exactly a + b*n per execution, so its busy time follows
            # from Triton's counts. (compute_infer_duration is summed per request, so it
            # counts a batch's time once for each request in it.)
            busy_s = sim["a_s"] * execs + sim["b_s"] * calls
            rps = calls / seconds
            return {
                "setting": name,
                "batch_max": batch_max,
                "max_in_flight": max_in_flight,
                "products": products,
                "dead_letters": dead,
                "model_calls": calls,
                "seconds": round(seconds, 2),
                "products_per_s": round(products / seconds, 2),
                "requests_per_s": round(rps, 2),
                "server_busy_fraction": round(busy_s / wall, 3),
                "mean_server_batch": round(calls / execs, 1) if execs else 0.0,
                "saturation_ratio": round(rps / sim["capacity_rps"], 3),
            }

        for setting in chosen:
            console.print(f"[bold]simulator[/bold] {setting.name}: {args.products} products ...")
            results.append(
                measure(
                    setting.name,
                    setting.batch_max,
                    setting.max_in_flight,
                    lambda setting=setting: run_backfill(events, work / "out", url, SIMULATOR, setting),
                )
            )
        console.print(f"[bold]simulator[/bold] Beam RunInference peer: {args.products} products ...")
        results.append(
            measure(
                "PEER: Beam RunInference + RemoteModelHandler (BatchElements 8..64), classify only",
                64,
                1,
                lambda: (*run_inference_peer(events, url, SIMULATOR, 8, 64), 0),
            )
        )
        console.print(f"[bold]baseline[/bold] through Triton: {args.baseline_products} products ...")
        (work / "base").mkdir()
        base_events = make_events(args.baseline_products, work / "base")
        default = SETTINGS[2]
        before = metrics(metrics_port, BASELINE)
        seconds, predicted, dead = run_backfill(base_events, work / "out-base", url, BASELINE, default)
        after = metrics(metrics_port, BASELINE)
        calls = after["nv_inference_request_success"] - before["nv_inference_request_success"]
        execs = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
        baseline = {
            "products": predicted,
            "dead_letters": dead,
            "model_calls": calls,
            "seconds": round(seconds, 2),
            "products_per_s": round(predicted / seconds, 2),
            "requests_per_s": round(calls / seconds, 2),
            "mean_server_batch": round(calls / execs, 1) if execs else 0.0,
        }
    finally:
        subprocess.run([sys.executable, str(SERVER), "down", f"--state-dir={state}"], capture_output=True, cwd=ROOT)

    table = Table(
        title=f"pipeline vs GPU-COST SIMULATOR (capacity {sim['capacity_rps']:.1f} requests/s; a={sim['a_s']}s, b={sim['b_s']}s, max batch {sim['max_batch']})"
    )
    for col in (
        "client setting",
        "products/s",
        "requests/s",
        "server busy",
        "mean server batch",
        "saturation",
        "dead letters",
    ):
        table.add_column(col, justify="right" if col != "client setting" else "left")
    for r in results:
        table.add_row(
            r["setting"],
            f"{r['products_per_s']:.2f}",
            f"{r['requests_per_s']:.2f}",
            f"{r['server_busy_fraction']:.2f}",
            f"{r['mean_server_batch']}",
            f"{r['saturation_ratio']:.2f}",
            str(r["dead_letters"]),
        )
    console.print(table)
    console.print(
        f"product_baseline (real CPU model) through Triton, default client: {baseline['products_per_s']} products/s, "
        f"{baseline['requests_per_s']} requests/s, mean server batch {baseline['mean_server_batch']}"
    )
    report = {
        "benchmark": "saturation",
        "note": "server figures come from a GPU-cost simulator, not a GPU",
        "simulator": sim,
        "settings": results,
        "baseline_through_triton": baseline,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
