"""Step 2, extract, Beam-free: the request carries the category's attributes and their
allowed values (the taxonomy stays in the pipeline, DESIGN.md "The model contract").

A product without a category (unresolved) or whose category has no attributes needs no
call: it passes through unchanged, counted as `model/extract_calls_saved_no_attributes`.
Which handles and values the taxonomy allows is the next stage's question
(`transforms.core.validate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from model_repository.contract import (
    ModelAnswerError,
    ModelAttribute,
    ModelCategory,
    ModelRequest,
    Task,
    parse_extract_answer,
)
from taxonomy.model import Category, Taxonomy
from transforms.core.classify import model_product
from transforms.core.dead_letters import guarded, new_dead_letter
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.core.model_calls import ModelCall, model_error, run_batch
from transforms.model.client import ModelClient
from transforms.records import DeadLetter, WorkItem

__all__ = ["STAGE", "extract_answer", "extract_batch", "extract_call", "extract_request"]

STAGE = "extract"


def extract_request(item: WorkItem, taxonomy: Taxonomy, category: Category) -> ModelRequest:
    """The step 2 request for a product in `category`."""
    return ModelRequest(
        task=Task.EXTRACT,
        product=model_product(item),
        category=ModelCategory(id=category.id, full_name=category.full_name),
        attributes=tuple(
            ModelAttribute(handle=a.handle, name=a.name, values=tuple(v.name for v in a.values))
            for a in taxonomy.attributes_of(category)
        ),
    )


def extract_call(item: WorkItem, taxonomy: Taxonomy, metrics: MetricsSink = NO_METRICS) -> ModelCall | None:
    """The (REQUEST, IMAGE) for step 2, or None when the product needs no call."""
    category = taxonomy.get(item.category.id) if item.category is not None else None
    if category is None or not taxonomy.attributes_of(category):
        metrics.inc("model", "extract_calls_saved_no_attributes")
        return None
    return extract_request(item, taxonomy, category).model_dump_json().encode(), item.image


def _answer(item: WorkItem, response: bytes, metrics: MetricsSink) -> WorkItem | DeadLetter:
    error = model_error(response)
    if error is not None:
        return new_dead_letter(STAGE, "ModelError", error, item, metrics)
    try:
        answer = parse_extract_answer(response)
    except ModelAnswerError as exc:
        return new_dead_letter(STAGE, "ModelAnswerError", str(exc), item, metrics)
    return replace(item, raw_attributes=tuple((h, tuple(v)) for h, v in answer.attributes.items()))


def extract_answer(item: WorkItem, response: bytes, metrics: MetricsSink = NO_METRICS) -> WorkItem | DeadLetter:
    """The WorkItem with raw_attributes (the model's handles and values, unchecked), or a
    dead letter at `extract` (ModelError, ModelAnswerError, or an unforeseen exception)."""
    return guarded(STAGE, metrics, _answer, item, response, metrics)


def extract_batch(
    batch: Sequence[WorkItem], client: ModelClient, taxonomy: Taxonomy, metrics: MetricsSink = NO_METRICS
) -> list[WorkItem | DeadLetter]:
    """Step 2 for a batch in one `infer_batch` call (none when no product needs one);
    results in the order of `batch`."""
    return run_batch(STAGE, batch, lambda item: extract_call(item, taxonomy, metrics), extract_answer, client, metrics)
