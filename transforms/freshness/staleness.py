"""One staleness decision: does a product need a new prediction, and why.

DESIGN.md "Refresh trigger and caching": predict when the product is new, its content
hash changed, the model or taxonomy version changed, or a request forces it; otherwise
skip and count. Three places ask that question and all of them call ``staleness``:

- the refresh trigger (``transforms/freshness/refresh.py``, ``decide``), per event, with
  the last prediction it made (or was seeded with) for the product;
- the prediction store's ``SkipCurrent`` (``transforms/freshness/store.py``), per event of
  a batch job run with ``--prediction_store``;
- ``pipelines/repredict.py``, per product of a catalog snapshot.

They differ only in what they have as "the last prediction" (``Known``: anything with a
content hash, a model version and a taxonomy version, e.g. ``KnownPrediction`` or the
store's ``StoreEntry``) and in which requests they pass (``force``, ``repredict``).

An event that needs no prediction of its own ends as one ``Skip`` record, whichever path
skipped it: the refresh trigger (``skipped_unchanged``, or ``debounced`` when a later
event of the same burst superseded it) or ``SkipCurrent`` (``skipped_unchanged``). The
bulk-operation jobs count skips by ``event_id`` / ``bulk_request_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from transforms.records import ProductEvent, source_of


class Reason(StrEnum):
    """What happens to an event and why; the values are the ``refresh`` counter names."""

    # Stale: a prediction is needed (what ``staleness`` returns), in the order checked.
    NEW = "new"
    CONTENT_CHANGED = "content_changed"
    MODEL_CHANGED = "model_changed"
    TAXONOMY_CHANGED = "taxonomy_changed"
    REPREDICT = "repredict"
    FORCED = "forced"
    # Not stale: the current prediction stands (a ``Skip``), or the product is deleted.
    SKIPPED_UNCHANGED = "skipped_unchanged"
    DELETED = "deleted"


STALE = frozenset(
    {Reason.NEW, Reason.CONTENT_CHANGED, Reason.MODEL_CHANGED, Reason.TAXONOMY_CHANGED, Reason.REPREDICT, Reason.FORCED}
)
# Not a decision on an event: the refresh trigger's pending event that a later event of
# the same burst superseded (a ``Skip`` reason and a counter of its own).
DEBOUNCED = "debounced"

# The prediction store and repredict name three reasons differently in their counters
# (``store/to_predict_<name>``, ``repredict/stale_<name>``), in repredict's summary.json
# ("stale") and its dry-run ``stale.jsonl`` ("reason"); kept so that output does not change.
_BATCH_NAMES = {
    Reason.NEW: "missing",
    Reason.MODEL_CHANGED: "model_version",
    Reason.TAXONOMY_CHANGED: "taxonomy_version",
}


def batch_name(reason: Reason) -> str:
    """The name the prediction store and repredict report ``reason`` under."""
    return _BATCH_NAMES.get(reason, reason.value)


class Known(Protocol):
    """The last prediction of a product, as far as staleness is concerned."""

    @property
    def content_hash(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    @property
    def taxonomy_version(self) -> str: ...


def staleness(
    last: Known | None,
    content_hash: str,
    model_version: str,
    taxonomy_version: str,
    force: bool = False,
    repredict: bool = False,
) -> Reason | None:
    """Why a product with ``content_hash`` needs a new prediction from the model and
    taxonomy at ``model_version`` / ``taxonomy_version``, or None when ``last`` is current.

    A real change (new, content, model, taxonomy) is named before a request (repredict,
    then force), so the counters say why a prediction could differ. Any difference in
    version counts, not only an older one: version strings have no order, and a rollback
    to an earlier model must re-predict as well.
    """
    if last is None:
        return Reason.NEW
    if last.content_hash != content_hash:
        return Reason.CONTENT_CHANGED
    if last.model_version != model_version:
        return Reason.MODEL_CHANGED
    if last.taxonomy_version != taxonomy_version:
        return Reason.TAXONOMY_CHANGED
    if repredict:
        return Reason.REPREDICT
    if force:
        return Reason.FORCED
    return None


@dataclass(frozen=True)
class KnownPrediction:
    """The last prediction made for a product: all the refresh trigger keeps between bursts."""

    content_hash: str
    model_version: str
    taxonomy_version: str

    @classmethod
    def of(cls, value: KnownPrediction | tuple[str, str, str] | Any) -> KnownPrediction:
        if isinstance(value, KnownPrediction):
            return value
        if isinstance(value, tuple) and len(value) == 3:
            return cls(*value)
        # A Prediction record or a StoreEntry (snapshot / compacted topic) has the three fields.
        return cls(value.content_hash, value.model_version, value.taxonomy_version)


@dataclass(frozen=True)
class Skip:
    """An event that needs no prediction of its own (a counted skip), from either path.

    ``prediction_id``: the current prediction that stands for the event (for
    ``skipped_unchanged``); None for ``debounced`` (the burst's later event is predicted).
    """

    product_id: str
    event_id: str
    prediction_id: str | None
    bulk_request_id: str | None = None
    reason: str = Reason.SKIPPED_UNCHANGED.value  # or DEBOUNCED
    content_hash: str = ""
    # Stream only: the event's Kafka (topic, partition, offset); a counted skip completes
    # its record for the sink-side offset commit (transforms/io/kafka_commit.py).
    source: tuple[str, int, int] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_event(cls, event: ProductEvent, reason: str, content_hash: str, prediction_id: str | None = None) -> Skip:
        return cls(
            event.product_id,
            event.event_id,
            prediction_id,
            event.bulk_request_id,
            str(reason),
            content_hash,
            source_of(event),
        )


__all__ = [
    "DEBOUNCED",
    "STALE",
    "Known",
    "KnownPrediction",
    "Reason",
    "Skip",
    "batch_name",
    "staleness",
]
