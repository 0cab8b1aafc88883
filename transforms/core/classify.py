"""Step 1, classify, Beam-free: the request for a product and the handling of its answer.

The answer names a category path in the model's words (`raw_category`); whether the
taxonomy has it is the next stage's question (`transforms.core.correct`).

Candidate mode (`PredictConfig.classify_candidates` K > 0): before the call, a retriever
(the CPU baseline's category index, `CandidateRetriever`) proposes each product's top-K
categories, once for the whole batch (one embedding pass), and the request carries them
(`ModelRequest.candidates`), so an off-the-shelf VLM that never learnt the taxonomy picks
one instead of inventing a path. The answer names the chosen path; one that refers to a
candidate by its number in the prompt's list is read as that candidate's path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from model_repository.contract import (
    ModelAnswerError,
    ModelCandidate,
    ModelProduct,
    ModelRequest,
    Task,
    parse_classify_answer,
)
from transforms.core.dead_letters import guarded, new_dead_letter
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.core.model_calls import ModelCall, model_error, run_batch
from transforms.model.client import ModelClient
from transforms.records import DeadLetter, WorkItem

__all__ = [
    "STAGE",
    "CandidateRetriever",
    "candidate_paths",
    "classify_answer",
    "classify_batch",
    "classify_request",
    "model_product",
    "retrieve_candidates",
]

STAGE = "classify"

# "3", "3.", "(3)", "#3", "3. Apparel > ...": an answer that names a candidate by its number
# in the prompt's list (an off-the-shelf model does that now and then, despite the prompt).
_NUMBERED = re.compile(r"[#(\[]?\s*(\d{1,3})\s*[.):\]]?(?:\s+(.*))?", re.S)


class CandidateRetriever(Protocol):
    """Proposes categories for step 1 in candidate mode: the top-k per product, best first
    (`model_repository.product_baseline.engine.BaselineModel.candidates` is one)."""

    def candidates(self, products: Sequence[ModelProduct], k: int) -> list[list[ModelCandidate]]: ...


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
    """The (REQUEST, IMAGE) the model contract takes for step 1, with the item's retrieved
    candidates (none unless candidate mode is on)."""
    candidates = tuple(
        ModelCandidate(id=i, full_name=name, score=score) for i, name, score in item.retrieved_candidates
    )
    request = ModelRequest(task=Task.CLASSIFY, product=model_product(item), candidates=candidates)
    return request.model_dump_json().encode(), item.image


def retrieve_candidates(
    batch: Sequence[WorkItem], retriever: CandidateRetriever, k: int, metrics: MetricsSink = NO_METRICS
) -> list[WorkItem | DeadLetter]:
    """Each item with its top-k in `retrieved_candidates`, in the order of `batch`, from one
    retriever call for the batch (the embedding model runs once over all its products, not
    once per product). An item that already carries candidates keeps them. A failed call
    makes every item it was for a dead letter at `classify`: without candidates a
    candidate-mode model cannot answer. Counts `model/classify_retrieval_ms` and
    `model/classify_candidates` (per item)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    results: list[WorkItem | DeadLetter] = list(batch)
    todo = [i for i, item in enumerate(batch) if not item.retrieved_candidates]
    if todo:
        start = time.perf_counter()
        try:
            found = retriever.candidates([model_product(batch[i]) for i in todo], k)
            if len(found) != len(todo):
                raise RuntimeError(f"the retriever answered {len(found)} lists for {len(todo)} products")
        except Exception as exc:  # noqa: BLE001 - every item of the batch is accounted for
            for i in todo:
                message = f"candidate retrieval failed: {exc}"
                results[i] = new_dead_letter(STAGE, type(exc).__name__, message, batch[i], metrics)
            return results
        metrics.update("model", f"{STAGE}_retrieval_ms", int((time.perf_counter() - start) * 1000))
        for i, candidates in zip(todo, found):
            results[i] = replace(
                batch[i], retrieved_candidates=tuple((c.id, c.full_name, float(c.score)) for c in candidates[:k])
            )
    for result in results:
        if isinstance(result, WorkItem):
            metrics.update("model", f"{STAGE}_candidates", len(result.retrieved_candidates))
    return results


def candidate_paths(item: WorkItem) -> list[str]:
    """The candidate paths as the prompt numbers them (1 = first): in order, each once
    (product_vlm's prompts.candidate_block lists a repeated path once)."""
    return list(dict.fromkeys(name for _, name, _ in item.retrieved_candidates if name))


def _chosen_path(item: WorkItem, category: str) -> str:
    """The answer's category; when the request carried candidates and the answer names one
    by its number ("3", "3. Apparel > ..."), that candidate's path. A path that merely
    starts with digits ("3D Printers") is left alone: the number must stand apart."""
    if not item.retrieved_candidates:
        return category
    match = _NUMBERED.fullmatch(category.strip())
    if match is None:
        return category
    number, rest = int(match.group(1)), (match.group(2) or "").strip()
    paths = candidate_paths(item)
    if rest:
        return rest  # the path copied with its number in front
    return paths[number - 1] if 1 <= number <= len(paths) else category


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
        raw_category=_chosen_path(item, answer.category),
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
    batch: Sequence[WorkItem],
    client: ModelClient,
    metrics: MetricsSink = NO_METRICS,
    *,
    retriever: CandidateRetriever | None = None,
    candidates: int = 0,
) -> list[WorkItem | DeadLetter]:
    """Step 1 for a batch in one `infer_batch` call; results in the order of `batch`. With
    `candidates` K > 0 and a retriever, each request carries the product's top-K categories
    (one retriever call for the batch first)."""
    if candidates <= 0 or retriever is None:
        return run_batch(STAGE, batch, classify_request, classify_answer, client, metrics)
    results = retrieve_candidates(batch, retriever, candidates, metrics)
    positions = [i for i, r in enumerate(results) if isinstance(r, WorkItem)]
    items: list[WorkItem] = [results[i] for i in positions]  # type: ignore[misc]
    for i, answered in zip(positions, run_batch(STAGE, items, classify_request, classify_answer, client, metrics)):
        results[i] = answered
    return results
