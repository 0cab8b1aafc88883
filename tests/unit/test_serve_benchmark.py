"""benchmarks/serve.py's pure helpers: percentiles, the /metrics parse, row summaries and
the target lines. No server, no timing assertions."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("serve_benchmark", ROOT / "benchmarks" / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def test_percentile_interpolates_like_numpy(bench) -> None:  # type: ignore[no-untyped-def]
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert bench.percentile(values, 0) == 1.0
    assert bench.percentile(values, 50) == 3.0
    assert bench.percentile(values, 100) == 5.0
    assert bench.percentile(values, 25) == 2.0
    assert bench.percentile([1.0, 2.0], 50) == 1.5
    assert bench.percentile([7.0], 99) == 7.0
    assert math.isnan(bench.percentile([], 50))
    with pytest.raises(ValueError):
        bench.percentile([1.0], 101)


def test_parse_server_metrics(bench) -> None:  # type: ignore[no-untyped-def]
    text = (
        "# HELP productlens_model_batch_size products per model batch\n"
        'productlens_model_batch_size_bucket{le="1.0"} 3.0\n'
        "productlens_model_batch_size_count 12.0\n"
        "productlens_model_batch_size_sum 96.0\n"
        "productlens_model_batch_size_created 1.7e+09\n"
        'productlens_request_seconds_count{route="/v1/predictions",status="200"} 10.0\n'
        'productlens_request_seconds_sum{route="/v1/predictions",status="200"} 0.5\n'
        'productlens_request_seconds_count{route="/v1/predictions",status="503"} 2.0\n'
        'productlens_request_seconds_sum{route="/v1/predictions",status="503"} 0.1\n'
        'productlens_request_seconds_count{route="/readyz",status="200"} 7.0\n'
    )
    m = bench.parse_server_metrics(text)
    assert (m["batch_sum"], m["batch_count"]) == (96.0, 12.0)
    assert m["request_count"] == 12.0 and m["request_seconds_sum"] == pytest.approx(0.6)
    assert bench.parse_server_metrics("")["batch_count"] == 0.0


def test_summarise_counts_errors_and_mean_batch(bench) -> None:  # type: ignore[no-untyped-def]
    result = bench.LoadResult(
        latencies_s=[0.010, 0.020, 0.030, 0.040],
        statuses=Counter({"200": 3, "503": 1}),
        predictions=3,
        cache_hits=0,
        wall_s=2.0,
    )
    before = {"batch_sum": 10.0, "batch_count": 2.0, "request_seconds_sum": 1.0, "request_count": 6.0}
    after = {"batch_sum": 22.0, "batch_count": 5.0, "request_seconds_sum": 1.1, "request_count": 10.0}
    row = bench.summarise(result, before, after)
    assert row["requests"] == 4 and row["ok"] == 3
    assert row["errors"] == {"503": 1}
    assert row["p50_ms"] == 25.0
    assert row["requests_per_s"] == 2.0 and row["products_per_s"] == 1.5
    assert row["model_batches"] == 3 and row["mean_model_batch"] == 4.0
    assert row["server_mean_ms"] == 25.0
    zero = dict.fromkeys(after, 0.0)
    empty = bench.summarise(bench.LoadResult(), zero, zero)
    assert empty["p99_ms"] is None and empty["mean_model_batch"] is None


def _row(backend: str, cache: str, c: int, p50: float, p99: float, pps: float, errors=None):  # type: ignore[no-untyped-def]
    return {
        "backend": backend,
        "cache": cache,
        "concurrency": c,
        "p50_ms": p50,
        "p99_ms": p99,
        "products_per_s": pps,
        "errors": errors or {},
    }


def test_target_lines(bench) -> None:  # type: ignore[no-untyped-def]
    rows = [
        _row("default", "uncached", 1, 40.0, 80.0, 25.0),
        _row("default", "uncached", 32, 400.0, 900.0, 45.0),
        _row("default", "cached", 1, 1.0, 3.0, 500.0),
        _row("default", "cached", 32, 10.0, 20.0, 900.0, {"503": 2}),
    ]
    lines = bench.target_lines(rows, {"default": {"products_per_s": 50.0}})
    met = {line["target"]: line["met"] for line in lines}
    assert met["cache-hit p99 < 5 ms (default, concurrency 1)"] is True
    assert met["cache-hit p99 < 5 ms (default, concurrency 32)"] is False
    assert met["uncached, default model, concurrency 1: p50 < 60 ms"] is True
    ratio = next(line for line in lines if "backfill" in line["target"])
    assert ratio["ratio"] == 0.9 and ratio["met"] is True
    # The table renders every row.
    table = bench.build_table(
        [r | {"requests": 1, "p95_ms": 1.0, "requests_per_s": 1.0, "mean_model_batch": None} for r in rows], "t", "c"
    )
    assert table.row_count == 4


def test_products_are_distinct_and_unique_titles_fit(bench) -> None:  # type: ignore[no-untyped-def]
    products, sources = bench.load_products(images=False, dev=False, limit=0)
    assert products and sources[0].startswith("examples/events.jsonl")
    assert all("image_urls" not in p for p in products)
    long = {"title": "x" * 1000}
    assert len(bench.unique_product(long, "run-u123")["title"]) == 1000
    assert bench.unique_product(products[0], "a") != bench.unique_product(products[0], "b")
    assert bench.dev_product({"title": " "}, images=False) is None
    assert bench.dev_product({"title": "Shoe", "description": None, "image_urls": ["http://x/a.png"]}, images=True)[
        "image_urls"
    ] == ["http://x/a.png"]
