"""What every Python-backend model in this repository does the same way at load time.

Kept free of `triton_python_backend_utils` (the caller passes its module) so that it is
importable, and testable, outside Triton.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "T",
    "CHECKED_PARAMETERS",
    "missing_dependency",
    "string_parameters",
    "check_parameters",
    "triton_error",
    "flatten_requests",
]

T = TypeVar("T")

# Parameters that must agree between config.pbtxt and the model itself: the pipeline reads
# them from the model config and stamps every prediction with them.
CHECKED_PARAMETERS = ("model_version", "taxonomy_version")


def missing_dependency(model: str, exc: ModuleNotFoundError, hint: str) -> ImportError:
    return ImportError(
        f"{model} cannot import {exc.name!r} (Python {sys.version.split()[0]}, sys.prefix={sys.prefix}). {hint}"
    )


def string_parameters(model_config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def check_parameters(
    config: dict[str, str], reference: dict[str, str], where: str, reference_name: str, fix: str
) -> None:
    """Fail the load when config.pbtxt and the model's own `reference` disagree."""
    problems = []
    for key in CHECKED_PARAMETERS:
        if key not in config:
            problems.append(f"parameter {key!r} is missing ({reference_name} says {reference[key]!r})")
        elif config[key] != reference[key]:
            problems.append(f"{key}: the model config says {config[key]!r}, {reference_name} says {reference[key]!r}")
    if problems:
        raise ValueError(f"{where}: model config and {reference_name} disagree: " + "; ".join(problems) + f". {fix}")


def triton_error(pb_utils: ModuleType, message: str, code_name: str = "INTERNAL") -> Any:
    code = getattr(pb_utils.TritonError, code_name, None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def flatten_requests(
    requests: Sequence[Any], read: Callable[[Any], list[T]], error: Callable[[str, str], Any]
) -> tuple[list[T], list[tuple[int, int] | Any]]:
    """The items of every request in one list, and per request the slice of that list it
    owns, or the error that answers it (ValueError: INVALID_ARG; anything else: INTERNAL),
    so that one bad request fails only its own response."""
    items: list[T] = []
    spans: list[tuple[int, int] | Any] = []
    for request in requests:
        try:
            own = read(request)
        except ValueError as exc:
            spans.append(error(str(exc), "INVALID_ARG"))
            continue
        except Exception as exc:  # noqa: BLE001 - goes on this request's response
            spans.append(error(f"cannot read the request: {type(exc).__name__}: {exc}", "INTERNAL"))
            continue
        spans.append((len(items), len(items) + len(own)))
        items.extend(own)
    return items, spans


class ContractPythonModel:
    """`execute` for a Python-backend model that answers the contract with an in-process
    engine (`infer_batch(items) -> answers`): product_baseline and every trained model.

    Triton's dynamic batcher hands `execute` a list of requests, each with a batch of one or
    more (REQUEST, IMAGE) items. They are flattened into one `infer_batch` call and split
    back into exactly one response per request; a request that cannot be served gets a
    `TritonError` on its own response and the others are answered normally.

    A subclass's `initialize` sets `_pb` (the `triton_python_backend_utils` module),
    `_logger`, `_name`, `_ModelRequest` (the contract's request model) and `_model`.
    """

    _pb: ModuleType
    _logger: Any
    _name: str
    _ModelRequest: Any
    _model: Any

    def _error(self, message: str, code_name: str = "INTERNAL") -> Any:
        return triton_error(self._pb, message, code_name)

    def execute(self, requests: list[Any]) -> list[Any]:
        import numpy as np  # the stub's numpy (1.x in .venv-triton)

        pb = self._pb
        # Per request: the slice of `items` it owns, or the error that answers it.
        items, spans = flatten_requests(requests, self._read, self._error)
        answers, failures = self._infer(items, spans)
        responses = []
        for span in spans:
            if not isinstance(span, tuple):
                responses.append(pb.InferenceResponse(output_tensors=[], error=span))
            elif span in failures:
                responses.append(pb.InferenceResponse(output_tensors=[], error=failures[span]))
            else:
                start, end = span
                out = np.empty((end - start, 1), dtype=np.object_)
                out[:, 0] = answers[start:end]
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor("RESPONSE", out)]))
        return responses

    def _read(self, request: Any) -> list[tuple[bytes, bytes | None]]:
        """The (REQUEST, IMAGE) items of one request; ValueError when it breaks the contract."""
        raw = self._pb.get_input_tensor_by_name(request, "REQUEST").as_numpy().reshape(-1)
        image_tensor = self._pb.get_input_tensor_by_name(request, "IMAGE")
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
                raise ValueError(f"{where} is not a valid model request: {describe_validation(exc)}") from exc
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
        answers: list[bytes | None] = [None] * len(items)
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
                failures[span] = self._error(f"{type(exc).__name__}: {exc}", "INTERNAL")
        return answers, failures

    def finalize(self) -> None:
        self._model = None


def describe_validation(exc: Exception) -> str:
    """pydantic's errors as `loc: msg` pairs, without its multi-line boilerplate."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ())) or '(root)'}: {e.get('msg', '')}" for e in errors()[:3]]
        return "; ".join(parts)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
