"""Render the contract's requests into the prompts the fine-tuned vision LLM was trained on.

A prompt is part of a model version (DESIGN.md, "The model contract"), so the prompt set
lives in the model's version directory, `product_vlm/1/prompts/`:

- `manifest.json`: the `model_version` and `taxonomy_version` the prompts (and the
  fine-tune that learnt them) belong to, the `classify_mode` and the rendering limits
  (both below). `1/model.py` refuses to load when config.pbtxt's parameters disagree with it.
- `classify.txt` (or `classify_candidates.txt`, by mode), `extract.txt`: `string.Template`
  texts (`${name}` placeholders, `$$` for a literal dollar) holding the whole prompt in
  Qwen2.5-VL's chat format, because vLLM's Triton backend passes `text_input` to the
  engine as a raw prompt: no chat template is applied on the server side.

What the templates get:

- `${image}`: `<|vision_start|><|image_pad|><|vision_end|>` when the request has an
  image, else nothing. vLLM's Qwen2.5-VL processor expands the single `<|image_pad|>` into
  the image's patch tokens (256 for the pipeline's 448x448 JPEGs).
- `${product}`: title, product type, vendor, tags, variant options and description, one
  field a line, empty fields left out, whitespace collapsed, long fields cut (limits).
- classify in candidate mode only: `${candidates}`, the request's candidate paths as a
  numbered list (`1. Apparel & Accessories > Clothing > Dresses`), best first.
- extract only: `${category}` (the full path) and `${attributes}`, one line per attribute:
  `- handle (Name): ["Value", ...]`, values as a JSON array so commas inside value names
  stay unambiguous.

Bounds, from the manifest (they are part of what the model was trained on):

- `max_values_per_attribute` (50): a longer value list is cut to that many, the values
  the product text mentions first, then the rest in taxonomy order, shown in taxonomy
  order, and the line says `(+N more not listed)`. The pipeline still corrects answers
  against the full list (exact, then fuzzy), so a value outside the prompt is not lost.
  In the 2024-07 taxonomy 4 of 86 attributes are longer than 50 (shoe-size 128,
  material 82, activity 65, jewelry-material 61). Shortened lines go after the complete
  ones, so products of one category share the longest possible prompt prefix (vLLM's
  prefix cache) even though their shortened lists differ.
- `max_description_chars`, `max_title_chars`, `max_tags`, `max_option_values`: bound the
  product part; the description is cut at a word boundary with an ellipsis.

Classify modes (`classify_mode` in the manifest and in config.pbtxt's parameters):

- `fine_tuned` (the default): the model was fine-tuned on the taxonomy and writes the
  category path itself; `classify.txt` carries no taxonomy, and request candidates, if
  any, are ignored.
- `candidates`: an off-the-shelf VLM that never saw the taxonomy picks one of the
  retriever's top-k paths that the pipeline puts into the request
  (`ModelRequest.candidates`, `--classify-candidates K`); `classify_candidates.txt` lists
  them and asks for the chosen path, copied verbatim, as the answer's `category`. A
  classify request without candidates cannot be rendered: that request gets an error.

Merchant text is untrusted: chat-control markers such as `<|im_end|>` are removed from
it, so a product cannot close the user turn and write its own instructions.

Pure Python on top of `model_repository.contract`, so it is unit-tested without Triton.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from hashlib import sha256
from pathlib import Path
from typing import Any

from model_repository.contract import ModelAttribute, ModelCandidate, ModelProduct, ModelRequest, Task

__all__ = [
    "IMAGE_PLACEHOLDER",
    "DEFAULT_PROMPTS_DIR",
    "MANIFEST",
    "PLACEHOLDERS",
    "CANDIDATE_PLACEHOLDERS",
    "ClassifyMode",
    "candidate_block",
    "check_classify_mode",
    "PromptLimits",
    "PromptSet",
    "clean",
    "product_block",
    "attribute_block",
    "select_values",
    "ENGINE_INPUTS",
    "ENGINE_OUTPUT",
    "fixed_answer",
    "sampling_parameters",
]

# Qwen2.5-VL's image placeholder: one image, expanded to its patch tokens by vLLM.
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent / "1" / "prompts"
MANIFEST = "manifest.json"

# Placeholders each task's template must use: exactly these, so a template that forgets
# the attributes (or invents a field the renderer does not fill) fails the load.
PLACEHOLDERS: Mapping[Task, frozenset[str]] = {
    Task.CLASSIFY: frozenset({"image", "product"}),
    Task.EXTRACT: frozenset({"image", "product", "category", "attributes"}),
}


class ClassifyMode(StrEnum):
    """How a model version classifies: part of its prompt set and of its config."""

    FINE_TUNED = "fine_tuned"  # names the path itself (it was trained on the taxonomy)
    CANDIDATES = "candidates"  # picks one of the request's candidate paths (off the shelf)


# The classify template of candidate mode, and its placeholders.
CANDIDATES_TEMPLATE = "classify_candidates.txt"
CANDIDATE_PLACEHOLDERS = frozenset({"image", "product", "candidates"})

# The chat frame the fine-tune saw: a system turn, a user turn holding the image, and the
# open assistant turn the model completes.
_PROMPT_START = "<|im_start|>system\n"
_USER_TURN = "<|im_start|>user\n"
_PROMPT_END = "<|im_start|>assistant\n"

# `<|im_end|>`, `<|vision_start|>`, `<|endoftext|>`, ...: removed from merchant text.
_CONTROL_MARKER = re.compile(r"<\|[^<>|\s]{1,40}\|>")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class PromptLimits:
    max_values_per_attribute: int = 50
    max_description_chars: int = 2000
    max_title_chars: int = 300
    max_tags: int = 30
    max_option_values: int = 30

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"prompt limit {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class PromptSet:
    """One version's prompts: templates, limits, and the versions they belong to."""

    directory: Path
    model_version: str
    taxonomy_version: str
    limits: PromptLimits
    templates: Mapping[Task, string.Template] = field(repr=False)
    fingerprint: str  # sha256 over manifest and templates: logged at load, names the prompt set
    classify_mode: ClassifyMode = ClassifyMode.FINE_TUNED

    @classmethod
    def load(cls, directory: str | Path = DEFAULT_PROMPTS_DIR) -> PromptSet:
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        try:
            manifest_bytes = manifest_path.read_bytes()
            manifest = json.loads(manifest_bytes)
        except FileNotFoundError as exc:
            raise ValueError(f"{manifest_path} is missing: a prompt set needs its manifest (see prompts.py)") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest_path} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise ValueError(f"{manifest_path} must hold a JSON object")
        versions = {}
        for key in ("model_version", "taxonomy_version"):
            value = manifest.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{manifest_path}: {key!r} must be a non-empty string")
            versions[key] = value.strip()
        raw_limits = manifest.get("limits", {})
        if not isinstance(raw_limits, dict):
            raise ValueError(f"{manifest_path}: 'limits' must be an object")
        unknown = set(raw_limits) - set(PromptLimits.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"{manifest_path}: unknown limits {sorted(unknown)}; known: {sorted(PromptLimits.__dataclass_fields__)}"
            )
        limits = PromptLimits(**raw_limits)
        # Absent means fine_tuned: every prompt set before candidate mode was one.
        raw_mode = manifest.get("classify_mode", ClassifyMode.FINE_TUNED.value)
        try:
            mode = ClassifyMode(raw_mode)
        except ValueError:
            raise ValueError(
                f"{manifest_path}: 'classify_mode' must be one of {[m.value for m in ClassifyMode]}, got {raw_mode!r}"
            ) from None

        digest = sha256(manifest_bytes)
        templates: dict[Task, string.Template] = {}
        for task, required in PLACEHOLDERS.items():
            path = directory / f"{task.value}.txt"
            if task is Task.CLASSIFY and mode is ClassifyMode.CANDIDATES:
                path, required = directory / CANDIDATES_TEMPLATE, CANDIDATE_PLACEHOLDERS
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError as exc:
                raise ValueError(f"{path} is missing: every task needs its template (mode {mode.value})") from exc
            digest.update(task.value.encode() + b"\0" + text.encode("utf-8"))
            templates[task] = _check_template(path, text, required)
        return cls(
            directory=directory,
            model_version=versions["model_version"],
            taxonomy_version=versions["taxonomy_version"],
            limits=limits,
            templates=templates,
            fingerprint=digest.hexdigest()[:16],
            classify_mode=mode,
        )

    @property
    def parameters(self) -> dict[str, str]:
        """What config.pbtxt's parameters must say for this prompt set."""
        return {
            "model_version": self.model_version,
            "taxonomy_version": self.taxonomy_version,
            "classify_mode": self.classify_mode.value,
        }

    def render(self, request: ModelRequest, has_image: bool) -> str:
        """The raw prompt for vLLM. ValueError when the request cannot be rendered."""
        product = product_block(request.product, self.limits)
        fields = {"image": IMAGE_PLACEHOLDER if has_image else "", "product": product}
        if request.task is Task.CLASSIFY and self.classify_mode is ClassifyMode.CANDIDATES:
            if not request.candidates:
                raise ValueError(
                    "this model classifies in candidate mode and the request has no candidates: run the pipeline "
                    "with --classify-candidates K (K > 0) so that the retriever's top-k go into the request"
                )
            fields["candidates"] = candidate_block(request.candidates)
        if request.task is Task.EXTRACT:
            if request.category is None:
                raise ValueError("an extract request needs its category")
            if not request.attributes:
                raise ValueError("an extract request needs the category's attributes")
            fields["category"] = clean(request.category.full_name)
            fields["attributes"] = attribute_block(
                request.attributes, product.casefold(), self.limits.max_values_per_attribute
            )
        return self.templates[request.task].substitute(fields)


