"""File sources and sinks for batch jobs: JSONL and Parquet, local or any Beam filesystem."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from pydantic import BaseModel

__all__ = [
    "PREDICTION_PARQUET_SCHEMA",
    "is_parquet",
    "CHUNK_BYTES",
    "OVERSIZED_HEAD_BYTES",
    "OversizedLine",
    "read_lines",
    "check_input_pattern",
    "ReadEvents",
    "single_file",
    "WritePredictions",
    "WriteDeadLetters",
]

_VALUE = pa.struct([("id", pa.string()), ("name", pa.string())])
PREDICTION_PARQUET_SCHEMA = pa.schema(
    [
        ("product_id", pa.string()),
        ("shop_id", pa.string()),
        ("prediction_id", pa.string()),
        ("content_hash", pa.string()),
        ("model_version", pa.string()),
        ("taxonomy_version", pa.string()),
        (
            "category",
            pa.struct(
                [
                    ("id", pa.string()),
                    ("full_name", pa.string()),
                    ("score", pa.float64()),
                    ("corrected", pa.bool_()),
                    ("raw", pa.string()),
                ]
            ),
        ),
        (
            "attributes",
            pa.list_(
                pa.struct(
                    [
                        ("handle", pa.string()),
                        ("name", pa.string()),
                        ("values", pa.list_(_VALUE)),
                        ("corrected", pa.bool_()),
                        ("raw", pa.list_(pa.string())),
                    ]
                )
            ),
        ),
        ("simplified_description", pa.string()),
        ("image_description", pa.string()),
        ("status", pa.string()),
        ("warnings", pa.list_(pa.string())),
        ("event_id", pa.string()),
        ("bulk_request_id", pa.string()),
        ("occurred_at", pa.string()),
        ("predicted_at", pa.string()),
    ]
)


def is_parquet(path: str) -> bool:
    return path.endswith(".parquet") or path.endswith(".parq")


# Read size of the line reader: large enough that per-chunk overhead is nothing, small
# enough that a worker's memory holds a few of them next to one longest line.
CHUNK_BYTES = 1024 * 1024
# How much of an oversized line is kept for its dead letter: enough to see which event it
# was (ids come first in our events) without carrying megabytes along.
OVERSIZED_HEAD_BYTES = 4 * 1024
_BOM = b"\xef\xbb\xbf"
# A line ends at \n, \r\n or a lone \r (old Mac tools, some exporters): valid JSON never
# holds a raw CR (inside strings it must be escaped), so a CR always ends a line.
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class OversizedLine:
    """A JSONL line longer than the reader's limit, in place of its bytes: the reader
    skipped it without buffering it, and decode turns it into an `EventTooLarge` dead
    letter that names where it was (1-based physical line number) and holds its head."""

    path: str
    line_number: int
    size: int
    head: bytes
    limit: int = 0


def _default_max_line_bytes() -> int:
    from transforms.decode import EventLimits  # here: decode imports this module

    return EventLimits().max_event_bytes


def read_lines(
    stream: BinaryIO, path: str, max_line_bytes: int, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes | OversizedLine]:
    """The non-blank lines of a binary stream, without their line ends, in linear time
    and memory bounded by `max_line_bytes` + `chunk_bytes` whatever the input.

    Beam's ReadFromText took 90 s of CPU on one 40 MB line (its buffer handling is
    quadratic in the line length). Here a line over `max_line_bytes` is not kept: its
    remaining bytes are only counted, and it comes out as an OversizedLine. A UTF-8 BOM at
    the start of the file is dropped; whitespace-only lines are dropped (as before).
    """
    line = bytearray()
    oversized: bytearray | None = None  # the head of the current line once it is too long
    size = 0  # bytes of the current line so far
    line_number = 1
    skip_lf = False  # the previous chunk ended with \r: a leading \n completes its \r\n

    def finish() -> Iterator[bytes | OversizedLine]:
        nonlocal line, oversized, size
        if oversized is not None:
            head = bytes(oversized[len(_BOM) :] if line_number == 1 and oversized.startswith(_BOM) else oversized)
            yield OversizedLine(path, line_number, size, head, max_line_bytes)
        else:
            text = bytes(line[len(_BOM) :] if line_number == 1 and line.startswith(_BOM) else line)
            if text.strip():
                yield text
        line, oversized, size = bytearray(), None, 0

    def add(piece: bytes) -> None:
        nonlocal line, oversized, size
        size += len(piece)
        if oversized is not None:
            if len(oversized) < OVERSIZED_HEAD_BYTES:
                oversized += piece[: OVERSIZED_HEAD_BYTES - len(oversized)]
            return
        if size > max_line_bytes:
            oversized = (line + piece[:OVERSIZED_HEAD_BYTES])[:OVERSIZED_HEAD_BYTES]
            line = bytearray()  # from here the line is counted, never kept
        else:
            line += piece

    while chunk := stream.read(chunk_bytes):
        start = 0
        if skip_lf and chunk[:1] == b"\n":
            start = 1
        skip_lf = False
        for end in _LINE_END.finditer(chunk, start):
            add(chunk[start : end.start()])
            yield from finish()
            line_number += 1
            start = end.end()
        if start < len(chunk):
            add(chunk[start:])
        elif chunk.endswith(b"\r"):
            skip_lf = True
    if size:
        yield from finish()


class _ReadLines(beam.DoFn):
    """ReadableFile -> its lines (bytes) and OversizedLines."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes

    def process(self, readable: fileio.ReadableFile) -> Iterator[bytes | OversizedLine]:
        path = readable.metadata.path
        if os.path.isdir(path):  # a glob such as exports/* also matches sub-folders
            return
        # The default compression is AUTO (.gz, .bz2, ... by extension), as ReadFromText's.
        with readable.open(mime_type="application/octet-stream") as stream:
            yield from read_lines(stream, path, self.max_line_bytes)


