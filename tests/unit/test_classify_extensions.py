"""The classify answer's backwards-compatible extensions (issue 12): top-k candidates and
`backed_off_from_depth` are read leniently from untrusted model text, then corrected against
the taxonomy like the category itself."""

from __future__ import annotations

import json

import pytest

from model_repository.contract import MAX_CANDIDATES, ModelRequest, parse_classify_answer
from taxonomy.corrector import CategoryCorrector
from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy
from tests.unit.test_stages import DRESSES, DRESSES_ID, item
from transforms.core.classify import classify_answer
from transforms.core.correct import correct_category
from transforms.core.metrics import CountingMetrics

EARRINGS = "Apparel & Accessories > Jewelry > Earrings"


def test_an_answer_without_the_extensions_reads_as_before() -> None:
    answer = parse_classify_answer(json.dumps({"category": DRESSES, "confidence": 0.7}))
    assert answer.candidates == [] and answer.backed_off_from_depth is None


@pytest.mark.parametrize(
    "candidates, expected",
    [
        ([{"category": DRESSES, "score": 0.7}, {"category": EARRINGS}], [(DRESSES, 0.7), (EARRINGS, 0.0)]),
        ("not a list", []),
        ([1, None, ["x"], {"score": 0.4}, {"category": 5}], []),  # wrong shapes are dropped
        ([{"category": " \u202e\x00 ", "score": 1}], []),  # cleaned to nothing
        ([{"category": DRESSES, "score": "NaN"}, {"category": DRESSES, "score": 7}], [(DRESSES, 0.0), (DRESSES, 1.0)]),
    ],
)
def test_candidates_are_read_leniently(candidates: object, expected: list[tuple[str, float]]) -> None:
    answer = parse_classify_answer(json.dumps({"category": DRESSES, "candidates": candidates}))
    assert [(c.category, c.score) for c in answer.candidates] == expected


def test_at_most_max_candidates_are_kept() -> None:
    many = [{"category": f"{DRESSES} {i}", "score": 0.1} for i in range(MAX_CANDIDATES * 4)]
    assert len(parse_classify_answer(json.dumps({"category": DRESSES, "candidates": many})).candidates) == (
        MAX_CANDIDATES
    )


@pytest.mark.parametrize(
    "depth, expected", [(4, 4), (1, 1), (0, None), (17, None), (-3, None), ("3", None), (True, None), (2.5, None)]
)
def test_backed_off_from_depth_outside_the_taxonomys_depths_reads_as_absent(depth: object, expected: object) -> None:
    answer = parse_classify_answer(json.dumps({"category": DRESSES, "backed_off_from_depth": depth}))
    assert answer.backed_off_from_depth == expected


def test_a_request_carries_at_most_max_candidates() -> None:
    with pytest.raises(ValueError):
        ModelRequest.model_validate(
            {
                "task": "classify",
                "product": {"title": "x"},
                "candidates": [{"id": "a", "full_name": "A"}] * (MAX_CANDIDATES + 1),
            }
        )


@pytest.fixture(scope="module")
def corrector() -> CategoryCorrector:
    return CategoryCorrector(load_taxonomy(SAMPLE_TAXONOMY_DIR))


def test_candidates_are_corrected_unknown_ones_dropped_and_repeats_merged(corrector: CategoryCorrector) -> None:
    response = json.dumps(
        {
            "category": DRESSES,
            "confidence": 0.8,
            "backed_off_from_depth": 4,
            "candidates": [
                {"category": DRESSES, "score": 0.8},
                {"category": "Apparel & Accesories > Jewelry > Earings", "score": 0.1},  # misspelt: corrected
                {"category": "Spaceships > Warp Drives", "score": 0.05},  # unknown: dropped
                {"category": DRESSES, "score": 0.01},  # a repeat keeps its first (best) score
            ],
        }
    ).encode()
    metrics = CountingMetrics()
    classified = classify_answer(item("p"), response, metrics)
    corrected = correct_category(classified, corrector, metrics)
    category = corrected.category
    assert category is not None and category.id == DRESSES_ID
    assert category.backed_off_from_depth == 4
    earrings = corrector.taxonomy.by_full_name(EARRINGS)
    assert [(c.id, c.score) for c in category.candidates] == [
        (DRESSES_ID, 0.8),
        (earrings.id, pytest.approx(0.1, abs=0.02)),
    ]
    assert metrics.counters[("correction", "candidate_dropped")] == 1


def test_a_corrected_category_does_not_claim_the_models_back_off(corrector: CategoryCorrector) -> None:
    response = json.dumps({"category": "Apparel & Accesories > Clothing > Dresess", "backed_off_from_depth": 4})
    corrected = correct_category(classify_answer(item("p"), response.encode()), corrector)
    assert corrected.category is not None and corrected.category.corrected
    assert corrected.category.backed_off_from_depth is None
