"""One staleness decision and one skip record for the refresh trigger, the prediction
store and repredict; the per-process objects behind Beam's `Shared`; the store's
latest-per-product combiner."""

from __future__ import annotations

import gc
import itertools
import weakref
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from transforms.bulk.batch import SKIPPED, outcome_of
from transforms.bulk.stream import outcome_element
from transforms.freshness import refresh, store
from transforms.freshness.refresh import EMPTY, RefreshConfig, RefreshState, decide, on_event, on_timer
from transforms.freshness.staleness import (
    DEBOUNCED,
    STALE,
    KnownPrediction,
    Reason,
    Skip,
    batch_name,
    staleness,
)
from transforms.freshness.store import SkipCurrent, StoreEntry, last_per_product, newest
from transforms.records import EventType, ProductEvent, WorkItem, content_hash, prediction_id
from transforms.shared import acquire_shared, shared_corrector, shared_normaliser, shared_taxonomy

M, T = "m-1", "2024-07"
CONFIG = RefreshConfig(model_version=M, taxonomy_version=T, quiet_period_s=30)
S = 1_000_000


def event(
    pid: str = "p1",
    title: str = "Linen shirt",
    *,
    type: str = "update",
    force: bool = False,
    bulk: str | None = None,
    eid: str | None = None,
    t: float = 0,
) -> ProductEvent:
    return ProductEvent(
        event_id=eid or f"{pid}-{title}-{type}-{force}-{t}",
        type=EventType(type),
        product_id=pid,
        shop_id="s",
        occurred_at=datetime.fromtimestamp(t, UTC),
        product=None if type == "delete" else {"title": title},
        force=force,
        bulk_request_id=bulk,
    )


def item(*args: object, **kwargs: object) -> WorkItem:
    ev = event(*args, **kwargs)  # type: ignore[arg-type]
    assert ev.product is not None
    return WorkItem(event=ev, content_hash=content_hash(ev.product))


HASH = item().content_hash


# --- staleness -----------------------------------------------------------------------------


def test_each_reason_in_order() -> None:
    cur = KnownPrediction(HASH, M, T)
    assert staleness(None, HASH, M, T) is Reason.NEW
    assert staleness(None, HASH, M, T, force=True, repredict=True) is Reason.NEW
    assert staleness(KnownPrediction("other", "m-0", "2023"), HASH, M, T, force=True) is Reason.CONTENT_CHANGED
    assert staleness(KnownPrediction(HASH, "m-0", "2023"), HASH, M, T, force=True) is Reason.MODEL_CHANGED
    assert staleness(KnownPrediction(HASH, M, "2023"), HASH, M, T, repredict=True) is Reason.TAXONOMY_CHANGED
    assert staleness(cur, HASH, M, T, force=True, repredict=True) is Reason.REPREDICT
    assert staleness(cur, HASH, M, T, force=True) is Reason.FORCED
    assert staleness(cur, HASH, M, T) is None
    # version strings have no order: a rollback re-predicts too
    assert staleness(KnownPrediction(HASH, "m-9", T), HASH, M, T) is Reason.MODEL_CHANGED


def test_anything_with_the_three_fields_is_a_known_prediction() -> None:
    entry = StoreEntry(HASH, M, T, prediction_id("p1", HASH, M, T), None)
    assert staleness(entry, HASH, M, T) is None
    assert staleness(entry, HASH, "m-2", T) is Reason.MODEL_CHANGED
    assert KnownPrediction.of(entry) == KnownPrediction.of((HASH, M, T)) == KnownPrediction(HASH, M, T)


def test_the_store_and_repredict_names_of_the_reasons() -> None:
    assert [
        batch_name(r) for r in (Reason.NEW, Reason.CONTENT_CHANGED, Reason.MODEL_CHANGED, Reason.TAXONOMY_CHANGED)
    ] == list(store.STALE_REASONS)
    assert batch_name(Reason.FORCED) == store.FORCED == "forced"
    assert STALE == {r for r in Reason if r not in (Reason.SKIPPED_UNCHANGED, Reason.DELETED)}


LASTS = [
    None,
    KnownPrediction(HASH, M, T),
    KnownPrediction("other", M, T),
    KnownPrediction(HASH, "m-0", T),
    KnownPrediction(HASH, M, "2023"),
]


@pytest.mark.parametrize(
    ("last", "type_", "force"), list(itertools.product(LASTS, ["create", "update", "repredict"], [False, True]))
)
def test_the_refresh_trigger_decides_by_staleness(last: KnownPrediction | None, type_: str, force: bool) -> None:
    element = item(type=type_, force=force)
    expected = staleness(last, HASH, M, T, force=force, repredict=type_ == "repredict")
    decision = decide(last, element, CONFIG)
    assert decision.reason is (expected or Reason.SKIPPED_UNCHANGED)
    assert decision.predict is (expected is not None)
    assert decide(last, event(type="delete"), CONFIG).reason is Reason.DELETED


# --- one skip record ----------------------------------------------------------------------


