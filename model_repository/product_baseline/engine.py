"""The CPU baseline model: answers the two-step contract without a GPU.

- classify: all-MiniLM-L6-v2 embeddings of the product text against an index of the
  taxonomy's category paths (cosine, top 1), plus a simplified description and an image
  description from the image's dominant colours.
- extract: for each attribute in the request, the allowed values evidenced in the title,
  description, tags and variant options; colour falls back to the image's subject colour.

It is the reference the GPU model is compared with and the default of the local runtime:
in-process (`transforms.model.client.InProcessBaseline`) or behind Triton as a Python-backend
model (`product_baseline/1/model.py`). It carries its own category index, built for one
taxonomy version and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_repository.contract import (
    ModelAttribute,
    ModelRequest,
    Task,
)
from model_repository.product_baseline.embedder import MiniLMEmbedder
from model_repository.product_baseline.image_features import summarise_image
from model_repository.product_baseline.text import simplify_description, tokens
from taxonomy.loader import default_cache_dir, load_taxonomy
from taxonomy.model import Taxonomy

__all__ = [
    "MODEL_NAME",
    "MODEL_VERSION",
    "RERANK_TOP_K",
    "LEAF_OVERLAP_WEIGHT",
    "BaselineModel",
]

log = logging.getLogger(__name__)

MODEL_NAME = "product_baseline"
MODEL_VERSION = "baseline-minilm-2"
RERANK_TOP_K = 50
LEAF_OVERLAP_WEIGHT = 0.15

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


def _norm_tokens(text: str) -> list[str]:
    return [_stem(t) for t in tokens(text)]


@dataclass(frozen=True, slots=True)
class _ValuePattern:
    value: str
    phrases: tuple[tuple[str, ...], ...]


class BaselineModel:
    """In-process implementation of the contract. Not thread-safe for `load`; `infer_batch`
    is safe to call from one thread at a time (Triton's Python backend does exactly that)."""

    def __init__(
        self,
        taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
        embedder: MiniLMEmbedder | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.taxonomy = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
        self.embedder = embedder or MiniLMEmbedder()
        self._cache_dir = cache_dir or default_cache_dir().parent / "index"
        self._paths = self.taxonomy.full_names
        self._index = self._load_or_build_index()
        self._leaf_tokens = [set(_norm_tokens(p.rsplit(" > ", 1)[-1])) - {"&", "and"} for p in self._paths]
        self._patterns: dict[tuple[str, tuple[str, ...]], tuple[_ValuePattern, ...]] = {}

    # -- metadata --------------------------------------------------------------------

    @property
    def parameters(self) -> dict[str, str]:
        return {
            "model_name": MODEL_NAME,
            "model_version": MODEL_VERSION,
            "taxonomy_version": self.taxonomy.version,
        }

    # -- category index --------------------------------------------------------------

    def _load_or_build_index(self) -> np.ndarray:
        h = hashlib.sha256(("leaf+path\n" + "\n".join(self._paths)).encode())
        h.update(self.embedder.fingerprint.encode())
        path = self._cache_dir / f"categories-{self.taxonomy.version}-{h.hexdigest()[:16]}.npy"
        if path.is_file():
            index = np.load(path)
            if index.shape == (len(self._paths), self.embedder.dim):
                return index
        log.info("building the category index for %d categories (cached at %s)", len(self._paths), path)
        # Score = mean of the cosines with the leaf name and with the full path: the leaf
        # carries the meaning, the path disambiguates ("Rings" in Jewelry vs in Toys).
        # Measured on examples/: 0.69 top-1 vs 0.63 for the path alone.
        leaves = self.embedder.encode([p.rsplit(" > ", 1)[-1] for p in self._paths])
        index = 0.5 * (leaves + self.embedder.encode(self._paths))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, index)
            os.replace(tmp, path)
        except OSError:
            log.warning("could not cache the category index at %s", path)
        return index

    # -- the contract ----------------------------------------------------------------

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes]:
        """One response per request, in order. A request that fails gets an error JSON
        answer rather than failing its neighbours (Triton: failures go on the response)."""
        parsed: list[ModelRequest | Exception] = []
        for raw, _ in requests:
            try:
                parsed.append(ModelRequest.model_validate_json(raw))
            except Exception as exc:  # noqa: BLE001 - reported on the response
                parsed.append(exc)
        responses: list[bytes] = [b""] * len(requests)
        classify = [i for i, r in enumerate(parsed) if isinstance(r, ModelRequest) and r.task is Task.CLASSIFY]
        if classify:
            answers = self._classify([parsed[i] for i in classify], [requests[i][1] for i in classify])  # type: ignore[misc]
            for i, a in zip(classify, answers):
                responses[i] = a
        for i, r in enumerate(parsed):
            if isinstance(r, Exception):
                responses[i] = json.dumps({"error": f"bad request: {r}"}).encode()
            elif r.task is Task.EXTRACT:
                responses[i] = self._extract(r, requests[i][1])
        return responses

    def _classify(self, requests: list[ModelRequest], images: list[bytes | None]) -> list[bytes]:
        queries = [_query_text(r) for r in requests]
        emb = self.embedder.encode(queries)
        scores = emb @ self._index.T
        out = []
        for r, img, query, row in zip(requests, images, queries, scores):
            j = self._rerank(row, set(_norm_tokens(query)))
            out.append(
                json.dumps(
                    {
                        "category": self._paths[int(j)],
                        "confidence": round(float(min(1.0, max(0.0, row[j]))), 4),
                        "simplified_description": simplify_description(r.product.description) or r.product.title,
                        "image_description": _describe(img),
                    }
                ).encode()
            )
        return out

    def _rerank(self, row: np.ndarray, query_tokens: set[str]) -> int:
        """Top-50 by embedding, plus LEAF_OVERLAP_WEIGHT x the share of the leaf's words
        that the title names: "Tea dress" is a Dress, not a Costume Dress. Top-1 went from
        0.69 to 0.74 on examples/ and 0.667 to 0.695 on the Shopify dev stores (weights
        0.05-0.3 all within 0.01; see docs/ARCHITECTURE.md)."""
        top = np.argpartition(-row, min(RERANK_TOP_K, len(row) - 1))[:RERANK_TOP_K]
        best, best_score = int(top[0]), -np.inf
        for j in top:
            leaf = self._leaf_tokens[j]
            score = row[j] + LEAF_OVERLAP_WEIGHT * len(leaf & query_tokens) / max(1, len(leaf))
            if score > best_score:
                best, best_score = int(j), score
        return best

    def _extract(self, request: ModelRequest, image: bytes | None) -> bytes:
        p = request.product
        text = " \n ".join(
            [p.title, p.description, p.product_type, " , ".join(p.tags)]
            + [f"{name} {' , '.join(vals)}" for name, vals in p.variant_options.items()]
        )
        toks = _norm_tokens(text)
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
        return json.dumps({"attributes": found}).encode()

    def _value_patterns(self, attr: ModelAttribute) -> tuple[_ValuePattern, ...]:
        key = (attr.handle, attr.values)
        cached = self._patterns.get(key)
        if cached is None:
            patterns = []
            for value in attr.values:
                base = tuple(_norm_tokens(value))
                if not base or value.casefold() in _NEVER_EVIDENCE:
                    continue
                phrases = {base}
                for syn in _SYNONYMS.get(value.casefold(), ()):
                    phrases.add(tuple(_norm_tokens(syn)))
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


def _query_text(request: ModelRequest) -> str:
    # Title and product type only: descriptions are long and generic ("perfect gift",
    # "soft fabric") and pulled top-1 accuracy on examples/ from 0.69 to 0.53.
    p = request.product
    return ". ".join(x for x in (p.title, p.product_type) if x)


def _describe(image: bytes | None) -> str:
    if not image:
        return ""
    try:
        return summarise_image(image).describe()
    except Exception:  # noqa: BLE001 - an unreadable image only loses the description
        return ""
