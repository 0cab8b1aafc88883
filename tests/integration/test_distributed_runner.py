"""The file backfill on a distributed engine: Beam's Dask runner (the fixed one in
pipelines/dask_runner.py) on a dask.distributed cluster whose scheduler and
workers are separate processes, started by deploy/local/dask/dask.sh on a free loopback
port. Same predictions, dead letters and counts as on the FnApiRunner: backfill (run() and
the CLI with refresh + dedupe), repredict. The backfill on Prism (portable job server + Fn
API SDK harness) is compared too. docs/RUNNERS.md has the runner x pipeline table.

Why Dask and not Flink: Beam's Flink job server jars (org.apache.beam:beam-runners-flink-*-
job-server, any Flink version, 2.77.0 or older) are not served by the Maven Central this
project reaches; docs/RUNNERS.md has the details."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.backfill import BackfillOptions, RunSummary, run
from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.integration

DASK_DIR = ROOT / "deploy" / "local" / "dask"
SCRIPT = DASK_DIR / "dask.sh"
RUNNER = "pipelines.dask_runner.DaskRunner"
# Scores are floats computed from MiniLM embeddings of whole batches; the batches differ
# between runners (bundles differ), which moves the last digits (seen: 0.3628 vs 0.3627).
SCORE_TOLERANCE = 1e-3


def _needs_dask() -> None:
    pytest.importorskip(
        "distributed",
        reason="dask.distributed is not installed (the `distributed` extra: pip install -e '.[distributed]')",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and 2 worker processes; stopped (process groups) whatever the tests do."""
    _needs_dask()
    if shutil.which("setsid") is None:
        pytest.skip("setsid (util-linux) is not on PATH; dask.sh needs it")
    state = tmp_path_factory.mktemp("dask")
    env = {
        **os.environ,
        "DASK_PORT": str(_free_port()),
        "DASK_STATE_DIR": str(state),
        "DASK_PYTHON": sys.executable,
        "DASK_WORKERS": "2",
        "DASK_START_TIMEOUT": "90",
    }
    try:
        up = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=150)
        if up.returncode != 0:
            pytest.fail(f"dask.sh up failed ({up.returncode}):\n{up.stderr[-3000:]}")
        address = up.stdout.strip().rsplit("DASK_SCHEDULER=", 1)[-1]
        yield address
    finally:
        subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=90)


def _backfill(events: Path, out: Path, scheduler: str | None, *runner: str) -> RunSummary:
    flags = [f"--input={events}", f"--output={out}", f"--image_base_dir={EXAMPLES}", *runner]
    if scheduler:
        flags += [f"--runner={RUNNER}", f"--dask_client_address={scheduler}"]
    return run(BackfillOptions(flags))


@pytest.fixture(scope="module")
def on_fnapi(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunSummary, Path]:
    """The reference: examples/events.jsonl backfilled on the FnApiRunner (BackfillOptions'
    defaults: refresh trigger and dedupe off)."""
    out = tmp_path_factory.mktemp("fnapi") / "out"
    return _backfill(EXAMPLES / "events.jsonl", out, None), out


def _same(a: Any, b: Any, where: str) -> None:
    """Equal, with floats within SCORE_TOLERANCE; names the first difference."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), where
        assert math.isclose(a, b, abs_tol=SCORE_TOLERANCE), f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _records(path: Path, key: str, drop: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    by_key = {tuple(r[k] for k in key.split(",")): {f: v for f, v in r.items() if f not in drop} for r in records}
    assert len(by_key) == len(records), f"duplicate {key} in {path}"
    return by_key


def _same_outputs(local: Path, distributed: Path, stamped: tuple[str, ...] = ("predicted_at",)) -> int:
    """Every Prediction field but the `stamped` ones (wall-clock times), by event_id; every
    DeadLetter field but time, by (event_id, stage, payload). Returns the number of predictions."""
    a = _records(local / "predictions.jsonl", "event_id", stamped)
    b = _records(distributed / "predictions.jsonl", "event_id", stamped)
    _same(a, b, "predictions")
    key = "event_id,stage,original_payload"
    _same(
        _records(local / "dead_letters.jsonl", key, ("time",)),
        _records(distributed / "dead_letters.jsonl", key, ("time",)),
        "dead_letters",
    )
    return len(a)


def _counts(s: RunSummary | dict[str, Any]) -> dict[str, Any]:
    d = s.as_dict() if isinstance(s, RunSummary) else s
    return {k: v for k, v in d.items() if k not in ("seconds", "products_per_s", "output")}


def test_backfill_on_dask_equals_fnapi_runner(
    dask_scheduler: str, on_fnapi: tuple[RunSummary, Path], tmp_path: Path
) -> None:
    local, local_out = on_fnapi
    remote = _backfill(EXAMPLES / "events.jsonl", tmp_path / "dask", dask_scheduler)
    assert _same_outputs(local_out, tmp_path / "dask") == local.predicted > 0
    # Beam metrics come back from the workers: the run's summary is the same.
    assert _counts(remote) == _counts(local)


def test_backfill_on_prism_equals_fnapi_runner(on_fnapi: tuple[RunSummary, Path], tmp_path: Path) -> None:
    """The portable path (job server + SDK harness over the Fn API, as on Flink or Dataflow)
    with Beam's local portable runner; its SDK harness runs in this process (LOOPBACK)."""
    from pipelines.stream import prism_binary

    prism = prism_binary()
    if prism is None:
        pytest.skip("Prism is not built: run deploy/local/prism/prism.sh")
    local, local_out = on_fnapi
    flags = ("--runner=PrismRunner", f"--prism_location={prism}", "--environment_type=LOOPBACK")
    remote = _backfill(EXAMPLES / "events.jsonl", tmp_path / "prism", None, *flags)
    assert _same_outputs(local_out, tmp_path / "prism") == local.predicted > 0
    assert _counts(remote) == _counts(local)


