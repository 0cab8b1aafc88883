"""A unit test per stage: each DoFn of the two-step flow on its own, with a fake model.

Outputs are checked with `assert_that`, counters with `MetricsFilter` on the pipeline
result (the pipelines' summaries read exactly these names). The in-flight window of the
model steps is driven by hand (setup / process / finish_bundle) with a model whose first
batch is held on an event, so batches complete out of order without any timing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import IntervalWindow, TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from model_repository.contract import ModelRequest, Task
from tests.conftest import EXAMPLES
from transforms.config import ImageConfig
from transforms.core.decode import decode
from transforms.core.images import prepare_images
from transforms.correction import CorrectCategory, ValidateAttributes
from transforms.dead_letters import DEAD_LETTER
from transforms.decode import DELETED, DecodeEvents
from transforms.encode import EncodePrediction
from transforms.freshness.dedupe import DedupedItem
from transforms.images.prepare import PrepareImages
from transforms.io.files import OversizedLine
from transforms.model.client import ModelMetadata
from transforms.model.steps import ClassifyStep, ExtractStep
from transforms.records import (
    EventType,
    PredictedCategory,
    PredictionStatus,
    ProductEvent,
    WorkItem,
    prediction_id,
)

META = ModelMetadata("fake", "fake-1", "2024-07")
DRESSES = "Apparel & Accessories > Clothing > Dresses"
DRESSES_ID = "gid://shopify/TaxonomyCategory/aa-1-4"
NO_ATTRIBUTES_ID = "gid://shopify/TaxonomyCategory/ap"  # Animals & Pet Supplies: a vertical without attributes


# --------------------------------------------------------------------------- helpers


def event(pid: str, title: str = "Women's red v-neck dress", type_: str = "create", **product: Any) -> bytes:
    body: dict[str, Any] = {
        "event_id": f"e-{pid}",
        "type": type_,
        "product_id": pid,
        "shop_id": "s",
        "occurred_at": "2026-11-01T00:00:00Z",
    }
    if type_ != "delete":
        body["product"] = {"title": title, **product}
    return json.dumps(body).encode()


def item(
    pid: str,
    title: str = "Women's red v-neck dress",
    event_time: float | None = None,
    image_urls: tuple[str, ...] = (),
    **fields: Any,
) -> WorkItem:
    """A decoded product (the core's decode), with later stages' fields set by hand."""
    decoded = decode(event(pid, title, image_urls=list(image_urls)), event_time=event_time)
    assert isinstance(decoded, WorkItem)
    return replace(decoded, **fields)


def category(full_name: str = DRESSES, id_: str = DRESSES_ID, corrected: bool = False) -> PredictedCategory:
    return PredictedCategory(id=id_, full_name=full_name, score=0.9, corrected=corrected, raw=full_name)


def run(p: beam.Pipeline) -> Any:
    result = p.run()
    result.wait_until_finish()
    return result


def counter(result: Any, namespace: str, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    return sum(c.committed or 0 for c in found)


def distribution_count(result: Any, namespace: str, name: str) -> int:
    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["distributions"]
    return sum(d.committed.count for d in found if d.committed is not None)


def letters(pcoll: beam.PCollection, label: str) -> beam.PCollection:
    return pcoll | label >> beam.Map(lambda d: (d.stage, d.error_type, d.product_id))


def pipeline() -> TestPipeline:
    return TestPipeline(runner=FnApiRunner())


@dataclass(frozen=True)
class FakeModel:
    """Answers by the product's title (picklable, so Beam ships it like a real factory):
    "garbled" -> not JSON, "refused" -> the model's own error answer, "boom" anywhere in
    the batch -> the whole call raises; otherwise classify names Dresses and extract
    answers a colour and a handle the taxonomy does not have."""

    def __call__(self) -> FakeModel:
        return self

    def metadata(self) -> ModelMetadata:
        return META

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        parsed = [ModelRequest.model_validate_json(raw) for raw, _ in requests]
        if any("boom" in r.product.title for r in parsed):
            raise ConnectionError("the model server went away")
        return [self._answer(r) for r in parsed]

    @staticmethod
    def _answer(request: ModelRequest) -> bytes:
        title = request.product.title
        if "garbled" in title:
            return b"I think it's a dress!"
        if "refused" in title:
            return b'{"error": "bad request: refused"}'
        if request.task is Task.CLASSIFY:
            return json.dumps(
                {"category": DRESSES, "confidence": 0.8, "simplified_description": f"about {title}"}
            ).encode()
        return json.dumps({"attributes": {"color": ["red"], "not-an-attribute": ["x"]}}).encode()

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- decode


def test_decode_events() -> None:
    oversized = OversizedLine(
        path="f.jsonl", line_number=3, size=5_000_000, head=b'{"event_id": "big"', limit=2_097_152
    )
    p = pipeline()
    out = (
        p
        | beam.Create([event("p1"), event("gone", type_="delete"), b"{not json", oversized])
        # A Kafka record's time: the item keeps it as its event time through the steps.
        | beam.Map(lambda e: TimestampedValue(e, 1_700_000_000))
        | beam.ParDo(DecodeEvents()).with_outputs(DEAD_LETTER, DELETED, main="items")
    )
    assert_that(
        out.items | beam.Map(lambda i: (i.event.product_id, i.event_time, i.description_text)),
        equal_to([("p1", 1_700_000_000.0, "")]),
    )
    assert_that(
        out[DELETED] | beam.Map(lambda e: (e.product_id, e.type)),
        equal_to([("gone", EventType.DELETE)]),
        label="deleted",
    )
    assert_that(
        out[DEAD_LETTER] | beam.Map(lambda d: (d.stage, d.error_type, d.original_payload)),
        equal_to([("decode", "MalformedJson", "{not json"), ("decode", "EventTooLarge", '{"event_id": "big"')]),
        label="dead_letters",
    )
    result = run(p)
    assert counter(result, "productlens", "events") == 4
    assert counter(result, "productlens", "decoded") == 2
    assert counter(result, "productlens", "deletes") == 1
    assert counter(result, "dead_letters", "decode") == 2


# --------------------------------------------------------------------------- prepare images


def test_prepare_images() -> None:
    good = item("good", image_urls=("images/backpack-gray.png",))
    outside = item("outside", image_urls=("/etc/passwd",))
    # One try per product: the missing first image spends it, the good second is not tried.
    budget = item("budget", image_urls=("images/missing.png", "images/backpack-gray.png"))
    text_only = item("text-only")
    # An item without a product cannot be prepared: guard_stage's dead letter, once for
    # the representative and once for the product that shared its model path.
    member = ProductEvent.model_validate_json(event("member"))
    deleted = ProductEvent.model_validate_json(event("broken", type_="delete"))
    broken = DedupedItem(**{**vars(item("broken")), "event": deleted}, members=(member,))
    p = pipeline()
    out = (
        p
        | beam.Create([good, outside, budget, text_only, broken])
        | beam.ParDo(PrepareImages(ImageConfig(max_attempts=1), str(EXAMPLES))).with_outputs(DEAD_LETTER, main="items")
    )
    assert_that(
        out.items
        | beam.Map(lambda i: (i.event.product_id, i.image is not None and i.image[:2] == b"\xff\xd8", len(i.warnings))),
        equal_to([("good", True, 0), ("outside", False, 1), ("budget", False, 2), ("text-only", False, 0)]),
    )
    assert_that(
        letters(out[DEAD_LETTER], "Letters"),
        equal_to(
            [
                ("prepare_images", "ImageRefused", "outside"),
                ("prepare_images", "ImageUnreachable", "budget"),
                ("prepare_images", "AssertionError", "broken"),
                ("prepare_images", "AssertionError", "member"),
            ]
        ),
        label="dead_letters",
    )
    result = run(p)
    assert counter(result, "productlens", "images_prepared") == 1
    assert counter(result, "productlens", "images_failed") == 2
    assert counter(result, "productlens", "images_over_product_budget") == 1
    assert distribution_count(result, "productlens", "image_bytes_in") == 1
    assert distribution_count(result, "productlens", "image_bytes_out") == 1
    # Counted once per failure, not once per product that shared it.
    assert counter(result, "dead_letters", "prepare_images") == 3
    assert counter(result, "dead_letters", "unexpected_errors") == 1


def test_prepare_images_time_budget_uses_the_injected_clock() -> None:
    """The per-product time budget, on the core stage with a fake clock: each look at the
    clock is 6 s later, so after the first (failed) image the 10 s budget is spent."""
    ticks = iter(range(0, 1000, 6))
    product = item("slow", image_urls=("images/missing-1.png", "images/missing-2.png", "images/backpack-gray.png"))
    prepared, letter = prepare_images(product, ImageConfig(), str(EXAMPLES), clock=lambda: float(next(ticks)))
    assert prepared is not None and prepared.image is None
    assert letter is not None and letter.error_type == "ImageUnreachable" and "1 image(s) failed" in letter.message
    assert "2 more image(s) not tried" in prepared.warnings[-1]


# --------------------------------------------------------------------------- classify


def test_classify_step_answers_and_dead_letters() -> None:
    member = ProductEvent.model_validate_json(event("twin", "garbled twin"))
    garbled = DedupedItem(**vars(item("garbled", "garbled title")), members=(member,))
    batches = [
        [item("a"), item("refused", "refused title"), garbled],
        [item("b"), item("boom", "boom title")],  # the whole call fails: both are dead letters
        [item("c")],
    ]
    p = pipeline()
    step = ClassifyStep(FakeModel(), max_in_flight=2)
    out = p | beam.Create(batches) | beam.ParDo(step).with_outputs(DEAD_LETTER, main="items")
    assert_that(
        out.items | beam.Map(lambda i: (i.event.product_id, i.raw_category, i.confidence, i.simplified_description)),
        equal_to(
            [
                ("a", DRESSES, 0.8, "about Women's red v-neck dress"),
                ("c", DRESSES, 0.8, "about Women's red v-neck dress"),
            ]
        ),
    )
    assert_that(
        letters(out[DEAD_LETTER], "Letters"),
        equal_to(
            [
                ("classify", "ModelError", "refused"),
                ("classify", "ModelAnswerError", "garbled"),
                ("classify", "ModelAnswerError", "twin"),  # shared the garbled product's model path
                ("classify", "ConnectionError", "b"),
                ("classify", "ConnectionError", "boom"),
            ]
        ),
        label="dead_letters",
    )
    result = run(p)
    assert counter(result, "model", "classify_requests") == 6
    assert counter(result, "model", "classify_failures") == 2
    assert distribution_count(result, "model", "classify_batch_size") == 3
    assert distribution_count(result, "model", "classify_batches_in_flight") == 3
    assert counter(result, "dead_letters", "classify") == 4


def test_classify_step_restamps_each_item_with_its_own_event_time() -> None:
    """BatchElements stamps a batch with one timestamp; every result leaves the step at its
    own item's event time (event-time logic after the step, bulk deadlines, stays true)."""
    items = [item(f"p{i}", event_time=1_700_000_000 + 60 * i) for i in range(5)]
    p = pipeline()
    out = (
        p
        | beam.Create(items)
        | beam.Map(lambda i: TimestampedValue(i, i.event_time))
        | beam.BatchElements(min_batch_size=2, max_batch_size=2)
        | beam.ParDo(ClassifyStep(FakeModel(), max_in_flight=3))
        | beam.Map(lambda i, t=beam.DoFn.TimestampParam: (i.event.product_id, t.micros // 1_000_000))
    )
    assert_that(out, equal_to([(f"p{i}", 1_700_000_000 + 60 * i) for i in range(5)]))
    run(p)


class HeldModel:
    """Classify answers; a batch with a "slow" product waits until the test releases it,
    so later batches complete first. Driven by hand (not pickled)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.fast_done = threading.Event()
        self.completed: list[list[str]] = []  # product titles per batch, in completion order
        self._lock = threading.Lock()

    def __call__(self) -> HeldModel:
        return self

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes | Exception]:
        titles = [ModelRequest.model_validate_json(raw).product.title for raw, _ in requests]
        if any("slow" in t for t in titles):
            assert self.release.wait(30), "the test never released the slow batch"
        if any("boom" in t for t in titles):
            raise TimeoutError("deadline exceeded")
        with self._lock:
            self.completed.append(titles)
            if sum(1 for batch in self.completed if not any("slow" in t for t in batch)) == 2:
                self.fast_done.set()
        return [json.dumps({"category": DRESSES, "confidence": 0.5}).encode() for _ in titles]

    def close(self) -> None:
        pass


def _drive(step: ClassifyStep, batches: Iterable[tuple[list[WorkItem], IntervalWindow]]) -> list[Any]:
    out: list[Any] = []
    for batch, window in batches:
        out += list(step.process(batch, window=window, timestamp=window.max_timestamp()))
    return out


def test_in_flight_window_out_of_order_completion_emits_every_item_once_at_its_own_time() -> None:
    model = HeldModel()
    # Room for the three batches: `process` blocks on the oldest only once
    # max_in_flight batches are out.
    step = ClassifyStep(model, max_in_flight=4)
    step.setup()
    w1, w2, w3 = IntervalWindow(0, 100), IntervalWindow(100, 200), IntervalWindow(200, 300)
    b1 = [item("s1", "slow one", event_time=10), item("s2", "slow two", event_time=20)]
    b2 = [item("f1", "fast one", event_time=110)]
    b3 = [item("f2", "fast two", event_time=210), item("f3", "fast three")]  # f3: no event time of its own
    try:
        early = _drive(step, [(b1, w1), (b2, w2), (b3, w3)])
        assert model.fast_done.wait(30)  # batches 2 and 3 are answered while batch 1 is held
        # Results leave in submission order: nothing overtakes the held first batch.
        assert early == []
        model.release.set()
        out = early + list(step.finish_bundle())
    finally:
        model.release.set()
        step.teardown()
    assert model.completed[-1] == ["slow one", "slow two"]  # completed last
    assert all(isinstance(o, WindowedValue) and isinstance(o.value, WorkItem) for o in out)
    got = [(o.value.event.product_id, o.timestamp, tuple(o.windows)) for o in out]
    assert got == [
        ("s1", Timestamp.of(10), (w1,)),
        ("s2", Timestamp.of(20), (w1,)),
        ("f1", Timestamp.of(110), (w2,)),
        ("f2", Timestamp.of(210), (w3,)),
        ("f3", w3.max_timestamp(), (w3,)),  # the batch's own timestamp
    ]
    assert all(o.value.raw_category == DRESSES for o in out)


def test_in_flight_window_a_failed_batch_dead_letters_its_items_only() -> None:
    model = HeldModel()
    model.release.set()
    step = ClassifyStep(model, max_in_flight=2)
    step.setup()
    w = IntervalWindow(0, 100)
    try:
        batches = [
            [item("a", event_time=1)],
            [item("boom", "boom one", event_time=2), item("b", event_time=3)],  # this call raises
            [item("c", event_time=4)],
        ]
        out = _drive(step, [(batch, w) for batch in batches])
        out += list(step.finish_bundle())
    finally:
        step.teardown()
    mains = sorted(o.value.event.product_id for o in out if isinstance(o, WindowedValue))
    dead = [o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)]
    assert mains == ["a", "c"]
    assert all(o.tag == DEAD_LETTER for o in out if isinstance(o, beam.pvalue.TaggedOutput))
    assert [(d.value.stage, d.value.error_type, d.value.product_id, d.timestamp) for d in dead] == [
        ("classify", "TimeoutError", "boom", Timestamp.of(2)),
        ("classify", "TimeoutError", "b", Timestamp.of(3)),
    ]
    assert all("model call failed: deadline exceeded" in d.value.message for d in dead)


# --------------------------------------------------------------------------- correct


def test_correct_category() -> None:
    items = [
        item("exact", raw_category=DRESSES, confidence=0.8),
        item("typo", raw_category="Apparel & Accesories > Clothing > Dresess", confidence=0.8),
        item("nonsense", raw_category="Spaceships > Warp Drives", confidence=0.8),
        item("broken", raw_category=DRESSES, confidence="high"),  # a bug upstream: guard_stage's dead letter
    ]
    p = pipeline()
    out = p | beam.Create(items) | beam.ParDo(CorrectCategory(None)).with_outputs(DEAD_LETTER, main="items")
    assert_that(
        out.items
        | beam.Map(
            lambda i: (
                i.event.product_id,
                i.category.id if i.category else None,
                i.category.corrected if i.category else None,
                len(i.warnings),
            )
        ),
        equal_to([("exact", DRESSES_ID, False, 0), ("typo", DRESSES_ID, True, 0), ("nonsense", None, None, 1)]),
    )
    assert_that(
        letters(out[DEAD_LETTER], "Letters"), equal_to([("correct_category", "TypeError", "broken")]), label="dl"
    )
    result = run(p)
    assert counter(result, "correction", "category_exact") == 1
    assert counter(result, "correction", "category_corrected") == 1
    assert counter(result, "correction", "category_unresolved") == 1
    assert counter(result, "dead_letters", "correct_category") == 1
    assert counter(result, "dead_letters", "unexpected_errors") == 1


# --------------------------------------------------------------------------- extract


def test_extract_step() -> None:
    batch = [
        item("dress", category=category()),
        item("unresolved"),  # no category: no call
        item("pets", category=category("Animals & Pet Supplies", NO_ATTRIBUTES_ID)),  # no attributes: no call
        item("refused", "refused dress", category=category()),
        item("unknown", category=category("Nowhere", "gid://shopify/TaxonomyCategory/zz-9")),  # not in the taxonomy
    ]
    p = pipeline()
    step = ExtractStep(FakeModel(), None, max_in_flight=2)
    out = p | beam.Create([batch]) | beam.ParDo(step).with_outputs(DEAD_LETTER, main="items")
    assert_that(
        out.items | beam.Map(lambda i: (i.event.product_id, i.raw_attributes)),
        equal_to(
            [
                ("dress", (("color", ("red",)), ("not-an-attribute", ("x",)))),
                ("unresolved", ()),
                ("pets", ()),
                ("unknown", ()),  # a category the taxonomy lacks has no attributes to ask for
            ]
        ),
    )
    assert_that(letters(out[DEAD_LETTER], "Letters"), equal_to([("extract", "ModelError", "refused")]), label="dl")
    result = run(p)
    assert counter(result, "model", "extract_requests") == 2
    assert counter(result, "model", "extract_calls_saved_no_attributes") == 3
    assert counter(result, "model", "extract_failures") == 0
    assert counter(result, "dead_letters", "extract") == 1


# --------------------------------------------------------------------------- validate


def test_validate_attributes() -> None:
    items = [
        item(
            "dress",
            category=category(),
            raw_attributes=(
                ("color", ("Red", "Crimson-ish banana")),
                ("not-an-attribute", ("x",)),
                ("neckline", ("v neck",)),
            ),
        ),
        item("unresolved", raw_attributes=(("color", ("red",)),)),  # passes unchanged
        item("ghost", category=category("Nowhere", "gid://shopify/TaxonomyCategory/zz-9")),  # not in the taxonomy
    ]
    p = pipeline()
    out = p | beam.Create(items) | beam.ParDo(ValidateAttributes(None)).with_outputs(DEAD_LETTER, main="items")

    def check(got: list[WorkItem]) -> None:
        by_id = {i.event.product_id: i for i in got}
        assert set(by_id) == {"dress", "unresolved"}
        dress = by_id["dress"]
        assert [(a.handle, [v.name for v in a.values], a.corrected) for a in dress.attributes] == [
            ("color", ["Red"], False),
            ("neckline", ["V-neck"], True),
        ]
        assert any("not-an-attribute" in w for w in dress.warnings)
        assert any("Crimson-ish banana" in w for w in dress.warnings)
        assert by_id["unresolved"].attributes == ()

    assert_that(out.items, check)
    assert_that(
        letters(out[DEAD_LETTER], "Letters"), equal_to([("validate_attributes", "AssertionError", "ghost")]), label="dl"
    )
    result = run(p)
    assert counter(result, "correction", "values_exact") == 1
    assert counter(result, "correction", "values_corrected") == 1
    assert counter(result, "correction", "values_dropped") == 1
    assert counter(result, "correction", "attribute_handles_dropped") == 1
    assert counter(result, "dead_letters", "validate_attributes") == 1


# --------------------------------------------------------------------------- encode


def test_encode_prediction() -> None:
    items = [
        item("ok", category=category()),
        item("corrected", category=category(corrected=True), warnings=("image skipped",)),
        item("unresolved"),
        item("broken", content_hash=None),  # a bug upstream: guard_stage's dead letter
    ]
    p = pipeline()
    out = p | beam.Create(items) | beam.ParDo(EncodePrediction(META)).with_outputs(DEAD_LETTER, main="items")
    expected = [
        (i.event.product_id, prediction_id(i.event.product_id, i.content_hash, "fake-1", "2024-07"), status)
        for i, status in zip(items, (PredictionStatus.OK, PredictionStatus.CORRECTED, PredictionStatus.UNRESOLVED))
    ]
    assert_that(out.items | beam.Map(lambda pr: (pr.product_id, pr.prediction_id, pr.status)), equal_to(expected))
    assert_that(
        out.items
        | "Stamps"
        >> beam.Map(
            lambda pr: (
                pr.model_version,
                pr.taxonomy_version,
                pr.event_id == f"e-{pr.product_id}",
                pr.predicted_at.tzinfo is not None,
            )
        ),
        equal_to([("fake-1", "2024-07", True, True)] * 3),
        label="stamps",
    )
    assert_that(letters(out[DEAD_LETTER], "Letters"), equal_to([("encode", "TypeError", "broken")]), label="dl")
    result = run(p)
    assert counter(result, "productlens", "predicted") == 3
    assert counter(result, "productlens", "corrected") == 1
    assert counter(result, "productlens", "unresolved") == 1
    assert counter(result, "productlens", "predictions_with_warnings") == 1
    assert counter(result, "dead_letters", "encode") == 1


@pytest.mark.parametrize("when", [datetime(2026, 11, 1, tzinfo=UTC)])
def test_encode_is_deterministic_but_for_predicted_at(when: datetime) -> None:
    """Same content, model and taxonomy version: the same record (idempotent out)."""
    from transforms.core.encode import encode_prediction

    a = encode_prediction(item("p", category=category()), META, now=lambda: when)
    b = encode_prediction(item("p", category=category()), META, now=lambda: when)
    assert a == b and a.predicted_at == when  # type: ignore[union-attr]