def _check_template(path: Path, text: str, required: frozenset[str]) -> string.Template:
    template = string.Template(text)
    if not template.is_valid():
        raise ValueError(f"{path}: invalid placeholder syntax (use ${{name}}, and $$ for a literal $)")
    found = set(template.get_identifiers())
    if found != required:
        raise ValueError(f"{path}: placeholders {sorted(found)} but the renderer fills exactly {sorted(required)}")
    if not text.startswith(_PROMPT_START) or not text.endswith(_PROMPT_END):
        raise ValueError(
            f"{path}: a template is the whole Qwen chat prompt: it must start with {_PROMPT_START!r} "
            f"and end with the open assistant turn {_PROMPT_END!r} (mind the final newline)"
        )
    user = text.find(_USER_TURN)
    if user < 0 or text.find("${image}") < user:
        raise ValueError(f"{path}: ${{image}} must be inside the user turn ({_USER_TURN!r})")
    return template


# -- the blocks ------------------------------------------------------------------------


def clean(text: str, max_chars: int | None = None) -> str:
    """One line of merchant text: control markers removed, whitespace collapsed, cut at a
    word boundary when longer than max_chars."""
    text = _WHITESPACE.sub(" ", _CONTROL_MARKER.sub("", text)).strip()
    if max_chars is not None and len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        if space > max_chars // 2:
            cut = cut[:space]
        text = cut.rstrip(" ,;:.-") + " …"
    return text


