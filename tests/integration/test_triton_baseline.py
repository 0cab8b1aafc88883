"""The CPU baseline served by the real tritonserver (nvidia-pytriton wheel, Python backend).

One server per module, started and stopped by deploy/local/triton/server.py on free
ports; skipped with a reason when the local Triton runtime (.venv-triton) is missing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from model_repository.contract import (
    ModelAttribute,
    ModelCategory,
    ModelProduct,
    ModelRequest,
    Task,
    parse_classify_answer,
)
from tests.integration.triton_server import free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "triton" / "server.py"
EXAMPLES = ROOT / "examples"
MODEL = "product_baseline"

grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException


def _load_script():
    spec = importlib.util.spec_from_file_location("productlens_triton_server", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _runtime_missing() -> str | None:
    """Why the local Triton runtime cannot run here, or None."""
    script = _load_script()
    try:
        script.find_dist()
        script.describe_python(script._default_python())
    except script.TritonError as exc:
        return str(exc)
    return None


def _script(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # an exited server left for its reaper counts as stopped


@dataclass(frozen=True)
class Server:
    state_dir: Path
    http_port: int
    grpc_port: int
    pid: int

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def args(self) -> list[str]:
        return ["--state-dir", str(self.state_dir)]


def _up(state_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    http, grpc_port, metrics = free_ports(3)
    result = _script(
        "up",
        "--state-dir", str(state_dir),
        "--http-port", str(http),
        "--grpc-port", str(grpc_port),
        "--metrics-port", str(metrics),
        "--timeout", "300",
        "--grace", "15",
        *extra,
    )  # fmt: skip
    return result, [http, grpc_port, metrics]


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if reason := _runtime_missing():
        pytest.skip(f"local Triton runtime unavailable: {reason}")
    state_dir = tmp_path_factory.mktemp("triton")
    result, (http, grpc_port, _) = _up(state_dir)
    if result.returncode != 0:
        pytest.fail(f"triton up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    pid = int((state_dir / "triton.pid").read_text())
    server = Server(state_dir, http, grpc_port, pid)
    try:
        yield server
    finally:
        down = _script("down", *server.args(), timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not _alive(pid), f"tritonserver (pid {pid}) still running after `down`"
        assert not (state_dir / "triton.pid").exists()


@pytest.fixture(scope="module")
def client(triton: Server):
    c = grpc.InferenceServerClient(triton.grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def baseline():
    from model_repository.product_baseline.engine import BaselineModel

    return BaselineModel(None)


# -- requests built from examples/ the way the pipeline builds them ---------------------


def _example_products(limit: int) -> list[tuple[ModelProduct, bytes | None, str]]:
    from transforms.images.prepare import ImageConfig, prepare_image
    from transforms.sanitise import html_to_text

    expected = json.loads((EXAMPLES / "expected_categories.json").read_text())
    out = []
    for line in (EXAMPLES / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        p = event.get("product")
        if not p or event["product_id"] not in expected or not p.get("image_urls"):
            continue
        image_file = EXAMPLES / p["image_urls"][0]
        if not image_file.is_file():
            continue
        product = ModelProduct(
            title=p["title"],
            description=html_to_text(p.get("description_html", ""))[0],
            product_type=p.get("product_type", ""),
            vendor=p.get("vendor", ""),
            tags=tuple(p.get("tags", [])),
            variant_options={o["name"]: tuple(o["values"]) for o in p.get("variant_options", [])},
        )
        out.append((product, prepare_image(image_file.read_bytes(), ImageConfig()), expected[event["product_id"]]))
        if len(out) == limit:
            break
    assert out, "examples/ has no products with images"
    return out


def _classify(product: ModelProduct) -> bytes:
    return ModelRequest(task=Task.CLASSIFY, product=product).model_dump_json().encode()


def _extract(product: ModelProduct, category_path: str, baseline) -> bytes:
    taxonomy = baseline.taxonomy
    category = taxonomy.by_full_name(category_path)
    assert category is not None, category_path
    return (
        ModelRequest(
            task=Task.EXTRACT,
            product=product,
            category=ModelCategory(id=category.id, full_name=category.full_name),
            attributes=tuple(
                ModelAttribute(handle=a.handle, name=a.name, values=tuple(v.name for v in a.values))
                for a in taxonomy.attributes_of(category)
            ),
        )
        .model_dump_json()
        .encode()
    )


def _inputs(requests: list[bytes], images: list[bytes] | None = None) -> list:
    batch = np.array([[r] for r in requests], dtype=np.object_)
    inputs = [grpc.InferInput("REQUEST", list(batch.shape), "BYTES")]
    inputs[0].set_data_from_numpy(batch)
    if images is not None:
        image_batch = np.array([[i] for i in images], dtype=np.object_)
        inputs.append(grpc.InferInput("IMAGE", list(image_batch.shape), "BYTES"))
        inputs[1].set_data_from_numpy(image_batch)
    return inputs


def _infer(client, request: bytes, image: bytes | None = None) -> bytes:
    result = client.infer(MODEL, _inputs([request], None if image is None else [image]))
    out = result.as_numpy("RESPONSE")
    assert out.shape == (1, 1)
    return out[0, 0]


# -- tests -----------------------------------------------------------------------------


def test_server_and_model_ready(triton: Server, client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    status = _script("status", *triton.args(), timeout=30)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "ready" in status.stdout
    logs = _script("logs", *triton.args(), "-n", "400", timeout=30)
    assert f"successfully loaded '{MODEL}'" in logs.stdout


def test_model_config_carries_the_versions(client, baseline) -> None:
    config = client.get_model_config(MODEL, as_json=True)["config"]
    params = {k: v.get("string_value", "") for k, v in config["parameters"].items()}
    assert params["model_version"] == baseline.parameters["model_version"]
    assert params["taxonomy_version"] == baseline.parameters["taxonomy_version"]
    assert config["backend"] == "python"
    assert int(config["max_batch_size"]) == 64
    assert "dynamic_batching" in config
    metadata = client.get_model_metadata(MODEL, as_json=True)
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {"REQUEST": "BYTES", "IMAGE": "BYTES"}
    assert [o["name"] for o in metadata["outputs"]] == ["RESPONSE"]
    optional = {i["name"]: i.get("optional", False) for i in config["input"]}
    assert optional == {"REQUEST": False, "IMAGE": True}


@pytest.mark.parametrize("with_image", [False, True], ids=["text", "image"])
def test_answers_are_the_in_process_model_bytes(client, baseline, with_image: bool) -> None:
    for product, image, category in _example_products(4):
        img = image if with_image else None
        for request in (_classify(product), _extract(product, category, baseline)):
            expected = baseline.infer_batch([(request, img)])[0]
            assert _infer(client, request, img) == expected, request[:120]


def test_a_multi_item_request_gets_one_answer_per_item(client, baseline) -> None:
    products = _example_products(3)
    requests = [_classify(p) for p, _, _ in products]
    # An empty IMAGE element means "no image" for that item.
    images = [products[0][1], b"", products[2][1]]
    result = client.infer(MODEL, _inputs(requests, images)).as_numpy("RESPONSE")
    assert result.shape == (3, 1)
    for _, answer in zip(products, result[:, 0]):
        assert parse_classify_answer(answer).simplified_description
    assert json.loads(result[1, 0])["image_description"] == ""
    assert json.loads(result[0, 0])["image_description"] != ""


def _async_all(client, payloads: list[tuple[bytes, bytes | None]], timeout: float = 60) -> list:
    """Send every request at once (async_infer); results or exceptions, in order."""
    results: list = [None] * len(payloads)
    done = threading.Semaphore(0)

    def callback(i: int, result, error) -> None:
        results[i] = error if error is not None else result.as_numpy("RESPONSE")
        done.release()

    for i, (request, image) in enumerate(payloads):
        # tritonclient calls back with keywords: callback(result=..., error=...)
        client.async_infer(MODEL, _inputs([request], None if image is None else [image]), callback=partial(callback, i))
    for _ in payloads:
        assert done.acquire(timeout=timeout), "an async request got no answer"
    return results


def test_ten_concurrent_requests_are_all_answered(client, baseline) -> None:
    products = _example_products(10)
    payloads = [(_classify(p), img if i % 2 else None) for i, (p, img, _) in enumerate(products)]
    results = _async_all(client, payloads)
    for (request, image), result in zip(payloads, results):
        assert not isinstance(result, Exception), result
        answer = parse_classify_answer(result[0, 0])
        # Batches formed by the server pad differently from a batch of one, so compare
        # what the pipeline uses rather than the float digits.
        expected = parse_classify_answer(baseline.infer_batch([(request, image)])[0])
        assert answer.category == expected.category
        assert answer.simplified_description == expected.simplified_description
        assert answer.image_description == expected.image_description


def test_a_malformed_request_fails_alone(client) -> None:
    products = _example_products(2)
    good = [_classify(p) for p, _, _ in products]
    bad = [b"not json", b'{"task": "summarise", "product": {"title": "x"}}', b'{"task": "classify"}']
    payloads = [(good[0], None), *[(b, None) for b in bad], (good[1], None)]
    results = _async_all(client, payloads)
    assert parse_classify_answer(results[0][0, 0]).category
    assert parse_classify_answer(results[-1][0, 0]).category
    for result in results[1:-1]:
        assert isinstance(result, InferenceServerException), result
        assert result.status() == "StatusCode.INVALID_ARGUMENT"
        assert "not a valid model request" in result.message()
    # The server is still healthy after the errors.
    assert client.is_model_ready(MODEL)
    # One bad item in a multi-item request fails that request only, naming the item.
    with pytest.raises(InferenceServerException, match=r"REQUEST\[1\]"):
        client.infer(MODEL, _inputs([good[0], bad[0]]))
    assert parse_classify_answer(_infer(client, good[1])).category


def test_config_and_engine_drift_fails_the_load(triton: Server, baseline, tmp_path: Path) -> None:
    """A config.pbtxt whose taxonomy_version is not the engine's must not load: the
    pipeline would stamp predictions with the wrong version."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository" / MODEL, repo / MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / MODEL / "config.pbtxt"
    text = config.read_text()
    current = f'string_value: "{baseline.parameters["taxonomy_version"]}"'
    assert current in text
    config.write_text(text.replace(current, 'string_value: "1999-01"'))
    result, _ = _up(tmp_path / "state", "--model-repository", str(repo))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "model config and engine disagree" in output
    assert "taxonomy_version" in output and "1999-01" in output
    assert not (tmp_path / "state" / "triton.pid").exists()
