"""Content dedupe: one model path per content hash, one prediction per product."""

from __future__ import annotations

from dataclasses import replace
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
from transforms.encode import EncodePrediction
from transforms.freshness.dedupe import DedupeByContent, DedupeConfig, DedupedItem, fan_out, representative
from transforms.model.client import ModelMetadata
from transforms.records import EventType, PredictedCategory, ProductEvent, WorkItem, content_hash, prediction_id

META = ModelMetadata("fake", "m1", "2024-07")


def item(pid: str, title: str) -> WorkItem:
    ev = ProductEvent(
        event_id=f"e-{pid}",
        type=EventType.CREATE,
        product_id=pid,
        shop_id="s",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        product={"title": title},
    )
    assert ev.product is not None
    return WorkItem(event=ev, content_hash=content_hash(ev.product))


ITEMS = [
    item("a", "Red dress"),
    item("b", "Red dress"),
    item("c", "red   DRESS"),
    item("d", "Blue jeans"),
    item("e", "Hat"),
]


class FakeModelPath(beam.PTransform):
    """Stands in for images -> classify -> ... -> validate; counts its model calls."""

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        def call(i: WorkItem) -> WorkItem:
            beam.metrics.Metrics.counter("fake_model", "calls").inc()
            cat = PredictedCategory(
                id="gid://x/" + i.product.title.split()[0].lower(), full_name=i.product.title, score=1.0
            )
            return replace(i, raw_category=i.product.title, category=cat)

        return items | beam.Map(call)


def check(out: beam.PCollection) -> None:
    predictions = out | beam.ParDo(EncodePrediction(META))
    assert_that(
        predictions | beam.Map(lambda p: (p.product_id, p.event_id, p.category.id)),
        equal_to(
            [
                ("a", "e-a", "gid://x/red"),
                ("b", "e-b", "gid://x/red"),
                ("c", "e-c", "gid://x/red"),
                ("d", "e-d", "gid://x/blue"),
                ("e", "e-e", "gid://x/hat"),
            ]
        ),
        label="PerProduct",
    )
    expected_ids = [
        (i.event.product_id, prediction_id(i.event.product_id, i.content_hash, "m1", "2024-07")) for i in ITEMS
    ]
    assert len({pid for _, pid in expected_ids}) == 5
    assert_that(
        predictions | beam.Map(lambda p: (p.product_id, p.prediction_id)), equal_to(expected_ids), label="OwnIds"
    )
    assert_that(out | beam.Map(lambda w: type(w).__name__), equal_to(["WorkItem"] * 5), label="PlainWorkItems")


def counter(result, namespace: str, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    return sum(m.committed or 0 for m in found)


def test_identical_content_makes_one_model_call_batch() -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(ITEMS) | DedupeByContent(FakeModelPath())
        check(out)
    assert counter(p.result, "fake_model", "calls") == 3
    assert counter(p.result, "dedupe", "calls_saved") == 2
    assert counter(p.result, "dedupe", "items_out") == 5


PRISM = prism_binary()


@pytest.mark.skipif(PRISM is None, reason="Prism is not built: run deploy/local/prism/prism.sh")
def test_identical_content_makes_one_model_call_stream() -> None:
    options = PipelineOptions(["--runner=PrismRunner", f"--prism_location={PRISM}"])
    options.view_as(StandardOptions).streaming = True
    ts = EventStream().advance_watermark_to(0)
    ts = ts.add_elements(
        [TimestampedValue(i, 10 + n * 0.1) for n, i in enumerate(ITEMS)]
    ).advance_watermark_to_infinity()
    p = beam.Pipeline(options=options)
    out = p | ts | DedupeByContent(FakeModelPath(), DedupeConfig(max_wait_s=2))
    check(out)
    result = p.run()
    result.wait_until_finish()
    assert counter(result, "fake_model", "calls") == 3
    assert counter(result, "dedupe", "calls_saved") == 2


def test_representative_is_deterministic_and_fan_out_restores_each_event() -> None:
    same = ITEMS[:3]
    rep = representative(reversed(same))
    assert isinstance(rep, DedupedItem) and rep.event.product_id == "a"
    assert [e.product_id for e in rep.members] == ["b", "c"]
    done = replace(rep, raw_category="x")  # a stage's replace keeps the members
    assert [(w.event.product_id, w.raw_category) for w in fan_out(done)] == [("a", "x"), ("b", "x"), ("c", "x")]
    assert representative([ITEMS[4]]) is ITEMS[4]


def test_dict_output_of_inner_keeps_other_outputs() -> None:
    class WithDeadLetters(beam.PTransform):
        def expand(self, items):
            return {
                "items": items | "Fake" >> FakeModelPath(),
                "dead_letters": items | beam.Map(lambda i: i.event.event_id),
            }

    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(ITEMS) | DedupeByContent(WithDeadLetters())
        assert_that(out["items"] | beam.Map(lambda w: w.event.product_id), equal_to(list("abcde")), label="Items")
        assert_that(out["dead_letters"], equal_to(["e-a", "e-d", "e-e"]), label="DeadLetters")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_wait_s"):
        DedupeConfig(max_wait_s=-1)
