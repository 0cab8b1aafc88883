"""Map a predicted category string onto a real taxonomy category, or refuse to.

A model names a category as a path ("Apparel & Accessories > Clothing > Dresses"); it
gets the path exactly right most of the time, and when it does not, the error is usually
structural: a wrong or missing intermediate level, an extra level, a misspelt or
inflected leaf, a synonym of the leaf. The corrector recovers those and refuses the rest:

1. ``exact_path``  – the raw string is a full path (case/whitespace-insensitive), a GID or
   a short id. Nothing was corrected.
2. ``unique_leaf`` – the raw's last segment (or the whole raw) is exactly the name of one
   category. Names are unique for ~98% of the tree, so an exact, unique leaf is stronger
   evidence than any intermediate segment the model may have invented around it.
3. ``fuzzy``       – candidates from the leaf (inflection-insensitive key, synonym lexicon),
   else from the subtrees of the raw's own intermediate segments, rapidfuzz over all leaf
   names, and names that add or drop a qualifier word; for a separator-less multi-word raw
   also rapidfuzz over full paths. Each candidate is scored by how well its leaf name
   matches the raw's leaf *and* how well its lineage matches the raw's other segments
   ("path consistency"), so the path decides between same-named or similar leaves.
4. ``unresolved``  – the best score is below the threshold, or two different categories
   score about the same: the prediction goes to review instead of being guessed.

Localized names (the taxonomy's locales) are another way in, never another answer: a
full localized path is exact, and when the raw carries evidence of a locale, the same
rules run over that locale's names and the better-scoring reading wins, English on a tie
(see `CategoryCorrector`). Results stay canonical categories; `locale` says which names
matched.

Everything the matcher compares is precomputed once per taxonomy (~0.1 s for the full
tree, plus ~0.2 s for the locale evidence of 13 locales; a locale's own index is built the
first time a raw needs it); one correction is a few dict lookups, plus, only when the leaf is not a known key,
one or two rapidfuzz scans over ~10k short strings: p99 is under 1 ms on the full tree
(benchmarks/correction.py).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from taxonomy.model import Category, Taxonomy, normalise_key

__all__ = [
    "GID_PREFIX",
    "DEFAULT_SYNONYMS",
    "LEAF_WEIGHT",
    "SYNONYM_SIMILARITY",
    "STEM_EQUAL_SIMILARITY",
    "SEGMENT_FLOOR",
    "SUBSET_BASE",
    "SUBSET_SPAN",
    "MAX_SUBSET_POSTINGS",
    "BARE_LEAF_PENALTY",
    "ANCHORED_LEAF_CUTOFF",
    "CONFIDENT_LEAF_SIMILARITY",
    "UNIQUE_LEAF_BASE",
    "MAX_EVIDENCE_LOCALES",
    "plain_key",
    "stem_key",
    "localized_plain_key",
    "localized_stem_key",
    "split_path",
    "CategoryCorrection",
    "CategoryCorrector",
]

Method = Literal["exact_path", "unique_leaf", "fuzzy", "unresolved"]

GID_PREFIX = "gid://shopify/TaxonomyCategory/"

# Colloquial or marketplace names a model may use for a leaf, mapped to the taxonomy's own
# leaf names. Only targets that exist in the loaded taxonomy are used, and a term that is
# itself a category name is ignored (the exact rules already own it). The lexicon is the
# only way to bridge words that share no letters ("Couch" -> "Sofas"); fuzzy matching
# covers spelling, not meaning. Keys and targets are matched inflection-insensitively, so
# "Tee" also covers "Tees".
DEFAULT_SYNONYMS: Mapping[str, tuple[str, ...]] = {
    # apparel & accessories
    "tee": ("T-Shirts",),
    "tee shirt": ("T-Shirts",),
    "jumper": ("Sweaters",),
    "pullover": ("Sweaters",),
    "slacks": ("Pants",),
    "trainer": ("Athletic Shoes",),
    "running shoe": ("Athletic Shoes",),
    "flip flop": ("Sandals",),
    "purse": ("Handbags",),
    "tote": ("Tote Bags",),
    "swimsuit": ("One-Piece Swimsuits",),
    "bathing suit": ("One-Piece Swimsuits",),
    "sunnies": ("Sunglasses",),
    "pyjamas": ("Pajamas",),
    "pjs": ("Pajamas",),
    "braces": ("Suspenders",),
    "wristwatch": ("Watches",),
    "rucksack": ("Backpacks",),
    "knapsack": ("Backpacks",),
    "spectacles": ("Eyeglasses",),
    "glasses": ("Eyeglasses",),
    "aftershave": ("Colognes",),
    # electronics
    "earphone": ("Headphones",),
    "earbud": ("Headphones",),
    "cell phone": ("Mobile & Smart Phones",),
    "cellphone": ("Mobile & Smart Phones",),
    "smartphone": ("Mobile & Smart Phones",),
    "mobile phone": ("Mobile & Smart Phones",),
    "notebook computer": ("Laptops",),
    "tablet": ("Tablet Computers",),
    "tv": ("Televisions",),
    "television set": ("Televisions",),
    "monitor": ("Computer Monitors",),
    "thumb drive": ("USB Flash Drives",),
    "usb stick": ("USB Flash Drives",),
    "gamepad": ("Game Controllers",),
    "games console": ("Video Game Consoles",),
    # home, furniture, garden
    "couch": ("Sofas",),
    "settee": ("Sofas",),
    "fridge": ("Refrigerators",),
    "cushion": ("Throw Pillows",),
    "duvet": ("Quilts & Comforters",),
    "quilt": ("Quilts & Comforters",),
    "carpet": ("Rugs",),
    "drape": ("Curtains & Drapes",),
    "bedside table": ("Nightstands",),
    "microwave": ("Microwave Ovens",),
    "kettle": ("Electric Kettles",),
    "hoover": ("Vacuums",),
    "vacuum cleaner": ("Vacuums",),
    "frying pan": ("Skillets & Frying Pans",),
    "garbage can": ("Trash Cans",),
    "wastebasket": ("Trash Cans",),
    "tap": ("Faucets",),
    "torch": ("Flashlights",),
    "barbecue": ("Outdoor Grills",),
    "bbq": ("Outdoor Grills",),
    # baby, sport
    "pram": ("Baby Strollers",),
    "pushchair": ("Baby Strollers",),
    "buggy": ("Baby Strollers",),
    "nappy": ("Diapers",),
    "soother": ("Pacifiers",),
    "dummy": ("Pacifiers",),
    "bike": ("Bicycles",),
}

# How much of a fuzzy candidate's score comes from its leaf name vs the rest of its path.
# The leaf carries most of the meaning (it is what the model was asked for); the path
# decides between same-named leaves and breaks ties between near-miss spellings.
LEAF_WEIGHT = 0.65
# A synonym hit is deliberate knowledge, not spelling: score it just under an exact name.
SYNONYM_SIMILARITY = 0.95
# Inflection-equal (stem-equal but not string-equal) leaves score just under exact, so an
# exact name wins when both exist ("Glass" vs "Glasses").
STEM_EQUAL_SIMILARITY = 0.98
# Segment similarities below this are treated as "no match": two unrelated names always
# share a few letters, and counting those would reward wrong paths.
SEGMENT_FLOOR = 0.8
# Word-subset leaf similarity: SUBSET_BASE + SUBSET_SPAN * (shared words / words of the
# longer name). At most 0.95 and usually 0.85, so it needs path support to pass 0.8.
SUBSET_BASE = 0.75
SUBSET_SPAN = 0.2
MAX_SUBSET_POSTINGS = 200
# Subtracted from a spelling-only match of a raw that has no path segments.
BARE_LEAF_PENALTY = 0.05
# Leaf-name cutoff (rapidfuzz ratio) for candidates found under one of the raw's own
# segments; the global scan over all names uses the stricter `leaf_cutoff`.
ANCHORED_LEAF_CUTOFF = 50.0
# An anchored candidate at least this close to the raw leaf makes the global scan redundant.
CONFIDENT_LEAF_SIMILARITY = 0.85
# A unique exact leaf is accepted even under a wrong path; its score is 0.9 + 0.1 * path
# consistency so a caller can still ask for review of inconsistent ones with threshold>0.9.
UNIQUE_LEAF_BASE = 0.9

# At most this many locales (the best-evidenced ones) are tried for one raw: each costs up
# to a few rapidfuzz scans, and beyond the top few the evidence is a shared loanword.
MAX_EVIDENCE_LOCALES = 3

# Separators a model or a merchant feed may use between path segments, strongest first.
# ">" variants never occur inside a category name, so they are unambiguous; "/" does
# occur ("AM/FM Radios"), so a slash-split is only tried when no ">"-like separator is
# present, and whole-string matches are tried before any split; bare "-" is in hundreds
# of names ("T-Shirts"), so only a spaced " - " separates.
_ARROW_SPLIT = re.compile(r"\s*(?:->|=>|»|›|→|>)\s*")
_PIPE_SPLIT = re.compile(r"\s+\|\s+|\s*\|\s*")
_SLASH_SPLIT = re.compile(r"\s*/\s*")
_DASH_SPLIT = re.compile(r"\s+[-–—]\s+")
_TOKEN = re.compile(r"[a-z0-9]+")
_WORD = re.compile(r"[^\W_]+")  # a Unicode letter/digit run: the token of localized names
# Combining marks left by NFKD ("í" -> "i" + U+0301), and Japanese (han)dakuten, which NFKD
# also splits off but which change the kana: those are recomposed, never dropped.
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_SHORT_ID = re.compile(r"^[a-z]{2}(?:-\d+)*$")


def _stem_token(tok: str) -> str:
    """A deliberately crude English singulariser, applied to both sides of every comparison.

    It only has to map singular and plural to the *same* key, not to a real word: "Hoodies"
    and "Hoodie" both become "hoodi", "Dresses"/"Dress" -> "dress", "Watches" -> "watch".
    """
    if len(tok) > 2:
        if tok.endswith("ies") and len(tok) > 4:
            tok = tok[:-3] + "i"
        elif tok.endswith(("sses", "ches", "shes", "xes", "zzes")):
            tok = tok[:-2]
        elif tok.endswith("s") and not tok.endswith(("ss", "us", "is")):
            tok = tok[:-1]
    if len(tok) > 2:
        if tok.endswith("ie"):
            tok = tok[:-1]
        elif tok.endswith("y"):
            tok = tok[:-1] + "i"
    return tok


def plain_key(text: str) -> str:
    """Punctuation- and case-insensitive key: "Women's T-Shirts" -> "womens t shirts".

    Apostrophes are dropped before tokenising so "Women's" stays one token; "&"/"and" are
    dropped because names use "&" while models often write "and".
    """
    text = text.casefold().replace("'", "").replace("’", "")
    return " ".join(t for t in _TOKEN.findall(text) if t != "and")


def stem_key(text: str) -> str:
    """`plain_key` with every token singularised: "Women's T-Shirts" -> "women t shirt"."""
    return " ".join(_stem_token(t) for t in plain_key(text).split())


def localized_plain_key(text: str) -> str:
    """`plain_key` for any language: Unicode words, accents folded ("Joyería" -> "joyeria").

    Folding accents lets a model or merchant that drops them still hit the exact rules.
    Conjunctions are kept (every language has its own "and"); CJK names have no spaces, so
    a CJK name is one or a few long tokens, which rapidfuzz compares character by character.
    """
    text = text.casefold().replace("'", "").replace("’", "")
    if not text.isascii():
        # NFC afterwards recomposes what NFKD split but must stay (kana, hangul syllables).
        text = unicodedata.normalize("NFC", _COMBINING.sub("", unicodedata.normalize("NFKD", text)))
    return " ".join(_WORD.findall(text))


def localized_stem_key(text: str) -> str:
    """`localized_plain_key` with the same crude singulariser as English: it maps many
    Romance plurals onto their singular too ("Anillos" -> "anillo") and, applied to both
    sides, never hurts an exact match."""
    return " ".join(_stem_token(t) for t in localized_plain_key(text).split())


def _raw_words(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold().replace("'", "").replace("’", "")))


def split_path(raw: str) -> list[str]:
    """Split a raw path on the first separator family that is present (see above)."""
    for pattern in (_ARROW_SPLIT, _PIPE_SPLIT, _DASH_SPLIT):
        if pattern.search(raw):
            parts = pattern.split(raw)
            break
    else:
        parts = _SLASH_SPLIT.split(raw) if "/" in raw else [raw]
    return [p.strip(" \t-=:") for p in parts if p.strip(" \t-=:")]


@dataclass(frozen=True, slots=True)
class CategoryCorrection:
    category: Category | None
    raw: str
    corrected: bool
    score: float
    method: Method
    # The locale whose names matched ("es", "ja", ...); None for English (canonical) names.
    locale: str | None = None

    @property
    def resolved(self) -> bool:
        return self.category is not None


class _Names:
    """Everything the matcher compares for one language, aligned with the category list.

    English is one instance; each locale gets its own, so a localized raw is compared with
    names of one language and its path consistency with ancestors in that language.
    """

    __slots__ = (
        "locale",
        "names",
        "key",
        "plain",
        "stem",
        "compact",
        "plain_compact",
        "tokens",
        "postings",
        "by_stem",
        "by_compact",
        "by_name",
        "leaf_keys",
    )

    def __init__(
        self,
        locale: str | None,
        names: list[str | None],
        key: Callable[[str], str],
        plain: Callable[[str], str],
    ) -> None:
        self.locale = locale
        self.names = names
        self.key = key
        self.plain = plain
        # A category the locale does not name gets empty keys: it is never a candidate.
        self.stem = [key(n) if n else "" for n in names]
        self.compact = [s.replace(" ", "") for s in self.stem]
        self.plain_compact = [plain(n).replace(" ", "") if n else "" for n in names]
        self.tokens = [frozenset(st.split()) for st in self.stem]
        self.postings: dict[str, list[int]] = {}
        for i, toks in enumerate(self.tokens):
            for tok in toks:
                self.postings.setdefault(tok, []).append(i)
        self.by_stem: dict[str, list[int]] = {}
        self.by_compact: dict[str, list[int]] = {}
        self.by_name: dict[str, list[int]] = {}
        for i, (s, cp) in enumerate(zip(self.stem, self.compact)):
            if s:
                self.by_stem.setdefault(s, []).append(i)
                self.by_compact.setdefault(cp, []).append(i)
                self.by_name.setdefault(normalise_key(names[i] or ""), []).append(i)
        # rapidfuzz scans the distinct leaf keys, not the 10k categories: fewer, shorter.
        self.leaf_keys = list(self.by_stem)


class CategoryCorrector:
    """Correct raw category strings against one taxonomy; see the module docstring.

    `threshold`: minimum score for a fuzzy match (and for a unique leaf, whose score is at
    least 0.9). `ambiguity_margin`: if the two best different categories are closer than
    this, the result is unresolved. `synonyms`: a leaf lexicon replacing DEFAULT_SYNONYMS
    (pass `{**DEFAULT_SYNONYMS, ...}` to extend it). The default threshold, 0.8, sits above
    the best score any invented leaf reached in the benchmark's control set (~0.77) and
    below nearly all genuine one- or two-letter typos under a correct path.

    Localized names (`taxonomy.locales`): a full localized path is exact (the taxonomy
    resolves it); otherwise English is tried first, unchanged, and a locale's names are
    tried only when the raw carries evidence of that locale (a word that only occurs in
    its names, or accented/non-Latin letters its names use). The same rules (unique leaf,
    then fuzzy with path consistency, in that locale) apply; the better of the English and
    the localized answer wins, English on a tie. A locale's index (~50 ms) is built the
    first time a raw needs it, so English-only traffic never pays for it.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        threshold: float = 0.8,
        *,
        ambiguity_margin: float = 0.02,
        synonyms: Mapping[str, Iterable[str]] | None = None,
        candidate_limit: int = 12,
        leaf_cutoff: float = 70.0,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.taxonomy = taxonomy
        self.threshold = threshold
        self.ambiguity_margin = ambiguity_margin
        self.candidate_limit = candidate_limit
        self.leaf_cutoff = leaf_cutoff

        cats = list(taxonomy.categories.values())
        self._cats = cats
        index = {c.id: i for i, c in enumerate(cats)}
        self._id_index = index
        self._anc = [tuple(index[a] for a in reversed(c.ancestor_ids)) for c in cats]
        self._children = [tuple(index[ch] for ch in c.children_ids) for c in cats]

        en = _Names(None, [c.name for c in cats], stem_key, plain_key)
        self._en = en
        self._full_stem = [" ".join(en.stem[j] for j in (*self._anc[i], i)) for i in range(len(cats))]
        self._subtree_cache: dict[int, list[int]] = {}
        for i in range(len(cats)):  # eager: no first-call latency spikes in a worker
            self._subtree(i)

        self._synonyms: dict[str, list[int]] = {}
        lexicon = DEFAULT_SYNONYMS if synonyms is None else synonyms
        for term, targets in lexicon.items():
            key = stem_key(term)
            if not key or key in en.by_stem or key.replace(" ", "") in en.by_compact:
                continue  # the term is a real category name: the exact rules own it
            hits = {i for t in targets for i in en.by_stem.get(stem_key(t), ())}
            for k in {key, key.replace(" ", "")}:  # "tee shirt" also covers "teeshirt"
                if hits:
                    self._synonyms[k] = sorted(set(self._synonyms.get(k, ())) | hits)

        # Locale evidence, cheap to build eagerly: the words (localized keys) that occur in
        # a locale's names but in no English name, and the non-ASCII letters each uses.
        self._locale_words: dict[str, list[str]] = {}
        self._locale_chars: dict[str, frozenset[str]] = {}
        # Plain casefolded words (no accent folding, no stemming): one regex pass over each
        # locale's joined names keeps this to a few ms per locale.
        en_words = _raw_words(" ".join(c.name for c in cats))
        for locale in taxonomy.locales:
            text = " ".join(n for n in taxonomy._localized[locale] if n)
            self._locale_chars[locale] = frozenset(
                ch for ch in set(text.casefold()) if not ch.isascii() and ch.isalpha()
            )
            for word in _raw_words(text) - en_words:
                self._locale_words.setdefault(word, []).append(locale)
        self._views: dict[str, _Names] = {}
        self._views_lock = threading.Lock()

    # -- public --------------------------------------------------------------------------

    def correct(self, raw: str) -> CategoryCorrection:
        text = " ".join(str(raw or "").split())
        if not _WORD.search(text):
            return CategoryCorrection(None, raw, True, 0.0, "unresolved")

        # 1. exact: the model (or a merchant) gave the path or id verbatim.
        exact = self.taxonomy.by_full_name(text, localized=False) or self._by_id(text)
        if exact is not None:
            return CategoryCorrection(exact, raw, False, 1.0, "exact_path")

        segments = split_path(text)
        if not segments:
            return CategoryCorrection(None, raw, True, 0.0, "unresolved")
        # A path written with another separator is still an exact path, just re-spelt.
        respelt = self.taxonomy.by_full_name(" > ".join(segments), localized=False)
        if respelt is not None:
            return CategoryCorrection(respelt, raw, True, 1.0, "exact_path")

        # 2. unique leaf: the whole raw first (names may contain "/"), then its last segment.
        en = self._en
        for leaf_text, parents in ((text, []), (segments[-1], segments[:-1])):
            named = self.taxonomy.by_leaf_name(leaf_text, localized=False)
            if len(named) == 1:
                i = self._index_of(named[0])
                path = self._path_consistency(en, [stem_key(p) for p in parents], i) if parents else 1.0
                score = UNIQUE_LEAF_BASE + (1.0 - UNIQUE_LEAF_BASE) * path
                if score >= self.threshold:
                    return CategoryCorrection(named[0], raw, True, round(score, 4), "unique_leaf")
                break

        # Localized names: only where the raw carries evidence of a locale (see the class
        # docstring), so English correction does the same work as without locales.
        locales = self._evidence_locales(text, segments) if self._locale_chars else []
        if locales:
            localized = self._localized_exact(raw, text, segments)
            if localized is not None:
                return localized

        # 3. fuzzy with path consistency. A localized answer replaces the English one only
        # if it scores higher; once English has resolved, only the cheap exact localized
        # rule can do that, so the localized fuzzy scans run for English failures only.
        result = self._fuzzy(en, raw, segments)
        for locale in locales[:MAX_EVIDENCE_LOCALES]:
            v = self._view(locale)
            if result.resolved:
                alt = self._localized_unique_leaf(v, raw, text, segments)
            else:
                alt = self._localized_correct(v, raw, text, segments)
            if alt is None or not alt.resolved or (result.resolved and alt.category == result.category):
                continue  # agreeing with English: the English reading stands
            if not result.resolved or alt.score > result.score:
                result = alt
        return result

    def correct_many(self, raws: Iterable[str]) -> list[CategoryCorrection]:
        return [self.correct(r) for r in raws]

    def synonym_targets(self, term: str) -> list[Category]:
        """The categories the lexicon maps `term` to (empty if it is not in the lexicon)."""
        key = stem_key(term)
        hits = self._synonyms.get(key) or self._synonyms.get(key.replace(" ", "")) or []
        return [self._cats[i] for i in hits]

    # -- internals -----------------------------------------------------------------------

    def _by_id(self, text: str) -> Category | None:
        if text.startswith(GID_PREFIX) or _SHORT_ID.match(text):
            return self.taxonomy.get(text)
        return None

    def _index_of(self, category: Category) -> int:
        return self._id_index[category.id]

    def _view(self, locale: str) -> _Names:
        view = self._views.get(locale)
        if view is None:
            with self._views_lock:  # one build per locale even with concurrent callers
                view = self._views.get(locale)
                if view is None:
                    names = list(self.taxonomy._localized[locale])
                    view = self._views[locale] = _Names(locale, names, localized_stem_key, localized_plain_key)
        return view

    def _evidence_locales(self, text: str, segments: list[str]) -> list[str]:
        """Locales the raw is probably written in, best first (empty: treat it as English).

        A word of the raw that occurs only in a locale's names votes for that locale; with
        no such word, non-ASCII letters that all occur in a locale's names vote for it
        (accents, kana, hangul and hanzi tell the languages apart well enough).
        """
        votes: dict[str, int] = {}
        for word in _raw_words(text):
            for locale in self._locale_words.get(word, ()):
                votes[locale] = votes.get(locale, 0) + 1
        if votes:
            best = max(votes.values())
            return sorted((loc for loc, n in votes.items() if n == best), key=self.taxonomy.locales.index)
        letters = {ch for ch in text.casefold() if not ch.isascii() and ch.isalpha()}
        if not letters:
            return []
        return [loc for loc, chars in self._locale_chars.items() if letters <= chars]

    def _localized_exact(self, raw: str, text: str, segments: list[str]) -> CategoryCorrection | None:
        """A full localized path, verbatim or re-spelt with another separator."""
        hit = self.taxonomy.by_full_name(text)
        verbatim = hit is not None
        if hit is None and len(segments) > 1:
            hit = self.taxonomy.by_full_name(" > ".join(segments))
        if hit is None:
            return None
        return CategoryCorrection(hit, raw, not verbatim, 1.0, "exact_path", self._locale_of_path(hit, segments))

    def _locale_of_path(self, category: Category, segments: list[str]) -> str | None:
        want = normalise_key(" > ".join(segments))
        for locale in self.taxonomy.locales:
            name = self.taxonomy.localized_full_name(category.id, locale)
            if name is not None and normalise_key(name) == want:
                return locale
        return None

    def _localized_unique_leaf(self, v: _Names, raw: str, text: str, segments: list[str]) -> CategoryCorrection | None:
        """Step 2 in one locale: the raw, or its last segment, is one category's name there."""
        for leaf_text, parents in ((text, []), (segments[-1], segments[:-1])):
            named = v.by_name.get(normalise_key(leaf_text), ())
            if len(named) == 1:
                i = named[0]
                path = self._path_consistency(v, [v.key(p) for p in parents], i) if parents else 1.0
                score = UNIQUE_LEAF_BASE + (1.0 - UNIQUE_LEAF_BASE) * path
                if score >= self.threshold:
                    return CategoryCorrection(self._cats[i], raw, True, round(score, 4), "unique_leaf", v.locale)
                break
        return None

    def _localized_correct(self, v: _Names, raw: str, text: str, segments: list[str]) -> CategoryCorrection:
        """Steps 2 and 3 in one locale."""
        return self._localized_unique_leaf(v, raw, text, segments) or self._fuzzy(v, raw, segments)

    def _subtree(self, i: int) -> list[int]:
        cached = self._subtree_cache.get(i)
        if cached is None:
            out: list[int] = []
            stack = list(self._children[i])
            while stack:
                j = stack.pop()
                out.append(j)
                stack.extend(self._children[j])
            self._subtree_cache[i] = cached = out
        return cached

    def _fuzzy(self, v: _Names, raw: str, segments: list[str]) -> CategoryCorrection:
        leaf = v.key(segments[-1])
        parents = [s for s in (v.key(p) for p in segments[:-1]) if s]
        if not leaf:
            return CategoryCorrection(None, raw, True, 0.0, "unresolved")
        compact = leaf.replace(" ", "")
        # Unstemmed too: the stemmer can eat a typo'd plural ("Mgus" -> "mgu") and widen
        # the distance to the intended name ("mugs").
        plain = v.plain(segments[-1]).replace(" ", "")
        q = (leaf, compact, plain)

        # Candidate generation, cheapest first; each step runs only if the previous ones
        # found nothing convincing, because the global rapidfuzz scan is the expensive one.
        # (1) exact inflection-insensitive key hits and the synonym lexicon (English only).
        leaf_sim: dict[int, float] = {}
        spelled = False  # True when candidates come from spelling similarity, not a key
        for i in v.by_stem.get(leaf, ()):
            leaf_sim[i] = (
                1.0 if normalise_key(v.names[i] or "") == normalise_key(segments[-1]) else STEM_EQUAL_SIMILARITY
            )
        for i in v.by_compact.get(compact, ()):
            leaf_sim.setdefault(i, STEM_EQUAL_SIMILARITY)
        if v.locale is None:
            for i in self._synonyms.get(leaf, ()) or self._synonyms.get(compact, ()):
                leaf_sim[i] = max(leaf_sim.get(i, 0.0), SYNONYM_SIMILARITY)
        if not leaf_sim:
            spelled = True
            # (2) path-driven: the subtrees of the raw's own intermediate segments. A
            # misspelt short leaf ("Bgas") may not rank among the global top-N names, but
            # it is among the descendants of the segments the model got right; being
            # path-constrained, these candidates are admitted at a lower leaf cutoff.
            anchors = [i for p in parents for i in v.by_stem.get(p, ())]
            if anchors:
                anchors.sort(key=lambda i: -self._cats[i].level)
                pool = [j for j in dict.fromkeys(j for a in anchors[:3] for j in self._subtree(a)) if v.stem[j]]
                if pool:
                    scores = process.cdist(
                        [leaf],
                        [v.stem[i] for i in pool],
                        scorer=fuzz.ratio,
                        processor=None,
                        score_cutoff=ANCHORED_LEAF_CUTOFF,
                    )[0]
                    for k in np.nonzero(scores)[0]:
                        leaf_sim[pool[k]] = self._leaf_similarity(v, q, pool[k])
            # (3) rapidfuzz over every distinct leaf name, unless (2) already found a close
            # one: the right category may sit under a segment the model got wrong.
            if not leaf_sim or max(leaf_sim.values()) < CONFIDENT_LEAF_SIMILARITY:
                for key, _, _ in process.extract(
                    leaf,
                    v.leaf_keys,
                    scorer=fuzz.ratio,
                    processor=None,
                    limit=self.candidate_limit,
                    score_cutoff=self.leaf_cutoff,
                ):
                    for i in v.by_stem[key]:
                        leaf_sim.setdefault(i, self._leaf_similarity(v, q, i))
            # (4) a qualifier added or dropped: the words of one name are a subset of the
            # other's ("Laptop Computers" vs "Laptops", "Flash Drives" vs "USB Flash
            # Drives"). Spelling similarity misses these, or prefers a same-shaped wrong
            # name ("Desktop Computers"); they are scored low enough that only a
            # consistent path lets them through.
            for i, sim in self._token_subset_candidates(v, leaf).items():
                if sim > leaf_sim.get(i, 0.0):
                    leaf_sim[i] = sim

        if not leaf_sim:
            if parents or v.locale is not None:
                # The model wrote a path but its leaf matches nothing, not even among the
                # children of the segments it got right: the category itself is unknown,
                # and the deepest recognisable ancestor would be a guess.
                return CategoryCorrection(None, raw, True, 0.0, "unresolved")
            return self._full_path_fallback(raw, leaf)

        if len(leaf_sim) > 3 * self.candidate_limit:
            # Path scoring is the per-candidate cost; same-named leaves stay together.
            keep = sorted(leaf_sim, key=leaf_sim.__getitem__, reverse=True)[: 3 * self.candidate_limit]
            leaf_sim = {i: leaf_sim[i] for i in keep}

        if parents:
            path_sim = self._path_consistency_many(v, parents, list(leaf_sim))
            scored = {i: LEAF_WEIGHT * s + (1 - LEAF_WEIGHT) * path_sim[i] for i, s in leaf_sim.items()}
        elif spelled:
            # A bare leaf has no path to corroborate a spelling correction, so it must be
            # closer: "Dresess" passes, a made-up "Sofuba" (ratio 0.8 to "Sofa") does not.
            scored = {i: s - BARE_LEAF_PENALTY for i, s in leaf_sim.items()}
            if " " in leaf and v.locale is None:
                # Several words and no separator may be a whole path run together.
                for i, s in self._full_path_hits(leaf).items():
                    scored[i] = max(scored.get(i, 0.0), s)
        else:
            scored = dict(leaf_sim)
        return self._decide(raw, scored, v.locale)

    def _decide(self, raw: str, scored: dict[int, float], locale: str | None = None) -> CategoryCorrection:
        ranked = sorted(scored.items(), key=lambda kv: kv[1], reverse=True)
        best_i, best = ranked[0]
        best = min(1.0, max(0.0, best))
        if best < self.threshold:
            return CategoryCorrection(None, raw, True, round(best, 4), "unresolved")
        if len(ranked) > 1 and best - ranked[1][1] < self.ambiguity_margin:
            # Two different categories fit equally well ("T-Shirts" alone has five homes):
            # picking one would be a silent guess.
            return CategoryCorrection(None, raw, True, round(best, 4), "unresolved")
        return CategoryCorrection(self._cats[best_i], raw, True, round(best, 4), "fuzzy", locale)

    def _full_path_fallback(self, raw: str, query: str) -> CategoryCorrection:
        # A single segment that is no leaf name, e.g. a path written without separators
        # ("apparel accessories clothing dresses"): compare whole paths. The score is the
        # plain path similarity, so only near-identical paths pass.
        hits = self._full_path_hits(query) if " " in query else {}
        if not hits:
            return CategoryCorrection(None, raw, True, 0.0, "unresolved")
        return self._decide(raw, hits)

    def _full_path_hits(self, query: str) -> dict[int, float]:
        hits = process.extract(
            query, self._full_stem, scorer=fuzz.ratio, processor=None, limit=3, score_cutoff=self.threshold * 100
        )
        return {i: sc / 100.0 for _, sc, i in hits}

    def _token_subset_candidates(self, v: _Names, leaf: str) -> dict[int, float]:
        words = frozenset(leaf.split())
        if len(words) < 2 and not any(len(w) > 2 for w in words):
            return {}
        out: dict[int, float] = {}
        # Names whose words are all in the raw leaf (the raw added a qualifier).
        if len(words) >= 2:
            for w in words:
                for i in v.postings.get(w, ()):
                    toks = v.tokens[i]
                    if toks < words:
                        out[i] = SUBSET_BASE + SUBSET_SPAN * len(toks) / len(words)
        # Names that contain all the raw's words (the raw dropped a qualifier); a lone
        # common word ("Accessories") fits hundreds of names and says nothing.
        postings = sorted((v.postings.get(w, []) for w in words), key=len)
        if postings and postings[0] and len(postings[0]) <= MAX_SUBSET_POSTINGS:
            common = set(postings[0]).intersection(*postings[1:])
            for i in common:
                toks = v.tokens[i]
                if words < toks:
                    out[i] = max(out.get(i, 0.0), SUBSET_BASE + SUBSET_SPAN * len(words) / len(toks))
        return out

    def _leaf_similarity(self, v: _Names, q: tuple[str, str, str], i: int) -> float:
        # Indel ratio counts a swapped pair of letters as two edits; OSA as one. Taking the
        # best of the two, over spaced/compact ("Smartwatch" vs "Smart Watches") and
        # stemmed/unstemmed forms, keeps a single typo from sinking a short name.
        leaf, compact, plain = q
        s = max(
            fuzz.ratio(leaf, v.stem[i]) / 100.0,
            fuzz.ratio(compact, v.compact[i]) / 100.0,
            OSA.normalized_similarity(compact, v.compact[i]),
            OSA.normalized_similarity(plain, v.plain_compact[i]),
        )
        return STEM_EQUAL_SIMILARITY if s >= 1.0 else s

    def _path_consistency(self, v: _Names, parents: list[str], i: int) -> float:
        return self._path_consistency_many(v, [p for p in parents if p], [i])[i] if parents else 1.0

    def _path_consistency_many(self, v: _Names, parents: list[str], cands: list[int]) -> dict[int, float]:
        """Soft F1 between the raw's non-leaf segments and each candidate's ancestors.

        Precision: does every segment the model wrote appear in the lineage (penalises
        wrong and extra levels)? Recall: does every ancestor appear in what it wrote
        (penalises dropped levels, and wrong verticals)? Order is ignored: a model that
        swaps two levels still named the right ones.
        """
        if not parents:
            return {i: 1.0 for i in cands}
        ancestors = sorted({a for i in cands for a in self._anc[i]})
        if not ancestors:
            return {i: 0.0 for i in cands}
        col = {a: k for k, a in enumerate(ancestors)}
        sims = np.zeros((len(parents), len(ancestors) + 1), dtype=np.float32)  # last: padding
        sims[:, :-1] = (
            process.cdist(parents, [v.stem[a] for a in ancestors], scorer=fuzz.ratio, processor=None, dtype=np.float32)
            / 100.0
        )
        sims[sims < SEGMENT_FLOOR] = 0.0
        depth = max(len(self._anc[i]) for i in cands)
        idx = np.full((len(cands), depth), len(ancestors), dtype=np.intp)
        mask = np.zeros((len(cands), depth), dtype=np.float32)
        for r, i in enumerate(cands):
            anc = self._anc[i]
            idx[r, : len(anc)] = [col[a] for a in anc]
            mask[r, : len(anc)] = 1.0
        g = sims[:, idx]  # (segments, candidates, depth)
        precision = g.max(axis=2).mean(axis=0)
        n_anc = mask.sum(axis=1)
        recall = (g.max(axis=0) * mask).sum(axis=1) / np.maximum(n_anc, 1.0)
        total = precision + recall
        f1 = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)
        # A root has no lineage to agree with the raw's segments.
        f1 = np.where(n_anc > 0, f1, 0.0)
        return {i: float(f1[r]) for r, i in enumerate(cands)}
