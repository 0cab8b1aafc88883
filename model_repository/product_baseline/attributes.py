"""Step 2 of the CPU baseline: attribute values evidenced in the product's own text.

For each attribute in the request, the allowed values that the title, description, product
type, tags and variant options state, in English or in one of the taxonomy's languages
(`lexicon/values.json` maps colours, materials, gender/age, patterns, sports and a few
garment features to the English value names); colour falls back to the image's subject colour.

Precision first: leaving an attribute out is better than a wrong value. So a value word counts
only where it plausibly states the value: not inside a longer value ("navy blue" is Navy, not
Blue), not in a fixed phrase ("Black Friday"), not after a negation ("no polyester"), and a word
that is vague on its own ("Short", "Round", a bare number, a value two attributes share) only
next to a word that names its attribute ("short sleeves", "size 42", "Talla: M").
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from model_repository.contract import ModelAttribute, ModelRequest
from model_repository.product_baseline.image_features import summarise_image
from model_repository.product_baseline.text import tokens

__all__ = ["AttributeExtractor", "english_value_words", "norm_tokens", "word_tokens"]

LEXICON_FILE = Path(__file__).parent / "lexicon" / "values.json"

_NEVER_EVIDENCE = {"other", "none", "yes", "no", "n/a"}
_CONTEXT_STOPWORDS = {"type", "features", "feature", "style", "kind", "of", "the", "and", "or", "&"}
# Value names that are ordinary words on their own ("Short", "Round", "Clear", "Solid"): they
# state the value only with a word of the attribute's name nearby ("short sleeves").
_VAGUE_VALUES = frozenset(
    "short long medium mid high low round square wide narrow regular standard classic full half cap split wrap "
    "mock boat open closed slim straight natural basic plain light heavy small large big mini clear "
    "universal organic text art random scale scroll coral diamond brick logo texture animal characters christmas "
    "crew turtle cowl illusion fret diagonal collage birds hearts stars leaves rainbow other all ages".split()
)
# Last words that add nothing a merchant writes: "Breathable design" is stated by "breathable".
_GENERIC_HEADS = frozenset({"design", "properties", "property", "technology", "construction"})
# Window (tokens either side) in which an attribute word makes a vague value count.
_CONTEXT_WINDOW = 3
# Size systems written next to a number ("EU 42", "9 M US").
_SIZE_SYSTEMS = frozenset({"eu", "us", "uk", "int", "intl"})
_SIZE_WIDTHS = frozenset({"m", "w", "n", "d", "b", "ee", "xw"})
_MAX_VALUES = 5
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# Words: a number with its decimal or fraction ("10.5", "3/4") or a run of letters/digits
# ("2xl", "t", "shirt"); hyphens and slashes split ("S/M" -> s, m; "V-neck" -> v, neck).
_TOKEN = re.compile(r"\d+(?:[./]\d+)+|[^\W_]+")
_NUMBER = re.compile(r"\d+(?:[./]\d+)?")
_POSSESSIVE = re.compile(r"['’]s\b")
_PAREN = re.compile(r"\s*\(([^)]*)\)\s*")
_LETTER_SIZE = re.compile(r"^(?:[2-6]?x{0,3}[sl]|m|x{1,6}[sl]|[2-6]xl|[2-6]xs)$")
_CJK_ORDER = 10**9  # CJK spans count characters: order them after token spans
_FIELD_BREAK = "\x00"  # a token no phrase contains: phrases never run across fields


def _stem(token: str) -> str:
    """A light English stem, the same on both sides ("wicks"/"wicking" -> "wick"); numbers
    and short words are kept as they are."""
    if len(token) <= 3 or any(c.isdigit() for c in token):
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith("ing") and len(token) > 5:
        return token[:-3]
    if token.endswith("ed") and len(token) > 4 and not token.endswith("eed"):
        return token[:-2]
    if token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def word_tokens(text: str) -> list[str]:
    """Casefolded word tokens, possessives dropped ("Men's" -> "men")."""
    return _TOKEN.findall(_POSSESSIVE.sub("", text.casefold()))


def norm_tokens(text: str) -> list[str]:
    """Stemmed word tokens (kept for callers of the earlier module)."""
    return [_stem(t) for t in tokens(text)]


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(_stem(t) for t in word_tokens(text))


# -- the lexicon ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lexicon:
    phrases: dict[str, tuple[str, ...]]  # English value word/phrase -> other ways to write it
    attribute_words: dict[str, tuple[str, ...]]  # word of an attribute name -> localized words
    not_values: tuple[tuple[str, ...], ...]
    negations: frozenset[str]
    implied: tuple[dict[str, object], ...]


@lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    data = json.loads(LEXICON_FILE.read_text(encoding="utf-8"))
    phrases = {
        key.casefold(): tuple(dict.fromkeys(w for words in by_locale.values() for w in words))
        for key, by_locale in data["phrases"].items()
    }
    words = {k: tuple(v) for k, v in data["attribute_words"].items() if not k.startswith("_")}
    return _Lexicon(
        phrases=phrases,
        attribute_words=words,
        not_values=tuple(_phrase(p) for p in data["not_values"]["phrases"]),
        negations=frozenset(data["negations"]),
        implied=tuple(data["implied"]["rules"]),
    )


@lru_cache(maxsize=1)
def _english_by_phrase() -> dict[str, tuple[str, ...]]:
    by_phrase: dict[str, list[str]] = defaultdict(list)
    for english, spellings in _lexicon().phrases.items():
        for spelling in spellings:
            key = spelling.casefold() if _CJK.search(spelling) else " ".join(_phrase(spelling))
            if english not in by_phrase[key]:
                by_phrase[key].append(english)
    return {k: tuple(v) for k, v in by_phrase.items()}


def english_value_words(raw: str) -> tuple[str, ...]:
    """The English value words (lexicon keys) a localized or variant word or handle writes:
    "rojo" and "rojo-1" -> ("red",), "Men's" -> ("male",), "boys" -> ("male", "kids"); () if none.
    The evaluation reads gold values with it, as the extractor reads product text."""
    text = re.sub(r"[-_]+\d*$", "", raw.strip()) if re.search(r"[-_]\d+$", raw.strip()) else raw.strip()
    key = text.casefold() if _CJK.search(text) else " ".join(_phrase(text.replace("-", " ").replace("_", " ")))
    return _english_by_phrase().get(key, ())


# -- per-attribute patterns (cached) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ValuePattern:
    value: str
    phrases: tuple[tuple[str, ...], ...]  # stemmed token phrases
    substrings: tuple[str, ...]  # CJK/Hangul phrases, matched inside the raw text
    unordered: tuple[tuple[str, str], ...]  # two-word names also stated reversed ("wicks away moisture")
    vague: bool  # counts only with an attribute word nearby


@dataclass(frozen=True, slots=True)
class _AttributePatterns:
    values: tuple[_ValuePattern, ...]
    context: frozenset[str]  # stemmed words naming the attribute, in any locale
    context_substrings: tuple[str, ...]
    sizes: dict[str, str]  # size code or number -> value name ("2xl" -> "Double extra large (XXL)")
    is_size: bool


def _value_phrases(value: str, lex: _Lexicon) -> tuple[set[str], bool]:
    """The English and localized ways to write a value, and whether its bare name is vague."""
    name = value.casefold()
    bare = _PAREN.sub(" ", name).strip()
    texts = {name, bare}
    words = bare.split()
    if len(words) >= 2 and words[-1] in _GENERIC_HEADS:
        texts.add(" ".join(words[:-1]))
    for t in list(texts):
        texts.update(w.casefold() for w in lex.phrases.get(t, ()))
    return texts, bare in _VAGUE_VALUES


def _size_codes(value: str) -> list[str]:
    """Letter codes a size value is written as: "Double extra large (XXL)" -> xxl, 2xl."""
    m = _PAREN.search(value)
    codes = [m.group(1).casefold()] if m else []
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        codes.append(value)
    for code in list(codes):
        xs = re.fullmatch(r"(x{2,6})([sl])", code)
        if xs:
            codes.append(f"{len(xs.group(1))}x{xs.group(2)}")
        nx = re.fullmatch(r"([2-6])x([sl])", code)
        if nx:
            codes.append("x" * int(nx.group(1)) + nx.group(2))
    return codes


def _build_patterns(attr: ModelAttribute) -> _AttributePatterns:
    lex = _lexicon()
    is_size = attr.handle == "size" or attr.handle.endswith("-size")
    values = []
    sizes: dict[str, str] = {}
    for value in attr.values:
        if value.casefold() in _NEVER_EVIDENCE or not word_tokens(value):
            continue
        if is_size:
            for code in _size_codes(value):
                sizes.setdefault(code, value)
        texts, vague = _value_phrases(value, lex)
        phrases = {p for t in texts if not _CJK.search(t) and (p := _phrase(t))}
        substrings = tuple(sorted(t for t in texts if _CJK.search(t)))
        name = _phrase(_PAREN.sub(" ", value))
        unordered = ((name[0], name[1]),) if len(name) == 2 and min(map(len, name)) >= 4 else ()
        if is_size:
            # Letters and numbers of sizes are matched by _sizes with their own guards.
            phrases = {p for p in phrases if not (len(p) == 1 and (_LETTER_SIZE.match(p[0]) or p[0][0].isdigit()))}
        numeric = bool(re.fullmatch(r"[\d./-]+", value))
        values.append(_ValuePattern(value, tuple(sorted(phrases)), substrings, unordered, vague or numeric))
    context_words: set[str] = set()
    for word in word_tokens(f"{attr.name} {attr.handle.replace('-', ' ')}"):
        if word in _CONTEXT_STOPWORDS:
            continue
        context_words.add(word)
        context_words.update(w.casefold() for w in lex.attribute_words.get(word, ()))
    context = frozenset(_stem(t) for w in context_words if not _CJK.search(w) for t in word_tokens(w))
    context_substrings = tuple(w for w in context_words if _CJK.search(w))
    return _AttributePatterns(tuple(values), context, context_substrings, sizes, is_size)


# -- the product's text --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Text:
    raw: str  # casefolded, for CJK substrings
    toks: list[str]  # stemmed tokens, fields separated by _FIELD_BREAK
    positions: dict[tuple[str, ...], list[int]]  # n-gram (n <= 4) -> start indexes
    blocked: frozenset[int]  # token indexes inside a "not a value" phrase
    has_cjk: bool
    title_end: int  # tokens before this index are the title's
    title_chars: int  # characters of `raw` that are the title's


def _prepare(fields: Iterable[str]) -> _Text:
    toks: list[str] = []
    raws: list[str] = []
    title_end = title_chars = 0
    for n_field, field in enumerate(fields):
        if not field:
            continue
        text = html.unescape(field) if "&" in field else field
        raws.append(text.casefold())
        toks.extend(_stem(t) for t in word_tokens(text))
        toks.append(_FIELD_BREAK)
        if n_field == 0:
            title_end, title_chars = len(toks), len(raws[0])
    positions: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for n in (1, 2, 3, 4):
        for i in range(len(toks) - n + 1):
            positions[tuple(toks[i : i + n])].append(i)
    blocked = {i + k for p in _lexicon().not_values for i in positions.get(p, ()) for k in range(len(p))}
    raw = "\n".join(raws)
    return _Text(raw, toks, positions, frozenset(blocked), bool(_CJK.search(raw)), title_end, title_chars)


def _near(text: _Text, start: int, end: int, words: frozenset[str], window: int = _CONTEXT_WINDOW) -> bool:
    lo, hi = max(0, start - window), min(len(text.toks), end + window)
    return any(text.toks[k] in words for k in range(lo, hi) if not start <= k < end)


# -- the extractor -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hit:
    value: str
    start: int
    end: int
    cjk: bool = False  # span in characters of the raw text, not tokens


class AttributeExtractor:
    """Finds attribute values in a product's text; value patterns are cached per attribute."""

    def __init__(self) -> None:
        self._patterns: dict[tuple[str, tuple[str, ...]], _AttributePatterns] = {}

    def extract(self, request: ModelRequest, image: bytes | None) -> dict[str, list[str]]:
        """handle -> values found for the request's attributes (absent when none is found)."""
        p = request.product
        options = {name: vals for name, vals in p.variant_options.items() if vals}
        text = _prepare(
            [p.title, p.product_type, " , ".join(p.tags), p.description]
            + [f"{name} {' , '.join(vals)}" for name, vals in options.items()]
        )
        shared = _shared_values(request.attributes)
        found: dict[str, list[str]] = {}
        for attr in request.attributes:
            patterns = self._attribute_patterns(attr)
            hits = _option_values(attr, patterns, options) or self._text_values(attr, patterns, text, shared)
            if not hits and attr.handle.endswith("color") and image is not None:
                subject = summarise_image(image).subject_colours
                allowed = {v.casefold(): v for v in attr.values}
                hits = [allowed[c.casefold()] for c in subject[:1] if c.casefold() in allowed]
            if hits:
                found[attr.handle] = hits[:_MAX_VALUES]
        return found

    def _attribute_patterns(self, attr: ModelAttribute) -> _AttributePatterns:
        key = (attr.handle, attr.values)
        cached = self._patterns.get(key)
        if cached is None:
            cached = self._patterns[key] = _build_patterns(attr)
        return cached

    def _text_values(
        self, attr: ModelAttribute, patterns: _AttributePatterns, text: _Text, shared: set[str]
    ) -> list[str]:
        hits: list[_Hit] = []
        for pattern in patterns.values:
            needs_context = pattern.vague or pattern.value.casefold() in shared
            hits.extend(_phrase_hits(pattern, patterns, text, needs_context))
        if patterns.is_size:
            hits.extend(_size_hits(patterns, text))
        hits.extend(_implied_hits(attr, text))
        if attr.handle.endswith("color"):
            hits = _title_colours(hits, text)
        values = _outermost(hits)
        return _resolve_gender(attr, values)


