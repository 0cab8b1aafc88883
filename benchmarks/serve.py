"""Latency and throughput of `productlens serve`: bounded closed-loop load on loopback.

    .venv/bin/python benchmarks/serve.py [--backends default,triton] [--concurrency 1,8,32]
        [--requests 2000] [--duration 12] [--cache memory|redis://...] [--images]
        [--json out/benchmarks/serve.json]

Everything is measured, nothing is simulated:

- a real `productlens serve` process (a child process, started on a free loopback port,
  used once `GET /readyz` answers 200, stopped at the end, on an error and on Ctrl-C);
- backends: the in-process default model, and `product_baseline` in a real local
  tritonserver (deploy/local/triton/server.py, as the integration tests start it; needs
  `make triton-venv`) behind `--triton-url`. If Triton cannot start, the reason is printed
  and the default-model rows are still reported;
- products: the create events of examples/events.jsonl and, when present, the products of
  ../shared/datasets/dev (read in place, never copied), text only unless `--images`;
- for each concurrency C and for uncached then cached: C asyncio clients (one shared
  httpx.AsyncClient), each with one single-product request in flight at a time (closed
  loop), until `--requests` requests or `--duration` seconds, whichever comes first.
  Uncached: every request's content is unique (a request counter appended to the title),
  so every request misses the cache and costs a model call; a few unmeasured requests warm
  the server first. Cached: a pool of products is sent once (warm-up, unmeasured), then
  the same contents are repeated;
- latency is the client's (send to full response, on the same 2 cores as the server);
  req/s counts every answered request, products/s the predictions returned; errors are
  counted by HTTP status (503s included) or exception name; the mean model batch is the
  server's `productlens_model_batch_size_sum / _count` over the row and "server ms" its own
  mean time per /v1/predictions request (`productlens_request_seconds`), both from
  /metrics: client latency minus server ms is the HTTP client's and the loopback's share;
- the baseline for the ratio target: the same model on the same kind of products in batch,
  as a backfill runs it: `ProductCore.predict(events)` in batches of the default batch size
  (64) from the core `service/runtime.py load_runtime` builds (same settings, same factory),
  in a child process of its own before the server starts (so nothing else competes for the
  cores), on fresh unique contents. ratio = serve products/s at the highest concurrency, uncached /
  baseline products/s.

Targets (issue 14): cache-hit p99 < 5 ms; uncached default model at concurrency 1: p50 <
60 ms; at concurrency 32 products/s >= 80% of the backfill's with the same model.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

TRITON_SCRIPT = ROOT / "deploy" / "local" / "triton" / "server.py"
TRITON_MODEL = "product_baseline"
DEV = ROOT.parent / "shared" / "datasets" / "dev"
DEV_FILES = ("shopify_stores_dev.jsonl", "extractgpt_ae110k_oamine.jsonl")
SHOP = "shop-bench"

# Issue 14's targets.
CACHE_HIT_P99_MS = 5.0
UNCACHED_C1_P50_MS = 60.0
RATIO_TARGET = 0.8

console = Console(width=170)


# -- pure helpers (unit-tested) ----------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's
    default); NaN for no values."""
    if not values:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def parse_server_metrics(text: str) -> dict[str, float]:
    """From a Prometheus exposition: `productlens_model_batch_size` sum and count, and the
    server's own `productlens_request_seconds` sum and count for `/v1/predictions` (all
    statuses)."""
    out = {"batch_sum": 0.0, "batch_count": 0.0, "request_seconds_sum": 0.0, "request_count": 0.0}
    for m in re.finditer(r"^(productlens_\w+?)(?:\{([^}]*)\})? ([0-9.eE+-]+)$", text, re.MULTILINE):
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "productlens_model_batch_size_sum":
            out["batch_sum"] += value
        elif name == "productlens_model_batch_size_count":
            out["batch_count"] += value
        elif 'route="/v1/predictions"' in labels and name == "productlens_request_seconds_sum":
            out["request_seconds_sum"] += value
        elif 'route="/v1/predictions"' in labels and name == "productlens_request_seconds_count":
            out["request_count"] += value
    return out


