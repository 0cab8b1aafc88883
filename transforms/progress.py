"""Progress output for long local runs.

Beam gives no live view of a running pipeline on the local runner, so a pass-through DoFn
calls back into the launching process. On the embedded FnApiRunner the worker is the
launching process and the callback is found; on a remote worker (Dataflow) the registry is
empty and the DoFn is a no-op, so it is safe to leave in every pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam

__all__ = [
    "register",
    "unregister",
    "ReportProgress",
]

_CALLBACKS: dict[str, Callable[[int], None]] = {}
_LOCK = threading.Lock()


def register(run_id: str, callback: Callable[[int], None]) -> None:
    with _LOCK:
        _CALLBACKS[run_id] = callback


def unregister(run_id: str) -> None:
    with _LOCK:
        _CALLBACKS.pop(run_id, None)


class ReportProgress(beam.DoFn):
    """Counts each element that finishes an input (a prediction, a delete, a dead letter
    that ends a product) and passes it on unchanged."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def process(self, element: Any) -> Iterator[Any]:
        callback = _CALLBACKS.get(self.run_id)
        if callback is not None:
            callback(1)
        yield element
