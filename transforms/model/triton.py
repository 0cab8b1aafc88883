"""The Triton inference client used by both model steps.

One Triton request per product, many in flight: the server's dynamic batcher (or vLLM's
continuous batching) forms the batches, so the client never batches twice (DESIGN.md).
Transient gRPC failures are retried with capped backoff (`transforms.model.retry`); a permanent
failure answers only the items concerned, as an exception in their slot.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_repository.contract import INPUT_IMAGE, INPUT_REQUEST, OUTPUT_RESPONSE
from transforms.config import PredictSettings, default_of
from transforms.model.client import ModelClient, ModelMetadata
from transforms.model.retry import TRANSIENT_STATUSES, RetryPolicy, call_with_retries

__all__ = [
    "ModelConfigError",
    "grpc_status",
    "is_transient",
    "TritonModel",
    "TritonClient",
]


class ModelConfigError(RuntimeError):
    """The served model does not declare what the pipeline needs; says what to fix."""


def grpc_status(exc: BaseException) -> str:
    """'UNAVAILABLE' from tritonclient's 'StatusCode.UNAVAILABLE' (or '' when unknown)."""
    status = getattr(exc, "status", None)
    text = str(status() if callable(status) else status or "")
    return text.rsplit(".", 1)[-1].upper()


def is_transient(exc: BaseException) -> bool:
    if grpc_status(exc) in TRANSIENT_STATUSES:
        return True
    # The client reports a refused connection during a restart without a status code.
    message = str(exc).lower()
    return any(s in message for s in ("connection refused", "failed to connect", "socket closed", "unavailable"))


@dataclass(frozen=True)
class TritonModel:
    """Picklable factory: where the model is and how to talk to it."""

    url: str
    # Defaults written once, in transforms/config.py (the settings the CLI and options use).
    model_name: str = default_of(PredictSettings, "model_name")
    timeout_s: float = default_of(PredictSettings, "model_timeout_s")
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not self.url or "://" in self.url:
            raise ValueError(f"--triton-url takes host:port for gRPC (e.g. localhost:8001), got {self.url!r}")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    def __call__(self) -> ModelClient:
        return TritonClient(self)


class TritonClient:
    def __init__(self, spec: TritonModel) -> None:
        import tritonclient.grpc as grpcclient

        self._grpc = grpcclient
        self.spec = spec
        self._client = grpcclient.InferenceServerClient(url=spec.url)
        self._metadata: ModelMetadata | None = None
        self._lock = threading.Lock()
        # Plain counters: callbacks run on gRPC threads, where Beam metrics would be lost.
        # The model step publishes them from the bundle's thread (`take_stats`).
        self._in_flight = 0
        self._stats = {"retries": 0, "failures": 0, "max_requests_in_flight": 0}

    # -- metadata --------------------------------------------------------------------

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            config = call_with_retries(
                lambda: self._client.get_model_config(
                    self.spec.model_name, as_json=True, client_timeout=self.spec.timeout_s
                ),
                self.spec.retry,
                is_transient,
            )["config"]
            params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
            missing = [k for k in ("model_version", "taxonomy_version") if not params.get(k)]
            if missing:
                raise ModelConfigError(
                    f"model {self.spec.model_name} at {self.spec.url} declares no {' or '.join(missing)} in its "
                    "config.pbtxt parameters; every model in model_repository/ must (DESIGN.md, the model contract)"
                )
            self._metadata = ModelMetadata(self.spec.model_name, params["model_version"], params["taxonomy_version"])
        return self._metadata

    # -- inference -------------------------------------------------------------------

    def _inputs(self, request: bytes, image: bytes | None) -> list[Any]:
        req = self._grpc.InferInput(INPUT_REQUEST, [1, 1], "BYTES")
        req.set_data_from_numpy(np.array([[request]], dtype=np.object_))
        # IMAGE is always sent, empty for a text-only product: Triton's dynamic batcher
        # only batches requests with the same set of inputs, so mixing requests with and
        # without IMAGE cut server batches to the runs of alike requests (mean batch 7.5
        # instead of 64 in benchmarks/saturation.py).
        img = self._grpc.InferInput(INPUT_IMAGE, [1, 1], "BYTES")
        img.set_data_from_numpy(np.array([[image or b""]], dtype=np.object_))
        return [req, img]

    def _submit(self, request: bytes, image: bytes | None) -> Future[bytes]:
        """One async request; the future holds the RESPONSE bytes or the error."""
        future: Future[bytes] = Future()

        def done(result: Any, error: Any) -> None:
            self._track(-1)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(bytes(result.as_numpy(OUTPUT_RESPONSE).reshape(-1)[0]))

        self._track(+1)
        try:
            self._client.async_infer(
                self.spec.model_name,
                self._inputs(request, image),
                callback=done,
                outputs=[self._grpc.InferRequestedOutput(OUTPUT_RESPONSE)],
                client_timeout=self.spec.timeout_s,
            )
        except Exception as exc:  # noqa: BLE001 - surfaced through the future
            self._track(-1)
            future.set_exception(exc)
        return future

    def _track(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self._stats["max_requests_in_flight"] = max(self._stats["max_requests_in_flight"], self._in_flight)

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    def take_stats(self) -> dict[str, int]:
        """Counts since the last call (max_requests_in_flight: the peak since then)."""
        with self._lock:
            stats, self._stats = self._stats, {"retries": 0, "failures": 0, "max_requests_in_flight": self._in_flight}
        return stats

    def _one(self, request: bytes, image: bytes | None) -> bytes:
        def on_retry(attempt: int, exc: BaseException) -> None:
            self._count("retries")

        return call_with_retries(
            lambda: self._submit(request, image).result(), self.spec.retry, is_transient, on_retry=on_retry
        )

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes | Exception]:
        # Fire every item at once, then wait; a retry re-sends only its own item.
        first = [self._submit(r, img) for r, img in requests]
        out: list[bytes | Exception] = []
        for future, (r, img) in zip(first, requests):
            try:
                out.append(future.result())
                continue
            except Exception as exc:  # noqa: BLE001 - classified below
                error: Exception = exc
            if is_transient(error):
                self._count("retries")
                try:
                    out.append(self._one(r, img))
                    continue
                except Exception as exc:  # noqa: BLE001
                    error = exc
            self._count("failures")
            out.append(error)
        return out

    def close(self) -> None:
        self._client.close()
