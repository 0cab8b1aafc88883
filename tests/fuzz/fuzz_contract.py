"""Coverage-guided fuzzing of the model-answer parsers (model_repository/contract.py).

Property: for any bytes (and the same text as str), `parse_classify_answer` and
`parse_extract_answer` return an answer within the contract's bounds or raise
ModelAnswerError. Any other exception, or an answer outside the bounds (too long, with
control characters, able to open an HTML tag, not encodable as UTF-8), is a crash.

    python tests/fuzz/fuzz_contract.py -max_total_time=20 -rss_limit_mb=2048 [CORPUS_DIR]
    python tests/fuzz/fuzz_contract.py crash-<sha1>       # reproduce one input
"""

from __future__ import annotations

import json
import re

import _harness
import atheris

_harness.ensure_repo_on_path()

# pydantic is compiled (Rust) and big: imported first so that only our module and the
# stdlib markup parser it drives get coverage instrumentation.
import pydantic  # noqa: F401

atheris.enabled_hooks.add("RegEx")  # guide mutations towards what the module's regexes match
atheris.enabled_hooks.add("str")  # ... and its str.startswith/endswith comparisons

with atheris.instrument_imports(include=["model_repository.contract", "html", "_markupbase"]):
    from model_repository import contract
    from model_repository.contract import (
        ModelAnswerError,
        parse_classify_answer,
        parse_extract_answer,
    )

_TAG_OPENER = re.compile(r"<[A-Za-z/!?]")
# What no returned string may hold: C0 (free text keeps only \n), DEL, C1, bidi
# overrides/isolates, lone surrogates.
_FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _check_text(name: str, value: str, limit: int, one_line: bool) -> None:
    assert len(value) <= limit, f"{name} is {len(value)} characters, over {limit}"
    bad = _FORBIDDEN.search(value)
    assert bad is None, f"{name} holds control character {bad.group()!r}"
    assert not (one_line and "\n" in value), f"{name} holds a line break"
    tag = _TAG_OPENER.search(value)
    assert tag is None, f"{name} can open a tag: {value[max(0, tag.start() - 20) : tag.end() + 20]!r}"
    assert value == value.strip(), f"{name} has surrounding whitespace"


def _check_classify(text: bytes | str) -> None:
    try:
        a = parse_classify_answer(text)
    except ModelAnswerError:
        return
    _check_text("category", a.category, contract.MAX_CATEGORY_CHARS, one_line=True)
    _check_text("simplified_description", a.simplified_description, contract.MAX_SIMPLIFIED_DESCRIPTION_CHARS, False)
    _check_text("image_description", a.image_description, contract.MAX_IMAGE_DESCRIPTION_CHARS, False)
    assert 0.0 <= a.confidence <= 1.0, f"confidence {a.confidence} outside [0, 1]"
    a.model_dump_json().encode("utf-8")  # what the pipeline writes must encode


def _check_extract(text: bytes | str) -> None:
    try:
        a = parse_extract_answer(text)
    except ModelAnswerError:
        return
    assert len(a.attributes) <= contract.MAX_ATTRIBUTES, f"{len(a.attributes)} attributes"
    for handle, values in a.attributes.items():
        _check_text("handle", handle, contract.MAX_HANDLE_CHARS, one_line=True)
        assert handle, "an empty handle"
        assert 0 < len(values) <= contract.MAX_VALUES_PER_ATTRIBUTE, f"{handle}: {len(values)} values"
        for v in values:
            _check_text(f"value of {handle}", v, contract.MAX_VALUE_CHARS, one_line=True)
            assert v, f"{handle}: an empty value"
    a.model_dump_json().encode("utf-8")


def TestOneInput(data: bytes) -> None:
    # bytes as Triton returns them, and str with undecodable bytes kept as lone surrogates
    # (the str path has its own size check and must survive text that cannot be encoded).
    for text in (data, data.decode("utf-8", "surrogateescape")):
        _check_classify(text)
        _check_extract(text)


def _seeds() -> list[bytes]:
    answers: list[object] = [
        {
            "category": "Apparel & Accessories > Clothing > Dresses",
            "confidence": 0.82,
            "simplified_description": "A red wrap midi dress with a V-neck.",
            "image_description": "A red dress on a white background.",
        },
        {
            "category": "Home & Garden > Kitchen & Dining",
            "confidence": "0.4",
            "simplified_description": "<p>Nice <b>mug</b> &amp; saucer</p><script>alert(1)</script>",
            "image_description": "A white mug \u202eevil\u202c on a table\u0000.",
        },
        {"category": "A > B", "candidates": [{"path": "A > B", "score": 0.9}, {"path": "A > C", "score": 0.1}]},
        {"attributes": {"color": ["Red", "Blue"], "size": "M", "fit": None, "neckline": []}},
        {"attributes": {"material": ["100% cotton", 3, True, None, {"x": 1}], "pattern": "Striped"}},
    ]
    seeds = [json.dumps(a).encode() for a in answers]
    seeds += [
        b'Sure! ```json\n{"category": "A > B", "confidence": 0.7,}\n```',
        b'The answer is {"category": "A > B", "confidence": 0.7} as requested.',
        b'{"category": "x", "simplified_description": "&lt;script&gt;x&lt;/script&gt;<!-- c --><![CDATA[y]]>"}',
        b'{"category": "x", "confidence": NaN, "image_description": null}',
        b'{"attributes": {"color": ["Red",],},}',
        b'{"category": ' + b"[" * 40 + b"]" * 40 + b"}",
        '{"category": "Caf\u00e9 > Cr\u00e8me", "simplified_description": "e\u0301\u200d\ud83d\udc69"}'.encode(
            "utf-8", "surrogatepass"
        ),
        b"not json at all",
        b"",
    ]
    return seeds


_DICTIONARY = [
    b'"category"',
    b'"confidence"',
    b'"simplified_description"',
    b'"image_description"',
    b'"attributes"',
    b"```json",
    b"```",
    b"<script>",
    b"</script>",
    b"<style>",
    b"<p>",
    b"<br/>",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE",
    b"<?",
    b"&lt;",
    b"&gt;",
    b"&amp;",
    b"&#x202e;",
    b"&#0;",
    b"\\u202e",
    b"\\ud800",
    b"\\u0000",
    b"\xe2\x80\xae",
    b"\xcc\x81",
    b"\xe2\x80\x8d",
    b"NaN",
    b"Infinity",
    b"1e999",
    b"null",
    b"true",
]


if __name__ == "__main__":
    _harness.fuzz(TestOneInput, _seeds(), _DICTIONARY)
