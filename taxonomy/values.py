"""Map predicted attribute values (and attribute handles) onto the taxonomy's allowed ones.

Step 2 of the model names values as free text. Most of the time it copies an allowed value
name; otherwise it writes a handle ("color__navy", "navy"), a Shopify metaobject handle
("shopify--navy", "navy-blazer"), a case or spacing variant ("ROSE-GOLD"), an abbreviation
the value carries ("XL" for "Extra large (XL)"), or a near miss ("Bleu", "Grey"). Each of
those maps to an allowed value; anything else is rejected, never guessed: a wrong value is
worse than a missing one, because it is shown to shoppers and used as a filter.

Order, strongest first (the first rule that matches wins):

* ``exact``  – the value name, case/whitespace-insensitively; then spacing/punctuation
  variants and the value's own abbreviation or unparenthesised name, if unique.
* ``handle`` – the full value handle, its part after ``__``, the same after stripping
  namespace/attribute prefixes and Shopify's ``-<n>`` de-duplication suffix; then a
  metaobject handle that starts with exactly one value's handle ("navy-blazer" -> Navy).
* ``fuzzy``  – inflection or British/American spelling variants, then a typo within a
  small edit distance that scales with length, with the same first letter. Strings shorter
  than 4 characters are never fuzzy-matched, up to 5 characters only for a swapped pair of
  letters, up to 9 for one dropped/added/swapped letter, and any digits must agree
  exactly, so "Red" never becomes "Rose" or "Bed", nor "1.5" "15". Ties reject.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, Levenshtein

from taxonomy.corrector import stem_key
from taxonomy.model import Attribute, Category, Taxonomy, Value, normalise_key

__all__ = [
    "SPELLING_VARIANTS",
    "METAFIELD_KEYS",
    "STEM_EQUAL_SCORE",
    "SPELLING_VARIANT_SCORE",
    "HANDLE_PREFIX_SCORE",
    "METAOBJECT_PREFIX_SCORE",
    "slug",
    "compact_key",
    "ValueMatch",
    "ValueNormaliser",
    "attribute_for",
]

ValueMethod = Literal["exact", "handle", "fuzzy"]

# Metafield / metaobject namespaces that may precede a handle ("shopify--color-pattern",
# "shopify.color", "custom.fabric").
_NAMESPACE = re.compile(r"^(?:shopify|custom|product|metafields?)(?:--|\.|:|-)", re.I)
_DEDUP_SUFFIX = re.compile(r"-\d+$")  # Shopify makes handles unique as navy, navy-1, navy-2
_PAREN = re.compile(r"\s*\(([^)]*)\)\s*")
_HANDLE_SHAPED = re.compile(r"^[a-z0-9]+(?:[-_]+[a-z0-9]+)*$")
_DIGITS = re.compile(r"\d+")
# Separators a model uses to put several values in one string ("Red, Blue"); tried only
# when the whole string is not a value. "/" and "&" occur inside value names.
_MULTI_SPLIT = re.compile(r"\s*[,;|]\s*")

# British/American and common spelling variants, applied word by word to both sides.
SPELLING_VARIANTS = {
    "grey": "gray",
    "colour": "color",
    "colours": "colors",
    "multicolour": "multicolor",
    "multicoloured": "multicolor",
    "multicolored": "multicolor",
    "aluminium": "aluminum",
    "jewellery": "jewelry",
    "fibre": "fiber",
    "centre": "center",
    "metre": "meter",
    "tyre": "tire",
    "moustache": "mustache",
    "pyjamas": "pajamas",
    "pyjama": "pajama",
    "armour": "armor",
    "favour": "favor",
    "mould": "mold",
    "plough": "plow",
    "organise": "organize",
    "organiser": "organizer",
    "personalised": "personalized",
    "customisable": "customizable",
    "customised": "customized",
    "odour": "odor",
    "flavour": "flavor",
    "harbour": "harbor",
    "catalogue": "catalog",
}

# Shopify's category-metafield keys that differ from the taxonomy attribute handle
# ("shopify.color-pattern" holds Color); their metaobject handles may carry them as prefix.
METAFIELD_KEYS = {"color": ("color-pattern",), "pattern": ("color-pattern",)}

STEM_EQUAL_SCORE = 0.97
SPELLING_VARIANT_SCORE = 0.95
HANDLE_PREFIX_SCORE = 0.95
METAOBJECT_PREFIX_SCORE = 0.8


def slug(text: str) -> str:
    """Handle form of a name: "Skirt/Dress length type" -> "skirt-dress-length-type"."""
    return re.sub(r"[^a-z0-9]+", "-", text.casefold().replace("'", "")).strip("-")


def compact_key(text: str) -> str:
    """Spacing/punctuation-insensitive key: "Rose-Gold", "rose gold", "ROSEGOLD" agree.

    Dots survive so "1.5" and "15" stay apart; "&" and "and" agree.
    """
    t = text.casefold().replace("&", " and ").replace("'", "").replace("’", "")
    return re.sub(r"[\s\-_]+", "", t)


def _spelling_key(text: str) -> str:
    words = re.findall(r"[a-z0-9.]+", text.casefold())
    return " ".join(SPELLING_VARIANTS.get(w, w) for w in words)


@dataclass(frozen=True, slots=True)
class ValueMatch:
    value: Value
    raw: str
    corrected: bool
    score: float
    method: ValueMethod


@dataclass
class _ValueIndex:
    by_name: dict[str, Value] = field(default_factory=dict)
    by_compact: dict[str, Value] = field(default_factory=dict)
    by_alias: dict[str, Value] = field(default_factory=dict)
    by_handle: dict[str, Value] = field(default_factory=dict)
    by_suffix: dict[str, Value] = field(default_factory=dict)
    by_stem: dict[str, Value] = field(default_factory=dict)
    by_spelling: dict[str, Value] = field(default_factory=dict)
    prefixes: tuple[str, ...] = ()
    fuzzy_names: list[tuple[str, Value]] = field(default_factory=list)


def _unique(pairs: Iterable[tuple[str, Value]], taken: Iterable[dict[str, Value]] = ()) -> dict[str, Value]:
    """Keys that point to exactly one value and are not already owned by a stronger index."""
    seen: dict[str, Value | None] = {}
    for k, v in pairs:
        if not k:
            continue
        if k in seen and seen[k] is not None and seen[k].id != v.id:
            seen[k] = None
        else:
            seen.setdefault(k, v)
    stronger = list(taken)
    return {k: v for k, v in seen.items() if v is not None and not any(k in t for t in stronger)}


class ValueNormaliser:
    """Normalise predicted values against an attribute's allowed values; see module doc."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self._indexes: dict[str, _ValueIndex] = {}

    # -- values --------------------------------------------------------------------------

    def normalise(self, attribute: Attribute, raw: object) -> ValueMatch | None:
        if raw is None:
            return None
        text = " ".join(str(raw).split())
        if not text or not re.search(r"[0-9A-Za-z]", text):
            return None
        ix = self._index(attribute)
        return self._exact(ix, raw, text) or self._handle(ix, raw, text) or self._fuzzy(ix, raw, text)

    def normalise_many(self, attribute: Attribute, raws: Iterable[object]) -> tuple[list[ValueMatch], list[str]]:
        """Matched values (first occurrence of each value kept, in order) and the rejects.

        A string that is not a value as a whole but lists several ("Red, Navy") is split on
        , ; | and each part normalised on its own.
        """
        matches: list[ValueMatch] = []
        rejected: list[str] = []
        seen: set[str] = set()
        for raw in raws:
            m = self.normalise(attribute, raw)
            parts: list[tuple[object, ValueMatch | None]]
            if m is None and isinstance(raw, str) and _MULTI_SPLIT.search(raw):
                parts = [(p, self.normalise(attribute, p)) for p in _MULTI_SPLIT.split(raw) if p.strip()]
            else:
                parts = [(raw, m)]
            for part, pm in parts:
                if pm is None:
                    rejected.append(str(part) if part is not None else "")
                elif pm.value.id not in seen:
                    seen.add(pm.value.id)
                    matches.append(pm)
        return matches, rejected

    # -- attributes ----------------------------------------------------------------------

    def attribute_for(self, category: Category, handle_or_name: str) -> Attribute | None:
        """The category's attribute named by a handle or name, tolerant of handle forms.

        Exact handle first; then the name; then slug forms ("skirt_dress_length_type",
        "Skirt/Dress length type"); then without a namespace ("shopify.color"); then a
        handle that extends exactly one attribute's handle ("color-pattern" -> color, the
        Shopify metafield key of Color) or that is a prefix of exactly one ("sleeve-length"
        -> sleeve-length-type); then a close spelling ("colour"). None if none or several.
        """
        attrs = self.taxonomy.attributes_of(category)
        if not attrs or handle_or_name is None:
            return None
        raw = str(handle_or_name).strip()
        for a in attrs:
            if a.handle == raw:
                return a
        key = normalise_key(raw)
        for a in attrs:
            if normalise_key(a.name) == key:
                return a
        s = slug(raw)
        s_bare = slug(_NAMESPACE.sub("", raw))
        for candidate in dict.fromkeys((s, s_bare)):
            if not candidate:
                continue
            hits = [a for a in attrs if candidate in (a.handle, slug(a.name))]
            if len(hits) == 1:
                return hits[0]
        for candidate in dict.fromkeys((s, s_bare)):
            if not candidate:
                continue
            # Longest handle that the raw extends at a word boundary wins; equal length is a tie.
            ext = sorted((a for a in attrs if candidate.startswith(a.handle + "-")), key=lambda a: -len(a.handle))
            if ext and (len(ext) == 1 or len(ext[0].handle) > len(ext[1].handle)):
                return ext[0]
            pre = [a for a in attrs if a.handle.startswith(candidate + "-")]
            if len(pre) == 1:
                return pre[0]
        scored = sorted(
            ((max(fuzz.ratio(s_bare, a.handle), fuzz.ratio(s_bare, slug(a.name))), a) for a in attrs),
            key=lambda x: -x[0],
        )
        if scored and scored[0][0] >= 90 and (len(scored) == 1 or scored[0][0] - scored[1][0] >= 5):
            return scored[0][1]
        return None

    # -- internals -----------------------------------------------------------------------

    def _index(self, attribute: Attribute) -> _ValueIndex:
        ix = self._indexes.get(attribute.handle)
        if ix is not None:
            return ix
        values = attribute.values
        ix = _ValueIndex()
        ix.by_name = _unique((normalise_key(v.name), v) for v in values)
        ix.by_handle = {v.handle: v for v in values}
        ix.by_suffix = _unique((v.handle.split("__", 1)[-1], v) for v in values)
        ix.by_compact = _unique((compact_key(v.name), v) for v in values)
        # Abbreviation and bare name of "Extra large (XL)": "XL", "extra large". Only
        # where unique, and never over another value's own name.
        aliases: list[tuple[str, Value]] = []
        for v in values:
            m = _PAREN.search(v.name)
            if m:
                aliases.append((compact_key(m.group(1)), v))
                aliases.append((compact_key(_PAREN.sub(" ", v.name)), v))
        ix.by_alias = _unique(aliases, [ix.by_compact])
        ix.by_stem = _unique((stem_key(v.name), v) for v in values)
        ix.by_spelling = _unique((_spelling_key(v.name), v) for v in values)
        bases = {attribute.handle, attribute.base_handle or attribute.handle, slug(attribute.name)}
        bases |= {v.handle.split("__", 1)[0] for v in values if "__" in v.handle}
        bases |= {k for b in list(bases) for k in METAFIELD_KEYS.get(b, ())}
        ix.prefixes = tuple(sorted(bases, key=len, reverse=True))
        ix.fuzzy_names = [(_spelling_key(v.name), v) for v in values]
        self._indexes[attribute.handle] = ix
        return ix

    @staticmethod
    def _match(v: Value, raw: object, text: str, score: float, method: ValueMethod) -> ValueMatch:
        # `corrected` is False only when the model wrote the value name verbatim.
        return ValueMatch(v, str(raw), str(raw) != v.name, round(score, 4), method)

    def _exact(self, ix: _ValueIndex, raw: object, text: str) -> ValueMatch | None:
        v = ix.by_name.get(normalise_key(text))
        if v is None:
            ck = compact_key(text)
            v = ix.by_compact.get(ck) or ix.by_alias.get(ck)
        return self._match(v, raw, text, 1.0, "exact") if v is not None else None

    def _handle(self, ix: _ValueIndex, raw: object, text: str) -> ValueMatch | None:
        h = text.casefold()
        v = ix.by_handle.get(h) or (ix.by_suffix.get(h) if _HANDLE_SHAPED.match(h) else None)
        if v is not None:
            return self._match(v, raw, text, 1.0, "handle")
        if not _HANDLE_SHAPED.match(h.replace("--", "-").replace(".", "-")):
            return None
        # Strip a namespace and an attribute prefix: "shopify--color-navy", "color-navy",
        # "color__navy-1"; then Shopify's de-duplication suffix.
        rest = _NAMESPACE.sub("", h)
        for p in ix.prefixes:
            for sep in ("__", "--", "-", "_", "."):
                if rest.startswith(p + sep) and len(rest) > len(p) + len(sep):
                    rest = rest[len(p) + len(sep) :]
                    break
            else:
                continue
            break
        rest = rest.replace("_", "-")
        for cand in (rest, _DEDUP_SUFFIX.sub("", rest)):
            v = ix.by_suffix.get(cand)
            if v is not None:
                return self._match(v, raw, text, HANDLE_PREFIX_SCORE, "handle")
        # A merchant metaobject named after its base value ("navy-blazer"): the longest
        # value handle the raw starts with at a word boundary, if exactly one; and only if
        # what follows is not itself a value ("blue-green" names two colours: reject).
        # Only for a raw written as a handle (lower case, no spaces): "High-top" is a
        # name, not "High" plus a suffix.
        if text != h:
            return None
        hits = [(s, v) for s, v in ix.by_suffix.items() if rest.startswith(s + "-")]
        if hits:
            hits.sort(key=lambda sv: -len(sv[0]))
            s, v = hits[0]
            tail = rest[len(s) + 1 :]
            ambiguous = len(hits) > 1 and len(hits[1][0]) == len(s)
            tail_is_value = any(tail == t or tail.startswith(t + "-") for t in ix.by_suffix if t != s)
            if not ambiguous and not tail_is_value:
                return self._match(v, raw, text, METAOBJECT_PREFIX_SCORE, "handle")
        return None

    def _fuzzy(self, ix: _ValueIndex, raw: object, text: str) -> ValueMatch | None:
        v = ix.by_stem.get(stem_key(text))
        if v is not None:
            return self._match(v, raw, text, STEM_EQUAL_SCORE, "fuzzy")
        sk = _spelling_key(text)
        v = ix.by_spelling.get(sk)
        if v is not None:
            return self._match(v, raw, text, SPELLING_VARIANT_SCORE, "fuzzy")
        digits = _DIGITS.findall(sk)
        best: list[tuple[int, Value]] = []
        for name, cand in ix.fuzzy_names:
            if _DIGITS.findall(name) != digits:
                continue  # sizes and counts are never "close": 1.5 is not 15
            if min(len(sk), len(name)) < 4:
                continue  # "Red" vs "Bed"/"Rose": too short to tell a typo from a word
            n = max(len(sk), len(name))
            d = OSA.distance(sk, name)
            if d == 0 or sk[0] != name[0]:
                # A different first letter is usually a different word ("Narrow"/"Arrow",
                # "Plastic"/"Elastic"), rarely a typo.
                continue
            if n <= 5:
                # Only a swapped pair ("Bleu"): one OSA edit that Levenshtein counts as two.
                # A substituted letter in a short word is usually another word ("Mink").
                ok = d == 1 and Levenshtein.distance(sk, name) == 2
            elif n < 10:
                # One dropped, added or swapped letter ("Coton", "Purpel"); not one swapped
                # for another, which between real words of this length is common
                # ("Bullet"/"Ballet").
                substitution = len(sk) == len(name) and Levenshtein.distance(sk, name) == 1
                ok = d == 1 and not substitution
            else:
                ok = d <= 2
            if ok:
                best.append((d, cand))
        if not best:
            return None
        best.sort(key=lambda dv: dv[0])
        if len(best) > 1 and best[1][0] == best[0][0]:
            return None  # two values equally close: a guess
        d, cand = best[0]
        score = OSA.normalized_similarity(sk, _spelling_key(cand.name))
        return self._match(cand, raw, text, score, "fuzzy")


def attribute_for(taxonomy: Taxonomy, category: Category, handle_or_name: str) -> Attribute | None:
    """Module-level form of `ValueNormaliser.attribute_for` for one-off lookups."""
    return ValueNormaliser(taxonomy).attribute_for(category, handle_or_name)
