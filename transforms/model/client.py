"""How the pipeline talks to a model: one small interface, several backends.

A pipeline holds a picklable *factory*; the client itself (a model in memory, a gRPC
channel) is made in the DoFn's `setup()` (DESIGN.md conventions). The in-process baseline
is the default of the local runtime; `transforms/model/triton.py` is the Triton gRPC client.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ModelMetadata",
    "ModelClient",
    "ModelClientFactory",
    "TaxonomyVersionMismatch",
    "check_taxonomy_version",
    "InProcessBaseline",
]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    model_version: str
    taxonomy_version: str


class ModelClient(Protocol):
    def metadata(self) -> ModelMetadata: ...

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes | Exception]:
        """One RESPONSE per (REQUEST, IMAGE) pair, in order; an item the model could not
        answer holds the exception instead. Raises when the whole call failed."""
        ...

    def close(self) -> None: ...


class ModelClientFactory(Protocol):
    def __call__(self) -> ModelClient: ...


class TaxonomyVersionMismatch(RuntimeError):
    pass


def check_taxonomy_version(meta: ModelMetadata, pipeline_version: str) -> None:
    """A model built for another taxonomy names categories the pipeline cannot validate."""
    if meta.taxonomy_version != pipeline_version:
        raise TaxonomyVersionMismatch(
            f"model {meta.name} ({meta.model_version}) was built for taxonomy "
            f"{meta.taxonomy_version}, but the pipeline uses taxonomy {pipeline_version}. "
            f"Pass --taxonomy for version {meta.taxonomy_version}, or serve a model built "
            f"for {pipeline_version}."
        )


class _InProcessBaselineClient:
    def __init__(self, model: object) -> None:
        self._model = model
        self._lock = threading.Lock()

    def metadata(self) -> ModelMetadata:
        p = self._model.parameters  # type: ignore[attr-defined]
        return ModelMetadata(p["model_name"], p["model_version"], p["taxonomy_version"])

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes | Exception]:
        # Beam may run several bundles on threads of one worker; the numpy model is not
        # re-entrant and each batch already uses every core through BLAS.
        with self._lock:
            return self._model.infer_batch(requests)  # type: ignore[attr-defined]

    def close(self) -> None:
        pass  # shared by the DoFn instances of this process; Shared frees it when none holds it


def _baseline_client(taxonomy_path: str | None, backoff_threshold: float | None) -> _InProcessBaselineClient:
    from model_repository.product_baseline.engine import BaselineModel
    from transforms.shared import shared_taxonomy

    # The model reads the process's shared taxonomy rather than loading a copy of its own.
    return _InProcessBaselineClient(BaselineModel(shared_taxonomy(taxonomy_path), backoff_threshold=backoff_threshold))


@dataclass(frozen=True)
class InProcessBaseline:
    """Factory for the CPU baseline running inside the worker process. One model per
    process and taxonomy (Beam's `Shared`, see `transforms/shared.py`), shared by the
    classify and extract steps while either holds the client (they keep it on `self`
    from `setup()` to `teardown()`)."""

    taxonomy_path: str | None = None
    # Below this calibrated probability the model backs off to an ancestor; None: its default.
    backoff_threshold: float | None = None

    def __call__(self) -> ModelClient:
        from transforms.shared import acquire_shared  # the taxonomy modules only where the baseline runs

        path, threshold = self.taxonomy_path, self.backoff_threshold
        key = path if threshold is None else f"{path}|backoff={threshold}"
        return acquire_shared("baseline", key, lambda: _baseline_client(path, threshold))
