"""Step 1, classify, Beam-free: the request for a product and the handling of its answer.

The answer names a category path in the model's words (`raw_category`); whether the
taxonomy has it is the next stage's question (`transforms.core.correct`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from model_repository.contract import ModelAnswerError, ModelProduct, ModelRequest, Task, parse_classify_answer
from transforms.core.dead_letters import guarded, new_dead_letter
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.core.model_calls import ModelCall, model_error, run_batch
from transforms.model.client import ModelClient
from transforms.records import DeadLetter, WorkItem

__all__ = ["STAGE", "classify_answer", "classify_batch", "classify_request", "model_product"]

STAGE = "classify"


def model_product(item: WorkItem) -> ModelProduct:
    """What the model sees of a product (both steps send it): the description as plain text."""
    p = item.product
    return ModelProduct(
        title=p.title,
        description=item.description_text,
        product_type=p.product_type,
        vendor=p.vendor,
        tags=p.tags,
        variant_options={o.name: o.values for o in p.variant_options},
    )


def classify_request(item: WorkItem) -> ModelCall:
    """The (REQUEST, IMAGE) the model contract takes for step 1."""
    return ModelRequest(task=Task.CLASSIFY, product=model_product(item)).model_dump_json().encode(), item.image


def _answer(item: WorkItem, response: bytes, metrics: MetricsSink) -> WorkItem | DeadLetter:
    error = model_error(response)
    if error is not None:
        return new_dead_letter(STAGE, "ModelError", error, item, metrics)
    try:
        answer = parse_classify_answer(response)
    except ModelAnswerError as exc:
        return new_dead_letter(STAGE, "ModelAnswerError", str(exc), item, metrics)
    return replace(
        item,
        raw_category=answer.category,
        confidence=answer.confidence,
        raw_candidates=tuple((c.category, c.score) for c in answer.candidates),
        backed_off_from_depth=answer.backed_off_from_depth,
        simplified_description=answer.simplified_description,
        image_description=answer.image_description,
    )


def classify_answer(item: WorkItem, response: bytes, metrics: MetricsSink = NO_METRICS) -> WorkItem | DeadLetter:
    """The WorkItem with raw_category, confidence and the two descriptions; or a dead letter
    at `classify`: the model's own error answer (ModelError), an answer that is not the
    contract's JSON (ModelAnswerError), or anything unforeseen (its exception type). One
    bad answer never fails the others of its batch."""
    return guarded(STAGE, metrics, _answer, item, response, metrics)


def classify_batch(
    batch: Sequence[WorkItem], client: ModelClient, metrics: MetricsSink = NO_METRICS
) -> list[WorkItem | DeadLetter]:
    """Step 1 for a batch in one `infer_batch` call; results in the order of `batch`."""
    return run_batch(STAGE, batch, classify_request, classify_answer, client, metrics)
