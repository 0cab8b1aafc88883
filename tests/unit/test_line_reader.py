"""The bounded JSONL line reader behind ReadEvents: \\n, \\r\\n and lone \\r line ends,
BOMs, blank lines, oversized lines skipped in linear time, and a clear error for a
pattern that matches nothing (issue 10)."""

from __future__ import annotations

import gzip
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.dead_letters import DEAD_LETTER
from transforms.decode import DELETED, DecodeEvents
from transforms.io.files import OVERSIZED_HEAD_BYTES, OversizedLine, ReadEvents, check_input_pattern, read_lines

BOM = b"\xef\xbb\xbf"


def ev(event_id: str, **extra: Any) -> bytes:
    body = {
        "event_id": event_id,
        "type": "create",
        "product_id": f"p-{event_id}",
        "shop_id": "shop",
        "occurred_at": "2026-11-01T00:00:00Z",
        "product": {"title": f"Product {event_id}"},
        **extra,
    }
    return json.dumps(body).encode()


def lines(data: bytes, max_line_bytes: int = 1024, chunk_bytes: int = 1024 * 1024) -> list[bytes | OversizedLine]:
    return list(read_lines(io.BytesIO(data), "f.jsonl", max_line_bytes, chunk_bytes))


# --------------------------------------------------------------------------- read_lines


MIXED = BOM + b"a\r\nb\rc\n\n  \r\n\td\r\r\ne"


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 4, 5, 7, 1024])
def test_every_line_end_and_chunk_boundary(chunk_bytes: int) -> None:
    # Chunks of 1..7 bytes put every \r\n, BOM and line across a chunk boundary.
    assert lines(MIXED, chunk_bytes=chunk_bytes) == [b"a", b"b", b"c", b"\td", b"e"]
    assert lines(MIXED + b"\r\n", chunk_bytes=chunk_bytes) == [b"a", b"b", b"c", b"\td", b"e"]


def test_line_ends() -> None:
    assert lines(b"a\nb\n") == lines(b"a\r\nb\r\n") == lines(b"a\rb\r") == lines(b"a\nb") == [b"a", b"b"]
    assert lines(b"") == lines(b"\n\r\n\r") == lines(BOM) == []
    assert lines(b"a\n" + BOM + b"b") == [b"a", BOM + b"b"]  # only the file's own BOM goes


def test_an_oversized_line_is_skipped_with_its_place_and_head() -> None:
    big = b"x" * 5000
    out = lines(b"first\n\n" + big + b"\r\nlast", max_line_bytes=100, chunk_bytes=64)
    assert out[0] == b"first" and out[2] == b"last"
    assert out[1] == OversizedLine("f.jsonl", 3, 5000, big[:OVERSIZED_HEAD_BYTES], 100)
    # At the limit a line is kept; one byte more and it is not.
    assert lines(b"y" * 100, max_line_bytes=100) == [b"y" * 100]
    assert isinstance(lines(b"y" * 101, max_line_bytes=100)[0], OversizedLine)


def test_an_oversized_first_line_loses_its_bom_in_the_head() -> None:
    (out,) = lines(BOM + b"z" * 300, max_line_bytes=100, chunk_bytes=7)
    assert isinstance(out, OversizedLine) and out.head == b"z" * 300 and out.line_number == 1


def test_a_40mb_line_is_read_in_linear_time_without_buffering_it(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"event_id": "big", "x": "' + b"x" * (40 * 1024 * 1024) + b'"}')
    start = time.perf_counter()
    with open(path, "rb") as fh:
        out = list(read_lines(fh, str(path), 2 * 1024 * 1024))
    seconds = time.perf_counter() - start
    assert seconds < 10, f"{seconds:.1f} s"  # ~0.4 s; Beam's ReadFromText took 90 s
    assert len(out) == 1 and isinstance(out[0], OversizedLine)
    assert out[0].size == path.stat().st_size and out[0].head.startswith(b'{"event_id": "big"')
    assert len(out[0].head) == OVERSIZED_HEAD_BYTES

    # The same through ReadEvents (fileio open, Reshuffles): one OversizedLine, no line.
    start = time.perf_counter()
    p, read = _read(path)
    with p:
        assert_that(
            read | beam.Map(lambda x: (type(x).__name__, getattr(x, "size", None))),
            equal_to([("OversizedLine", out[0].size)]),
        )
    seconds = time.perf_counter() - start
    assert seconds < 10, f"{seconds:.1f} s"


# --------------------------------------------------------------------------- ReadEvents


def _read(pattern: Path | str, **kwargs: Any) -> Any:
    """(pipeline, the ReadEvents output) — run the pipeline with `with`."""
    p = TestPipeline()
    return p, p | ReadEvents(str(pattern), **kwargs)