@dataclass
class LoadResult:
    """What the clients saw during one row."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    predictions: int = 0
    cache_hits: int = 0
    wall_s: float = 0.0


def summarise(result: LoadResult, before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """One row's figures: latency percentiles in ms over every answered request, rates over
    the row's wall time, errors by status, and from the server's /metrics over the row its
    mean model batch and its own mean request time (parse_server_metrics before and after)."""
    lat_ms = [x * 1000 for x in result.latencies_s]
    requests = len(lat_ms)
    wall = result.wall_s
    batches = after["batch_count"] - before["batch_count"]
    batched = after["batch_sum"] - before["batch_sum"]
    served = after["request_count"] - before["request_count"]
    served_s = after["request_seconds_sum"] - before["request_seconds_sum"]
    ok = result.statuses.get("200", 0)
    return {
        "requests": requests,
        "ok": ok,
        "errors": {k: v for k, v in sorted(result.statuses.items()) if k != "200"},
        "predictions": result.predictions,
        "cache_hits": result.cache_hits,
        "seconds": round(wall, 3),
        "p50_ms": round(percentile(lat_ms, 50), 2) if lat_ms else None,
        "p95_ms": round(percentile(lat_ms, 95), 2) if lat_ms else None,
        "p99_ms": round(percentile(lat_ms, 99), 2) if lat_ms else None,
        "max_ms": round(max(lat_ms), 2) if lat_ms else None,
        "requests_per_s": round(requests / wall, 2) if wall > 0 else None,
        "products_per_s": round(result.predictions / wall, 2) if wall > 0 else None,
        "model_batches": int(batches),
        "mean_model_batch": round(batched / batches, 2) if batches else None,
        "server_mean_ms": round(1000 * served_s / served, 2) if served else None,
    }


def unique_product(product: dict[str, Any], tag: str) -> dict[str, Any]:
    """`product` with a content of its own: `tag` appended to the title (within its limit)."""
    out = dict(product)
    suffix = f" #{tag}"
    out["title"] = product["title"][: 1000 - len(suffix)] + suffix
    return out


def dev_product(record: dict[str, Any], images: bool) -> dict[str, Any] | None:
    """A ../shared/datasets/dev record in the ProductEvent `product` shape."""
    title = (record.get("title") or "").strip()
    if not title:
        return None
    product: dict[str, Any] = {
        "title": title[:900],
        "description_html": (record.get("description") or "")[:20_000],
        "vendor": (record.get("vendor") or "")[:200],
        "product_type": (record.get("product_type") or "")[:200],
    }
    if images and record.get("image_urls"):
        product["image_urls"] = list(record["image_urls"])[:4]
    return product


def target_lines(rows: list[dict[str, Any]], baselines: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 14's targets against the measured rows: one line per cached row (cache-hit p99),
    the default model's uncached concurrency-1 p50, and per backend the ratio of its
    highest-concurrency uncached products/s to its backfill baseline."""
    lines: list[dict[str, Any]] = []
    for r in rows:
        if r["cache"] == "cached" and r["p99_ms"] is not None:
            lines.append(
                {
                    "target": f"cache-hit p99 < {CACHE_HIT_P99_MS:g} ms ({r['backend']}, concurrency {r['concurrency']})",
                    "measured": f"{r['p99_ms']:.2f} ms",
                    "met": r["p99_ms"] < CACHE_HIT_P99_MS and not r["errors"],
                }
            )
    for r in rows:
        if r["backend"] == "default" and r["cache"] == "uncached" and r["concurrency"] == 1 and r["p50_ms"] is not None:
            lines.append(
                {
                    "target": f"uncached, default model, concurrency 1: p50 < {UNCACHED_C1_P50_MS:g} ms",
                    "measured": f"{r['p50_ms']:.2f} ms",
                    "met": r["p50_ms"] < UNCACHED_C1_P50_MS,
                }
            )
    for backend, base in baselines.items():
        uncached = [r for r in rows if r["backend"] == backend and r["cache"] == "uncached"]
        if not uncached or not base.get("products_per_s"):
            continue
        top = max(uncached, key=lambda r: r["concurrency"])
        ratio = (top["products_per_s"] or 0.0) / base["products_per_s"]
        lines.append(
            {
                "target": f"concurrency {top['concurrency']} products/s >= {RATIO_TARGET:.0%} of the backfill's "
                f"({backend})",
                "measured": f"{top['products_per_s']:.1f} / {base['products_per_s']:.1f} = {ratio:.2f}",
                "ratio": round(ratio, 3),
                "met": ratio >= RATIO_TARGET,
            }
        )
    return lines


