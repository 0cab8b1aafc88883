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