def product_block(product: ModelProduct, limits: PromptLimits) -> str:
    lines = [f"Title: {clean(product.title, limits.max_title_chars)}"]
    for label, value in (("Product type", product.product_type), ("Vendor", product.vendor)):
        value = clean(value, limits.max_title_chars)
        if value:
            lines.append(f"{label}: {value}")
    tags = [t for t in (clean(t, 100) for t in product.tags) if t][: limits.max_tags]
    if tags:
        lines.append("Tags: " + ", ".join(tags))
    options = []
    for name, values in product.variant_options.items():
        vals = [v for v in (clean(v, 100) for v in values) if v][: limits.max_option_values]
        name = clean(name, 100)
        if name and vals:
            options.append(f"- {name}: {', '.join(vals)}")
    if options:
        lines.append("Variant options:")
        lines.extend(options)
    description = clean(product.description, limits.max_description_chars)
    if description:
        lines.append(f"Description: {description}")
    return "\n".join(lines)


def candidate_block(candidates: Sequence[ModelCandidate]) -> str:
    """The candidate paths as a numbered list, in the request's order (best first). Scores
    stay out: they are the retriever's, and a model would read them as a verdict. A path
    listed twice is listed once, so the numbers the model sees are all different choices."""
    lines: list[str] = []
    seen: set[str] = set()
    for candidate in candidates:
        path = clean(candidate.full_name)
        if path and path not in seen:
            seen.add(path)
            lines.append(f"{len(lines) + 1}. {path}")
    if not lines:
        raise ValueError("the request's candidates have no category paths")
    return "\n".join(lines)


