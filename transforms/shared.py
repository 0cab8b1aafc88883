"""Per-process shared objects for DoFns: one taxonomy (and its corrector) per worker.

Loading the full tree costs ~50-200 ms and tens of MB; every DoFn instance of every stage
on a worker shares one copy instead of loading its own in `setup()`.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from taxonomy.corrector import CategoryCorrector
from taxonomy.loader import load_taxonomy
from taxonomy.model import Taxonomy
from taxonomy.values import ValueNormaliser

_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _taxonomy(path: str | None) -> Taxonomy:
    return load_taxonomy(path)


def shared_taxonomy(path: str | None) -> Taxonomy:
    with _LOCK:
        return _taxonomy(path)


@lru_cache(maxsize=4)
def _corrector(path: str | None) -> CategoryCorrector:
    return CategoryCorrector(_taxonomy(path))


def shared_corrector(path: str | None) -> CategoryCorrector:
    with _LOCK:
        return _corrector(path)


@lru_cache(maxsize=4)
def _normaliser(path: str | None) -> ValueNormaliser:
    return ValueNormaliser(_taxonomy(path))


def shared_normaliser(path: str | None) -> ValueNormaliser:
    with _LOCK:
        return _normaliser(path)
