"""Text helpers for the baseline: the simplified description and value evidence."""

from __future__ import annotations

import re

__all__ = [
    "simplify_description",
    "tokens",
]

# Sentences about logistics and policy, not about the product. A merchant description is
# often half boilerplate; a simplified description should keep only the product.
_BOILERPLATE = re.compile(
    r"\b(free shipping|shipping|ships (in|within)|delivery|dispatch|returns?\b|refund|exchange"
    r"|warranty|guarantee|customer service|contact us|privacy|terms|policy|checkout|"
    r"order (now|today)|in stock|out of stock|sale ends|discount code|coupon|subscribe|newsletter"
    r"|follow us|care instructions?|machine wash|hand wash|tumble dry|dry clean|do not bleach)\b",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+|\s*•\s*")
_WORD = re.compile(r"[\w'/+.-]+", re.UNICODE)


def simplify_description(text: str, max_chars: int = 400) -> str:
    """Product sentences only, de-duplicated, at most `max_chars` cut at a sentence end."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE_SPLIT.split(text):
        sentence = " ".join(sentence.split()).strip(" -*")
        key = sentence.casefold()
        if len(sentence) < 3 or key in seen or _BOILERPLATE.search(sentence):
            continue
        seen.add(key)
        if kept and sum(len(s) + 1 for s in kept) + len(sentence) > max_chars:
            break
        kept.append(sentence if sentence[-1] in ".!?" else sentence + ".")
    return " ".join(kept)[: max_chars + 1].strip()


def tokens(text: str) -> list[str]:
    return [t.strip(".'").casefold() for t in _WORD.findall(text) if t.strip(".'")]
