"""The request/response contract that every model in `model_repository/` answers.

One contract for the CPU baseline and the GPU vision LLM, so a pipeline never knows which
model it talks to (DESIGN.md, "The model contract"):

- input  `REQUEST` (BYTES): JSON `ModelRequest`
- input  `IMAGE`   (BYTES, optional): one JPEG already resized by the pipeline
- output `RESPONSE` (BYTES): the model's JSON text. It may be malformed; the pipeline
  parses it leniently with `parse_classify_answer` / `parse_extract_answer`.

Model answers are untrusted input (DESIGN.md, "Untrusted input"). A language model
repeats whatever the merchant's text steered it to say, and a broken or hostile model
server can send anything at all, so the parse functions promise two things for ANY input,
`str` or `bytes`:

- they return a validated answer or raise `ModelAnswerError`, never anything else (no
  `RecursionError` from deep nesting, no `MemoryError`, no `OverflowError` from huge
  numbers), and they finish in time linear in the input's size;
- what they return is bounded and inert:

  ================================  =========================================================
  the whole answer                  at most `MAX_ANSWER_BYTES` (256 KiB) and `MAX_JSON_DEPTH`
                                    (32) levels of nesting, else `ModelAnswerError`
  `category`                        control characters removed, whitespace collapsed, at
                                    most `MAX_CATEGORY_CHARS` (1,000) characters
  `simplified_description`          markup removed (tags stripped, script/style content
                                    dropped, entities unescaped), control and bidi-override
                                    characters removed, whitespace collapsed, at most
                                    `MAX_SIMPLIFIED_DESCRIPTION_CHARS` (2,000) characters
  `image_description`               the same, at most `MAX_IMAGE_DESCRIPTION_CHARS` (1,000)
  `attributes`                      at most `MAX_ATTRIBUTES` (100) handles of
                                    `MAX_HANDLE_CHARS` (255) characters, each with at most
                                    `MAX_VALUES_PER_ATTRIBUTE` (50) values of
                                    `MAX_VALUE_CHARS` (255) characters, control characters
                                    removed
  ================================  =========================================================

  Over-long text is truncated on a character boundary (never inside a combining
  sequence) and surplus attributes or values are dropped: the answer stays usable and the
  taxonomy correction decides what it is worth. No returned string contains `<` followed
  by a letter, `/`, `!` or `?`, so none can open an HTML tag wherever it is shown.

Models must not know about Kafka or Beam; this module depends on pydantic and the
standard library only, because it is imported inside the Triton models too.
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
from collections.abc import Iterable
from enum import StrEnum
from html.parser import HTMLParser
from itertools import accumulate, islice
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "json_nesting_depth",
    "INPUT_REQUEST",
    "INPUT_IMAGE",
    "OUTPUT_RESPONSE",
    "MAX_ANSWER_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_CATEGORY_CHARS",
    "MAX_SIMPLIFIED_DESCRIPTION_CHARS",
    "MAX_IMAGE_DESCRIPTION_CHARS",
    "MAX_ATTRIBUTES",
    "MAX_HANDLE_CHARS",
    "MAX_VALUES_PER_ATTRIBUTE",
    "MAX_VALUE_CHARS",
    "MAX_CANDIDATES",
    "MAX_CATEGORY_DEPTH",
    "Task",
    "ModelProduct",
    "ModelCategory",
    "ModelAttribute",
    "ModelCandidate",
    "ModelRequest",
    "MarkupText",
    "defuse_markup",
    "clean_line",
    "clean_text",
    "AnswerCandidate",
    "ClassifyAnswer",
    "ExtractAnswer",
    "ModelAnswerError",
    "parse_classify_answer",
    "parse_extract_answer",
]

INPUT_REQUEST = "REQUEST"
INPUT_IMAGE = "IMAGE"
OUTPUT_RESPONSE = "RESPONSE"

# Limits on model answers. A real answer is a few hundred bytes and three levels deep;
# these leave a wide margin while keeping parsing time and prediction size bounded.
MAX_ANSWER_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
MAX_CATEGORY_CHARS = 1_000
MAX_SIMPLIFIED_DESCRIPTION_CHARS = 2_000
MAX_IMAGE_DESCRIPTION_CHARS = 1_000
MAX_ATTRIBUTES = 100
MAX_HANDLE_CHARS = 255
MAX_VALUES_PER_ATTRIBUTE = 50
MAX_VALUE_CHARS = 255
# Top-k candidate categories a request or an answer may carry (candidate mode, issue 12).
MAX_CANDIDATES = 50
# Deeper than any Shopify taxonomy path (2024-07: 7 levels); a larger depth is noise.
MAX_CATEGORY_DEPTH = 16


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


class ModelCandidate(BaseModel):
    """A taxonomy category the pipeline's retriever proposes for step 1, with its score."""

    model_config = ConfigDict(frozen=True)
    id: str
    full_name: str
    score: float = 0.0