def test_dead_letters_on_dask_equal_fnapi_runner(dask_scheduler: str, tmp_path: Path) -> None:
    """Multi-output DoFns (tagged dead-letter outputs) and partial (image) dead letters."""
    events = EXAMPLES / "bad_events.jsonl"
    local = _backfill(events, tmp_path / "local", None)
    remote = _backfill(events, tmp_path / "dask", dask_scheduler)
    assert local.dead_letter_total > 0 and local.predicted > 0
    _same_outputs(tmp_path / "local", tmp_path / "dask")
    assert _counts(remote) == _counts(local)


def test_cli_backfill_with_refresh_and_dedupe_on_dask(dask_scheduler: str, tmp_path: Path) -> None:
    """`productlens backfill` as a user runs it (refresh trigger and content dedupe on: in a
    bounded job both are GroupByKey shuffles, which the Dask runner supports)."""
    env = dict(os.environ)

    def cli(out: Path, *extra: str) -> dict[str, Any]:
        args = [sys.executable, "-m", "pipelines.cli", "backfill", "--input", str(EXAMPLES / "events.jsonl")]
        args += ["--output", str(out), "--image-base-dir", str(EXAMPLES), *extra]
        done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return json.loads((out / "summary.json").read_text())

    local = cli(tmp_path / "local")
    remote = cli(tmp_path / "dask", "--runner", RUNNER, f"--beam-arg=--dask_client_address={dask_scheduler}")
    assert local["skipped_unchanged"] > 0 and local["dedupe_calls_saved"] > 0  # both were on
    assert _counts(remote) == _counts(local)
    assert _same_outputs(tmp_path / "local", tmp_path / "dask") == local["predicted"]


def test_repredict_on_dask_equals_fnapi_runner(dask_scheduler: str, tmp_path: Path) -> None:
    """repredict reads its store with ReadFromText (a bounded Read source) and joins it with
    the catalog: half the products have a current prediction, the other half are missing."""
    from pipelines.repredict import RepredictOptions
    from pipelines.repredict import run as repredict
    from transforms.records import ProductEvent

    latest: dict[str, tuple[ProductEvent, str]] = {}
    for line in (EXAMPLES / "events.jsonl").read_text().splitlines():
        e = ProductEvent.model_validate_json(line)
        if e.product_id not in latest or e.occurred_at >= latest[e.product_id][0].occurred_at:
            latest[e.product_id] = (e, line)
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(line + "\n" for e, line in latest.values() if e.type.value != "delete"))
    (tmp_path / "images").symlink_to(EXAMPLES / "images")  # image paths are relative to the catalog
    _backfill(catalog, tmp_path / "backfill", None)
    store = tmp_path / "store.jsonl"
    store.write_text(
        "".join(line + "\n" for line in (tmp_path / "backfill" / "predictions.jsonl").read_text().splitlines()[::2])
    )

    def run_on(name: str, *extra: str) -> dict[str, Any]:
        flags = [f"--catalog={catalog}", f"--prediction_store={store}", f"--repredict_output={tmp_path / name}"]
        summary = repredict(RepredictOptions([*flags, f"--image_base_dir={EXAMPLES}", *extra]))
        return {k: v for k, v in summary.__dict__.items() if k not in ("seconds", "output")}

    local = run_on("local")
    remote = run_on("dask", f"--runner={RUNNER}", f"--dask_client_address={dask_scheduler}")
    assert local["predicted"] > 0 and local["current"] > 0
    assert remote == local
    # A re-prediction's event is made by the job: its occurred_at is the job's clock too.
    stamped = ("predicted_at", "occurred_at")
    assert _same_outputs(tmp_path / "local", tmp_path / "dask", stamped) == local["predicted"]


def test_stateful_dofns_are_refused_not_run_wrong() -> None:
    """Keyed state and timers (the streaming refresh trigger and dedupe) have no Dask
    translation: the runner says so before it contacts a cluster."""
    import apache_beam as beam
    from apache_beam.coders import VarIntCoder
    from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

    _needs_dask()
    from pipelines.dask_runner import DaskRunner

    class Count(beam.DoFn):
        SEEN = ReadModifyWriteStateSpec("seen", VarIntCoder())

        def process(self, element, seen=beam.DoFn.StateParam(SEEN)):  # type: ignore[no-untyped-def]
            seen.write((seen.read() or 0) + 1)
            yield element

    pipeline = beam.Pipeline(runner=DaskRunner())
    _ = pipeline | beam.Create([("a", 1)]) | beam.ParDo(Count())
    with pytest.raises(NotImplementedError, match="stateful DoFns"):
        pipeline.run()
