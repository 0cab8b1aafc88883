"""The refresh trigger: each decision of `decide`, the pure state machine, and the
stateful DoFn under TestStream.

TestStream pipelines run on Prism (the project's streaming runner): in Beam 2.77 the
Python DirectRunner in streaming mode does not fire an event-time timer when the
watermark jumps to infinity and under-reports user counters of a stateful DoFn, and the
FnApiRunner does not run TestStream. They are skipped with a reason where the Prism
binary is not built (deploy/local/prism/prism.sh).
"""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipelines.stream import prism_binary
from transforms.freshness.refresh import (
    EMPTY,
    KnownPrediction,
    Reason,
    RefreshConfig,
    RefreshState,
    RefreshTrigger,
    decide,
    on_event,
    on_known,
    on_timer,
)
from transforms.records import EventType, ProductEvent, WorkItem, content_hash

CONFIG = RefreshConfig(model_version="m1", taxonomy_version="2024-07", quiet_period_s=30)
S = 1_000_000  # micros


def event(
    pid: str = "p1",
    title: str = "Linen shirt",
    t: float = 0,
    eid: str | None = None,
    *,
    type: str = "update",
    force: bool = False,
    price: float | None = None,
) -> ProductEvent:
    return ProductEvent(
        event_id=eid or f"{pid}-{title}-{t}",
        type=EventType(type),
        product_id=pid,
        shop_id="s",
        occurred_at=datetime.fromtimestamp(t, UTC),
        product=None if type == "delete" else {"title": title, "price": price},
        force=force,
    )


def item(*args: object, **kwargs: object) -> WorkItem:
    ev = event(*args, **kwargs)  # type: ignore[arg-type]
    assert ev.product is not None
    return WorkItem(event=ev, content_hash=content_hash(ev.product))


def known(title: str = "Linen shirt", model: str = "m1", taxonomy: str = "2024-07") -> KnownPrediction:
    return KnownPrediction(item(title=title).content_hash, model, taxonomy)


# --- decide: one test per decision -------------------------------------------------------


def test_new_product_is_predicted() -> None:
    d = decide(None, item(), CONFIG)
    assert d.reason is Reason.NEW and d.predict


def test_content_change_is_predicted() -> None:
    d = decide(known("Linen shirt"), item(title="Linen shirt, blue"), CONFIG)
    assert d.reason is Reason.CONTENT_CHANGED and d.predict


def test_model_version_change_is_predicted() -> None:
    d = decide(known(model="m0"), item(), CONFIG)
    assert d.reason is Reason.MODEL_CHANGED and d.predict


def test_taxonomy_version_change_is_predicted() -> None:
    d = decide(known(taxonomy="2024-01"), item(), CONFIG)
    assert d.reason is Reason.TAXONOMY_CHANGED and d.predict


def test_force_flag_is_predicted() -> None:
    d = decide(known(), item(force=True), CONFIG)
    assert d.reason is Reason.FORCED and d.predict


def test_repredict_event_is_predicted() -> None:
    d = decide(known(), item(type="repredict"), CONFIG)
    assert d.reason is Reason.REPREDICT and d.predict


def test_price_only_update_is_skipped() -> None:
    d = decide(known(), item(price=19.99), CONFIG)
    assert d.reason is Reason.SKIPPED_UNCHANGED and not d.predict


def test_delete_is_a_tombstone() -> None:
    d = decide(known(), event(type="delete"), CONFIG)
    assert d.reason is Reason.DELETED and not d.predict


def test_a_real_change_is_named_before_a_request() -> None:
    assert decide(known(), item(title="other", force=True), CONFIG).reason is Reason.CONTENT_CHANGED
    assert decide(None, item(type="repredict"), CONFIG).reason is Reason.NEW


def test_decide_accepts_a_raw_event() -> None:
    assert decide(known(), event(price=5.0), CONFIG).reason is Reason.SKIPPED_UNCHANGED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_version": "", "taxonomy_version": "t"},
        {"model_version": "m", "taxonomy_version": " "},
        {"model_version": "m", "taxonomy_version": "t", "quiet_period_s": -1},
        {"model_version": "m", "taxonomy_version": "t", "quiet_period_s": float("inf")},
        {"model_version": "m", "taxonomy_version": "t", "quiet_period_s": "30"},
    ],
)
def test_config_is_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="RefreshConfig"):
        RefreshConfig(**kwargs)


# --- the pure state machine ---------------------------------------------------------------