def test_read_events_splits_bom_crlf_cr_only_and_mixed_files(tmp_path: Path) -> None:
    (tmp_path / "bom.jsonl").write_bytes(BOM + ev("bom-1") + b"\n" + ev("bom-2") + b"\n")
    (tmp_path / "crlf.jsonl").write_bytes(ev("crlf-1") + b"\r\n" + ev("crlf-2") + b"\r\n")
    (tmp_path / "cr.jsonl").write_bytes(ev("cr-1") + b"\r" + ev("cr-2") + b"\r")
    (tmp_path / "mixed.jsonl").write_bytes(
        ev("mixed-1") + b"\r\n\r\n" + ev("mixed-2") + b"\r" + ev("mixed-3") + b"\n   \n" + ev("mixed-4")
    )
    expected = [
        ev(i)
        for i in ("bom-1", "bom-2", "crlf-1", "crlf-2", "cr-1", "cr-2", "mixed-1", "mixed-2", "mixed-3", "mixed-4")
    ]
    p, read = _read(tmp_path / "*.jsonl")
    with p:
        assert_that(read, equal_to(expected))


def test_read_events_then_decode_through_a_pipeline(tmp_path: Path) -> None:
    """Every file-level problem ends as the right outcome: events decoded, the BOM and CR
    files no longer lose or merge events, duplicates and oversized lines dead-lettered."""
    dupes = ev("dupe").replace(b'"type": "create"', b'"type": "create", "type": "delete"')
    big = ev("big", product={"title": "t", "description_html": "x" * 5000})
    (tmp_path / "a.jsonl").write_bytes(BOM + ev("a1") + b"\r\n" + dupes + b"\r\n" + big + b"\r\n" + ev("a2"))
    (tmp_path / "b.jsonl").write_bytes(ev("b1") + b"\r" + ev("b2") + b"\r")
    with TestPipeline() as p:
        out = (
            p
            | ReadEvents(str(tmp_path / "*.jsonl"), max_line_bytes=2000)
            | beam.ParDo(DecodeEvents()).with_outputs(DEAD_LETTER, DELETED, main="items")
        )
        assert_that(
            out.items | "Ids" >> beam.Map(lambda w: w.event.event_id), equal_to(["a1", "a2", "b1", "b2"]), label="ids"
        )

        def check(letters: list[Any]) -> None:
            by_type = {d.error_type: d for d in letters}
            assert sorted(by_type) == ["DuplicateKey", "EventTooLarge"], letters
            big_letter = by_type["EventTooLarge"]
            assert f"line 3 of {tmp_path / 'a.jsonl'}" in big_letter.message, big_letter.message
            assert f"{len(big):,} bytes" in big_letter.message
            assert big_letter.original_payload == big[:OVERSIZED_HEAD_BYTES].decode()
            assert "'type'" in by_type["DuplicateKey"].message

        assert_that(out[DEAD_LETTER], check, label="letters")


def test_read_events_reads_gzip_by_extension(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl.gz").write_bytes(gzip.compress(ev("g1") + b"\r" + ev("g2")))
    p, read = _read(tmp_path / "events.jsonl.gz")
    with p:
        assert_that(read, equal_to([ev("g1"), ev("g2")]))


def test_read_events_default_limit_is_the_event_limit(tmp_path: Path) -> None:
    from transforms.decode import EventLimits

    assert ReadEvents("x.jsonl").max_line_bytes == EventLimits().max_event_bytes
    assert ReadEvents("x.jsonl", max_line_bytes=10).max_line_bytes == 10


def test_parquet_is_read_as_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"event_id": ["e1", "e2"], "type": ["create", "delete"]}), path)
    p, read = _read(path)
    with p:
        assert_that(
            read | beam.Map(lambda r: (r["event_id"], r["type"])), equal_to([("e1", "create"), ("e2", "delete")])
        )


# --------------------------------------------------------------------------- patterns


def test_a_pattern_matching_nothing_fails_at_construction(tmp_path: Path) -> None:
    for pattern in (tmp_path / "nothing-*.jsonl", tmp_path / "missing.jsonl", tmp_path / "missing.parquet"):
        with pytest.raises(ValueError, match=re.escape(f"no input file matches {pattern}")):
            check_input_pattern(str(pattern))
        with pytest.raises(ValueError, match="no input file matches"):
            TestPipeline() | ReadEvents(str(pattern))


def test_a_directory_is_not_an_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        check_input_pattern(str(tmp_path))


def test_a_matching_pattern_passes(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_bytes(ev("e"))
    check_input_pattern(str(tmp_path / "*.jsonl"))
