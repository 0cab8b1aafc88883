"""Triton Python-backend entry point of a trained model (`product_trained.engine.TrainedModel`).

`productlens train` copies this file to `model_repository/<name>/1/model.py`; the weights
sit beside it and the model directory is the parent of this file's directory.

Triton's dynamic batcher hands `execute` (`triton_support.ContractPythonModel`, shared with every
CPU contract model) a list of requests, each with a batch of one or
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


def check_parameters(config: dict[str, str], model: dict[str, str], where: str) -> None:
    triton_support.check_parameters(
        config,
        model,
        where,
        "engine",
        "Update the parameters in config.pbtxt (or taxonomy_path, which decides the taxonomy version) "
        "so that the pipeline stamps predictions with the right versions.",
    )


class TritonPythonModel(triton_support.ContractPythonModel):
    def initialize(self, args: dict[str, str]) -> None:
        started = time.monotonic()
        self._pb = pb_utils
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