def run_machine(
    elements: list[tuple[object, float]], state: RefreshState = EMPTY
) -> tuple[RefreshState, list[str], list[str]]:
    """Events at event times (seconds) in order, then the end of the stream."""
    predicted, counts = [], []
    for element, t in elements:
        state, fx = on_event(state, element, int(t * S), CONFIG)  # type: ignore[arg-type]
        predicted += [w.product.title for w in fx.predict]
        counts += fx.counts
    if state.pending:
        state, fx = on_timer(state, state.pending.deadline, CONFIG)
        predicted += [w.product.title for w in fx.predict]
    return state, predicted, counts


def test_machine_burst_gives_one_prediction_of_the_last_content() -> None:
    _, predicted, counts = run_machine([(item(title=f"v{i}", t=i), i) for i in range(5)])
    assert predicted == ["v4"]
    assert counts.count("debounced") == 4


def test_machine_revert_within_the_burst_cancels_the_prediction() -> None:
    start = RefreshState(last=known("a"))
    _, predicted, counts = run_machine([(item(title="b"), 0), (item(title="a", price=3.0), 5)], start)
    assert predicted == []
    assert counts == ["content_changed", "skipped_unchanged", "debounced"]


def test_machine_forced_request_survives_a_later_unchanged_event() -> None:
    start = RefreshState(last=known())
    _, predicted, _ = run_machine([(item(force=True), 0), (item(price=1.0), 5)], start)
    assert predicted == ["Linen shirt"]


def test_machine_forced_request_survives_an_edit_and_a_revert() -> None:
    # Found by the benchmark's oracle: force, edit, revert within one burst.
    start = RefreshState(last=known("a"))
    _, predicted, counts = run_machine(
        [(item(title="a", force=True), 0), (item(title="b"), 5), (item(title="a"), 10)], start
    )
    assert predicted == ["a"]
    assert counts == ["forced", "content_changed", "debounced", "forced", "debounced"]


def test_machine_an_event_after_the_deadline_flushes_the_pending_one_first() -> None:
    state, fx = on_event(EMPTY, item(title="a"), 0, CONFIG)
    state, fx = on_event(state, item(title="b"), 31 * S, CONFIG)  # the timer has not fired yet
    assert [w.product.title for w in fx.predict] == ["a"] and fx.counts == ("content_changed",)


def test_seed_only_fills_an_empty_state() -> None:
    seeded = on_known(EMPTY, known("a"))
    assert seeded.last == known("a")
    assert on_known(RefreshState(last=known("b")), known("a")).last == known("b")


# --- Beam: TestStream on Prism ------------------------------------------------------------

PRISM = prism_binary()
needs_prism = pytest.mark.skipif(PRISM is None, reason="Prism is not built: run deploy/local/prism/prism.sh")


def streaming_pipeline() -> beam.Pipeline:
    options = PipelineOptions(["--runner=PrismRunner", f"--prism_location={PRISM}"])
    options.view_as(StandardOptions).streaming = True
    return beam.Pipeline(options=options)


def counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    found = result.metrics().query(MetricsFilter().with_namespace("refresh"))["counters"]
    out: dict[str, int] = {}
    for m in found:
        out[m.key.metric.name] = out.get(m.key.metric.name, 0) + (m.committed or 0)
    return out


def stream_of(*steps: tuple) -> EventStream:
    """steps: ("at", t) advances the watermark to t seconds; (element, t) adds it at t."""
    ts = EventStream().advance_watermark_to(0)
    for a, b in steps:
        if a == "at":
            ts = ts.advance_watermark_to(b)
        else:
            ts = ts.add_elements([TimestampedValue(a, b)])
    return ts.advance_watermark_to_infinity()


def run_stream(
    ts: EventStream, expect_titles: list[str], expect_deleted: list[str] | None = None, config: RefreshConfig = CONFIG
) -> dict[str, int]:
    p = streaming_pipeline()
    out = p | ts | RefreshTrigger(config)
    assert_that(out["items"] | beam.Map(lambda w: w.product.title), equal_to(expect_titles), label="Items")
    assert_that(out["deleted"] | beam.Map(lambda e: e.product_id), equal_to(expect_deleted or []), label="Deleted")
    result = p.run()
    result.wait_until_finish()
    return counters(result)


@needs_prism
def test_stream_burst_of_five_edits_gives_one_prediction_of_the_last() -> None:
    burst = [(item(title=f"v{i}", t=10 + i), 10 + i) for i in range(5)]
    got = run_stream(stream_of(*burst, ("at", 60)), ["v4"])
    assert got.get("new") == 5 and got.get("debounced") == 4