def _phrase_hits(pattern: _ValuePattern, patterns: _AttributePatterns, text: _Text, needs_context: bool) -> list[_Hit]:
    lex = _lexicon()
    hits = []
    for phrase in pattern.phrases:
        for s in text.positions.get(phrase, ()):
            e = s + len(phrase)
            if any(k in text.blocked for k in range(s, e)) or (s > 0 and text.toks[s - 1] in lex.negations):
                continue
            # A vague word needs its attribute nearby; a phrase of several words is specific.
            if needs_context and len(phrase) == 1 and not _near(text, s, e, patterns.context):
                continue
            hits.append(_Hit(pattern.value, s, e))
    for a, b in pattern.unordered:
        for i in text.positions.get((b,), ()):
            for j in text.positions.get((a,), ()):
                if i < j <= i + _CONTEXT_WINDOW and _FIELD_BREAK not in text.toks[i:j]:
                    hits.append(_Hit(pattern.value, i, j + 1))
    if text.has_cjk:
        for sub in pattern.substrings:
            start = text.raw.find(sub)
            while start >= 0:
                if not (needs_context and len(sub) == 1):
                    hits.append(_Hit(pattern.value, start, start + len(sub), cjk=True))
                start = text.raw.find(sub, start + 1)
    return hits


def _size_hits(patterns: _AttributePatterns, text: _Text) -> list[_Hit]:
    """Letter sizes ("2XL", "XXL"; a lone "S"/"M"/"L" only in a list of sizes or after a size
    word) and numbers next to a size word or system ("size 42", "EU 42", "9 M US"); never a
    price or a quantity ("$50", "50 pcs")."""
    toks = text.toks
    markers = patterns.context | _SIZE_SYSTEMS
    hits = []
    for i, tok in enumerate(toks):
        value = patterns.sizes.get(tok)
        if value is None:
            continue
        prev = toks[max(0, i - 2) : i]
        after = toks[i + 1 : i + 3]
        if _NUMBER.fullmatch(tok):
            system_after = bool(after) and (
                after[0] in _SIZE_SYSTEMS or (after[0] in _SIZE_WIDTHS and after[1:2] and after[1] in _SIZE_SYSTEMS)
            )
            ok = any(t in markers for t in prev) or system_after
        elif len(tok) == 1:
            neighbours = [t for t in (toks[i - 1] if i else "", toks[i + 1] if i + 1 < len(toks) else "") if t]
            ok = any(t in markers for t in prev) or any(
                t in patterns.sizes and not _NUMBER.fullmatch(t) for t in neighbours
            )
        else:
            ok = not (i > 0 and toks[i - 1].isdigit())  # "2 xl bags" is a count, not a size
        if ok:
            hits.append(_Hit(value, i, i + 1))
    return hits


