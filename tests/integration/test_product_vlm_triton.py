"""product_vlm in the real tritonserver, in front of a CPU stand-in for vlm_engine.

The server is the `tritonserver` of the nvidia-pytriton wheel, started and stopped with
`deploy/local/triton/server.py` on free ports, serving a temporary model repository:

- `product_vlm`: a copy of the real model (config, BLS code, prompt set);
- `vlm_engine`: the real vlm_engine/config.pbtxt with `backend: "python"` instead of
  "vllm", so the stand-in is decoupled and has exactly the vLLM backend's declared inputs
  and outputs. Its model.py (STAND_IN below) answers deterministic JSON derived from the
  prompt, and reports what it received (image digest, sampling, flags, concurrency) under
  a `stand_in` key that the contract's parsers ignore;
- `orphan`: product_vlm pointed at an engine that does not exist;
- `product_vlm_candidates`: product_vlm switched to candidate mode (config parameter and
  manifest `classify_mode: candidates`, one instance), in front of the same stand-in,
  which picks from the numbered candidate list as an off-the-shelf VLM would;
- `mode_mismatch` (not loaded at start): a candidate-mode manifest under a fine-tuned
  config, which must fail to load.

The vLLM engine itself needs a GPU: what only a GPU run can check is listed in
model_repository/vlm_engine/README.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model_repository.contract import (
    ModelAttribute,
    ModelCandidate,
    ModelCategory,
    ModelProduct,
    ModelRequest,
    Task,
    parse_classify_answer,
    parse_extract_answer,
)
from tests.integration.triton_server import free_ports

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "deploy" / "local" / "triton" / "server.py"
MODELS = REPO / "model_repository"
BARRIER_TIMEOUT_S = 30.0

# The stand-in engine. Markers in the product title steer it:
#   [barrier N:k] hold the answer until N requests of barrier k have arrived (or the
#                 timeout passes), then report whether that happened: all N reached means
#                 all N were inside the engine at once
#   ENGINE-FAIL   answer with an error, as the vLLM backend does (text "N/A" + error)
#   [split]       send the text, then a separate empty response with the final flag
#   [by number]   candidate mode: answer the chosen candidate's number, not its path
# In candidate mode (the prompt lists "Candidate categories:") it picks the first candidate
# whose leaf's first four letters the title has (else the first) and reports the list it saw.
STAND_IN = r"""
import base64, hashlib, json, re, threading, time

import numpy as np
import triton_python_backend_utils as pb_utils

BARRIER_TIMEOUT_S = %(timeout)r


def _scalar(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


class TritonPythonModel:
    def initialize(self, args):
        self._cv = threading.Condition()
        self._arrived = {}

    def execute(self, requests):
        for request in requests:
            threading.Thread(target=self._serve, args=(request,), daemon=True).start()
        return None

    def _serve(self, request):
        sender = request.get_response_sender()
        split = False
        try:
            text, split = self._answer(request)
            response = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))]
            )
        except Exception as exc:
            response = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("text_output", np.array([b"N/A"], dtype=np.object_))],
                error=pb_utils.TritonError(f"stand-in engine failed: {exc}"),
            )
        if split:
            sender.send(response)
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _answer(self, request):
        prompt = _scalar(request, "text_input")[0].decode("utf-8")
        user = prompt.split("<|im_start|>user\n", 1)[1]
        title = re.search(r"(?:^|>)Title: (.*?)(?:<\|im_end\|>)?$", user, re.M).group(1)
        images = _scalar(request, "image")
        digests = []
        for b64 in [] if images is None else images:
            raw = base64.b64decode(bytes(b64), validate=True)
            digests.append(hashlib.sha256(raw).hexdigest() if raw[:2] == b"\xff\xd8" else "not a jpeg")
        report = {
            "image_sha256": digests,
            "image_placeholders": prompt.count("<|vision_start|><|image_pad|><|vision_end|>"),
            "stream": bool(_scalar(request, "stream")[0]),
            "exclude_input_in_output": bool(_scalar(request, "exclude_input_in_output")[0]),
            "sampling": json.loads(bytes(_scalar(request, "sampling_parameters")[0])),
        }
        barrier = re.search(r"\[barrier (\d+):(\w+)\]", title)
        if barrier:
            wanted, key = int(barrier.group(1)), barrier.group(2)
            with self._cv:
                self._arrived[key] = self._arrived.get(key, 0) + 1
                self._cv.notify_all()
                reached = self._cv.wait_for(lambda: self._arrived[key] >= wanted, timeout=BARRIER_TIMEOUT_S)
                report["barrier"] = {"wanted": wanted, "reached": reached, "arrived": self._arrived[key]}
        if "ENGINE-FAIL" in title:
            raise RuntimeError(f"asked to fail for {title!r}")
        listed = user.split("\nCandidate categories:\n", 1)
        report["candidates"] = re.findall(r"^\d+\. (.+?)(?:<\|im_end\|>)?$", listed[1], re.M) if len(listed) > 1 else []
        if user.startswith("Category: "):
            answer = {"attributes": {}}
            for handle, values in re.findall(r"^- (\S+) \(.*?\): (\[.*\])", user, re.M):
                answer["attributes"][handle] = [json.loads(values)[0]]
        elif report["candidates"]:
            paths = report["candidates"]
            words = title.lower()
            pick = next((i for i, p in enumerate(paths) if p.rsplit(" > ", 1)[-1][:4].lower() in words), 0)
            answer = {
                "category": str(pick + 1) if "[by number]" in title else paths[pick],
                "confidence": 0.6,
                "simplified_description": title,
                "image_description": f"{len(digests)} image(s)",
            }
        else:
            answer = {
                "category": "Stand-in > " + title,
                "confidence": 0.5,
                "simplified_description": title,
                "image_description": f"{len(digests)} image(s)",
            }
        answer["stand_in"] = report
        return json.dumps(answer), "[split]" in title
