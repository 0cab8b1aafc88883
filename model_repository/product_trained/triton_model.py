"""Triton Python-backend entry point of a trained model (`product_trained.engine.TrainedModel`).

`productlens train` copies this file to `model_repository/<name>/1/model.py`; the weights
sit beside it and the model directory is the parent of this file's directory.

Triton's dynamic batcher hands `execute` a list of requests, each with a batch of one or
more (REQUEST, IMAGE) items. They are flattened into one `BaselineModel.infer_batch` call
(one embedding pass for the whole batch) and split back into exactly one response per
request. A request that cannot be served gets a `TritonError` on its own response; the
other requests of the batch are answered normally (DESIGN.md, "Conventions").

The stub embeds the interpreter of the Triton runtime venv (`.venv-triton`: the stub is
built against numpy 1.x, the project venv has numpy 2); deploy/local/triton/server.py puts
that venv first on PATH and the repo root on PYTHONPATH, so the model imports the
project's packages like any other module. If the repo root is missing from the path, it
is added from this file's location.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

_REPO_ROOT = Path(__file__).resolve().parents[3]  # model_repository/<name>/1/model.py
_HINT = (
    "The Python-backend stub must run a venv with the model's dependencies and numpy<2 "
    "(deploy/local/triton/requirements.txt): start tritonserver with `deploy/local/triton/server.py up`, "
    "which puts .venv-triton/bin first on PATH and the repo root on PYTHONPATH."
)
try:
    from model_repository import triton_support
except ModuleNotFoundError:
    sys.path.append(str(_REPO_ROOT))  # started without the repo root on PYTHONPATH
    from model_repository import triton_support


def _import_project() -> tuple[Any, Any]:
    try:
        from model_repository.contract import ModelRequest
        from model_repository.product_trained import engine
    except ModuleNotFoundError as exc:
        raise triton_support.missing_dependency("product_trained", exc, _HINT) from exc
    return ModelRequest, engine


def _error(message: str, code_name: str = "INTERNAL") -> Any:
    return triton_support.triton_error(pb_utils, message, code_name)


def check_parameters(config: dict[str, str], model: dict[str, str], where: str) -> None:
    triton_support.check_parameters(
        config,
        model,
        where,
        "engine",
        "Update the parameters in config.pbtxt (or taxonomy_path, which decides the taxonomy version) "
        "so that the pipeline stamps predictions with the right versions.",
    )


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        started = time.monotonic()
        self._logger = pb_utils.Logger
        model_config = json.loads(args["model_config"])
        self._name = model_config.get("name", "product_trained")
        params = triton_support.string_parameters(model_config)
        self._ModelRequest, engine = _import_project()

        threshold = params.get("backoff_threshold", "").strip()
        model_dir = Path(__file__).resolve().parents[1]
        self._model = engine.TrainedModel(model_dir, backoff_threshold=float(threshold) if threshold else None)
        taxonomy_path = params.get("taxonomy_path", "")
        check_parameters(params, self._model.parameters, f"{self._name} ({args.get('model_repository')})")
        self._logger.log_info(
            f"{self._name}: loaded {self._model.parameters} from "
            f"{taxonomy_path or 'the bundled taxonomy'} in {time.monotonic() - started:.1f}s "
            f"(Python {sys.version.split()[0]}, {sys.prefix})"
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        # Per request: the slice of `items` it owns, or the error that answers it.
        items, spans = triton_support.flatten_requests(requests, self._read, _error)

        answers, failures = self._infer(items, spans)
        responses = []
        for span in spans:
            if not isinstance(span, tuple):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=span))
            elif span in failures:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=failures[span]))
            else:
                start, end = span
                out = np.empty((end - start, 1), dtype=np.object_)
                out[:, 0] = answers[start:end]
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("RESPONSE", out)]))
        return responses

    def _read(self, request: Any) -> list[tuple[bytes, bytes | None]]:
        """The (REQUEST, IMAGE) items of one request; ValueError when it breaks the contract."""
        raw = pb_utils.get_input_tensor_by_name(request, "REQUEST").as_numpy().reshape(-1)
        image_tensor = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        images: list[bytes | None] = [None] * len(raw)
        if image_tensor is not None:
            flat = image_tensor.as_numpy().reshape(-1)
            if len(flat) != len(raw):
                raise ValueError(f"IMAGE has {len(flat)} elements for {len(raw)} REQUEST elements")
            images = [bytes(x) or None for x in flat]
        pairs = []
        for i, (r, img) in enumerate(zip(raw, images)):
            r = bytes(r)
            try:
                self._ModelRequest.model_validate_json(r)
            except Exception as exc:  # pydantic's ValidationError: JSON and schema errors
                where = f"REQUEST[{i}]" if len(raw) > 1 else "REQUEST"
                raise ValueError(f"{where} is not a valid model request: {_describe(exc)}") from exc
            pairs.append((r, img))
        return pairs

    def _infer(
        self, items: list[tuple[bytes, bytes | None]], spans: list[Any]
    ) -> tuple[list[bytes | None], dict[tuple[int, int], Any]]:
        """Answers for `items` and the errors of failed requests (keyed by span). When the
        whole batch fails, each request is retried alone, so a request that breaks the
        engine fails only itself."""
        if not items:
            return [], {}
        try:
            answers = list(self._model.infer_batch(items))
            if len(answers) != len(items):
                raise RuntimeError(f"engine returned {len(answers)} answers for {len(items)} items")
            return answers, {}
        except Exception as exc:  # noqa: BLE001 - isolated per request below
            self._logger.log_warn(f"{self._name}: batch of {len(items)} failed ({exc!r}); retrying per request")
        answers = [None] * len(items)
        failures: dict[tuple[int, int], Any] = {}
        for span in spans:
            if not isinstance(span, tuple):
                continue
            start, end = span
            try:
                part = list(self._model.infer_batch(items[start:end]))
                if len(part) != end - start:
                    raise RuntimeError(f"engine returned {len(part)} answers for {end - start} items")
                answers[start:end] = part
            except Exception as exc:  # noqa: BLE001 - goes on this request's response
                self._logger.log_error(f"{self._name}: request failed: {exc!r}")
                failures[span] = _error(f"{type(exc).__name__}: {exc}", "INTERNAL")
        return answers, failures

    def finalize(self) -> None:
        self._model = None


def _describe(exc: Exception) -> str:
    """pydantic's errors as `loc: msg` pairs, without its multi-line boilerplate."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ())) or '(root)'}: {e.get('msg', '')}" for e in errors()[:3]]
        return "; ".join(parts)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