class ModelRequest(BaseModel):
    model_config = ConfigDict(frozen=True)
    task: Task
    product: ModelProduct
    category: ModelCategory | None = None
    attributes: tuple[ModelAttribute, ...] = ()
    # Classify in candidate mode: the retriever's top-k, best first. A model that picks from
    # a list (an off-the-shelf VLM) chooses among them; others may ignore them. Empty means
    # "answer from the whole taxonomy", which is what every model did before candidates.
    candidates: tuple[ModelCandidate, ...] = Field(default=(), max_length=MAX_CANDIDATES)


# -- cleaning untrusted model text ---------------------------------------------------------

# C0 controls except \t \n (and \v \f \r, which are whitespace and collapse to a space or a
# line break below, so words on either side stay apart), DEL, C1 controls, the bidi
# embeddings/overrides/isolates that can make a string display as something else, and lone
# surrogates (JSON's "\ud800" decodes to one; it cannot be encoded as UTF-8 downstream).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]+")
# Whatever survives must not open a tag in a page that shows it unescaped. The whole run of
# `<` goes, so removing one cannot leave another in front of the letter.
_TAG_OPENER = re.compile(r"<++(?=[A-Za-z/!?])")
# html.parser (CPython 3.11 before 3.11.13) is quadratic on some malformed markup:
# unterminated comments, and a `<` with no `>` before the next `<`. Comments are removed
# here in linear time (possessive loop; an unterminated one runs to the end, as in HTML5),
# and a `<` that cannot close is escaped so the parser takes it as text.
_COMMENT = re.compile(r"<!--(?:[^-]++|-(?!->))*+(?:-->|\Z)")
_UNCLOSABLE_LT = re.compile(r"<(?![^<>]*+>)")
# `<![CDATA[…` and other marked sections are bogus comments in HTML5, ending at the first
# `>`; removed here because _markupbase raises AssertionError on keywords it does not know.
_MARKED_SECTION = re.compile(r"<!\[[^>]*+(?:>|\Z)")
# Only this many raw characters per output character are read: it bounds the parser's work
# whatever html.parser's complexity (at most 8,000 characters for a description), and text
# that needs more than three characters of markup or padding per character kept is not a
# description worth reading to the end.
_MARKUP_SCAN_FACTOR = 4
_MARKUP_PASSES = 3
_DROP_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "noscript", "template", "title"})
_BLOCK = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article"}
)
_EXTENDS = frozenset({"\u200c", "\u200d", "\ufe0e", "\ufe0f"})  # ZWNJ, ZWJ, variation selectors


