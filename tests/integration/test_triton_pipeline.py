"""The backfill pipeline against the real tritonserver: same results as in-process,
nothing lost across a server crash, per-item model errors as per-item dead letters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.backfill import BackfillOptions, run
from tests.conftest import EXAMPLES
from tests.integration.triton_server import ROOT, TritonHandle, start
from transforms.records import DeadLetter, Prediction

pytestmark = pytest.mark.integration
pytest.importorskip("tritonclient.grpc")

FLAKY_MODEL = '''
import json
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    """Test-only: fails every request whose product title contains FAIL."""
    def execute(self, requests):
        responses = []
        for r in requests:
            raw = bytes(pb_utils.get_input_tensor_by_name(r, "REQUEST").as_numpy().reshape(-1)[0])
            if b"FAIL" in raw:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError("simulated model failure")))
                continue
            task = json.loads(raw)["task"]
            answer = {"category": "Apparel & Accessories > Clothing > Dresses", "confidence": 0.9} if task == "classify" else {"attributes": {"color": ["Red"]}}
            out = np.array([[json.dumps(answer).encode()]], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("RESPONSE", out)]))
        return responses
'''
FLAKY_CONFIG = """
name: "flaky"
backend: "python"
max_batch_size: 8
input [ { name: "REQUEST" data_type: TYPE_STRING dims: [ 1 ] }, { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] optional: true } ]
output [ { name: "RESPONSE" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 1000 }
parameters [ { key: "model_version" value: { string_value: "flaky-1" } }, { key: "taxonomy_version" value: { string_value: "2024-07" } } ]
"""


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonHandle]:
    tmp = tmp_path_factory.mktemp("triton")
    flaky = tmp / "flaky"
    (flaky / "1").mkdir(parents=True)
    (flaky / "config.pbtxt").write_text(FLAKY_CONFIG)
    (flaky / "1" / "model.py").write_text(FLAKY_MODEL)
    handle = start(
        tmp,
        {
            "product_baseline": ROOT / "model_repository" / "product_baseline",
            "gpu_cost_simulator": ROOT / "benchmarks" / "model_repository" / "gpu_cost_simulator",
            "flaky": flaky,
        },
    )
    yield handle
    handle.down()


def _backfill(events: Path, out: Path, triton: TritonHandle | None, model: str = "product_baseline", **extra: str):
    base_dir = extra.pop("image_base_dir", str(events.parent))
    flags = [f"--input={events}", f"--output={out}", f"--image_base_dir={base_dir}"]
    if triton is not None:
        flags += [f"--triton_url={triton.grpc_url}", f"--model_name={model}"]
    flags += [f"--{k}={v}" for k, v in extra.items()]
    return run(BackfillOptions(flags))


def _predictions(out: Path) -> dict[str, Prediction]:
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return {p.event_id: p for p in (Prediction.model_validate_json(line) for line in lines)}


def test_triton_results_equal_in_process(triton: TritonHandle, tmp_path: Path) -> None:
    events = EXAMPLES / "events.jsonl"
    local = _backfill(events, tmp_path / "local", None)
    served = _backfill(events, tmp_path / "served", triton)
    assert served.predicted == local.predicted > 0
    a, b = _predictions(tmp_path / "local"), _predictions(tmp_path / "served")
    assert a.keys() == b.keys()
    for key, p in a.items():
        q = b[key]
        assert (q.prediction_id, q.status, q.model_version) == (p.prediction_id, p.status, p.model_version)
        assert q.category.id == p.category.id, key  # type: ignore[union-attr]
        assert q.category.score == pytest.approx(p.category.score, abs=1e-3)  # type: ignore[union-attr]
        assert [(x.handle, x.values) for x in q.attributes] == [(x.handle, x.values) for x in p.attributes]
        assert (q.simplified_description, q.image_description) == (p.simplified_description, p.image_description)


def test_model_error_dead_letters_exactly_the_failing_items(triton: TritonHandle, tmp_path: Path) -> None:
    source = [json.loads(line) for line in (EXAMPLES / "events.jsonl").read_text().splitlines()][:30]
    source = [e for e in source if e["type"] != "delete"]
    failing = set()
    for i, e in enumerate(source):
        e["product"]["image_urls"] = [str(EXAMPLES / u) for u in e["product"]["image_urls"]]
        if i % 7 == 3:
            e["product"]["title"] += " FAIL"
            failing.add(e["event_id"])
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in source))
    summary = _backfill(events, tmp_path / "out", triton, model="flaky", image_base_dir=str(EXAMPLES))
    letters = [
        DeadLetter.model_validate_json(x) for x in (tmp_path / "out" / "dead_letters.jsonl").read_text().splitlines()
    ]
    assert {d.event_id for d in letters} == failing
    assert all(d.stage == "classify" and "simulated model failure" in d.message for d in letters)
    assert summary.predicted == len(source) - len(failing)
    assert set(_predictions(tmp_path / "out")) == {e["event_id"] for e in source} - failing


def test_server_crash_and_restart_loses_nothing(triton: TritonHandle, tmp_path: Path) -> None:
    source = [json.loads(line) for line in (EXAMPLES / "events.jsonl").read_text().splitlines()]
    source = [e for e in source if e["type"] == "create"]
    events = tmp_path / "events.jsonl"
    with events.open("w") as fh:
        for i in range(120):  # ~12 s on the simulator: 240 calls at 20 requests/s
            e = json.loads(json.dumps(source[i % len(source)]))
            e["event_id"], e["product_id"] = f"crash-{i}", f"gid://shopify/Product/crash-{i}"
            e["product"]["image_urls"] = []
            fh.write(json.dumps(e) + "\n")

    def crash_and_restart() -> None:
        time.sleep(4)
        triton.kill9()
        time.sleep(2)
        triton.up()

    chaos = threading.Thread(target=crash_and_restart)
    chaos.start()
    summary = _backfill(events, tmp_path / "out", triton, model="gpu_cost_simulator")
    chaos.join()
    assert summary.dead_letter_total == 0, (tmp_path / "out" / "dead_letters.jsonl").read_text()[:2000]
    assert summary.predicted == 120
    assert summary.model_retries > 0  # the crash really happened mid-run
    assert len(_predictions(tmp_path / "out")) == 120
