"""Coverage-guided fuzzing of event decoding (`transforms.decode.decode_event`).

Property: for any bytes, as a Kafka value or JSONL line (bytes), as text (str, with
undecodable bytes kept as lone surrogates), and, when they parse as a JSON object, as a
Parquet row (dict), `decode_event` returns a ProductEvent or raises DecodeError naming a
reason. Any other exception is a crash: in the pipeline it would fail the bundle (and, on a
stream, retry it forever).

Seeds are the sample events in examples/ (good and bad) plus a few hostile ones.

    python tests/fuzz/fuzz_decode.py -max_total_time=20 -rss_limit_mb=2048 [CORPUS_DIR]
    python tests/fuzz/fuzz_decode.py crash-<sha1>         # reproduce one input
"""

from __future__ import annotations

import json

import _harness
import atheris

_harness.ensure_repo_on_path()

# Beam and pydantic are big and not ours: imported first so that only the productlens
# modules that decoding runs through get coverage instrumentation.
import apache_beam  # noqa: F401
import pydantic  # noqa: F401

atheris.enabled_hooks.add("str")  # guide mutations towards str.startswith/endswith comparisons

with atheris.instrument_imports(include=["transforms"]):
    from transforms.decode import DecodeError, decode_event
    from transforms.records import ProductEvent


def _decode(element: bytes | str | dict[str, object]) -> None:
    try:
        event = decode_event(element)
    except DecodeError as exc:
        assert exc.error_type and isinstance(exc.error_type, str), f"DecodeError without a reason: {exc!r}"
        return
    assert isinstance(event, ProductEvent), f"decode_event returned {type(event).__name__}"


def TestOneInput(data: bytes) -> None:
    _decode(data)
    _decode(data.decode("utf-8", "surrogateescape"))
    # A Parquet row reaches decode_event already parsed. The harness's own json.loads may
    # fail on what decode_event must survive (deep nesting), so its errors are not crashes.
    try:
        row = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(row, dict):
        _decode(row)


def _seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for name in ("events.jsonl", "bad_events.jsonl"):
        path = _harness.REPO / "examples" / name
        if path.exists():
            seeds += [line for line in path.read_bytes().splitlines() if line.strip()]
    event = {
        "event_id": "e-1",
        "type": "create",
        "product_id": "gid://shopify/Product/1",
        "shop_id": "s",
        "occurred_at": "2024-09-02T08:21:08Z",
        "product": {
            "title": "Tee",
            "description_html": "<p>Soft</p>",
            "tags": "a, b",
            "variant_options": [{"name": "Size", "values": ["S", "M"]}],
            "price": 1.5,
        },
    }
    seeds += [
        json.dumps(event).encode(),
        b"\xef\xbb\xbf" + json.dumps(event).encode(),  # a BOM
        json.dumps({**event, "type": "delete", "product": None}).encode(),
        b'{"event_id": "a", "event_id": "b"}',  # a duplicate key
        b'{"product": ' + b"[" * 40 + b"]" * 40 + b"}",  # just over the depth limit
        b'{"price": 1' + b"0" * 5000 + b"}",  # over Python's int digit limit
        b'"\xff\xfe"',
        b"null",
        b"",
    ]
    return seeds


_DICTIONARY = [
    b'"event_id"',
    b'"type"',
    b'"product_id"',
    b'"shop_id"',
    b'"occurred_at"',
    b'"product"',
    b'"title"',
    b'"description_html"',
    b'"product_type"',
    b'"vendor"',
    b'"tags"',
    b'"image_urls"',
    b'"variant_options"',
    b'"name"',
    b'"values"',
    b'"price"',
    b'"inventory_quantity"',
    b'"create"',
    b'"update"',
    b'"delete"',
    b'"repredict"',
    b'"gid://shopify/Product/',
    b"2024-09-02T08:21:08Z",
    b"\xef\xbb\xbf",
    b"\\ud800",
    b"null",
]


if __name__ == "__main__":
    _harness.fuzz(TestOneInput, _seeds(), _DICTIONARY)
