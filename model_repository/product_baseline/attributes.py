"""Step 2 of the CPU baseline: attribute values evidenced in the product's own text.

For each attribute in the request, the allowed values that the title, description, product
type, tags and variant options name; colour falls back to the image's subject colour.
Precision first: leaving an attribute out is better than a wrong value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from model_repository.contract import ModelAttribute, ModelRequest
from model_repository.product_baseline.image_features import summarise_image
from model_repository.product_baseline.text import tokens

__all__ = ["AttributeExtractor", "norm_tokens"]

# Words that say which gender/age a product is for, mapped to Shopify's value names.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "female": ("women", "woman", "womens", "ladies", "lady", "female", "girls", "her"),
    "male": ("men", "man", "mens", "gentlemen", "male", "boys", "him"),
    "unisex": ("unisex",),
    "kids": ("kids", "kid", "children", "child", "youth", "junior"),
    "adults": ("adult", "adults"),
    "baby": ("baby", "babies", "infant"),
    "gray": ("grey",),
    "multicolor": ("multicolour", "multi-colour", "multi-color", "multicoloured"),
}
_NEVER_EVIDENCE = {"other", "none", "yes", "no", "n/a"}
_CONTEXT_STOPWORDS = {"type", "features", "style", "kind", "of", "the", "and", "or", "&"}


def _stem(token: str) -> str:
    token = token.removesuffix("'s").removesuffix("’s")
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def norm_tokens(text: str) -> list[str]:
    return [_stem(t) for t in tokens(text)]


@dataclass(frozen=True, slots=True)
class _ValuePattern:
    value: str
    phrases: tuple[tuple[str, ...], ...]


class AttributeExtractor:
    """Finds attribute values in a product's text; value patterns are cached per attribute."""

    def __init__(self) -> None:
        self._patterns: dict[tuple[str, tuple[str, ...]], tuple[_ValuePattern, ...]] = {}

    def extract(self, request: ModelRequest, image: bytes | None) -> dict[str, list[str]]:
        """handle -> values found for the request's attributes (absent when none is found)."""
        p = request.product
        text = " \n ".join(
            [p.title, p.description, p.product_type, " , ".join(p.tags)]
            + [f"{name} {' , '.join(vals)}" for name, vals in p.variant_options.items()]
        )
        toks = norm_tokens(text)
        positions: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for n in (1, 2, 3, 4):
            for i in range(len(toks) - n + 1):
                positions[tuple(toks[i : i + n])].append(i)
        ambiguous = _ambiguous_values(request.attributes)
        found: dict[str, list[str]] = {}
        for attr in request.attributes:
            context = {_stem(t) for t in tokens(attr.name) if t not in _CONTEXT_STOPWORDS}
            hits = []
            for pattern in self._value_patterns(attr):
                for phrase in pattern.phrases:
                    starts = positions.get(phrase)
                    if not starts:
                        continue
                    if pattern.value.casefold() in ambiguous and not any(
                        toks[k] in context
                        for s in starts
                        for k in range(max(0, s - 3), min(len(toks), s + len(phrase) + 3))
                    ):
                        continue
                    hits.append(pattern.value)
                    break
            if not hits and attr.handle.endswith("color") and image is not None:
                subject = summarise_image(image).subject_colours
                allowed = {v.casefold(): v for v in attr.values}
                hits = [allowed[c.casefold()] for c in subject[:1] if c.casefold() in allowed]
            if hits:
                found[attr.handle] = hits[:5]
        return found

    def _value_patterns(self, attr: ModelAttribute) -> tuple[_ValuePattern, ...]:
        key = (attr.handle, attr.values)
        cached = self._patterns.get(key)
        if cached is None:
            patterns = []
            for value in attr.values:
                base = tuple(norm_tokens(value))
                if not base or value.casefold() in _NEVER_EVIDENCE:
                    continue
                phrases = {base}
                for syn in _SYNONYMS.get(value.casefold(), ()):
                    phrases.add(tuple(norm_tokens(syn)))
                patterns.append(_ValuePattern(value, tuple(phrases)))
            cached = self._patterns[key] = tuple(patterns)
        return cached


def _ambiguous_values(attributes: Sequence[ModelAttribute]) -> set[str]:
    """Value names offered by two or more of the request's attributes (e.g. "Black" for
    band-color and dial-color, "Long" for sleeve and pants length): such a value counts
    only with a word of its attribute's name nearby."""
    owners: dict[str, int] = defaultdict(int)
    for a in attributes:
        for v in {v.casefold() for v in a.values}:
            owners[v] += 1
    # Bare numbers ("50", "8") are sizes only next to the word size, never in "$50".
    return {v for v, n in owners.items() if n > 1 or v.replace(".", "").replace("/", "").isdigit()}