"""


def _load_server_module() -> Any:
    spec = importlib.util.spec_from_file_location("productlens_triton_server", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _model_repository(root: Path) -> Path:
    repo = root / "models"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(MODELS / "product_vlm", repo / "product_vlm", ignore=ignore)

    engine_config = (MODELS / "vlm_engine" / "config.pbtxt").read_text()
    assert 'backend: "vllm"' in engine_config
    (repo / "vlm_engine" / "1").mkdir(parents=True)
    (repo / "vlm_engine" / "config.pbtxt").write_text(engine_config.replace('backend: "vllm"', 'backend: "python"'))
    (repo / "vlm_engine" / "1" / "model.py").write_text(STAND_IN % {"timeout": BARRIER_TIMEOUT_S})

    shutil.copytree(MODELS / "product_vlm", repo / "orphan", ignore=ignore)
    config = (repo / "orphan" / "config.pbtxt").read_text()
    config = config.replace('name: "product_vlm"', 'name: "orphan"').replace('"vlm_engine"', '"no_such_engine"')
    (repo / "orphan" / "config.pbtxt").write_text(re.sub(r"count: \d+", "count: 1", config))

    # Candidate mode is a model version's config and prompt set together: both switched.
    _copy_in_mode(repo, "product_vlm_candidates", config_mode="candidates", manifest_mode="candidates")
    _copy_in_mode(repo, "mode_mismatch", config_mode="fine_tuned", manifest_mode="candidates")
    return repo


def _copy_in_mode(repo: Path, name: str, config_mode: str, manifest_mode: str) -> None:
    shutil.copytree(MODELS / "product_vlm", repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    config_path = repo / name / "config.pbtxt"
    config = config_path.read_text().replace('name: "product_vlm"', f'name: "{name}"')
    shipped = 'key: "classify_mode"\n    value: { string_value: "fine_tuned" }'
    assert shipped in config
    config = config.replace(shipped, shipped.replace("fine_tuned", config_mode))
    config_path.write_text(re.sub(r"count: \d+", "count: 1", config))
    manifest_path = repo / name / "1" / "prompts" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "classify_mode": manifest_mode}))


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _load_server_module()
    try:
        server.find_dist()
        # the interpreter `server.py up` will give the models
        server.describe_python(os.environ.get("TRITON_PYTHON") or server._default_python())
    except server.TritonError as exc:
        pytest.skip(f"no local Triton runtime: {exc}")
    root = tmp_path_factory.mktemp("product-vlm-triton")
    repo = _model_repository(root)
    http, grpc, metrics = free_ports(3)
    state = root / "state"
    common = [sys.executable, str(SERVER)]
    where = ["--state-dir", str(state)]
    up = subprocess.run(
        [
            *common,
            "up",
            *where,
            f"--model-repository={repo}",
            "--models=vlm_engine,product_vlm,orphan,product_vlm_candidates",
            f"--http-port={http}",
            f"--grpc-port={grpc}",
            f"--metrics-port={metrics}",
            "--timeout=180",
            "--grace=5",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if up.returncode != 0:
        subprocess.run([*common, "down", *where], capture_output=True, timeout=60)
        pytest.fail(f"tritonserver did not start:\n{up.stdout}\n{up.stderr}\n{server.tail(state / 'triton.log', 40)}")
    try:
        yield f"127.0.0.1:{grpc}"
    finally:
        subprocess.run([*common, "down", *where], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def client(triton: str) -> Iterator[Any]:
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url=triton)
    yield c
    c.close()


def _infer(client: Any, items: list[tuple[bytes, bytes | None]], model: str = "product_vlm") -> list[bytes]:
    """One Triton request carrying len(items) rows, as [n, 1] tensors."""
    import tritonclient.grpc as grpcclient

    req = grpcclient.InferInput("REQUEST", [len(items), 1], "BYTES")
    req.set_data_from_numpy(np.array([[r] for r, _ in items], dtype=np.object_))
    inputs = [req]
    if any(img for _, img in items):
        img = grpcclient.InferInput("IMAGE", [len(items), 1], "BYTES")
        img.set_data_from_numpy(np.array([[i or b""] for _, i in items], dtype=np.object_))
        inputs.append(img)
    result = client.infer(model, inputs, client_timeout=120)
    return [bytes(x) for x in result.as_numpy("RESPONSE").reshape(-1)]


def _jpeg(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (448, 448), colour).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _classify(title: str) -> bytes:
    return ModelRequest(task=Task.CLASSIFY, product=ModelProduct(title=title)).model_dump_json().encode()


ATTRIBUTES = (
    ModelAttribute(handle="color", name="Color", values=("Green", "Beige")),
    ModelAttribute(handle="fabric", name="Fabric", values=("Linen", "Cotton")),
)


def _extract(title: str, attributes: tuple[ModelAttribute, ...] = ATTRIBUTES) -> bytes:
    return (
        ModelRequest(
            task=Task.EXTRACT,
            product=ModelProduct(title=title, description="Washed linen."),
            category=ModelCategory(id="aa-1-4", full_name="Apparel & Accessories > Clothing > Dresses"),
            attributes=attributes,
        )
        .model_dump_json()
        .encode()
    )


def _report(answer: bytes) -> dict[str, Any]:
    return json.loads(answer)["stand_in"]


# -- the tests -------------------------------------------------------------------------


def test_classify_answer_parses_and_carries_the_image(client: Any) -> None:
    image = _jpeg("olive")
    (answer,) = _infer(client, [(_classify("Linen wrap dress"), image)])
    parsed = parse_classify_answer(answer)
    assert parsed.category == "Stand-in > Linen wrap dress"
    report = _report(answer)
    # the JPEG arrives base64-encoded, byte for byte, with one image slot in the prompt
    assert report["image_sha256"] == [hashlib.sha256(image).hexdigest()]
    assert report["image_placeholders"] == 1
    assert report["stream"] is False and report["exclude_input_in_output"] is True
    assert report["sampling"] == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 384}


def test_extract_answer_parses_without_an_image(client: Any) -> None:
    (answer,) = _infer(client, [(_extract("Linen wrap dress"), None)])
    assert parse_extract_answer(answer).attributes == {"color": ["Green"], "fabric": ["Linen"]}
    report = _report(answer)
    assert report["image_sha256"] == [] and report["image_placeholders"] == 0
    assert report["sampling"]["max_tokens"] == 256


def test_the_pipeline_client_reads_the_versions_and_gets_concurrent_answers(triton: str) -> None:
    """Through transforms.model.triton, as the pipeline calls it: 24 requests fired at once,
    held by the stand-in until as many as product_vlm has instances are inside the engine
    together. (Not more: a non-decoupled execute() returns only when its whole batch is
    answered, so requests queued behind busy instances wait for one to finish.)"""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from transforms.model.triton import TritonModel

    config = text_format.Parse((MODELS / "product_vlm" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    instances = sum(g.count for g in config.instance_group)
    assert instances > 1

    client = TritonModel(url=triton, model_name="product_vlm", timeout_s=120)()
    try:
        meta = client.metadata()
        assert (meta.model_version, meta.taxonomy_version) == ("qwen2.5-vl-7b-productlens-1", "2024-07")
        titles = [f"Product {i} [barrier {instances}:client]" for i in range(24)]
        images = [_jpeg("red") if i % 2 else None for i in range(24)]
        answers = client.infer_batch([(_classify(t), img) for t, img in zip(titles, images)])
    finally:
        client.close()
    assert all(isinstance(a, bytes) for a in answers), answers
    for title, image, answer in zip(titles, images, answers):
        assert parse_classify_answer(answer).category == f"Stand-in > {title}"  # no mix-ups
        report = _report(answer)
        assert report["barrier"]["reached"], report
        assert len(report["image_sha256"]) == (1 if image else 0)


def test_one_execute_call_submits_all_its_items_before_waiting(client: Any) -> None:
    """One request of 16 rows is one execute() call: all 16 engine calls must be in flight
    together. (With the event loop's default executor, min(32, cpus + 4) threads, a small
    machine would cap this below 16.)"""
    rows = [(_classify(f"Row {i} [barrier 16:rows]"), None) for i in range(16)]
    answers = _infer(client, rows)
    assert [parse_classify_answer(a).category for a in answers] == [
        f"Stand-in > Row {i} [barrier 16:rows]" for i in range(16)
    ]
    assert all(_report(a)["barrier"]["reached"] for a in answers), [_report(a)["barrier"] for a in answers]


def test_an_engine_failure_fails_only_its_request(client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    titles = [f"Item {i} [barrier 6:fail]" for i in range(5)] + ["Item 5 ENGINE-FAIL [barrier 6:fail]"]

    def call(title: str) -> bytes | Exception:
        try:
            return _infer(client, [(_classify(title), None)])[0]
        except InferenceServerException as exc:
            return exc

    with ThreadPoolExecutor(len(titles)) as pool:
        results = list(pool.map(call, titles))
    for title, result in zip(titles[:5], results[:5]):
        assert isinstance(result, bytes), result
        assert parse_classify_answer(result).category == f"Stand-in > {title}"
    failure = results[5]
    assert isinstance(failure, InferenceServerException)
    assert "stand-in engine failed" in failure.message()
    assert failure.status() == "StatusCode.INTERNAL"  # not retried by the pipeline

    # Rows of one request stand or fall together: exactly one response per request.
    with pytest.raises(InferenceServerException, match="stand-in engine failed"):
        _infer(client, [(_classify("Fine"), None), (_classify("Row ENGINE-FAIL"), None)])
    (answer,) = _infer(client, [(_classify("Fine again"), None)])
    assert parse_classify_answer(answer).category == "Stand-in > Fine again"


def test_a_final_flag_in_its_own_response_is_read_to_the_end(client: Any) -> None:
    (answer,) = _infer(client, [(_extract("Linen dress [split]"), _jpeg("beige"))])
    assert parse_extract_answer(answer).attributes == {"color": ["Green"], "fabric": ["Linen"]}


def test_contract_violations_are_invalid_argument(client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="not a valid model request") as bad:
        _infer(client, [(b"not json", None)])
    assert bad.value.status() == "StatusCode.INVALID_ARGUMENT"
    no_category = ModelRequest(task=Task.EXTRACT, product=ModelProduct(title="Mug"), attributes=ATTRIBUTES)
    with pytest.raises(InferenceServerException, match="needs its category") as bad:
        _infer(client, [(no_category.model_dump_json().encode(), None)])
    assert bad.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_extract_without_attributes_needs_no_engine_call(client: Any) -> None:
    (answer,) = _infer(client, [(_extract("Gift card", attributes=()), None)])
    assert json.loads(answer) == {"attributes": {}}  # no stand_in report: the engine was not asked


def test_a_missing_engine_is_unavailable_so_the_pipeline_retries(client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    from transforms.model.triton import is_transient

    with pytest.raises(InferenceServerException, match="no_such_engine") as missing:
        _infer(client, [(_classify("Mug"), None)], model="orphan")
    assert missing.value.status() == "StatusCode.UNAVAILABLE"
    assert is_transient(missing.value)


# -- candidate mode ------------------------------------------------------------------------

DRESSES = ModelCandidate(id="aa-1-4", full_name="Apparel & Accessories > Clothing > Dresses", score=0.7)
SKIRTS = ModelCandidate(id="aa-1-15", full_name="Apparel & Accessories > Clothing > Skirts", score=0.6)
COSTUMES = ModelCandidate(id="aa-2-1", full_name="Apparel & Accessories > Costumes & Accessories > Costumes", score=0.8)


def _classify_with(title: str, candidates: tuple[ModelCandidate, ...]) -> bytes:
    request = ModelRequest(task=Task.CLASSIFY, product=ModelProduct(title=title), candidates=candidates)
    return request.model_dump_json().encode()


def test_candidate_mode_picks_one_of_the_candidates_and_the_answer_parses(client: Any) -> None:
    candidates = (COSTUMES, SKIRTS, DRESSES)
    (answer,) = _infer(
        client, [(_classify_with("Linen wrap dress", candidates), _jpeg("olive"))], "product_vlm_candidates"
    )
    parsed = parse_classify_answer(answer)
    assert parsed.category == DRESSES.full_name  # a listed path, copied verbatim
    report = _report(answer)
    assert report["candidates"] == [c.full_name for c in candidates]  # numbered, best first, in the prompt
    assert report["image_placeholders"] == 1 and report["sampling"]["max_tokens"] == 384
    # The fine-tuned model of the same repository ignores candidates: its prompt lists none.
    (tuned,) = _infer(client, [(_classify_with("Linen wrap dress", candidates), None)])
    assert parse_classify_answer(tuned).category == "Stand-in > Linen wrap dress"
    assert _report(tuned)["candidates"] == []


def test_candidate_mode_without_candidates_fails_only_that_request(client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="no candidates.*--classify-candidates") as refused:
        _infer(client, [(_classify("Linen wrap dress"), None)], "product_vlm_candidates")
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"  # not retried: the pipeline must send them
    # extract is the same in either mode, and the model still answers
    (answer,) = _infer(client, [(_extract("Linen wrap dress"), None)], "product_vlm_candidates")
    assert parse_extract_answer(answer).attributes == {"color": ["Green"], "fabric": ["Linen"]}


def test_the_pipeline_puts_retrieved_candidates_into_the_classify_request(triton: str) -> None:
    """The product core's classify step through the pipeline's Triton client: one retriever
    call for the batch, candidates in each request, the stand-in's pick (by path, or by its
    number, which the pipeline reads back as that candidate's path) as raw_category."""
    from tests.unit.test_stages import item
    from transforms.core.classify import classify_batch
    from transforms.model.triton import TritonModel
    from transforms.records import DeadLetter, WorkItem

    class Retriever:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def candidates(self, products: Any, k: int) -> list[list[ModelCandidate]]:
            self.calls.append(len(products))
            return [[COSTUMES, SKIRTS, DRESSES][:k] for _ in products]

    retriever = Retriever()
    model = TritonModel(url=triton, model_name="product_vlm_candidates", timeout_s=120)()
    try:
        batch = [item("a", "Pleated skirt"), item("b", "Silk dress [by number]"), item("c", "Mug")]
        results = classify_batch(batch, model, retriever=retriever, candidates=3)
        # without candidates (candidate mode off in the pipeline): a dead letter naming the fix
        (refused,) = classify_batch([item("d", "Silk dress")], model)
    finally:
        model.close()
    assert retriever.calls == [3]
    assert all(isinstance(r, WorkItem) for r in results), results
    assert [r.raw_category for r in results if isinstance(r, WorkItem)] == [
        SKIRTS.full_name,
        DRESSES.full_name,  # answered "3"
        COSTUMES.full_name,  # nothing fits: the first
    ]
    assert isinstance(refused, DeadLetter) and refused.stage == "classify"
    assert "--classify-candidates" in refused.message


def test_a_classify_mode_that_disagrees_with_the_manifest_fails_the_load(client: Any) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="classify_mode: the model config says 'fine_tuned'"):
        client.load_model("mode_mismatch")
    assert not client.is_model_ready("mode_mismatch")