def _implied_hits(attr: ModelAttribute, text: _Text) -> list[_Hit]:
    """Values the text implies without naming them (lexicon "implied"), e.g. Soccer from
    "football" with a club or a pitch, unless the text is about American football."""
    allowed = {v.casefold(): v for v in attr.values}
    hits = []
    for rule in _lexicon().implied:
        value = allowed.get(str(rule["value"]))
        if value is None:
            continue
        when = [i for w in rule["when_any"] for i in text.positions.get(_phrase(w), ())]  # type: ignore[union-attr]
        if not when:
            continue
        if any(text.positions.get(_phrase(w)) for w in rule["with_any"]) and not any(  # type: ignore[union-attr]
            text.positions.get(_phrase(w))
            for w in rule["unless_any"]  # type: ignore[union-attr]
        ):
            hits.append(_Hit(value, when[0], when[0] + 1))
    return hits


def _title_colours(hits: list[_Hit], text: _Text) -> list[_Hit]:
    """The title's colours when it names any: a description also names the colours of
    accents, badges and what to wear it with ("black design with yellow stripes")."""
    in_title = [h for h in hits if h.end <= (text.title_chars if h.cjk else text.title_end)]
    return in_title or hits


def _option_values(attr: ModelAttribute, patterns: _AttributePatterns, options: dict[str, Sequence[str]]) -> list[str]:
    """Values of a variant option named like the attribute ("Size": S, M, L; "Farbe": Rot):
    each option value is read against this attribute alone, so a bare "M" or "42" counts."""
    found: list[str] = []
    for name, vals in options.items():
        name_words = {_stem(t) for t in word_tokens(name)}
        if not name_words & patterns.context and not any(s in name for s in patterns.context_substrings):
            continue
        for raw in vals:
            toks = tuple(_stem(t) for t in word_tokens(raw))
            value = patterns.sizes.get(toks[0]) if len(toks) == 1 and patterns.is_size else None
            if value is None:
                value = next((p.value for p in patterns.values if toks in p.phrases), None)
            if value is None and _CJK.search(raw):
                value = next((p.value for p in patterns.values if any(s in raw for s in p.substrings)), None)
            if value is not None and value not in found:
                found.append(value)
    return found