def test_both_skip_paths_give_the_same_record() -> None:
    """The refresh trigger's unchanged event and SkipCurrent's current product: one type,
    the same fields, the id of the prediction that stands."""
    current = item(bulk="b1", eid="e1")
    _, fx = on_event(RefreshState(last=KnownPrediction(HASH, M, T)), current, 0, CONFIG)
    (from_refresh,) = fx.skipped
    pid = prediction_id("p1", HASH, M, T)
    assert from_refresh == Skip("p1", "e1", pid, "b1", "skipped_unchanged", HASH)

    with beam.Pipeline(runner=FnApiRunner()) as p:
        entries = p | "Store" >> beam.Create([("p1", StoreEntry(HASH, M, T, pid))])
        out = p | "Events" >> beam.Create([current.event]) | SkipCurrent(entries, M, T)
        assert_that(out["skipped"], equal_to([from_refresh]))


def test_a_debounced_event_is_a_skip_without_a_standing_prediction() -> None:
    state, _ = on_event(EMPTY, item(title="a", eid="e1", bulk="b1"), 0, CONFIG)
    state, fx = on_event(state, item(title="b", eid="e2"), 5 * S, CONFIG)
    assert fx.skipped == (Skip("p1", "e1", None, "b1", DEBOUNCED, item(title="a").content_hash),)
    _, fx = on_timer(state, state.pending.deadline, CONFIG)  # type: ignore[union-attr]
    assert [w.event.event_id for w in fx.predict] == ["e2"]


def test_both_skip_paths_build_the_one_record() -> None:
    assert store.Skip is refresh.Skip is Skip
    ev = event(bulk="b1", eid="e7")
    assert Skip.of_event(ev, "skipped_unchanged", "h") == Skip("p1", "e7", None, "b1", "skipped_unchanged", "h")


def test_the_bulk_jobs_count_every_skip() -> None:
    for skip in (Skip("p1", "e1", "x", "b1"), Skip.of_event(event(bulk="b1", eid="e1"), DEBOUNCED, "h")):
        assert outcome_of(skip, SKIPPED) == ("e1", SKIPPED)
        found = outcome_element(skip, SKIPPED)
        assert found is not None and found[0] == "b1" and (found[1].event_id, found[1].outcome) == ("e1", SKIPPED)


# --- the store's combiner -----------------------------------------------------------------


def test_latest_per_product_combiner_matches_the_pure_reference() -> None:
    a, b, c = StoreEntry("h1", M, T, "1"), StoreEntry("h2", M, T, "2"), StoreEntry("h3", M, T, "3")
    versions = [
        ("p1", ((1,), a)),
        ("p1", ((3,), b)),
        ("p1", ((2,), None)),  # last write wins
        ("p2", ((1,), a)),
        ("p2", ((4,), None)),  # deleted
        ("p3", ((5,), None)),
        ("p3", ((6,), c)),  # re-created after the delete
        *(("p4", ((i,), StoreEntry(f"h{i}", M, T, str(i)))) for i in range(40)),  # more than one combine buffer
    ]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        got = (
            p
            | beam.Create(versions)
            | beam.CombinePerKey(newest)
            | beam.FlatMap(lambda kv: [(kv[0], kv[1][1])] if kv[1][1] is not None else [])
        )
        assert_that(got, equal_to(sorted(last_per_product(versions).items())))
    assert last_per_product(versions) == {"p1": b, "p3": c, "p4": StoreEntry("h39", M, T, "39")}


# --- per-process objects through Beam's Shared ---------------------------------------------


class _Thing:
    made = 0

    def __init__(self) -> None:
        type(self).made += 1


def test_shared_objects_live_while_held_and_are_freed_after() -> None:
    _Thing.made = 0
    held = acquire_shared("test-thing", "k", _Thing)
    assert acquire_shared("test-thing", "k", _Thing) is held and _Thing.made == 1
    assert acquire_shared("test-thing", "other", _Thing) is not held and _Thing.made == 2  # one per key
    ref = weakref.ref(held)
    del held
    acquire_shared("test-thing", "displace", _Thing)  # Beam keeps only the latest acquired alive
    gc.collect()
    assert ref() is None  # not a module-level singleton: nothing holds it now
    acquire_shared("test-thing", "k", _Thing)
    assert _Thing.made == 4


def test_shared_taxonomy_corrector_and_normaliser_share_one_taxonomy() -> None:
    taxonomy = shared_taxonomy(None)
    corrector, normaliser = shared_corrector(None), shared_normaliser(None)
    assert shared_taxonomy(None) is taxonomy
    assert shared_corrector(None) is corrector and shared_normaliser(None) is normaliser
    assert corrector.taxonomy is taxonomy and normaliser.taxonomy is taxonomy


def test_the_in_process_baseline_is_one_model_per_process() -> None:
    from transforms.model.client import InProcessBaseline

    client = InProcessBaseline(None)()
    assert InProcessBaseline(None)() is client
    assert client._model.taxonomy is shared_taxonomy(None)  # type: ignore[attr-defined]
    weakref.ref(client)  # Shared needs a weak-referenceable object
    assert client.metadata().taxonomy_version == shared_taxonomy(None).version