@needs_prism
def test_stream_two_bursts_apart_give_two_predictions() -> None:
    first = [(item(title=f"a{i}", t=10 + i), 10 + i) for i in range(3)]
    second = [(item(title=f"b{i}", t=100 + i), 100 + i) for i in range(3)]
    got = run_stream(stream_of(*first, ("at", 50), *second), ["a2", "b2"])
    assert got.get("new") == 3 and got.get("content_changed") == 3 and got.get("debounced") == 4


@needs_prism
def test_stream_price_update_after_prediction_is_skipped() -> None:
    steps = [(item(t=0), 0), ("at", 40), (item(t=50, price=9.5), 50)]
    got = run_stream(stream_of(*steps), ["Linen shirt"])
    assert got.get("new") == 1 and got.get("skipped_unchanged") == 1


@needs_prism
def test_stream_delete_clears_state_and_a_later_create_is_new() -> None:
    steps = [
        (item(title="a", t=0), 0),
        ("at", 40),
        (event(type="delete", t=50), 50),
        ("at", 60),
        (item(title="a", t=70, type="create"), 70),
    ]
    got = run_stream(stream_of(*steps), ["a", "a"], ["p1"])
    assert got.get("new") == 2 and got.get("deleted") == 1 and "skipped_unchanged" not in got


@needs_prism
def test_stream_delete_within_a_burst_drops_the_pending_prediction() -> None:
    steps = [(item(title="a", t=0), 0), (event(type="delete", t=5), 5)]
    got = run_stream(stream_of(*steps), [], ["p1"])
    assert got.get("deleted") == 1 and got.get("debounced") == 1


@needs_prism
def test_stream_model_version_change_repredicts() -> None:
    # p1 was predicted with model m0 and p2 with m1; this pipeline runs m1. Seeds and
    # events share one TestStream (one per pipeline), seeds first, split afterwards.
    p = streaming_pipeline()
    ts = stream_of(
        (("seed", ("p1", (item().content_hash, "m0", "2024-07"))), 0),
        (("seed", ("p2", (item("p2").content_hash, "m1", "2024-07"))), 0),
        ("at", 5),
        (("event", item(t=10, price=1.0)), 10),
        (("event", item("p2", t=10)), 10),
        ("at", 60),
    )
    both = p | ts
    seed_pc = both | "Seeds" >> beam.FlatMap(lambda kv: [kv[1]] if kv[0] == "seed" else [])
    events = both | "Events" >> beam.FlatMap(lambda kv: [kv[1]] if kv[0] == "event" else [])
    out = {"events": events, "known": seed_pc} | RefreshTrigger(CONFIG)
    assert_that(out["items"] | beam.Map(lambda w: w.event.product_id), equal_to(["p1"]))
    result = p.run()
    result.wait_until_finish()
    got = counters(result)
    assert got.get("model_changed") == 1 and got.get("skipped_unchanged") == 1 and got.get("seeded") == 2


# --- Beam: batch (FnApiRunner), seeded from known predictions -----------------------------


def test_batch_skips_current_products_and_predicts_stale_ones() -> None:
    events = [
        item("current", t=0, price=2.0),  # same content, same versions -> skipped
        item("stale", t=0),  # predicted with an older model -> model_changed
        item("edited", title="new title", t=0),  # content changed
        item("fresh", t=0),  # no known prediction -> new
        *(item("burst", title=f"v{i}", t=i) for i in range(4)),  # one prediction: v3
        event("gone", type="delete", t=0),
    ]
    seeds = [
        ("current", (item("current").content_hash, "m1", "2024-07")),
        ("stale", KnownPrediction(item("stale").content_hash, "m0", "2024-07")),
        ("edited", (item("edited").content_hash, "m1", "2024-07")),
    ]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = {
            "events": p | "Events" >> beam.Create(events),
            "known": p | "Known" >> beam.Create(seeds),
        } | RefreshTrigger(CONFIG)
        assert_that(
            out["items"] | beam.Map(lambda w: (w.event.product_id, w.product.title)),
            equal_to([("stale", "Linen shirt"), ("edited", "new title"), ("fresh", "Linen shirt"), ("burst", "v3")]),
            label="Items",
        )
        assert_that(out["deleted"] | beam.Map(lambda e: e.product_id), equal_to(["gone"]), label="Deleted")
        assert_that(
            out["skipped"] | beam.Map(lambda s: (s.product_id, s.reason)),
            equal_to([("current", "skipped_unchanged")] + [("burst", "debounced")] * 3),
            label="Skipped",
        )
    got = counters(p.result)
    assert got == {
        "seeded": 3,
        "skipped_unchanged": 1,
        "model_changed": 1,
        "content_changed": 1,
        "new": 5,
        "debounced": 3,
        "deleted": 1,
    }