def check_input_pattern(pattern: str) -> None:
    """Fail at pipeline construction, with a message, when `pattern` names no file (a
    typo would otherwise surface as a traceback from inside the running job, or as an
    empty, 'successful' run). FileSystems covers local paths, gs:// and the rest."""
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except BeamIOError as exc:
        raise ValueError(f"no input file matches {pattern} ({exc})") from None
    if not matched:
        raise ValueError(f"no input file matches {pattern}")
    if all(os.path.isdir(m.path) for m in matched):
        raise ValueError(f"{pattern} is a directory; give a file or a glob such as {os.path.join(pattern, '*.jsonl')}")


class ReadEvents(beam.PTransform):
    """A JSONL file (or glob) as raw bytes per line, or a Parquet file as dict rows.

    Lines stay bytes so that decoding (and its UTF-8 errors) happens in the decode stage,
    where a bad line becomes a dead letter instead of failing the read. A line longer than
    `max_line_bytes` (default: the decode stage's event limit) comes out as an
    OversizedLine, which decode dead-letters.
    """

    def __init__(self, pattern: str, max_line_bytes: int | None = None) -> None:
        super().__init__()
        self.pattern = pattern
        self.max_line_bytes = max_line_bytes if max_line_bytes is not None else _default_max_line_bytes()
        if self.max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, got {self.max_line_bytes}")

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:  # type: ignore[override]
        check_input_pattern(self.pattern)
        if is_parquet(self.pattern):
            return pbegin | "ReadParquet" >> beam.io.ReadFromParquet(self.pattern)
        return (
            pbegin
            | "MatchJsonl" >> fileio.MatchFiles(self.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            # One element per file: spread the files over workers before reading them.
            | "SpreadFiles" >> beam.Reshuffle()
            | "OpenJsonl" >> fileio.ReadMatches()
            | "ReadLines" >> beam.ParDo(_ReadLines(self.max_line_bytes))
            # A file is read start to end by one worker (this read is not splittable, unlike
            # ReadFromText's): spread one big file's lines over the workers for decode and
            # the model steps.
            | "SpreadLines" >> beam.Reshuffle()
        )


def _to_json_line(record: BaseModel) -> str:
    return record.model_dump_json()


def single_file(directory: str, name: str) -> dict[str, object]:
    stem, suffix = os.path.splitext(name)
    return {
        "file_path_prefix": os.path.join(directory, stem),
        "file_name_suffix": suffix,
        "num_shards": 1,
        "shard_name_template": "",
    }


class WritePredictions(beam.PTransform):
    """predictions.jsonl and predictions.parquet in `directory`."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def expand(self, predictions: beam.PCollection) -> beam.PCollection:  # type: ignore[override]
        (
            predictions
            | "ToJson" >> beam.Map(_to_json_line)
            | "WriteJsonl" >> beam.io.WriteToText(**single_file(self.directory, "predictions.jsonl"))
        )
        return (
            predictions
            | "ToRow" >> beam.Map(lambda p: json.loads(p.model_dump_json()))
            | "WriteParquet"
            >> beam.io.WriteToParquet(
                schema=PREDICTION_PARQUET_SCHEMA, **single_file(self.directory, "predictions.parquet")
            )
        )


class WriteDeadLetters(beam.PTransform):
    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def expand(self, letters: beam.PCollection) -> beam.PCollection:  # type: ignore[override]
        return (
            letters
            | "ToJson" >> beam.Map(_to_json_line)
            | "WriteJsonl" >> beam.io.WriteToText(**single_file(self.directory, "dead_letters.jsonl"))
        )
