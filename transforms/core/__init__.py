"""The product core: the per-product logic, from a raw event to a Prediction, without Beam.

Every entry point runs these functions and none re-implements a step (DESIGN.md): the Beam
DoFns (`transforms.decode`, `transforms.images.prepare`, `transforms.model.steps`,
`transforms.correction`, `transforms.encode`) wrap them with batching, the in-flight
window, tagged outputs and Beam metrics; a service or a training loop calls `ProductCore`
(or `predict_products`) directly. This package must not import apache_beam (a unit test
imports it with Beam blocked).

One module per stage, each a function WorkItem -> WorkItem | DeadLetter (decode and
images differ slightly, see their docs) that counts through a `MetricsSink` under the
pipeline's metric names and turns any unforeseen exception into a dead letter naming its
stage and exception type, as `guard_stage` does for a DoFn:

| module | stage (dead-letter stage) |
|---|---|
| `decode` | `decode`: raw bytes / str / dict -> WorkItem, a delete's ProductEvent, or a dead letter |
| `images` | `prepare_images`: fetch within budget, resize, JPEG; failed images are a dead letter beside the item |
| `classify` | `classify`: step 1 request and answer; `classify_batch` for one model call |
| `correct` | `correct_category`: the model's path -> a taxonomy category, or unresolved |
| `extract` | `extract`: step 2 request (the category's attributes) and answer; `extract_batch` |
| `validate` | `validate_attributes`: handles and values -> the taxonomy's, or dropped |
| `encode` | `encode`: WorkItem -> Prediction with its `prediction_id` |
| `model_calls` | what both model steps share: request building, one call, answers, whole-batch failures |
| `dead_letters`, `metrics` | DeadLetter values (`make_dead_letter`), the guard, counting |
| `product` | `ProductCore`, `predict_products`: the whole flow for a batch of events |
"""

from __future__ import annotations

from transforms.core.classify import classify_answer, classify_batch, classify_request, model_product
from transforms.core.correct import correct_category
from transforms.core.dead_letters import guarded, make_dead_letter, member_letters, unexpected_dead_letter
from transforms.core.decode import DecodeError, decode, decode_event
from transforms.core.encode import encode_prediction
from transforms.core.extract import extract_answer, extract_batch, extract_call, extract_request
from transforms.core.images import ImageError, prepare_images
from transforms.core.metrics import NO_METRICS, CountingMetrics, MetricsSink
from transforms.core.product import CoreConfig, CoreResult, ProductCore, RawEvent, predict_products
from transforms.core.validate import validate_attributes

__all__ = [
    "NO_METRICS",
    "CoreConfig",
    "CoreResult",
    "CountingMetrics",
    "DecodeError",
    "ImageError",
    "MetricsSink",
    "ProductCore",
    "RawEvent",
    "classify_answer",
    "classify_batch",
    "classify_request",
    "correct_category",
    "decode",
    "decode_event",
    "encode_prediction",
    "extract_answer",
    "extract_batch",
    "extract_call",
    "extract_request",
    "guarded",
    "make_dead_letter",
    "member_letters",
    "model_product",
    "predict_products",
    "prepare_images",
    "unexpected_dead_letter",
    "validate_attributes",
]
