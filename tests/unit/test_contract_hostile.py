"""Hostile model answers (DESIGN.md "Untrusted input"): whatever a model sends, the parse
functions return a bounded, inert answer or raise ModelAnswerError, and fast."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from model_repository.contract import (
    MAX_ANSWER_BYTES,
    MAX_ATTRIBUTES,
    MAX_CATEGORY_CHARS,
    MAX_IMAGE_DESCRIPTION_CHARS,
    MAX_JSON_DEPTH,
    MAX_SIMPLIFIED_DESCRIPTION_CHARS,
    MAX_VALUE_CHARS,
    MAX_VALUES_PER_ATTRIBUTE,
    ClassifyAnswer,
    ModelAnswerError,
    parse_classify_answer,
    parse_extract_answer,
)

# Generous for a slow CI machine; the quadratic and recursive failures these guard
# against take seconds to minutes (or never finish) on the same inputs.
FAST_S = 2.0
PARSERS: list[Callable[[Any], Any]] = [parse_classify_answer, parse_extract_answer]


@contextmanager
def fast(limit: float = FAST_S) -> Iterator[None]:
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < limit, f"took {elapsed:.2f}s (limit {limit}s)"


def classify(**fields: Any) -> ClassifyAnswer:
    return parse_classify_answer(json.dumps({"category": "A > B", **fields}))


# -- size and depth ----------------------------------------------------------------------


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "answer",
    [
        '{"category": ' + "[" * 100_000 + "]" * 100_000 + "}",
        ('{"category": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(),
        "[" * 100_000,  # unbalanced
        b'{"attributes": ' + b'{"a": ' * 30_000 + b"1" + b"}" * 30_000 + b"}",
        "Sure: ```json\n" + '{"a": [' * 30_000 + "\n```",  # deep inside a fence
    ],
    ids=["str", "bytes", "unbalanced", "objects", "fenced"],
)
def test_deep_nesting_is_a_model_answer_error_fast(parse: Callable[[Any], Any], answer: str | bytes) -> None:
    assert len(answer) <= MAX_ANSWER_BYTES  # the depth check refuses it, not the size limit
    with fast(), pytest.raises(ModelAnswerError, match="nested"):
        parse(answer)


def test_nesting_just_inside_the_limit_still_parses() -> None:
    nested = "[" * (MAX_JSON_DEPTH - 1) + '"x"' + "]" * (MAX_JSON_DEPTH - 1)
    assert parse_classify_answer(f'{{"category": "A > B", "candidates": {nested}}}').category == "A > B"
    with pytest.raises(ModelAnswerError, match="nested"):
        parse_classify_answer(f'{{"category": "A > B", "candidates": [{nested}]}}')


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = "[" * 10_000 + "{" * 10_000
    a = parse_classify_answer(json.dumps({"category": "A > B", "simplified_description": text}))
    assert a.category == "A > B"


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("kind", [str, bytes])
def test_twenty_megabyte_answer_is_refused_before_parsing(parse: Callable[[Any], Any], kind: type) -> None:
    body = json.dumps({"category": "A > B", "simplified_description": "x" * (20 * 1024 * 1024)})
    answer = body if kind is str else body.encode()
    with fast(0.5), pytest.raises(ModelAnswerError, match="limit"):
        parse(answer)


def test_size_limit_counts_utf8_bytes_of_str() -> None:
    # Under the limit in characters, over it in bytes: the limit is on what crossed the wire.
    body = json.dumps({"category": "A > B", "image_description": "é" * (MAX_ANSWER_BYTES // 2)}, ensure_ascii=False)
    assert len(body) < MAX_ANSWER_BYTES < len(body.encode())
    with pytest.raises(ModelAnswerError, match="limit"):
        parse_classify_answer(body)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "answer",
    [
        "```" * (MAX_ANSWER_BYTES // 3 - 10),  # unclosed fences: the old `(.*?)` regex was quadratic
        "```json" + "x" * (MAX_ANSWER_BYTES - 20),
        "," + " " * (MAX_ANSWER_BYTES - 10),  # the trailing-comma regex
        ", " * (MAX_ANSWER_BYTES // 2 - 10),
        '{"a": "' + '\\"' * (MAX_ANSWER_BYTES // 2 - 10),  # an unterminated string of escapes
        '"' * (MAX_ANSWER_BYTES - 10),
        "{" + '"' * (MAX_ANSWER_BYTES - 10) + "}",
        "{" * 30 + "}" * (MAX_ANSWER_BYTES - 100),
        '{"category": "A", "confidence": 1' + "0" * 5000 + "}",  # over Python's int digit limit
    ],
    ids=[
        "fences",
        "open-fence",
        "comma-space",
        "comma-spaces",
        "escapes",
        "quotes",
        "braced-quotes",
        "closers",
        "digits",
    ],
)
def test_adversarial_256kb_answers_finish_fast(parse: Callable[[Any], Any], answer: str) -> None:
    assert len(answer.encode()) <= MAX_ANSWER_BYTES
    with fast():
        try:
            parse(answer)
        except ModelAnswerError:
            pass


@pytest.mark.parametrize(
    "markup",
    ["<!--x>", "<a", "</", "<?", "<!", "<![CDATA[", "<![ x", "<a b='", "<script>", "<<", "&#", "<x/>", "<p>"],
)
def test_adversarial_markup_in_a_description_finishes_fast(markup: str) -> None:
    # CPython 3.11's html.parser is quadratic on several of these (a minute for 256 KB of
    # "<a"); the contract bounds and pre-processes what reaches it.
    text = markup * ((MAX_ANSWER_BYTES - 200) // (2 * len(markup.encode())))
    with fast():
        a = classify(simplified_description=text, image_description=text[: len(text) // 2])
    assert not re.search(r"<[A-Za-z/!?]", a.simplified_description + a.image_description)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("answer", [None, 42, 1.5, ["a"], {"category": "x"}, object()])
def test_not_text_at_all_is_a_model_answer_error(parse: Callable[[Any], Any], answer: Any) -> None:
    with pytest.raises(ModelAnswerError):
        parse(answer)


# -- free text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<script>alert(1)</script>Nice dress", "Nice dress"),
        ("<SCRIPT type='text/javascript'>document.cookie</SCRIPT>Nice dress", "Nice dress"),
        ("<style>p { color: red }</style>Nice <b>dress</b>", "Nice dress"),
        ("<img src=x onerror=alert(1)>Nice dress", "Nice dress"),
        ("<a href='javascript:alert(1)'>Nice</a> dress", "Nice dress"),
        ("Nice <!-- a comment --> dress", "Nice dress"),
        ("Nice dress<script>never closed", "Nice dress"),
        ("AT&amp;T &quot;Nice&quot; dress &copy;", 'AT&T "Nice" dress ©'),
        ("&lt;script&gt;alert(1)&lt;/script&gt;Nice dress", "Nice dress"),  # entity-encoded markup
        ("<<b>script>alert(1)<</b>/script>Nice dress", "Nice dress"),  # markup that strips into markup
        ("<p>Nice dress.</p><p>Red.</p>", "Nice dress.\nRed."),
        ("Sizes < 10 and 5 > 3", "Sizes < 10 and 5 > 3"),  # a bare < is text
        ("I <3 it", "I <3 it"),
    ],
)
def test_markup_is_removed_from_descriptions(raw: str, clean: str) -> None:
    a = classify(simplified_description=raw, image_description=raw)
    assert a.simplified_description == clean
    assert a.image_description == clean


def test_no_description_can_open_a_tag() -> None:
    for raw in ["<x", "a<b", "<scr<script>ipt>", "&lt;b&gt;", "<!", "</", "<?php", "<<a"]:
        a = classify(simplified_description=raw)
        assert not re.search(r"<[A-Za-z/!?]", a.simplified_description), (raw, a.simplified_description)


def test_control_and_bidi_characters_are_removed() -> None:
    raw = "Nice\x00 dress\x1b[31m red\x07\x7f\x85\x9f \u202eevil\u202c \u2066iso\u2069 \u202a\u202b\u202d"
    a = classify(simplified_description=raw, image_description=raw, category="A\x00 > \u202eB")
    for text in (a.simplified_description, a.image_description, a.category):
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), repr(text)
    assert a.simplified_description == "Nice dress[31m red evil iso"
    assert a.category == "A > B"


def test_entities_cannot_smuggle_control_characters() -> None:
    a = classify(simplified_description="a&#x202e;b&#0;c&#x1b;d&#8238;e")
    assert a.simplified_description == "a" + "b\ufffdc" + "de"  # &#0; is U+FFFD by HTML5


def test_lone_surrogates_are_removed() -> None:
    a = parse_classify_answer('{"category": "A\\ud800 > B", "simplified_description": "x\\udfffy"}')
    assert (a.category, a.simplified_description) == ("A > B", "xy")
    a.model_dump_json().encode("utf-8")  # the pipeline writes it as UTF-8


def test_whitespace_is_collapsed() -> None:
    a = classify(simplified_description="  Nice \t\t dress \r\n\n\n  in  red \u00a0 ", category="  A  >\n B ")
    assert a.simplified_description == "Nice dress\nin red"
    assert a.category == "A > B"


def test_a_20kb_description_is_capped() -> None:
    words = ("lorem ipsum " * 2000).strip()
    a = classify(simplified_description=words, image_description=words)
    assert len(a.simplified_description) <= MAX_SIMPLIFIED_DESCRIPTION_CHARS
    assert len(a.image_description) <= MAX_IMAGE_DESCRIPTION_CHARS
    assert a.simplified_description.startswith("lorem ipsum lorem")
    assert len(a.simplified_description) >= MAX_SIMPLIFIED_DESCRIPTION_CHARS - 10


def test_truncation_keeps_combining_sequences_whole() -> None:
    # "e" + COMBINING ACUTE straddling the cap: dropped whole rather than left as a bare "e".
    text = "a" * (MAX_IMAGE_DESCRIPTION_CHARS - 1) + "e\u0301" + "tail"
    assert classify(image_description=text).image_description == "a" * (MAX_IMAGE_DESCRIPTION_CHARS - 1)
    emoji = "a" * (MAX_IMAGE_DESCRIPTION_CHARS - 2) + "\U0001f469\u200d\U0001f4bb"  # woman technologist
    assert classify(image_description=emoji).image_description == "a" * (MAX_IMAGE_DESCRIPTION_CHARS - 2)


def test_a_long_category_is_capped() -> None:
    a = classify(category="A > " + "B" * 50_000)
    assert len(a.category) == MAX_CATEGORY_CHARS and a.category.startswith("A > BBB")


@pytest.mark.parametrize(("value", "expected"), [(None, ""), (5, "5"), (0.5, "0.5"), (True, "true"), ("x", "x")])
def test_description_scalars_are_coerced(value: Any, expected: str) -> None:
    assert classify(image_description=value).image_description == expected


@pytest.mark.parametrize("value", [["a"], {"text": "a"}])
def test_description_containers_are_the_wrong_shape(value: Any) -> None:
    with pytest.raises(ModelAnswerError, match="wrong shape"):
        classify(simplified_description=value)


@pytest.mark.parametrize("category", [None, 5, ["A", "B"], {"path": "A > B"}])
def test_a_category_that_is_not_text_is_the_wrong_shape(category: Any) -> None:
    with pytest.raises(ModelAnswerError, match="wrong shape"):
        parse_classify_answer(json.dumps({"category": category}))


@pytest.mark.parametrize(
    ("confidence", "expected"), [("NaN", 0.0), ("Infinity", 1.0), ("-Infinity", 0.0), ("1" + "0" * 400, 1.0)]
)
def test_odd_confidences_are_clamped(confidence: str, expected: float) -> None:
    assert parse_classify_answer(f'{{"category": "x", "confidence": {confidence}}}').confidence == expected


# -- attributes -----------------------------------------------------------------------------


def test_ten_thousand_attributes_are_capped() -> None:
    answer = json.dumps({"attributes": {f"handle-{i}": [f"v{i}"] for i in range(10_000)}})
    with fast():
        a = parse_extract_answer(answer)
    assert list(a.attributes) == [f"handle-{i}" for i in range(MAX_ATTRIBUTES)]  # the first ones, in order


def test_ten_thousand_values_are_capped() -> None:
    answer = json.dumps({"attributes": {"color": [f"c{i}" for i in range(10_000)]}})
    with fast():
        a = parse_extract_answer(answer)
    assert a.attributes["color"] == [f"c{i}" for i in range(MAX_VALUES_PER_ATTRIBUTE)]


def test_values_are_cleaned_and_capped() -> None:
    answer = json.dumps(
        {
            "attributes": {
                "color": ["  Red\x00 ", "Bl\u202eue", "x" * 10_000, "", None, {"nested": 1}, ["a"], 3, "<b>Green"],
                "h\x1b": "Linen",
                "empty": ["\x00", " "],
                "k" * 10_000: "v",
            }
        }
    )
    a = parse_extract_answer(answer)
    assert a.attributes["color"] == ["Red", "Blue", "x" * MAX_VALUE_CHARS, "3", "b>Green"]
    assert a.attributes["h"] == ["Linen"]
    assert "empty" not in a.attributes  # nothing left after cleaning
    assert all(len(h) <= 255 for h in a.attributes)


# -- regressions: what lenient parsing already accepted --------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        'Sure! ```json\n{"category": "A > B", "confidence": 0.7,}\n```',
        '```\n{"category": "A > B", "confidence": 0.7}\n```',
        'Here you go: {"category": "A > B", "confidence": 0.7, "candidates": ["A > B", "A > C",],} Thanks!',
        b'{"category": "A > B", "confidence": 0.7}',
        '{"category": "A > B", "confidence": 0.7, "simplified_description": "A red dress.", "extra": {"ok": true}}',
    ],
)
def test_fenced_json_and_trailing_commas_still_parse(answer: str | bytes) -> None:
    a = parse_classify_answer(answer)
    assert a.category == "A > B" and a.confidence == pytest.approx(0.7)


def test_ordinary_answers_are_unchanged() -> None:
    a = classify(
        simplified_description="A flattering wrap dress with a deep V-neck. 100% rayon; hand wash cold.",
        image_description="A red dress on a white background.",
        confidence=0.61,
    )
    assert a.simplified_description == "A flattering wrap dress with a deep V-neck. 100% rayon; hand wash cold."
    assert a.image_description == "A red dress on a white background."
    e = parse_extract_answer('```json\n{"attributes": {"color": ["Red",], "neckline": "V-neck",},}\n```')
    assert e.attributes == {"color": ["Red"], "neckline": ["V-neck"]}


# -- without atheris: a seeded random smoke test of the same property -----------------------


def test_random_mutations_give_an_answer_or_a_model_answer_error() -> None:
    """tests/unit/test_fuzz.py runs the coverage-guided fuzzer where atheris is installed;
    this deterministic mutation loop keeps the basic promise checked everywhere else."""
    rng = random.Random(20240702)
    seeds = [
        b'{"category": "A > B", "confidence": 0.7, "simplified_description": "<p>Nice &amp; red</p>"}',
        b'```json\n{"attributes": {"color": ["Red",], "size": "M"},}\n```',
        b'{"category": "x", "image_description": "\\u202e<script>x</script>\\ud800"}',
    ]
    tokens = [
        b"[",
        b"{",
        b"}",
        b"]",
        b'"',
        b"\\",
        b",",
        b"<",
        b"<!--",
        b"<![",
        b"&#",
        b"```",
        b"\xff",
        b"\x00",
        b"1e999",
    ]
    start = time.perf_counter()
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4:
                data[pos:pos] = rng.choice(tokens) * rng.randint(1, 40)
            elif op < 0.7 and data:
                del data[pos : pos + rng.randint(1, 10)]
            elif data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
        for parse in PARSERS:
            for answer in (bytes(data), bytes(data).decode("utf-8", "surrogateescape")):
                try:
                    parse(answer)
                except ModelAnswerError:
                    pass
    assert time.perf_counter() - start < 30