def _outermost(hits: list[_Hit]) -> list[str]:
    """Values in order of first mention, without those whose every mention lies inside
    another value's longer mention ("navy blue" is Navy only; "rose gold" is not Gold)."""
    kept: dict[str, int] = {}
    for h in hits:
        inside = any(
            o.value != h.value
            and o.cjk == h.cjk
            and o.start <= h.start
            and h.end <= o.end
            and o.end - o.start > h.end - h.start
            for o in hits
        )
        if not inside:
            order = h.start + (_CJK_ORDER if h.cjk else 0)
            kept[h.value] = min(kept.get(h.value, order), order)
    return sorted(kept, key=lambda v: kept[v])


def _resolve_gender(attr: ModelAttribute, values: list[str]) -> list[str]:
    """A product stated for both women and men, or said to be unisex, is unisex (where the
    attribute has that value): "Unisex men's cap" is not also for men only."""
    folded = {v.casefold() for v in values}
    unisex = next((v for v in attr.values if v.casefold() == "unisex"), None)
    if unisex and ({"female", "male"} <= folded or "unisex" in folded):
        return [unisex] + [v for v in values if v.casefold() not in {"female", "male", "unisex"}]
    return values


def _shared_values(attributes: Sequence[ModelAttribute]) -> set[str]:
    """Value names offered by two or more of the request's attributes (e.g. "Black" for
    band-color and dial-color, "Long" for sleeve and pants length): such a value counts
    only with a word of its attribute's name nearby."""
    owners: dict[str, int] = defaultdict(int)
    for a in attributes:
        for v in {v.casefold() for v in a.values}:
            owners[v] += 1
    return {v for v, n in owners.items() if n > 1}
