"""File sources and sinks for batch jobs: JSONL and Parquet, local or any Beam filesystem."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import pyarrow as pa
from apache_beam.coders import BytesCoder
from pydantic import BaseModel

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


class ReadEvents(beam.PTransform):
    """A JSONL file (or glob) as raw bytes per line, or a Parquet file as dict rows.

    Lines stay bytes so that decoding (and its UTF-8 errors) happens in the decode stage,
    where a bad line becomes a dead letter instead of failing the read.
    """

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:  # type: ignore[override]
        if is_parquet(self.pattern):
            return pbegin | "ReadParquet" >> beam.io.ReadFromParquet(self.pattern)
        return (
            pbegin
            | "ReadJsonl" >> beam.io.ReadFromText(self.pattern, coder=BytesCoder(), strip_trailing_newlines=True)
            | "DropBlankLines" >> beam.Filter(lambda line: bool(line.strip()))
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
        predictions | "ToJson" >> beam.Map(_to_json_line) | "WriteJsonl" >> beam.io.WriteToText(
            **single_file(self.directory, "predictions.jsonl")
        )
        return (
            predictions
            | "ToRow" >> beam.Map(lambda p: json.loads(p.model_dump_json()))
            | "WriteParquet"
            >> beam.io.WriteToParquet(schema=PREDICTION_PARQUET_SCHEMA, **single_file(self.directory, "predictions.parquet"))
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
