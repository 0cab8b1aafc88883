"""Untrusted event payloads at decode: size, depth, duplicate keys and field limits are
refused as DecodeErrors (dead letters), fast, and nothing else escapes (issue 10)."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.dead_letters import DEAD_LETTER
from transforms.decode import (
    DELETED,
    DecodeError,
    DecodeEvents,
    EventLimits,
    decode_event,
    json_depth,
    parse_event_object,
)
from transforms.io.files import OversizedLine
from transforms.records import MAX_OPTION_VALUES, MAX_TAGS, ProductEvent

# Generous: each case takes milliseconds to a few hundred; the bound only catches a
# return of the quadratic or recursive behaviour (16-90 s before).
FAST_S = 2.0
# Limits that let the field-limit cases past the size check, so that they reach the model.
ROOMY = EventLimits(max_event_bytes=256 * 1024 * 1024)
DEFAULT = EventLimits()


def event(**product: Any) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "type": "create",
        "product_id": "gid://shopify/Product/1",
        "shop_id": "shop",
        "occurred_at": "2026-11-01T10:00:00Z",
        "product": {"title": "Linen shirt", **product},
    }


def line(**product: Any) -> bytes:
    return json.dumps(event(**product)).encode()


def refused(element: Any, limits: EventLimits = DEFAULT) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_event(element, limits)
    return info.value


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


# --------------------------------------------------------------------------- accepted


def test_a_valid_event_decodes_from_bytes_str_and_dict() -> None:
    for element in (line(), line().decode(), event()):
        e = decode_event(element)
        assert isinstance(e, ProductEvent) and e.product is not None and e.product.title == "Linen shirt"


def test_a_leading_bom_is_stripped() -> None:
    assert decode_event(b"\xef\xbb\xbf" + line()).event_id == "e1"
    assert decode_event("\ufeff" + line().decode()).event_id == "e1"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    title = "[" * 500 + '{"\\"' + "]" * 3
    e = decode_event(line(description_html=title))
    assert e.product is not None and e.product.description_html == title


def test_depth_at_the_limit_passes_and_one_more_is_refused() -> None:
    limits = EventLimits(max_depth=6)
    # event(1) > product(2) > variant_options(3) > option(4) > values(5)
    ok = line(variant_options=[{"name": "Size", "values": ["S"]}])
    assert json_depth(ok) == 5
    decode_event(ok, limits)
    assert json_depth(line(tags=[[[["x"]]]])) == 6
    decode_event(line(tags=["x"]), limits)
    # tags is level 3; four lists inside it make 7
    assert refused(line(tags=[[[[["x"]]]]]), limits).error_type == "TooDeeplyNested"


def test_shopify_sized_products_are_accepted() -> None:
    decode_event(
        line(
            product_type="t" * 255,
            vendor="v" * 255,
            tags=[f"{i:03d}" + "t" * 252 for i in range(MAX_TAGS)],
            variant_options=[{"name": f"o{i}", "values": [str(v) for v in range(MAX_OPTION_VALUES)]} for i in range(3)],
            image_urls=["https://cdn.example.com/" + "a" * 2000] * 50,
        )
    )
    decode_event(line(tags=", ".join("t" * 255 for _ in range(MAX_TAGS))))


# --------------------------------------------------------------------------- refused before parsing


def test_deep_nesting_is_refused_before_parsing() -> None:
    raw = b'{"event_id": "e1", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert len(raw) < 4200
    exc, seconds = timed(lambda: refused(raw))
    assert exc.error_type == "TooDeeplyNested" and "2,001 levels" in exc.message  # the object + 2,000
    assert seconds < FAST_S


def test_very_deep_nesting_is_linear_and_never_recursion() -> None:
    raw = b"[" * 1_000_000 + b"]" * 1_000_000  # 2 MB, just under the size limit
    exc, seconds = timed(lambda: refused(raw))
    assert exc.error_type == "TooDeeplyNested" and seconds < FAST_S


def test_json_depth_is_linear_on_hostile_strings() -> None:
    # An unterminated string after many escaped quotes would make a naive string pattern
    # rescan the rest of the text from every quote.
    for raw in (b'\\"' * 1_000_000, b"[]" * 1_000_000, b'["' + b"a" * 2_000_000, b'"\\' * 1_000_000):
        _, seconds = timed(lambda raw=raw: json_depth(raw))
        assert seconds < FAST_S, raw[:10]


def test_a_3mb_line_is_too_large() -> None:
    raw = line(description_html="x" * (3 * 1024 * 1024))
    exc, seconds = timed(lambda: refused(raw))
    assert exc.error_type == "EventTooLarge" and "2,097,152" in exc.message and seconds < FAST_S
    assert refused(raw.decode()).error_type == "EventTooLarge"


def test_a_deeply_nested_parquet_row_is_refused_without_recursion() -> None:
    row: dict[str, Any] = {"leaf": 1}
    for _ in range(100_000):
        row = {"x": row}
    exc, seconds = timed(lambda: refused({**event(), "product": row}))
    assert exc.error_type == "TooDeeplyNested" and seconds < FAST_S
    deep_list: Any = []
    for _ in range(5_000):
        deep_list = [deep_list]
    assert refused(event(tags=deep_list)).error_type == "TooDeeplyNested"


# --------------------------------------------------------------------------- field limits


@pytest.mark.parametrize(
    "name, product, field",
    [
        ("10 MB product_type", {"product_type": "t" * (10 * 1024 * 1024)}, "product_type"),
        ("1M tags", {"tags": ["t"] * 1_000_000}, "tags"),
        ("1M tags in one string", {"tags": ",".join(["t"] * 1_000_000)}, "tags"),
        ("10 MB of commas", {"tags": "," * (10 * 1024 * 1024)}, "tags"),
        (
            "100k option values",
            {"variant_options": [{"name": "Size", "values": [str(i) for i in range(100_000)]}]},
            "values",
        ),
        ("100k options", {"variant_options": [{"name": "Size"}] * 100_000}, "variant_options"),
        ("1M image URLs", {"image_urls": ["u"] * 1_000_000}, "image_urls"),
    ],
)
def test_huge_fields_are_invalid_events_fast(name: str, product: dict[str, Any], field: str) -> None:
    raw = line(**product)
    exc, seconds = timed(lambda: refused(raw, ROOMY))
    assert exc.error_type == "InvalidEvent", name
    assert field in exc.message, exc.message
    assert len(exc.message) < 1000
    assert seconds < FAST_S, f"{name}: {seconds:.2f} s"
    # Under the default limits, a line over 2 MiB is refused by size before parsing.
    exc, seconds = timed(lambda: refused(raw))
    assert exc.error_type == ("EventTooLarge" if len(raw) > EventLimits().max_event_bytes else "InvalidEvent")
    assert seconds < FAST_S


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"product_type": "t" * 256}, "product_type"),
        ({"vendor": "v" * 256}, "vendor"),
        ({"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}, "tags"),
        ({"tags": ["t" * 256]}, "tags"),
        ({"tags": "a, " + "t" * 256}, "tags"),
        ({"variant_options": [{"name": f"o{i}"} for i in range(11)]}, "variant_options"),
        ({"variant_options": [{"name": "n" * 256}]}, "name"),
        ({"variant_options": [{"name": "Size", "values": ["v"] * (MAX_OPTION_VALUES + 1)}]}, "values"),
        ({"variant_options": [{"name": "Size", "values": ["v" * 256]}]}, "values"),
        ({"image_urls": ["https://x/" + "a" * 2048]}, "image_urls"),
        ({"image_urls": ["u"] * 51}, "image_urls"),
    ],
)
def test_shopify_limits_are_enforced(patch: dict[str, Any], field: str) -> None:
    exc = refused(line(**patch))
    assert exc.error_type == "InvalidEvent" and field in exc.message, exc.message


@pytest.mark.parametrize("key", ["event_id", "product_id", "shop_id", "bulk_request_id"])
def test_ids_are_bounded(key: str) -> None:
    assert decode_event({**event(), key: "i" * 256})
    exc = refused({**event(), key: "i" * 257})
    assert exc.error_type == "InvalidEvent" and key in exc.message


# --------------------------------------------------------------------------- malformed


def test_duplicate_keys_are_refused_at_any_depth() -> None:
    top = b'{"event_id": "e1", "event_id": "e2", "type": "create"}'
    nested = line().replace(b'"title": "Linen shirt"', b'"title": "Red shirt", "title": "Something else"')
    deep = line(variant_options=[{"name": "Size", "values": []}]).replace(
        b'"name": "Size"', b'"name": "Size", "name": "Colour"'
    )
    for raw in (top, nested, deep):
        exc = refused(raw)
        assert exc.error_type == "DuplicateKey", raw
    assert "'title'" in refused(nested).message


@pytest.mark.parametrize(
    "element, error_type",
    [
        (None, "EmptyRecord"),
        (b"\xff\xfe{}", "InvalidUtf8"),
        (b'{"event_id": ', "MalformedJson"),
        (b"", "MalformedJson"),
        (b'{"n": ' + b"9" * 5000 + b"}", "MalformedJson"),  # past Python's int-digit limit
        (b"[1, 2]", "InvalidEvent"),
        (b'"just a string"', "InvalidEvent"),
        (12345, "InvalidEvent"),
        ("\ud800", "InvalidUtf8"),  # a lone surrogate cannot be UTF-8
        (b'{"event_id": "e1"}', "InvalidEvent"),
    ],
)
def test_malformed_records_name_the_reason(element: Any, error_type: str) -> None:
    assert refused(element).error_type == error_type


def test_an_unexpected_exception_becomes_a_decode_error_with_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: Any, **__: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(ProductEvent, "model_validate", explode)
    exc = refused(line())
    assert exc.error_type == "RecursionError" and "recursion" in exc.message


def test_decode_errors_pickle() -> None:
    exc = pickle.loads(pickle.dumps(DecodeError("TooDeeplyNested", "deep")))
    assert (exc.error_type, exc.message) == ("TooDeeplyNested", "deep")
    assert pickle.loads(pickle.dumps(EventLimits(max_depth=3))) == EventLimits(max_depth=3)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        EventLimits(max_event_bytes=0)


def test_parse_event_object_is_lenient_but_bounded() -> None:
    assert parse_event_object(b'{"event_id": "e1", "bulk_request_id": "b"}')["bulk_request_id"] == "b"
    with pytest.raises(DecodeError):
        parse_event_object(b'{"x": ' + b"[" * 2000 + b"]" * 2000 + b"}")


# --------------------------------------------------------------------------- the DoFn


def _kinds(letters: list[Any]) -> list[tuple[str, str]]:
    return sorted((d.error_type, d.original_payload[:40]) for d in letters)


def test_decode_events_dead_letters_every_refusal() -> None:
    oversized = OversizedLine(
        "/data/events.jsonl", 7, 41_943_040, b'{"event_id": "big", ' + b"x" * 4076, 2 * 1024 * 1024
    )
    deep = b'{"x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    dupes = b'{"event_id": "e1", "event_id": "e2"}'
    good = line()
    delete = json.dumps({**event(), "type": "delete", "product": None}).encode()
    with TestPipeline() as p:
        out = (
            p
            | beam.Create([good, delete, deep, dupes, line(tags=["t"] * 300), oversized], reshuffle=False)
            | beam.ParDo(DecodeEvents()).with_outputs(DEAD_LETTER, DELETED, main="items")
        )
        assert_that(out.items | "Ids" >> beam.Map(lambda w: w.event.event_id), equal_to(["e1"]), label="items")
        assert_that(out[DELETED] | "DelIds" >> beam.Map(lambda e: e.event_id), equal_to(["e1"]), label="deletes")

        def check(letters: list[Any]) -> None:
            by_type = {d.error_type: d for d in letters}
            assert sorted(by_type) == ["DuplicateKey", "EventTooLarge", "InvalidEvent", "TooDeeplyNested"], by_type
            assert all(d.stage == "decode" for d in letters)
            big = by_type["EventTooLarge"]
            assert "line 7 of /data/events.jsonl" in big.message and "41,943,040 bytes" in big.message
            assert big.original_payload.startswith('{"event_id": "big"') and len(big.original_payload) == 4096
            assert by_type["TooDeeplyNested"].original_payload == deep.decode()
            assert "300" in by_type["InvalidEvent"].message

        assert_that(out[DEAD_LETTER], check, label="letters")


def test_decode_events_takes_limits() -> None:
    with TestPipeline() as p:
        out = (
            p
            | beam.Create([line(variant_options=[{"name": "Size", "values": ["S"]}])])
            | beam.ParDo(DecodeEvents(EventLimits(max_depth=4))).with_outputs(DEAD_LETTER, DELETED, main="items")
        )
        assert_that(out[DEAD_LETTER] | beam.Map(lambda d: d.error_type), equal_to(["TooDeeplyNested"]))