class MarkupText(HTMLParser):
    """Text content of a markup fragment: script/style (and the like) dropped with their
    content, block tags as line breaks, and a note in `removed` of the dangerous things
    seen. One extractor for model answers (here) and merchant HTML (transforms.sanitise)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.removed: set[str] = set()
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self._skip_depth += 1
            self.removed.add(f"<{tag}>")
        if any(name.lower().startswith("on") for name, _ in attrs):
            self.removed.add("event-handler attributes")
        if any((value or "").strip().lower().startswith("javascript:") for _, value in attrs):
            self.removed.add("javascript: URLs")
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT and self._skip_depth:
            self._skip_depth -= 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def defuse_markup(text: str) -> str:
    """Markup made safe to feed to `html.parser` in linear time: comments and marked
    sections removed, a `<` that can never close escaped. Also used on merchant HTML
    (`transforms.sanitise`), which has the same parser and the same worst cases."""
    return _UNCLOSABLE_LT.sub("&lt;", _MARKED_SECTION.sub("", _COMMENT.sub("", text)))


def _strip_markup_once(text: str) -> str:
    text = defuse_markup(text)
    parser = MarkupText()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # noqa: BLE001 - any parser failure: fall back, never raise
        # Losing markup structure is acceptable, raising is not: the text unescaped, and the
        # caller's tag-opener removal makes whatever markup is left inert.
        return html.unescape(text)
    return "".join(parser.parts)


def _strip_markup(text: str) -> str:
    # Entities are unescaped by the parser, so `&lt;script&gt;` becomes markup only after a
    # pass; strip again while tags remain (bounded: each pass only ever shortens them).
    for _ in range(_MARKUP_PASSES):
        if "<" not in text and "&" not in text:
            break
        stripped = _strip_markup_once(text)
        if stripped == text:
            break
        text = stripped
        if not _TAG_OPENER.search(text):
            break
    return text


def _truncate(text: str, limit: int) -> str:
    """At most `limit` characters, never cutting a base character from its marks."""
    if len(text) <= limit:
        return text
    cut = limit
    # text[cut] is the first dropped character: if it extends the one before (a combining
    # mark, ZWJ, variation selector), drop that base too rather than show it half-formed.
    while cut > 0 and (text[cut] in _EXTENDS or text[cut - 1] == "\u200d" or unicodedata.category(text[cut])[0] == "M"):
        cut -= 1
    return text[:cut].rstrip()


def clean_line(text: str, limit: int) -> str:
    """One-line untrusted text (a category path, a handle, a value): no control characters,
    whitespace collapsed to single spaces, no tag openers, at most `limit` characters."""
    # Bound the work before anything else: no more than a few characters of input per
    # output character can matter once whitespace is collapsed.
    text = _CONTROL.sub("", text[: limit * _MARKUP_SCAN_FACTOR])
    text = _TAG_OPENER.sub("", " ".join(text.split()))
    return _truncate(text, limit)


def clean_text(text: str, limit: int) -> str:
    """Free text from a model (a description): markup removed, control and bidi characters
    removed, whitespace collapsed (line breaks kept, blank lines dropped), no tag openers,
    at most `limit` characters."""
    text = _CONTROL.sub("", text[: limit * _MARKUP_SCAN_FACTOR])
    # Again after markup: entities such as `&#x202e;` unescape to the characters removed above.
    text = _CONTROL.sub("", _strip_markup(text))
    lines = (" ".join(line.split()) for line in text.splitlines())
    text = _TAG_OPENER.sub("", "\n".join(line for line in lines if line))
    return _truncate(text, limit)


def _scalar_text(value: Any, field: str) -> str:
    """A JSON scalar as text: `null` is empty, numbers and booleans are written out, and
    an object or array is the wrong shape (ModelAnswerError, via pydantic)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise ValueError(f"{field} must be text, got {type(value).__name__}")


# -- answers -------------------------------------------------------------------------------

_UNTRUSTED = "Untrusted model output, cleaned by the contract: "


def _unit_interval(v: Any) -> float:
    """A model's number as a probability: clamped to [0, 1]; not a number (or NaN) reads as 0."""
    try:
        f = float(v)
    except OverflowError:  # an integer too big for a float: as confident as can be
        return 1.0 if v > 0 else 0.0
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(f) else min(1.0, max(0.0, f))


class AnswerCandidate(BaseModel):
    """One category the model considered: a raw path, not yet corrected, and its score."""

    model_config = ConfigDict(extra="ignore")
    category: str
    score: float = 0.0

    @field_validator("score", mode="before")
    @classmethod
    def _clamp(cls, v: Any) -> float:
        return _unit_interval(v)


