"""Per-process shared objects for DoFns: one taxonomy (and its corrector and value
normaliser) per worker process and taxonomy path, through Beam's `Shared`.

Loading the full tree costs ~50-200 ms and tens of MB; every DoFn instance of every stage
on a worker shares one copy instead of loading its own in `setup()`.

`Shared` (`apache_beam.utils.shared`) keeps only a weak reference: an object lives while
some DoFn instance holds it, so a DoFn acquires in `setup()` and keeps the object on
`self` (as `transforms/correction.py` and `transforms/model/steps.py` do). Beam also
keeps the most recently acquired object alive, so a DoFn re-created between bundles finds
it again; once no DoFn holds it (the pipeline is done) it is freed and the next
`setup()` loads it again. Each (kind, key) has its own `Shared` handle (one handle holds
one object), created once per process: repeated calls are a dict look-up and `Shared`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

from apache_beam.utils.shared import Shared

from taxonomy.corrector import CategoryCorrector
from taxonomy.loader import load_taxonomy
from taxonomy.model import Taxonomy
from taxonomy.values import ValueNormaliser

T = TypeVar("T")

_HANDLES: dict[tuple[str, Hashable], Shared] = {}
_HANDLES_LOCK = threading.Lock()


def acquire_shared(kind: str, key: Hashable, constructor: Callable[[], T]) -> T:
    """The process's object of this kind and key, made by `constructor` when no DoFn
    holds one. It must be weak-referenceable (a class instance, not a dict or tuple);
    keep a reference to it for as long as it is used."""
    with _HANDLES_LOCK:
        handle = _HANDLES.get((kind, key))
        if handle is None:
            handle = _HANDLES[(kind, key)] = Shared()
    return handle.acquire(constructor)


def shared_taxonomy(path: str | None) -> Taxonomy:
    return acquire_shared("taxonomy", path, lambda: load_taxonomy(path))


def shared_corrector(path: str | None) -> CategoryCorrector:
    # The corrector (and the normaliser) holds the shared taxonomy, which lives as long.
    return acquire_shared("corrector", path, lambda: CategoryCorrector(shared_taxonomy(path)))


def shared_normaliser(path: str | None) -> ValueNormaliser:
    return acquire_shared("normaliser", path, lambda: ValueNormaliser(shared_taxonomy(path)))


__all__ = ["acquire_shared", "shared_corrector", "shared_normaliser", "shared_taxonomy"]