def attribute_block(attributes: Sequence[ModelAttribute], product_text: str, max_values: int) -> str:
    complete: list[str] = []
    shortened: list[str] = []
    for attr in attributes:
        values, omitted = select_values(attr.values, max_values, product_text)
        line = f"- {clean(attr.handle)} ({clean(attr.name)}): {json.dumps(values, ensure_ascii=False)}"
        if omitted:
            shortened.append(f"{line} (+{omitted} more not listed)")
        else:
            complete.append(line)
    return "\n".join(complete + shortened)


def select_values(values: Sequence[str], cap: int, product_text: str) -> tuple[list[str], int]:
    """At most `cap` of `values`, in their order: those mentioned in `product_text`
    (casefolded) first, then the others; and how many were left out."""
    values = [clean(v) for v in values]
    if len(values) <= cap:
        return values, 0
    mentioned = [i for i, v in enumerate(values) if v and _mentions(product_text, v.casefold())]
    chosen = set(mentioned[:cap])
    for i in range(len(values)):
        if len(chosen) >= cap:
            break
        chosen.add(i)
    return [values[i] for i in sorted(chosen)], len(values) - len(chosen)


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


# -- the engine request ----------------------------------------------------------------

# The vLLM backend's tensors that product_vlm sends and reads (triton-inference-server/
# vllm_backend, src/utils/request.py), with their config data types; vlm_engine's
# config.pbtxt declares the same (checked by tests/unit/test_product_vlm.py).
ENGINE_INPUTS: Mapping[str, str] = {
    "text_input": "TYPE_STRING",  # the raw prompt: the backend applies no chat template
    "image": "TYPE_STRING",  # base64 of the image file; the backend decodes it with PIL
    "stream": "TYPE_BOOL",
    "sampling_parameters": "TYPE_STRING",  # JSON of vLLM SamplingParams fields
    "exclude_input_in_output": "TYPE_BOOL",
}
ENGINE_OUTPUT = "text_output"


def check_classify_mode(config: Mapping[str, str], prompt_set: PromptSet, where: str) -> None:
    """Fail the load when config.pbtxt's `classify_mode` is not the prompt set's. An absent
    parameter reads as fine_tuned, as an absent manifest field does: a config written before
    candidate mode still loads with its prompt set, and either file alone switching to
    candidates is refused."""
    configured = config.get("classify_mode", "").strip() or ClassifyMode.FINE_TUNED.value
    if configured != prompt_set.classify_mode.value:
        raise ValueError(
            f"{where}: model config and the prompt set ({prompt_set.directory / MANIFEST}) disagree: classify_mode: "
            f"the model config says {configured!r}, the prompt set says {prompt_set.classify_mode.value!r}. "
            "The mode belongs to the weights (fine-tuned on the taxonomy, or off the shelf picking from candidates): "
            "set both, with the model_version, for the weights that are served."
        )


def fixed_answer(request: ModelRequest) -> bytes | None:
    """The answer when the model has nothing to decide: an extract request whose category
    has no attributes (the pipeline skips those, but the contract allows them). None when
    the engine must answer."""
    if request.task is Task.EXTRACT and request.category is not None and not request.attributes:
        return b'{"attributes": {}}'
    return None


def sampling_parameters(max_tokens: int) -> dict[str, Any]:
    """vLLM sampling for one answer: greedy (a replay of the same product gets the same
    prediction, matching its idempotent prediction_id) and bounded in length. Constrained
    decoding stays off (DESIGN.md: the case study found it hurt quality)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    return {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens}
