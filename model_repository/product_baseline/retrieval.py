"""Hybrid category retrieval for the CPU baseline: lexical (BM25) + embeddings, over the tree.

One product gets a probability for every taxonomy category in three steps
(docs/ARCHITECTURE.md, "How the baseline classifies", has the measurements):

1. **Evidence per category** (`HybridRetriever.logits`), a weighted sum of scores:
   - *embedding*: cosine of the product's title + product type (all-MiniLM-L6-v2) with
     each category's vector (its leaf name's and full path's embeddings averaged), plus
     the product type's own cosine;
   - *lexical*: BM25 (`bm25s`) of each merchant field against one document per category
     and language: its English name with the corrector's synonyms, and its name in every
     locale the taxonomy has. Fields are weighted evidence (`FIELD_WEIGHTS`). Tokens are
     accent-folded words with their singular and 5-character prefix (a language-agnostic
     stemmer: "anillos" and "anillo" meet), and character bigrams for scripts written
     without spaces (Japanese, Chinese);
   - *leaf overlap* and *head noun*: the share of a leaf's words the title names, and a
     bonus for the categories named by the title's head noun ("Silk scarf" is a scarf);
   - *pseudo-translation*: a title that matches another locale's names better than
     English ones is embedded together with the English names of its best matches there.
   Relative score fusion rather than reciprocal rank fusion: RRF keeps only ranks, and the
   probabilities below need to know how far apart the scores are.
2. **Probabilities**: a softmax of the fused score over all categories (`TEMPERATURE`), so
   every category, inner nodes included, has an "own" probability.
3. **Up the tree** (`CategoryTree`): a node's *mass* is its own probability plus its
   descendants'. The answer descends from the most probable vertical, at each node going to
   the child with the largest mass unless the node's own probability is larger: a confident
   parent is not lost to a diffuse set of leaves. The mass of the answered node is the
   probability that the product belongs in its subtree; calibration and back-off are in
   `engine.py` and `calibration.py`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
from scipy import sparse

from model_repository.contract import ModelProduct
from model_repository.product_baseline.embedder import MiniLMEmbedder
from taxonomy.corrector import DEFAULT_SYNONYMS
from taxonomy.model import PATH_SEPARATOR, Taxonomy

__all__ = [
    "FIELD_WEIGHTS",
    "LEXICAL_HALF_SCORE",
    "PRODUCT_TYPE_EMBEDDING_WEIGHT",
    "LEAF_OVERLAP_WEIGHT",
    "TEMPERATURE",
    "NULL_EVIDENCE",
    "NULL_SCALE",
    "CategoryTree",
    "HybridRetriever",
    "head_key",
    "lexical_tokens",
    "word_keys",
    "load_shipped_index",
    "write_shipped_index",
]

log = logging.getLogger(__name__)

# Relative weight of each merchant field in the lexical evidence. The product type is the
# merchant's own word for what the thing is; the description mostly says other things.
# Lexical evidence per merchant field, each BM25 score squashed to [0, 1) by s / (s + K)
# and weighted in cosine units. The product type is the merchant's own word for what the
# thing is. Measured on the dev stores and examples/ (docs/ARCHITECTURE.md): the
# description's BM25 hurt at any weight (0.2 cost 5 points of hF1: descriptions name
# materials, uses and brands, not categories), so it only counts through attributes.
FIELD_WEIGHTS: Mapping[str, float] = {
    "title": 0.3,
    "product_type": 0.2,
    "tags": 0.1,
    "vendor": 0.05,
    "description": 0.0,
}
# BM25 score at which a field's evidence is worth half its weight: about one rare word.
LEXICAL_HALF_SCORE = 5.0
# The product type embedded on its own, on top of title + type: a merchant's "Earrings"
# is a strong hint even when the title is "Aurora drop 18k".
PRODUCT_TYPE_EMBEDDING_WEIGHT = 0.5
# Distinct product types whose category scores are kept (~40 KB each).
PRODUCT_TYPE_CACHE_SIZE = 2048
LEAF_OVERLAP_WEIGHT = 0.1
# Bonus for the categories whose name has the title's head noun (`head_key`): "Silk scarf"
# is a scarf, not silk.
HEAD_NOUN_WEIGHT = 0.1
# Languages whose noun phrases put the head first ("anillo de plata").
HEAD_FIRST_LANGUAGES = frozenset({"es", "fr", "it", "pt", "ca", "ro"})
# Softmax temperature over fused scores; the calibrator maps the resulting masses to
# probabilities, so this mostly sets how much mass spreads to a leaf's siblings.
TEMPERATURE = 0.03
# The fused score of "none of these categories" (`probabilities`). On the dev stores and
# examples/ nearly every answer whose best score was under 1.0 was wrong (32 of 33 on the
# stores), and 72% / 91% above it were right; nonsense titles score 0.3-1.0. Without a
# product type the scores run ~0.3 lower, and the same split sits near 0.7-0.8.
NULL_EVIDENCE = 1.0
NULL_EVIDENCE_WITHOUT_KIND = 0.7
# How sharply the match-strength factor turns from 0 to 1 around those levels: wider than
# the softmax's temperature, so a middling best match (1.26, the median of the dev
# stores' football shirts) counts as less sure than a strong one (1.48, the rings).
NULL_SCALE = 0.1
# Pseudo-translation: when a product's words match the taxonomy's names in another
# language better than in English, the English names of its best matches there join the
# text that is embedded (MiniLM is an English model): "Anillo de plata" is embedded as
# "Anillo de plata. Rings". Up to this many names, each within this share of the best.
TRANSLATED_NAMES = 2
# Share of a title's words in MiniLM's vocabulary above which it reads as English.
ENGLISH_WORD_SHARE = 0.5
TRANSLATED_SHARE = 0.8
PREFIX_CHARS = 5
# The default taxonomy's category vectors, built by `python -m
# model_repository.product_baseline.retrieval` and shipped so that first use takes seconds.
SHIPPED_INDEX = Path(__file__).parent / "index" / "categories-default.npz"

LEXICAL_INDEX_FORMAT = 4  # bump when lexical_tokens or the documents change
_EMPTY = "<empty>"
# Where a title's first clause ends: " - red", " | brand", ", 12 oz", " (pack of 2)", " with ..."
_CLAUSE_END = re.compile(
    r"\s[-–|/]\s|[,(\[:;]|\s(?:with|for|con|para|avec|pour|mit|für|fur|per|voor|med|til)\s"
)  # bm25s needs a token in every document
_WORD = re.compile(r"\w+", re.UNICODE)
# Scripts written without spaces between words: Han, Hiragana, Katakana (Hangul has spaces).
_NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_STOPWORDS = frozenset(
    "and or the of for with in & de del la las los el y e et des du le les und der die das fur mit "
    "di da do dos das per con en a og i och til van het voor en ja".split()
)


def _fold(text: str) -> str:
    """Casefolded, accents removed: "Fútbol" and "futbol" are one word."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _singular(word: str) -> str:
    """A light, language-agnostic plural strip for Latin-script words: "scarves" ->
    "scarf", "accessories" -> "accessory", "dresses" -> "dress", "camisetas" -> "camiseta".
    Wrong now and then ("bus" stays, "glasses" -> "glass"); it only has to map a name and a
    title to the same key."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith("ss"):
        return word
    if word.endswith("ves") and len(word) > 4:
        return word[:-3] + "f"
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    return word[:-1]


def head_key(title: str, *, head_first: bool) -> str | None:
    """The word key of a title's head noun, the word that says what the product is: the
    last content word of its first clause in English, German, Dutch, Nordic, Polish and
    Japanese ("Women's floral midi dress - red" -> "dress"), the first in Romance languages
    ("Anillo de plata" -> "anill"). A heuristic, so it only adds a small bonus."""
    clause = _CLAUSE_END.split(_fold(title), maxsplit=1)[0]
    words = [
        w for w in _WORD.findall(clause) if len(w) >= 2 and w not in _STOPWORDS and not any(ch.isdigit() for ch in w)
    ]
    if not words or _NO_SPACES.search(words[0]):
        return None  # CJK titles have no word boundaries to find a head by
    word = words[0] if head_first else words[-1]
    return _singular(word)[:PREFIX_CHARS]


def word_keys(text: str) -> set[str]:
    """One key per word (its 5-character prefix; CJK runs as they are), for counting how
    many of a name's words a title names without the plural and prefix variants of
    `lexical_tokens` counting twice."""
    keys = set()
    for word in _WORD.findall(_fold(text)):
        if _NO_SPACES.search(word):
            keys.add(word)
        elif len(word) >= 2 and word not in _STOPWORDS and not word.isdigit():
            keys.add(_singular(word)[:PREFIX_CHARS])
    return keys


def lexical_tokens(text: str) -> list[str]:
    """BM25 terms of a text: words and their 5-character prefixes; bigrams for CJK runs."""
    out: list[str] = []
    for word in _WORD.findall(_fold(text)):
        if _NO_SPACES.search(word):
            out.extend(word)  # single characters carry meaning in Chinese and Japanese
            out.extend(word[i : i + 2] for i in range(len(word) - 1))
            continue
        if len(word) < 2 or word in _STOPWORDS or word.isdigit():  # "s" of "women's", numbers
            continue
        out.append(word)
        singular = _singular(word)
        if singular != word:
            out.append(singular)
        if len(singular) >= PREFIX_CHARS:
            out.append(singular[:PREFIX_CHARS] + "~")  # marked: a prefix never equals a short word
    return out


@dataclass(frozen=True)
class CategoryTree:
    """The taxonomy as arrays: parent index, depth, and the sparse ancestor-or-self matrix
    that turns own probabilities into subtree masses with one product."""

    ids: tuple[str, ...]
    parent: np.ndarray  # -1 for a vertical root
    depth: np.ndarray  # root = 1
    children: tuple[tuple[int, ...], ...]
    roots: tuple[int, ...]
    # (C, C), [j, k] = 1 when k is j or an ancestor of j: mass = own @ lineage.
    lineage: sparse.csr_matrix

    @classmethod
    def of(cls, taxonomy: Taxonomy) -> CategoryTree:
        ids = tuple(taxonomy.categories)
        index = {cid: i for i, cid in enumerate(ids)}
        parent = np.full(len(ids), -1, dtype=np.int32)
        depth = np.zeros(len(ids), dtype=np.int32)
        children: list[list[int]] = [[] for _ in ids]
        rows, cols = [], []
        for i, cid in enumerate(ids):
            c = taxonomy.categories[cid]
            depth[i] = c.level + 1
            if c.parent_id is not None:
                parent[i] = index[c.parent_id]
                children[parent[i]].append(i)
            for k in (i, *(index[a] for a in c.ancestor_ids)):
                rows.append(i)
                cols.append(k)
        lineage = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(ids), len(ids)))
        return cls(
            ids=ids,
            parent=parent,
            depth=depth,
            children=tuple(tuple(ch) for ch in children),
            roots=tuple(int(i) for i in np.nonzero(parent < 0)[0]),
            lineage=lineage,
        )

    def masses(self, own: np.ndarray) -> np.ndarray:
        """(n, C) own probabilities -> (n, C) subtree masses."""
        return np.asarray((self.lineage.T @ own.T).T, dtype=np.float32)

    def descend(self, own: np.ndarray, mass: np.ndarray) -> int:
        """The best node for one product: from the vertical with the most mass, down to the
        child with the most mass while that child outweighs the node's own probability."""
        node = max(self.roots, key=lambda r: mass[r])
        while self.children[node]:
            best = max(self.children[node], key=lambda c: mass[c])
            if mass[best] <= own[node]:
                break
            node = best
        return node

    def ancestors(self, node: int) -> list[int]:
        """Nearest first, the node itself excluded."""
        out = []
        while self.parent[node] >= 0:
            node = int(self.parent[node])
            out.append(node)
        return out


