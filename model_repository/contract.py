"""The request/response contract that every model in `model_repository/` answers.

One contract for the CPU baseline and the GPU vision LLM, so a pipeline never knows which
model it talks to (DESIGN.md, "The model contract"):

- input  `REQUEST` (BYTES): JSON `ModelRequest`
- input  `IMAGE`   (BYTES, optional): one JPEG already resized by the pipeline
- output `RESPONSE` (BYTES): the model's JSON text. It may be malformed; the pipeline
  parses it leniently with `parse_classify_answer` / `parse_extract_answer`.

Models must not know about Kafka or Beam; this module depends on pydantic only.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

INPUT_REQUEST = "REQUEST"
INPUT_IMAGE = "IMAGE"
OUTPUT_RESPONSE = "RESPONSE"


class Task(StrEnum):
    CLASSIFY = "classify"
    EXTRACT = "extract"


class ModelProduct(BaseModel):
    model_config = ConfigDict(frozen=True)
    title: str
    description: str = ""  # plain text: the pipeline strips markup before the model
    product_type: str = ""
    vendor: str = ""
    tags: tuple[str, ...] = ()
    variant_options: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class ModelCategory(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    full_name: str


class ModelAttribute(BaseModel):
    model_config = ConfigDict(frozen=True)
    handle: str
    name: str
    values: tuple[str, ...]


class ModelRequest(BaseModel):
    model_config = ConfigDict(frozen=True)
    task: Task
    product: ModelProduct
    category: ModelCategory | None = None
    attributes: tuple[ModelAttribute, ...] = ()


class ClassifyAnswer(BaseModel):
    """What a model says in step 1. Unvalidated against the taxonomy: `category` is raw."""

    model_config = ConfigDict(extra="ignore")
    category: str
    confidence: float = Field(default=0.0)
    simplified_description: str = ""
    image_description: str = ""

    @field_validator("confidence", mode="before")
    @classmethod
    def _clamp(cls, v: Any) -> float:
        try:
            return min(1.0, max(0.0, float(v)))
        except (TypeError, ValueError):
            return 0.0


class ExtractAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    attributes: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("attributes", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        # LLMs answer {"color": "Red"} as often as {"color": ["Red"]}.
        if isinstance(v, dict):
            return {
                str(k): ([str(x) for x in val] if isinstance(val, list) else [str(val)])
                for k, val in v.items()
                if val not in (None, "", [])
            }
        return v


class ModelAnswerError(ValueError):
    """The model's text is not a usable answer (not JSON, or the wrong shape)."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _lenient_json(text: str | bytes) -> dict[str, Any]:
    """Parse a model's JSON the way LLM output needs: code fences, prose around the
    object, trailing commas. Anything beyond that is a ModelAnswerError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    candidates = [text.strip()]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.append(fenced.group(1).strip())
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for c in candidates:
        for attempt in (c, re.sub(r",\s*([}\]])", r"\1", c)):
            try:
                value = json.loads(attempt)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    snippet = text[:120].replace("\n", " ")
    raise ModelAnswerError(f"model answer is not a JSON object: {snippet!r}")


def parse_classify_answer(text: str | bytes) -> ClassifyAnswer:
    try:
        return ClassifyAnswer.model_validate(_lenient_json(text))
    except ValidationError as exc:
        raise ModelAnswerError(f"classify answer has the wrong shape: {exc.errors()[0]['msg']}") from exc


def parse_extract_answer(text: str | bytes) -> ExtractAnswer:
    try:
        return ExtractAnswer.model_validate(_lenient_json(text))
    except ValidationError as exc:
        raise ModelAnswerError(f"extract answer has the wrong shape: {exc.errors()[0]['msg']}") from exc