class ClassifyAnswer(BaseModel):
    """What a model says in step 1. Unvalidated against the taxonomy: `category` is raw.

    Every field is untrusted model output; validators bound and clean it (module docstring).
    """

    model_config = ConfigDict(extra="ignore")
    category: str = Field(
        description=_UNTRUSTED + f"the category path as the model wrote it, not yet corrected against the taxonomy; "
        f"control characters removed, whitespace collapsed, at most {MAX_CATEGORY_CHARS} characters.",
    )
    confidence: float = Field(
        default=0.0, description=_UNTRUSTED + "clamped to [0, 1]; not a number (or NaN) reads as 0."
    )
    simplified_description: str = Field(
        default="",
        description=_UNTRUSTED
        + "plain text: markup stripped (script/style content dropped), entities unescaped, control "
        f"and bidi-override characters removed, whitespace collapsed, at most "
        f"{MAX_SIMPLIFIED_DESCRIPTION_CHARS} characters.",
    )
    image_description: str = Field(
        default="",
        description=_UNTRUSTED + "plain text, cleaned like simplified_description, at most "
        f"{MAX_IMAGE_DESCRIPTION_CHARS} characters.",
    )

    candidates: list[AnswerCandidate] = Field(
        default_factory=list,
        description=_UNTRUSTED + f"the categories the model also considered, best first, as raw paths with a score "
        f"in [0, 1]; at most {MAX_CANDIDATES}, each cleaned like `category`. Items of the wrong shape are dropped, "
        "not an error. Corrected against the taxonomy like the category; an unknown one is dropped.",
    )
    backed_off_from_depth: int | None = Field(
        default=None,
        description=_UNTRUSTED + "set when the model answered an ancestor of its best leaf because the leaf was not "
        f"probable enough: the depth (root = 1) of that leaf. Outside 1..{MAX_CATEGORY_DEPTH} reads as absent.",
    )

    @field_validator("candidates", mode="before")
    @classmethod
    def _candidates(cls, v: Any) -> list[dict[str, Any]]:
        if not isinstance(v, list):
            return []  # an optional extension: a wrong shape costs the candidates, not the answer
        out: list[dict[str, Any]] = []
        for item in islice(v, MAX_CANDIDATES):
            if isinstance(item, dict) and isinstance(item.get("category"), str):
                category = clean_line(item["category"], MAX_CATEGORY_CHARS)
                if category:
                    out.append({"category": category, "score": item.get("score", 0.0)})
        return out

    @field_validator("backed_off_from_depth", mode="before")
    @classmethod
    def _depth(cls, v: Any) -> int | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or isinstance(v, float) and not v.is_integer():
            return None
        depth = int(v)
        return depth if 1 <= depth <= MAX_CATEGORY_DEPTH else None

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, v: Any) -> Any:
        # A non-string category stays the wrong shape (pydantic rejects it): the step-1 answer
        # is useless without one, and saying so beats guessing.
        return clean_line(v, MAX_CATEGORY_CHARS) if isinstance(v, str) else v

    @field_validator("confidence", mode="before")
    @classmethod
    def _clamp(cls, v: Any) -> float:
        return _unit_interval(v)

    @field_validator("simplified_description", mode="before")
    @classmethod
    def _simplified(cls, v: Any) -> str:
        return clean_text(_scalar_text(v, "simplified_description"), MAX_SIMPLIFIED_DESCRIPTION_CHARS)

    @field_validator("image_description", mode="before")
    @classmethod
    def _image(cls, v: Any) -> str:
        return clean_text(_scalar_text(v, "image_description"), MAX_IMAGE_DESCRIPTION_CHARS)


def _values(val: Any) -> list[str]:
    """Up to MAX_VALUES_PER_ATTRIBUTE cleaned, non-empty values of one attribute."""
    items: Iterable[Any] = val if isinstance(val, list) else [val]
    out: list[str] = []
    for x in items:
        if len(out) >= MAX_VALUES_PER_ATTRIBUTE:
            break
        if x is None or isinstance(x, dict | list):
            continue  # not a value; an LLM's nested structure is noise here, not an error
        text = clean_line(x if isinstance(x, str) else str(x), MAX_VALUE_CHARS)
        if text:
            out.append(text)
    return out