def fmt_errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def build_table(rows: list[dict[str, Any]], title: str, caption: str) -> Table:
    table = Table(title=title, caption=caption)
    columns = (
        "backend",
        "cache",
        "concurrency",
        "requests",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "req/s",
        "products/s",
        "mean batch",
        "server ms",
        "errors",
    )
    for col in columns:
        table.add_column(col, justify="left" if col in ("backend", "cache", "errors") else "right")
    for r in rows:
        table.add_row(
            r["backend"],
            r["cache"],
            str(r["concurrency"]),
            str(r["requests"]),
            _ms(r["p50_ms"]),
            _ms(r["p95_ms"]),
            _ms(r["p99_ms"]),
            "-" if r["requests_per_s"] is None else f"{r['requests_per_s']:.1f}",
            "-" if r["products_per_s"] is None else f"{r['products_per_s']:.1f}",
            "-" if r["mean_model_batch"] is None else f"{r['mean_model_batch']:.1f}",
            _ms(r.get("server_mean_ms")),
            fmt_errors(r["errors"]),
        )
    return table


# -- products --------------------------------------------------------------------------


def load_products(images: bool, dev: bool, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Distinct products (ProductEvent `product` dicts) and where they came from."""
    products: list[dict[str, Any]] = []
    sources: list[str] = []
    seen: set[str] = set()

    def add(p: dict[str, Any]) -> None:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            products.append(p)

    for line in (ROOT / "examples" / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") != "create" or not isinstance(event.get("product"), dict):
            continue
        product = dict(event["product"])
        if not images:
            product.pop("image_urls", None)
        add(product)
    sources.append(f"examples/events.jsonl ({len(products)})")
    if dev:
        for name in DEV_FILES:
            path = DEV / name
            if not path.is_file():
                continue
            before = len(products)
            with path.open() as f:
                for line in f:
                    p = dev_product(json.loads(line), images)
                    if p is not None:
                        add(p)
            sources.append(f"../shared/datasets/dev/{name} ({len(products) - before})")
    # Interleave the sources' products so any prefix mixes stores and kinds of text.
    rng_order = sorted(range(len(products)), key=lambda i: (i * 2654435761) % 2**32)
    products = [products[i] for i in rng_order][:limit] if limit else [products[i] for i in rng_order]
    return products, sources


# -- processes -------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _serve_argv() -> list[str]:
    script = Path(sys.executable).parent / "productlens"
    if script.is_file():
        return [str(script), "serve"]
    return [sys.executable, "-c", "from pipelines.cli import app; app()", "serve"]


@contextmanager
def serve_process(args: list[str], log_path: Path, ready_timeout_s: float) -> Iterator[str]:
    """A `productlens serve` child in its own process group; yields its base URL once
    /readyz is 200; always stopped (SIGTERM, then SIGKILL to the group)."""
    (port,) = free_ports(1)
    # The review store beside the server's log, never review.sqlite in the checkout.
    review_db = f"sqlite:///{log_path.parent / f'review-{port}.sqlite'}"
    argv = [*_serve_argv(), "--host", "127.0.0.1", "--port", str(port), "--review-db", review_db, *args]
    log = log_path.open("w")
    env = {k: v for k, v in os.environ.items() if k != "PRODUCTLENS_API_KEYS"}
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        last = "no answer"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"productlens serve exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")[:500]
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"productlens serve not ready after {ready_timeout_s:.0f} s: {last}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@contextmanager
def triton_server(work: Path) -> Iterator[str]:
    """product_baseline in a local tritonserver on free ports (as the integration tests start
    it); yields its gRPC host:port; always brought down. Raises RuntimeError why not."""
    if not (ROOT / ".venv-triton" / "bin" / "python").exists():
        raise RuntimeError("the local Triton runtime is not installed (.venv-triton): run `make triton-venv`")
    repo = work / "model_repository"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / TRITON_MODEL).symlink_to(ROOT / "model_repository" / TRITON_MODEL)
    state = work / "triton"
    http, grpc_port, metrics_port = free_ports(3)
    try:
        up = subprocess.run(
            [
                sys.executable,
                str(TRITON_SCRIPT),
                "up",
                f"--state-dir={state}",
                f"--model-repository={repo}",
                f"--models={TRITON_MODEL}",
                f"--http-port={http}",
                f"--grpc-port={grpc_port}",
                f"--metrics-port={metrics_port}",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=400,
        )
        if up.returncode != 0:
            raise RuntimeError(f"tritonserver did not start: {(up.stdout + up.stderr).strip()[-1500:]}")
        yield f"127.0.0.1:{grpc_port}"
    finally:
        subprocess.run(
            [sys.executable, str(TRITON_SCRIPT), "down", f"--state-dir={state}"],
            capture_output=True,
            cwd=ROOT,
            timeout=120,
        )


# -- load ------------------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        return parse_server_metrics(r.read().decode())


async def closed_loop(
    url: str,
    concurrency: int,
    body: Callable[[int], dict[str, Any]],
    max_requests: int,
    duration_s: float,
    timeout_s: float = 60.0,
) -> LoadResult:
    """`concurrency` clients, each one request in flight at a time, until `max_requests`
    requests have been started or `duration_s` has passed."""
    import httpx

    result = LoadResult()
    counter = itertools.count()
    start = time.perf_counter()
    stop_at = start + duration_s

    async def client_loop() -> None:
        # One client per simulated caller, each with its own connection (a shared pool's
        # bookkeeping grows with the number of connections and would load the 2 cores).
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout_s) as client:
            while True:
                i = next(counter)
                if i >= max_requests or time.perf_counter() >= stop_at:
                    return
                payload = body(i)
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v1/predictions", json=payload)
                    elapsed = time.perf_counter() - t0
                    status = str(response.status_code)
                    if response.status_code == 200:
                        data = response.json()
                        result.predictions += len(data["predictions"])
                        result.cache_hits += data.get("cache_hits", 0)
                except httpx.HTTPError as exc:
                    elapsed = time.perf_counter() - t0
                    status = type(exc).__name__
                result.latencies_s.append(elapsed)
                result.statuses[status] += 1

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - start
    return result


def request_body(product: dict[str, Any], product_id: str) -> dict[str, Any]:
    return {"shop_id": SHOP, "product_id": product_id, "product": product}


def measure_backend(
    backend: str,
    url: str,
    products: list[dict[str, Any]],
    concurrencies: list[int],
    args: argparse.Namespace,
    run_id: str,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    serial = itertools.count()  # unique contents across every uncached row of this backend

    def uncached_body(_: int) -> dict[str, Any]:
        n = next(serial)
        p = products[n % len(products)]
        return request_body(unique_product(p, f"{run_id}-u{n}"), f"bench-u-{n}")

    # Unmeasured warm-up: first requests pay for lazy initialisation and connection set-up.
    asyncio.run(closed_loop(url, 1, uncached_body, args.warmup_requests, 120.0))
    for c in concurrencies:
        console.print(f"[bold]{backend}[/bold] uncached, concurrency {c} ...")
        before = scrape(url)
        result = asyncio.run(closed_loop(url, c, uncached_body, args.requests, args.duration))
        rows.append(
            {"backend": backend, "cache": "uncached", "concurrency": c} | summarise(result, before, scrape(url))
        )

    pool = [unique_product(p, f"{run_id}-c{i}") for i, p in enumerate(products[: args.cached_pool])]
    console.print(f"[bold]{backend}[/bold] cached: warming {len(pool)} products ...")
    warm = asyncio.run(
        closed_loop(url, max(concurrencies), lambda i: request_body(pool[i], f"bench-c-{i}"), len(pool), 600.0)
    )
    if warm.statuses.get("200", 0) != len(pool):
        console.print(f"[yellow]warm-up answers: {dict(warm.statuses)}[/yellow]")
    for c in concurrencies:
        console.print(f"[bold]{backend}[/bold] cached, concurrency {c} ...")
        before = scrape(url)
        result = asyncio.run(
            closed_loop(
                url,
                c,
                lambda i: request_body(pool[i % len(pool)], f"bench-c-{i % len(pool)}"),
                args.cached_requests,
                args.duration,
            )
        )
        row = {"backend": backend, "cache": "cached", "concurrency": c} | summarise(result, before, scrape(url))
        if result.cache_hits != result.predictions:
            console.print(
                f"[yellow]cached row: {result.predictions - result.cache_hits} answers were not cache hits[/yellow]"
            )
        rows.append(row)
    return rows


# -- the backfill baseline -------------------------------------------------------------


def backfill_baseline(
    products: list[dict[str, Any]], n: int, run_id: str, triton_url: str | None, image_base_dir: str | None
) -> dict[str, Any]:
    """`_backfill_baseline` in a child process of its own, as a backfill job would run: the
    model it loads (and its threads) stay out of the load generator's process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_backfill_baseline, products, n, run_id, triton_url, image_base_dir).result()


def _backfill_baseline(
    products: list[dict[str, Any]], n: int, run_id: str, triton_url: str | None, image_base_dir: str | None
) -> dict[str, Any]:
    """products/s of the product core in batch, as a backfill runs it: `ProductCore.predict`
    on `n` unique contents, chunked by the default batch size, from the runtime the service
    builds with the same settings. Loading is outside the clock."""
    from service.runtime import load_runtime
    from transforms.config import PredictSettings

    settings = PredictSettings(triton_url=triton_url, image_base_dir=image_base_dir)
    runtime = load_runtime(settings)
    try:
        core = runtime.cores[0]
        events = [
            {
                "event_id": f"bench-b-{i}",
                "type": "create",
                "product_id": f"bench-b-{i}",
                "shop_id": SHOP,
                "occurred_at": "2026-11-30T00:00:00Z",
                "product": unique_product(products[i % len(products)], f"{run_id}-b{i}"),
            }
            for i in range(n)
        ]
        core.predict(events[: min(64, n)])  # warm-up, unmeasured (first batch: lazy initialisation)
        start = time.perf_counter()
        out = core.predict(events)
        seconds = time.perf_counter() - start
    finally:
        runtime.close()
    return {
        "method": "ProductCore.predict in batches of "
        f"{settings.batch_max} (service/runtime.py load_runtime), in a process of its own",
        "products": n,
        "predictions": len(out.predictions),
        "dead_letters": len(out.dead_letters),
        "seconds": round(seconds, 3),
        "products_per_s": round(len(out.predictions) / seconds, 2),
        "batch_size": settings.batch_max,
        "model": runtime.metadata.name,
        "model_version": runtime.metadata.model_version,
    }


# -- main ------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated integers >= 1")
    return values


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="default,triton", help="comma-separated: default, triton")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8, 32], help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests per uncached row")
    parser.add_argument("--cached-requests", type=int, default=3000, help="at most this many requests per cached row")
    parser.add_argument("--duration", type=float, default=12.0, help="at most this many seconds per row")
    parser.add_argument("--warmup-requests", type=int, default=20, help="unmeasured uncached requests per backend")
    parser.add_argument("--cached-pool", type=int, default=200, help="distinct products warmed for the cached rows")
    parser.add_argument("--baseline-products", type=int, default=640, help="products of the backfill baseline")
    parser.add_argument("--limit", type=int, default=2000, help="distinct source products to draw from (0: all)")
    parser.add_argument("--no-dev", action="store_true", help="only examples/events.jsonl, not ../shared/datasets/dev")
    parser.add_argument("--images", action="store_true", help="keep the products' image URLs (default: text only)")
    parser.add_argument("--cache", default="memory", help="the server's --cache: memory or redis://host:port/db")
    parser.add_argument("--triton-url", default=None, help="an already running Triton (host:grpc_port) to use")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for /readyz")
    parser.add_argument("--json", "--out", dest="json", default=str(ROOT / "out" / "benchmarks" / "serve.json"))
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"default", "triton"}:
        parser.error(f"unknown backends {sorted(unknown)}")
    signal.signal(signal.SIGTERM, _raise_interrupt)

    products, sources = load_products(args.images, not args.no_dev, args.limit)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    image_base_dir = str(ROOT / "examples") if args.images else None
    console.print(
        f"{len(products)} distinct products from {', '.join(sources)}; images {'on' if args.images else 'off'}"
    )

    work = Path(tempfile.mkdtemp(prefix="productlens-serve-bench-"))
    rows: list[dict[str, Any]] = []
    baselines: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    server_args = ["--cache", args.cache]
    if image_base_dir:
        server_args += ["--image-base-dir", image_base_dir]
    try:
        for backend in backends:
            try:
                if backend == "default":
                    console.print(f"[bold]default[/bold] backfill baseline: {args.baseline_products} products ...")
                    baselines[backend] = backfill_baseline(
                        products, args.baseline_products, run_id, None, image_base_dir
                    )
                    with serve_process(server_args, work / "serve-default.log", args.ready_timeout) as url:
                        rows += measure_backend(backend, url, products, args.concurrency, args, run_id)
                else:
                    with _triton(args.triton_url, work) as triton_url:
                        console.print(f"[bold]triton[/bold] backfill baseline: {args.baseline_products} products ...")
                        baselines[backend] = backfill_baseline(
                            products, args.baseline_products, run_id, triton_url, image_base_dir
                        )
                        with serve_process(
                            [*server_args, "--triton-url", triton_url], work / "serve-triton.log", args.ready_timeout
                        ) as url:
                            rows += measure_backend(backend, url, products, args.concurrency, args, run_id)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                skipped[backend] = str(exc)
                console.print(f"[red]{backend}: not measured:[/red] {exc}")
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: the servers were stopped; partial results follow")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    caption = (
        "latency: client-side, send to full response, loopback, clients on the same 2 cores as the server; "
        "mean batch: the server's productlens_model_batch_size_sum/_count; server ms: its mean request time. "
        "Backfill baseline: "
        + "; ".join(
            f"{b}: {v['products_per_s']:.1f} products/s ({v['method']}, {v['products']} products)"
            for b, v in baselines.items()
        )
    )
    title = f"productlens serve, closed loop ({'text + images' if args.images else 'text only'}, cache {args.cache})"
    console.print(build_table(rows, title, caption))
    targets = target_lines(rows, baselines)
    for t in targets:
        mark = "[green]MET[/green]" if t["met"] else "[red]NOT MET[/red]"
        console.print(f"target: {t['target']}: {t['measured']} -> {mark}")
    for backend, why in skipped.items():
        console.print(f"[yellow]{backend} not measured:[/yellow] {why}")

    report = {
        "benchmark": "serve",
        "note": "measured figures (no simulator): real productlens serve processes on loopback",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "backends": backends,
            "concurrency": args.concurrency,
            "requests": args.requests,
            "cached_requests": args.cached_requests,
            "duration_s": args.duration,
            "warmup_requests": args.warmup_requests,
            "cached_pool": args.cached_pool,
            "cache": args.cache,
            "images": args.images,
            "products": len(products),
            "sources": sources,
        },
        "rows": rows,
        "baselines": baselines,
        "targets": targets,
        "skipped": skipped,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.json}")


@contextmanager
def _triton(url: str | None, work: Path) -> Iterator[str]:
    if url:
        yield url
        return
    with triton_server(work / "triton-run") as started:
        yield started


if __name__ == "__main__":
    main()
