"""Type-ahead search over the taxonomy for the review app's category picker.

Label Studio's and Argilla's taxonomy widgets scan or render the whole tree; with 10,281
categories in 14 languages (~144k names) a reviewer would wait on every keystroke. Here one
`CategoryIndex` is built per taxonomy (about a second for the full tree with its locales,
then reused) and a query touches only the names that contain its tokens:

- every category gets one entry per language: the English full path, and each locale's
  localized full path; names are case-folded and accent-folded ("Bébé" matches "bebe");
- a sorted token list maps each token to its entries, so a query token is a prefix range
  found by bisection ("snea" -> "sneakers"), and an entry matches when every query token
  prefixes one of its tokens;
- matches are ranked by quality: the leaf name itself, then the leaf name's words, then
  path words; exact words before prefixes; English before a locale; shallow before deep;
- only when the index finds nothing (a typo: "snekaers") does a fuzzy scan (rapidfuzz)
  over the distinct leaf names run.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz, process

from taxonomy.model import PATH_SEPARATOR, Category, Taxonomy

__all__ = ["CategoryIndex", "CategoryMatch", "SearchResult", "fold", "index_for"]

_TOKEN = re.compile(r"\w+", re.UNICODE)
# A fuzzy match below this QRatio is noise for a type-ahead.
_FUZZY_CUTOFF = 70.0


def fold(text: str) -> str:
    """Case-folded, accent-folded (NFKD without combining marks), whitespace-collapsed."""
    if text.isascii():
        return " ".join(text.casefold().split())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(unicodedata.normalize("NFC", stripped).split())


def _tokens(folded: str) -> list[str]:
    return _TOKEN.findall(folded)


@dataclass(frozen=True, slots=True)
class CategoryMatch:
    id: str
    short_id: str
    name: str
    full_name: str
    # The name the query matched, in its language, and that language ("en" for English).
    matched: str
    locale: str
    is_leaf: bool

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "short_id": self.short_id,
            "name": self.name,
            "full_name": self.full_name,
            "matched": self.matched,
            "locale": self.locale,
            "is_leaf": self.is_leaf,
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    matches: list[CategoryMatch]
    # "index": the token index answered; "fuzzy": nothing matched, the fuzzy fallback ran;
    # "empty": a blank query.
    via: Literal["index", "fuzzy", "empty"]


@dataclass(frozen=True, slots=True)
class _Entry:
    category: int  # position in CategoryIndex.categories
    locale: str
    text: str  # the full path in this language, as shown
    leaf: str  # the leaf name in this language, as shown
    leaf_tokens: tuple[str, ...]
    path_tokens: tuple[str, ...]  # tokens of the ancestors only
    folded_leaf: str


def short_id(category_id: str) -> str:
    return category_id.rsplit("/", 1)[-1]


class CategoryIndex:
    """A token-prefix index over every category's English and localized full paths."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self.categories: list[Category] = list(taxonomy.categories.values())
        entries: list[_Entry] = []
        # Path segments repeat (every child repeats its ancestors): fold each once.
        self._folded: dict[str, tuple[str, tuple[str, ...]]] = {}
        for i, c in enumerate(self.categories):
            entries.append(self._entry(i, "en", c.full_name, c.name))
        for locale in taxonomy.locales:
            names = taxonomy.localized_names(locale)
            for i, c in enumerate(self.categories):
                leaf = names.get(c.id)
                if leaf is None:
                    continue
                full = taxonomy.localized_full_name(c.id, locale) or leaf
                entries.append(self._entry(i, locale, full, leaf))
        self.entries = entries
        postings: dict[str, list[int]] = {}
        for n, e in enumerate(entries):
            for t in set(e.leaf_tokens) | set(e.path_tokens):
                postings.setdefault(t, []).append(n)
        self._tokens = sorted(postings)
        self._postings = [postings[t] for t in self._tokens]
        # The fuzzy fallback: distinct folded leaf names -> the entries carrying them.
        by_leaf: dict[str, list[int]] = {}
        for n, e in enumerate(entries):
            by_leaf.setdefault(e.folded_leaf, []).append(n)
        self._fuzzy_names = list(by_leaf)
        self._fuzzy_entries = [by_leaf[k] for k in self._fuzzy_names]
        self._by_short = {short_id(c.id): c for c in self.categories}
        del self._folded

    def _fold_segment(self, segment: str) -> tuple[str, tuple[str, ...]]:
        found = self._folded.get(segment)
        if found is None:
            folded = fold(segment)
            found = self._folded[segment] = (folded, tuple(_tokens(folded)))
        return found

    def _entry(self, i: int, locale: str, full: str, leaf: str) -> _Entry:
        folded_leaf, leaf_tokens = self._fold_segment(leaf)
        path_tokens: list[str] = []
        for part in full.split(PATH_SEPARATOR)[:-1]:
            path_tokens.extend(self._fold_segment(part)[1])
        return _Entry(i, locale, full, leaf, leaf_tokens, tuple(path_tokens), folded_leaf)

    # -- lookups ------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Names indexed (English plus every locale's)."""
        return len(self.entries)

    def get(self, category_id: str) -> Category | None:
        """By GID or short id (`aa-1`)."""
        return self.taxonomy.get(category_id) or self._by_short.get(category_id)

    def _prefix_postings(self, token: str) -> set[int]:
        out: set[int] = set()
        if len(token) == 1 and token.isascii():
            # One Latin letter prefixes a third of the index: only the word itself.
            k = bisect_left(self._tokens, token)
            if k < len(self._tokens) and self._tokens[k] == token:
                out.update(self._postings[k])
            return out
        lo = bisect_left(self._tokens, token)
        for k in range(lo, len(self._tokens)):
            if not self._tokens[k].startswith(token):
                break
            out.update(self._postings[k])
        return out

    def search(self, query: str, limit: int = 20) -> SearchResult:
        folded = fold(query)
        tokens = _tokens(folded)
        if not tokens:
            return SearchResult([], "empty")
        # Longest token first: its prefix range is the narrowest.
        candidates: set[int] | None = None
        for t in sorted(set(tokens), key=len, reverse=True):
            hits = self._prefix_postings(t)
            candidates = hits if candidates is None else candidates & hits
            if not candidates:
                break
        if candidates:
            scored = ((self._rank(self.entries[n], tokens, folded), n) for n in candidates)
            return SearchResult(self._best(scored, limit), "index")
        return SearchResult(self._fuzzy(folded, limit), "fuzzy")

    def _rank(self, e: _Entry, tokens: list[str], folded: str) -> tuple:
        leaf_hits = 0
        exact = 0
        for t in tokens:
            if t in e.leaf_tokens:
                leaf_hits += 1
                exact += 1
            elif any(x.startswith(t) for x in e.leaf_tokens):
                leaf_hits += 1
            elif t in e.path_tokens:
                exact += 1
        whole_leaf = e.folded_leaf == folded
        leaf_prefix = e.folded_leaf.startswith(folded)
        level = self.categories[e.category].level
        # Smaller sorts first.
        return (not whole_leaf, not leaf_prefix, -leaf_hits, e.locale != "en", len(e.leaf), -exact, level)

    def _best(self, scored, limit: int) -> list[CategoryMatch]:  # type: ignore[no-untyped-def]
        seen: set[int] = set()
        out: list[CategoryMatch] = []
        for _, n in sorted(scored):
            e = self.entries[n]
            if e.category in seen:
                continue
            seen.add(e.category)
            out.append(self._match(e))
            if len(out) >= limit:
                break
        return out

    def _match(self, e: _Entry) -> CategoryMatch:
        c = self.categories[e.category]
        return CategoryMatch(c.id, short_id(c.id), c.name, c.full_name, e.text, e.locale, c.is_leaf)

    def _fuzzy(self, folded: str, limit: int) -> list[CategoryMatch]:
        found = process.extract(
            folded, self._fuzzy_names, scorer=fuzz.QRatio, limit=limit * 2, score_cutoff=_FUZZY_CUTOFF
        )
        scored = []
        for _, score, k in found:
            for n in self._fuzzy_entries[k]:
                e = self.entries[n]
                scored.append(((-score, e.locale != "en", self.categories[e.category].level), n))
        return self._best(scored, limit)

    def children(self, category_id: str | None) -> list[Category]:
        """The children of a category; the verticals for None."""
        if category_id is None:
            return list(self.taxonomy.verticals)
        c = self.get(category_id)
        return [] if c is None else self.taxonomy.children(c)


_lock = threading.Lock()
_building = threading.Lock()
_cache: list[tuple[Taxonomy, CategoryIndex]] = []


def _cached(taxonomy: Taxonomy) -> CategoryIndex | None:
    with _lock:
        return next((index for t, index in _cache if t is taxonomy), None)


def index_for(taxonomy: Taxonomy) -> CategoryIndex:
    """The index of this taxonomy object, built once even when several threads ask at
    the same time (the last two taxonomies are kept: a reload swaps the object, and the old
    one may still be in use for a moment)."""
    index = _cached(taxonomy)
    if index is not None:
        return index
    with _building:
        index = _cached(taxonomy)
        if index is None:
            index = CategoryIndex(taxonomy)
            with _lock:
                _cache.insert(0, (taxonomy, index))
                del _cache[2:]
    return index