class ExtractAnswer(BaseModel):
    """What a model says in step 2: attribute handle -> values, both untrusted raw text."""

    model_config = ConfigDict(extra="ignore")
    attributes: dict[str, list[str]] = Field(
        default_factory=dict,
        description=_UNTRUSTED + f"handle -> values, not yet validated against the category; at most {MAX_ATTRIBUTES} "
        f"handles, {MAX_VALUES_PER_ATTRIBUTE} values each, {MAX_VALUE_CHARS} characters a value, "
        "control characters removed. Surplus items are dropped, not an error.",
    )

    @field_validator("attributes", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        # LLMs answer {"color": "Red"} as often as {"color": ["Red"]}.
        if not isinstance(v, dict):
            return v  # the wrong shape: pydantic says so
        out: dict[str, list[str]] = {}
        # islice first: a 10k-handle answer costs no more than a 100-handle one.
        for k, val in islice(v.items(), MAX_ATTRIBUTES):
            handle = clean_line(str(k), MAX_HANDLE_CHARS)
            values = _values(val)
            if handle and values:
                out.setdefault(handle, values)  # two keys cleaned alike: the first wins
        return out


class ModelAnswerError(ValueError):
    """The model's text is not a usable answer (not JSON, too big or deep, the wrong shape)."""


# -- lenient JSON ----------------------------------------------------------------------------

# Possessive quantifiers (`*+`, `++`) cannot backtrack, so these stay linear on any input.
_TRAILING_COMMA = re.compile(r",\s*+([}\]])")
# A JSON string literal; an unterminated one runs to the end, as json.loads would read it.
_STRING_LITERAL = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_BRACKET_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_nesting_depth(text: str) -> int:
    """How deep json.loads would have to recurse: linear time, no recursion. Brackets
    inside string literals do not count; invalid JSON gets some number (the parser refuses
    it afterwards). The one depth check for model answers and merchant events
    (`transforms.core.decode`)."""
    brackets = _NOT_BRACKET.sub("", _STRING_LITERAL.sub("", text))
    # Running sum of +1/-1 done by C iterators; unbalanced closers only lower the count,
    # which json.loads rejects anyway.
    return max(accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0)


def _fenced(text: str) -> str | None:
    """The body of the first ``` fence (an optional `json` tag dropped), by str.find: the
    regex `(.*?)` form rescans to the end from every unclosed fence (quadratic)."""
    start = text.find("```")
    if start < 0:
        return None
    end = text.find("```", start + 3)
    if end < 0:
        return None
    body = text[start + 3 : end]
    return body.removeprefix("json").strip()


def _as_text(answer: Any) -> str:
    if isinstance(answer, bytes | bytearray | memoryview):
        raw = bytes(answer)
        if len(raw) > MAX_ANSWER_BYTES:
            raise ModelAnswerError(f"model answer is {len(raw)} bytes, over the {MAX_ANSWER_BYTES}-byte limit")
        return raw.decode("utf-8", errors="replace")
    if isinstance(answer, str):
        # Characters first (cheap), then the UTF-8 size of what is left.
        size = len(answer) if len(answer) > MAX_ANSWER_BYTES else len(answer.encode("utf-8", "surrogatepass"))
        if size > MAX_ANSWER_BYTES:
            raise ModelAnswerError(f"model answer is at least {size} bytes, over the {MAX_ANSWER_BYTES}-byte limit")
        return answer
    raise ModelAnswerError(f"model answer must be text or bytes, got {type(answer).__name__}")


def _lenient_json(answer: str | bytes) -> dict[str, Any]:
    """Parse a model's JSON the way LLM output needs: code fences, prose around the
    object, trailing commas. Anything beyond that, or over the size and depth limits, is a
    ModelAnswerError."""
    text = _as_text(answer)
    candidates = [text.strip()]
    fenced = _fenced(text)
    if fenced is not None:
        candidates.append(fenced)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    too_deep = 0
    for c in candidates:
        # Checked per candidate: each starts where json.loads starts, so both read the same
        # string boundaries (prose around the object could have stray quotes).
        # Fewer brackets than the limit cannot nest too deep: the usual case, for free.
        depth = 0 if c.count("[") + c.count("{") <= MAX_JSON_DEPTH else json_nesting_depth(c)
        if depth > MAX_JSON_DEPTH:
            too_deep = max(too_deep, depth)
            continue
        for attempt in (c, _TRAILING_COMMA.sub(r"\1", c)):
            try:
                value = json.loads(attempt)
            except (ValueError, RecursionError, MemoryError):
                # ValueError covers JSONDecodeError and integers over Python's digit limit;
                # the others are backstops should the depth check ever undercount.
                continue
            if isinstance(value, dict):
                return value
    if too_deep:
        raise ModelAnswerError(f"model answer is nested {too_deep} levels deep, over the limit of {MAX_JSON_DEPTH}")
    snippet = text[:120].replace("\n", " ")
    raise ModelAnswerError(f"model answer is not a JSON object: {snippet!r}")


def _parse(model: type[BaseModel], step: str, answer: str | bytes) -> Any:
    try:
        return model.model_validate(_lenient_json(answer))
    except ModelAnswerError:
        raise
    except ValidationError as exc:
        # No input in the message: the offending value can be 256 KB of anything.
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        msg = errors[0]["msg"] if errors else "invalid"
        raise ModelAnswerError(f"{step} answer has the wrong shape: {msg}") from exc
    except Exception as exc:
        # RecursionError, MemoryError or a bug in a validator: the job must see a dead letter
        # for this product, not fail.
        raise ModelAnswerError(f"{step} answer could not be read: {type(exc).__name__}") from exc


def parse_classify_answer(text: str | bytes) -> ClassifyAnswer:
    """A step-1 answer, cleaned and bounded; ModelAnswerError for anything else."""
    answer: ClassifyAnswer = _parse(ClassifyAnswer, "classify", text)
    return answer


def parse_extract_answer(text: str | bytes) -> ExtractAnswer:
    """A step-2 answer, cleaned and bounded; ModelAnswerError for anything else."""
    answer: ExtractAnswer = _parse(ExtractAnswer, "extract", text)
    return answer
