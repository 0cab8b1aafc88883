"""Triton Python-backend entry point for the GPU model: prompts in front of `vlm_engine`.

For each (REQUEST, IMAGE) item it renders the prompt of this model version
(`prompts.PromptSet`, templates in `1/prompts/`) and sends it through BLS to the
vLLM-backend model `vlm_engine`, whose text is the RESPONSE. Nothing is parsed here: the
pipeline parses the answer leniently and corrects it against the taxonomy (DESIGN.md).

Concurrency. vLLM batches continuously over everything it has been given, so `execute`
submits every item of every request it was handed before waiting on any of them
(`async def execute` + `InferenceRequest.async_exec`, gathered). `async_exec` runs the
blocking BLS call in the event loop's default executor, and a decoupled BLS call holds its
thread until the engine's first response (with `stream: false`, the whole answer). The
default executor has min(32, cpus + 4) threads, which would silently cap the requests in
flight per instance, so the loop gets an executor with one thread per item that an
execute() can hold (max_batch_size).

Engine inputs are the vLLM backend's (triton-inference-server/vllm_backend,
src/utils/request.py): `text_input` (the raw prompt: the backend applies no chat template),
`image` (base64 of the image file, decoded with PIL there), `stream` false,
`exclude_input_in_output` true and `sampling_parameters` (JSON, vLLM SamplingParams
fields); output `text_output`. The engine is decoupled: its responses are read to the one
marked final, and the last non-empty `text_output` is the answer.

Failures. Exactly one response per request. A request that breaks the contract gets
INVALID_ARG; an engine error gets the engine's own status code (UNAVAILABLE when the
engine is not loaded yet, which the pipeline retries) on that request's response only.
An extract request for a category without attributes is answered `{"attributes": {}}`
without an engine call. In candidate mode (`classify_mode: candidates`, config and manifest
alike, or the load fails) a classify request without candidates cannot be rendered and
gets INVALID_ARG, saying to run the pipeline with `--classify-candidates`.

The stub runs the Triton venv's interpreter with the repo root on PYTHONPATH
(deploy/local/triton/server.py), so this file imports the project's packages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# model_repository/product_vlm/1/model.py -> the repository root
_REPO_ROOT = Path(__file__).resolve().parents[3]
# The prompt set of this version: prompts are part of the model version.
_PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


_HINT = (
    "The Python backend stub must run an interpreter with pydantic and the repo root on PYTHONPATH: "
    "locally `deploy/local/triton/server.py up`; in the serving image, install pydantic and put the "
    "repo root on PYTHONPATH."
)
try:
    from model_repository import triton_support
except ModuleNotFoundError:
    sys.path.append(str(_REPO_ROOT))  # started without the repo root on PYTHONPATH
    from model_repository import triton_support

# Engine errors worth a retry by the pipeline (transforms.model.retry retries UNAVAILABLE).
_NOT_READY = ("is not ready", "unavailable", "unhealthy")


def _import_project() -> tuple[Any, Any, Any]:
    try:
        from model_repository.contract import ModelRequest, Task
        from model_repository.product_vlm import prompts
    except ModuleNotFoundError as exc:
        raise triton_support.missing_dependency("product_vlm", exc, _HINT) from exc
    return ModelRequest, Task, prompts


def _error(message: str, code_name: str = "INTERNAL") -> Any:
    return triton_support.triton_error(pb_utils, message, code_name)


def check_parameters(config: dict[str, str], prompts: dict[str, str], where: str) -> None:
    triton_support.check_parameters(
        config,
        prompts,
        where,
        f"the prompt set ({_PROMPTS_DIR / 'manifest.json'})",
        "The prompts belong to the fine-tuned weights: update config.pbtxt's parameters, or ship the "
        "prompt set made for this model version.",
    )


def _positive_int(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"parameter {key!r} must be a positive integer, got {raw!r}")
    return value


class EngineError(Exception):
    """The engine answered an item with an error; carries the engine's status code."""

    def __init__(self, message: str, code: Any = None) -> None:
        super().__init__(message)
        self.code = code


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        started = time.monotonic()
        self._logger = pb_utils.Logger
        model_config = json.loads(args["model_config"])
        self._name = model_config.get("name", "product_vlm")
        params = triton_support.string_parameters(model_config)
        self._ModelRequest, self._Task, prompts = _import_project()
        self._prompts = prompts.PromptSet.load(_PROMPTS_DIR)
        where = f"{self._name} ({args.get('model_repository')})"
        check_parameters(params, self._prompts.parameters, where)
        prompts.check_classify_mode(params, self._prompts, where)
        self._fixed_answer = prompts.fixed_answer
        self._output = prompts.ENGINE_OUTPUT

        self._engine = params.get("engine_model_name", "").strip() or "vlm_engine"
        self._sampling = {
            self._Task.CLASSIFY: json.dumps(
                prompts.sampling_parameters(_positive_int(params, "max_tokens_classify", 384))
            ).encode(),
            self._Task.EXTRACT: json.dumps(
                prompts.sampling_parameters(_positive_int(params, "max_tokens_extract", 256))
            ).encode(),
        }
        # One execute() holds at most max_batch_size items; each needs a thread while its
        # BLS call waits (see the module docstring).
        self._threads = max(1, int(model_config.get("max_batch_size", 0) or 0))
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._logger.log_info(
            f"{self._name}: prompts {self._prompts.fingerprint} for {self._prompts.parameters} from "
            f"{_PROMPTS_DIR}, engine {self._engine!r}, up to {self._threads} items in flight per instance, "
            f"loaded in {time.monotonic() - started:.2f}s (Python {sys.version.split()[0]}, {sys.prefix})"
        )

    async def execute(self, requests: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._executor = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix=f"{self._name}-bls")
            loop.set_default_executor(self._executor)
            self._loop = loop

        # Per request: the slice of `jobs` it owns, or the error that answers it.
        jobs, spans = triton_support.flatten_requests(requests, self._read, _error)

        # Every engine call is in flight before the first is awaited.
        results = await asyncio.gather(*(self._answer(job) for job in jobs), return_exceptions=True)

        responses = []
        for span in spans:
            if not isinstance(span, tuple):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=span))
                continue
            start, end = span
            part = results[start:end]
            failure = next((r for r in part if isinstance(r, BaseException)), None)
            if failure is not None:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=self._engine_error(failure)))
                continue
            out = np.empty((end - start, 1), dtype=np.object_)
            out[:, 0] = part
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("RESPONSE", out)]))
        return responses

    def _read(self, request: Any) -> list[tuple[Any, bytes | None]]:
        """The jobs of one request, one per row: ((prompt, task), image) for the engine, or
        (fixed answer, None). ValueError when a row breaks the contract or cannot be rendered."""
        raw = pb_utils.get_input_tensor_by_name(request, "REQUEST").as_numpy().reshape(-1)
        image_tensor = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        images: list[bytes | None] = [None] * len(raw)
        if image_tensor is not None:
            flat = image_tensor.as_numpy().reshape(-1)
            if len(flat) != len(raw):
                raise ValueError(f"IMAGE has {len(flat)} elements for {len(raw)} REQUEST elements")
            images = [bytes(x) or None for x in flat]
        items = []
        for i, (r, img) in enumerate(zip(raw, images)):
            where = f"REQUEST[{i}]" if len(raw) > 1 else "REQUEST"
            try:
                parsed = self._ModelRequest.model_validate_json(bytes(r))
            except Exception as exc:  # pydantic's ValidationError: JSON and schema errors
                raise ValueError(f"{where} is not a valid model request: {_describe(exc)}") from exc
            fixed = self._fixed_answer(parsed)
            if fixed is None:
                try:
                    prompt = self._prompts.render(parsed, has_image=img is not None)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from exc
                items.append(((prompt, parsed.task), img))
            else:
                items.append((fixed, None))
        return items

    async def _answer(self, job: tuple[Any, bytes | None]) -> bytes:
        what, image = job
        if isinstance(what, bytes):  # answered without the engine
            return what
        prompt, task = what
        inputs = [
            pb_utils.Tensor("text_input", np.array([prompt.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("stream", np.array([False], dtype=bool)),
            pb_utils.Tensor("exclude_input_in_output", np.array([True], dtype=bool)),
            pb_utils.Tensor("sampling_parameters", np.array([self._sampling[task]], dtype=np.object_)),
        ]
        if image is not None:
            inputs.append(pb_utils.Tensor("image", np.array([base64.b64encode(image)], dtype=np.object_)))
        request = pb_utils.InferenceRequest(
            model_name=self._engine, requested_output_names=[self._output], inputs=inputs
        )
        iterator = await request.async_exec(decoupled=True)
        # Reading on to the final flag can block: do it off the event loop.
        responses = await asyncio.get_running_loop().run_in_executor(None, list, iterator)
        text: bytes | None = None
        for response in responses:
            if response.has_error():
                error = response.error()
                code = error.code() if callable(getattr(error, "code", None)) else None
                raise EngineError(error.message(), code)
            tensor = pb_utils.get_output_tensor_by_name(response, self._output)
            if tensor is not None:
                values = tensor.as_numpy().reshape(-1)
                if values.size:
                    text = bytes(values[0])
        if text is None:
            raise EngineError(f"the engine sent no {self._output}")
        return text

    def _engine_error(self, exc: BaseException) -> Any:
        message = f"{self._engine}: {exc}" if str(exc) else f"{self._engine}: {type(exc).__name__}"
        self._logger.log_error(f"{self._name}: request failed: {message}")
        if any(s in str(exc).lower() for s in _NOT_READY):
            return _error(message, "UNAVAILABLE")
        code = getattr(exc, "code", None)
        if isinstance(exc, EngineError) and code is not None:
            try:
                return pb_utils.TritonError(message, code)
            except Exception:  # noqa: BLE001 - an unknown code: keep the message
                pass
        return _error(message, "INTERNAL")

    def finalize(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._prompts = None


def _describe(exc: Exception) -> str:
    """pydantic's errors as `loc: msg` pairs, without its multi-line boilerplate."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            parts = [f"{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in errors()[:3]]
            return "; ".join(parts)
        except Exception:  # noqa: BLE001 - fall back to the plain text
            pass
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