class HybridRetriever:
    """Fused per-category evidence for products, over one taxonomy (module docstring)."""

    def __init__(self, taxonomy: Taxonomy, embedder: MiniLMEmbedder, cache_dir: Path) -> None:
        self.taxonomy = taxonomy
        self.embedder = embedder
        self.tree = CategoryTree.of(taxonomy)
        self.paths = [taxonomy.categories[cid].full_name for cid in self.tree.ids]
        self._leaf_names = [p.rsplit(PATH_SEPARATOR, 1)[-1] for p in self.paths]
        self._embeddings = self._load_or_build_embeddings(cache_dir)
        self._bm25 = self._load_or_build_lexical_index(cache_dir)
        self._block_locales = ("en", *_locales(taxonomy))
        self._type_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._localized_words: dict[str, dict[str, list[int]]] = {}
        self._localized_word_counts: dict[str, np.ndarray] = {}
        self._leaf_word_counts = np.array([len(word_keys(n)) for n in self._leaf_names], dtype=np.float32)
        # word -> the categories whose name has it, for the leaf-overlap feature
        self._categories_with_word: dict[str, list[int]] = {}
        for j, name in enumerate(self._leaf_names):
            for word in word_keys(name):
                self._categories_with_word.setdefault(word, []).append(j)

    # -- indexes ---------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        h = hashlib.sha256(("leaf+path\n" + "\n".join(self.paths)).encode())
        h.update(self.embedder.fingerprint.encode())
        return h.hexdigest()[:16]

    def _load_or_build_embeddings(self, cache_dir: Path) -> np.ndarray:
        fingerprint = self._fingerprint()
        path = cache_dir / f"categories-{self.taxonomy.version}-{fingerprint}.npy"
        for load in (lambda: np.load(path), lambda: load_shipped_index(fingerprint)):
            try:
                index = load()
            except (OSError, ValueError, KeyError):
                continue  # absent or torn: try the next source
            if index is not None and index.shape == (len(self.paths), self.embedder.dim):
                return index
        log.info("building the category index for %d categories (cached at %s)", len(self.paths), path)
        index = self.build_embeddings()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, index)
            os.replace(tmp, path)
        except OSError:
            log.warning("could not cache the category index at %s", path)
        return index

    def build_embeddings(self) -> np.ndarray:
        """Each category's vector: the mean of its leaf name's and its full path's
        embeddings. The leaf carries the meaning, the path disambiguates ("Rings" in Jewelry
        vs in Toys). Measured on the dev stores, embedding paths alone or blending ancestor
        names' vectors instead of the path's both lost 7-15 points of jewellery accuracy.
        ~60 s for the 10,281 categories of 2024-07 on 2 cores, which is why the default
        taxonomy's index ships with the package (SHIPPED_INDEX)."""
        return 0.5 * (self.embedder.encode(self._leaf_names) + self.embedder.encode(self.paths))

    def _load_or_build_lexical_index(self, cache_dir: Path) -> bm25s.BM25:
        """The BM25 index, cached as a pickle keyed by every name it is built from: building
        it tokenises 14 x 10,281 names (~3 s), loading it takes a fraction of that."""
        # The pickle holds numpy and bm25s objects: keyed by their versions too, so that two
        # environments sharing a cache (the project venv on numpy 2, the Triton venv on
        # numpy 1) each keep their own file instead of failing to read the other's.
        versions = f"numpy {np.__version__} bm25s {bm25s.__version__}"
        h = hashlib.sha256(f"bm25 {LEXICAL_INDEX_FORMAT} {PREFIX_CHARS} {versions}\n".encode())
        h.update("\n".join(self._leaf_names).encode())
        for locale in _locales(self.taxonomy):
            names = _localized_names(self.taxonomy, locale)
            h.update(f"\n{locale}\n".encode() + "\n".join(names.get(cid, "") for cid in self.tree.ids).encode())
        path = cache_dir / f"lexical-{self.taxonomy.version}-{h.hexdigest()[:16]}.pickle"
        try:
            with path.open("rb") as fh:
                languages, index = pickle.load(fh)
            if isinstance(index, bm25s.BM25):
                self._languages = languages
                return index
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, ImportError):
            pass  # absent, torn or from another bm25s version: rebuilt below
        index = self._build_lexical_index()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            with tmp.open("wb") as fh:
                pickle.dump((self._languages, index), fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            log.warning("could not cache the lexical index at %s", path)
        return index

    def _build_lexical_index(self) -> bm25s.BM25:
        """One document per category and language, in language-major blocks of C
        documents: a category's lexical score is its best language's. One document holding
        all 14 names would be long, and BM25's length normalisation would then rank
        "Boxing Rings" above the jewellery "Rings" for the word "rings"."""
        synonyms: dict[str, list[str]] = {}
        for word, targets in DEFAULT_SYNONYMS.items():
            for target in targets:
                synonyms.setdefault(_fold(target), []).append(word)
        corpus = [
            lexical_tokens(" ".join([leaf, *synonyms.get(_fold(leaf), ())])) or [_EMPTY] for leaf in self._leaf_names
        ]
        for locale in _locales(self.taxonomy):
            names = _localized_names(self.taxonomy, locale)
            corpus += [lexical_tokens(names.get(cid, "")) or [_EMPTY] for cid in self.tree.ids]
        self._languages = len(corpus) // len(self.tree.ids)
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
        return retriever

    # -- scoring ---------------------------------------------------------------------------

    def logits(self, products: Sequence[ModelProduct]) -> np.ndarray:
        """(n, C) fused evidence per product and category (higher is better)."""
        return self._evidence(products)[0]

    def _evidence(self, products: Sequence[ModelProduct]) -> tuple[np.ndarray, np.ndarray]:
        """Fused evidence, and each product's "none of them" level: lower without a product
        type (or translation), whose embedding adds about 0.3 to a right category's score."""
        lexical = np.zeros((len(products), len(self.paths)), dtype=np.float32)
        queries = []
        locales = []
        # What the product says it is, on its own: the product type, or for a product in
        # another language the English names it translates to. MiniLM reads English: a
        # Spanish product type ("Camisetas") embedded alone is surface similarity
        # ("Camisoles").
        kinds = []
        for i, p in enumerate(products):
            lexical[i], translated, locale = self._lexical(p)
            locales.append(locale)
            queries.append(". ".join(x for x in (p.title, p.product_type, translated) if x))
            kinds.append(p.product_type if locale == "en" else translated)
        fused = self.embedder.encode(queries) @ self._embeddings.T
        typed = [i for i, kind in enumerate(kinds) if kind]
        if typed:
            types = self._product_type_scores([kinds[i] for i in typed])
            fused[typed] += PRODUCT_TYPE_EMBEDDING_WEIGHT * types
        fused += lexical
        for i, p in enumerate(products):
            title_words = word_keys(f"{p.title} {p.product_type}")
            if title_words:
                fused[i] += LEAF_OVERLAP_WEIGHT * self._leaf_overlap(title_words, locales[i])
            fused[i] += self._head_bonus(p.title, locales[i])
        null = np.array([NULL_EVIDENCE if kind else NULL_EVIDENCE_WITHOUT_KIND for kind in kinds], dtype=np.float32)
        return fused, null

    def _product_type_scores(self, types: list[str]) -> np.ndarray:
        """Cosines of each product type with every category, cached: a catalog has a few
        hundred product types over millions of products, so this is nearly free."""
        missing = sorted({t for t in types if t not in self._type_cache})
        if missing:
            for t, row in zip(missing, self.embedder.encode(missing) @ self._embeddings.T):
                self._type_cache[t] = row
                if len(self._type_cache) > PRODUCT_TYPE_CACHE_SIZE:
                    self._type_cache.popitem(last=False)
        for t in types:
            self._type_cache.move_to_end(t)
        return np.stack([self._type_cache[t] for t in types])

    def probabilities(self, products: Sequence[ModelProduct]) -> np.ndarray:
        """(n, C) own probabilities: a softmax of the fused evidence over the categories,
        times the probability that the best match is a real one at all,
        sigmoid((best - NULL_EVIDENCE) / NULL_SCALE). A softmax alone only sees how far
        apart the scores are, so a product that matches nothing well ("Zzxq vlorp") would
        still give its least bad category a probability near 1; the second factor keeps how
        strong the best match is, and the rows then sum to less than 1."""
        fused, null_level = self._evidence(products)
        best = fused.max(axis=1, keepdims=True)
        z = (fused - best) / TEMPERATURE
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        z *= 1.0 / (1.0 + np.exp(-(best - null_level[:, None]) / NULL_SCALE))
        return z

    def _lexical(self, product: ModelProduct) -> tuple[np.ndarray, str, str]:
        """Weighted, squashed BM25 evidence per category, and the English names that
        pseudo-translate the product when it is written in another language."""
        fields = {
            "title": product.title,
            "product_type": product.product_type,
            "tags": " ".join(product.tags),
            "vendor": product.vendor,
            "description": product.description,
        }
        total = np.zeros(len(self.paths), dtype=np.float32)
        naming = np.zeros((self._languages, len(self.paths)), dtype=np.float32)
        for name, text in fields.items():
            weight = FIELD_WEIGHTS[name]
            terms = lexical_tokens(text) if text and weight > 0 else []
            if not terms:
                continue
            per_language = self._bm25.get_scores(terms).reshape(self._languages, -1)
            best = per_language.max(axis=0)
            total += weight * best / (best + LEXICAL_HALF_SCORE)
            if name in ("title", "product_type"):
                naming += per_language
        if self._reads_as_english(f"{product.title} {product.product_type}"):
            return total, "", "en"
        return (total, *self._translation(naming))

    def _reads_as_english(self, text: str) -> bool:
        """More than half of the text's Latin-script words (3+ letters) are whole words of
        MiniLM's English vocabulary. Guards the pseudo-translation against English words
        that happen to match another language's names better ("course" is French for
        race, "presets" prefixes Danish "presenninger")."""
        words = [w for w in _WORD.findall(text.casefold()) if len(w) >= 3 and not w.isdigit()]
        if not words or any(_NO_SPACES.search(w) for w in words):
            return not words
        known = sum(self.embedder.tokenizer.token_to_id(w) is not None for w in words)
        return known > ENGLISH_WORD_SHARE * len(words)

    def _translation(self, naming: np.ndarray) -> tuple[str, str]:
        """(English names to embed with the product, the locale its words match best)."""
        if self._languages < 2:
            return "", "en"
        best_by_language = naming.max(axis=1)
        language = int(np.argmax(best_by_language[1:])) + 1
        top = best_by_language[language]
        if top <= best_by_language[0] or top <= 0:
            return "", "en"  # English names match as well: nothing to translate
        row = naming[language]
        picks = np.argsort(-row, kind="stable")[:TRANSLATED_NAMES]
        names = ", ".join(self._leaf_names[j] for j in picks if row[j] >= TRANSLATED_SHARE * top)
        return names, self._block_locales[language]

    def _head_bonus(self, title: str, locale: str) -> np.ndarray:
        """HEAD_NOUN_WEIGHT for the categories whose name, in the product's language, has
        the title's head noun."""
        bonus = np.zeros(len(self.paths), dtype=np.float32)
        head = head_key(title, head_first=locale.split("-")[0] in HEAD_FIRST_LANGUAGES)
        hits = self._words_in_names(locale).get(head) if head else None
        if hits:
            bonus[hits] = HEAD_NOUN_WEIGHT
        return bonus

    def _words_in_names(self, locale: str) -> dict[str, list[int]]:
        """word key -> the categories whose name in `locale` has it (built on first use)."""
        if locale == "en":
            return self._categories_with_word
        index = self._localized_words.get(locale)
        if index is None:
            index = {}
            names = _localized_names(self.taxonomy, locale)
            for j, cid in enumerate(self.tree.ids):
                for word in word_keys(names.get(cid, "")):
                    index.setdefault(word, []).append(j)
            self._localized_words[locale] = index
        return index

    def _leaf_overlap(self, title_words: set[str], locale: str = "en") -> np.ndarray:
        """Share of each leaf's words (its name in the product's language) the title names;
        only leaves sharing a word are scored."""
        shared = np.zeros(len(self.paths), dtype=np.float32)
        words_in_names = self._words_in_names(locale)
        for word in title_words:
            hits = words_in_names.get(word)
            if hits:
                shared[hits] += 1.0
        return shared / np.maximum(self._name_word_counts(locale), 1.0)

    def _name_word_counts(self, locale: str) -> np.ndarray:
        if locale == "en":
            return self._leaf_word_counts
        counts = self._localized_word_counts.get(locale)
        if counts is None:
            names = _localized_names(self.taxonomy, locale)
            counts = np.array([len(word_keys(names.get(cid, ""))) for cid in self.tree.ids], dtype=np.float32)
            self._localized_word_counts[locale] = counts
        return counts


def load_shipped_index(fingerprint: str) -> np.ndarray | None:
    """The shipped index when it was built for exactly these paths and this embedder."""
    if not SHIPPED_INDEX.is_file():
        return None
    with np.load(SHIPPED_INDEX) as shipped:
        if str(shipped["fingerprint"]) != fingerprint:
            return None
        return (shipped["quantized"].astype(np.float32) * shipped["scale"]).astype(np.float32)


def write_shipped_index(index: np.ndarray, fingerprint: str, path: Path = SHIPPED_INDEX) -> None:
    """int8 per row with a float scale: 3.7 MB instead of 16 MB, cosines within 0.2%."""
    scale = (np.abs(index).max(axis=1, keepdims=True) / 127.0).astype(np.float32)
    quantized = np.round(index / scale).astype(np.int8)
    np.savez_compressed(path, quantized=quantized, scale=scale, fingerprint=np.array(fingerprint))


def _locales(taxonomy: Taxonomy) -> tuple[str, ...]:
    # Older pickled taxonomies (and the small test fixture) may have no localized names.
    return tuple(getattr(taxonomy, "locales", ()) or ())


def _localized_names(taxonomy: Taxonomy, locale: str) -> Mapping[str, str]:
    names = getattr(taxonomy, "localized_names", None)
    return names(locale) if callable(names) else {}


if __name__ == "__main__":
    # Rebuild the shipped index for the default (bundled) taxonomy.
    from model_repository.product_baseline.embedder import MiniLMEmbedder as _Embedder
    from taxonomy.loader import load_taxonomy

    logging.basicConfig(level=logging.INFO)
    _retriever = HybridRetriever(load_taxonomy(None), _Embedder(), Path("/nonexistent-cache"))
    SHIPPED_INDEX.parent.mkdir(parents=True, exist_ok=True)
    write_shipped_index(_retriever._embeddings, _retriever._fingerprint())
    print(f"wrote {SHIPPED_INDEX} ({SHIPPED_INDEX.stat().st_size} bytes)")
