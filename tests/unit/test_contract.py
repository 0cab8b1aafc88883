from __future__ import annotations

import pytest

from model_repository.contract import ModelAnswerError, parse_classify_answer, parse_extract_answer


@pytest.mark.parametrize(
    "text",
    [
        '{"category": "A > B", "confidence": 0.7}',
        'Sure! ```json\n{"category": "A > B", "confidence": "0.7",}\n```',
        'The answer is {"category": "A > B", "confidence": 0.7} as requested.',
        b'{"category": "A > B", "confidence": 0.7}',
    ],
)
def test_lenient_classify(text: str | bytes) -> None:
    a = parse_classify_answer(text)
    assert a.category == "A > B" and a.confidence == pytest.approx(0.7)


def test_confidence_is_clamped_and_defaulted() -> None:
    assert parse_classify_answer('{"category": "x", "confidence": 7}').confidence == 1.0
    assert parse_classify_answer('{"category": "x", "confidence": "high"}').confidence == 0.0


@pytest.mark.parametrize("text", ["not json at all", "[1, 2]", '{"confidence": 1}', ""])
def test_unusable_classify_answers_raise(text: str) -> None:
    with pytest.raises(ModelAnswerError):
        parse_classify_answer(text)


def test_extract_accepts_scalars_and_drops_empties() -> None:
    a = parse_extract_answer('{"attributes": {"color": "Red", "size": ["S", "M"], "fit": null, "x": []}}')
    assert a.attributes == {"color": ["Red"], "size": ["S", "M"]}
    with pytest.raises(ModelAnswerError):
        parse_extract_answer('{"attributes": "red"}')
