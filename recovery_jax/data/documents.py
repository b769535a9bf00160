"""Choosing and tokenizing the T documents x_1..x_T of a cyclic fine-tuning run.

Selection rule (deterministic given ``seed``; independent of how tokenization is
chunked): the corpus indices are put in the order ``numpy.random.default_rng(seed)
.permutation(len(corpus))`` (or ``0, 1, 2, ...`` when ``first_t=True``, like the paper's
``train_scratch.py`` / ``train_interleave_ablation.py``), and the first ``T`` documents in
that order with at least ``min_tokens`` tokens are taken, in that order.  This is a
uniform random sample without replacement of the eligible documents, and its order is
the training order (the paper keeps ``random.sample``'s order).  Because the permutation
does not depend on ``T``, the documents for a smaller T are a prefix of those for a larger
T with the same seed.  Documents are tokenized lazily, chunk by chunk, in that order.

Tokenization follows the paper (docs/PROTOCOL.md §1.3): no BOS/EOS, keep the first C tokens,
right-pad with the pad id (EOS) to C; ``mask_TC`` is True on real tokens only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .sources import Document
from .tokenizers import Tokenizer, get_tokenizer


@dataclass
class DocumentSet:
    """The T tokenized training documents, in training order.

    ``tokens_TC`` int32 [T, C] (first C tokens, right-padded with ``pad_id``),
    ``mask_TC`` bool [T, C] (True on real tokens), ``ids`` / ``sha256`` (of the UTF-8
    text) / ``n_tokens`` (full, untruncated token counts) per document, and the
    provenance ``source`` / ``tokenizer`` / ``seed``.  ``vocab_map`` is set by
    :func:`restrict_vocab`: ``vocab_map[new_id] = original_id``.
    """

    tokens_TC: np.ndarray
    mask_TC: np.ndarray
    ids: list[str]
    sha256: list[str]
    n_tokens: list[int]
    source: str
    tokenizer: str
    seed: int
    vocab_map: np.ndarray | None = None
    pad_id: int = 0
    tokenizer_vocab_size: int = 0
    min_tokens: int = 0
    first_t: bool = False
    corpus_size: int = 0

    @property
    def T(self) -> int:
        return int(self.tokens_TC.shape[0])

    @property
    def C(self) -> int:
        return int(self.tokens_TC.shape[1])

    @property
    def vocab_size(self) -> int:
        """Softmax size: V' of the restricted vocabulary, else the tokenizer's vocab size."""
        if self.vocab_map is not None:
            return int(len(self.vocab_map))
        return int(self.tokenizer_vocab_size)

    @property
    def lengths(self) -> np.ndarray:
        """Number of real (unpadded) tokens per row, int32 [T]."""
        return self.mask_TC.sum(axis=1).astype(np.int32)

    def original_tokens(self) -> np.ndarray:
        """``tokens_TC`` in the tokenizer's id space (undoes :func:`restrict_vocab`)."""
        if self.vocab_map is None:
            return self.tokens_TC
        return self.vocab_map[self.tokens_TC]

    def to_json(self) -> dict[str, Any]:
        """All metadata as JSON-serialisable values (no token arrays)."""
        return {
            "source": self.source,
            "tokenizer": self.tokenizer,
            "seed": int(self.seed),
            "T": self.T,
            "C": self.C,
            "min_tokens": int(self.min_tokens),
            "first_t": bool(self.first_t),
            "corpus_size": int(self.corpus_size),
            "pad_id": int(self.pad_id),
            "tokenizer_vocab_size": int(self.tokenizer_vocab_size),
            "vocab_size": self.vocab_size,
            "restricted_vocab": self.vocab_map is not None,
            "ids": list(self.ids),
            "sha256": list(self.sha256),
            "n_tokens": [int(n) for n in self.n_tokens],
            "n_real_tokens": [int(n) for n in self.lengths],
            "tokens_sha256": hashlib.sha256(
                np.ascontiguousarray(self.tokens_TC, dtype=np.int32).tobytes()
                + np.ascontiguousarray(self.mask_TC, dtype=np.bool_).tobytes()
            ).hexdigest(),
        }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _as_tokenizer(tokenizer) -> Tokenizer:
    return get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer


def _pack(seqs: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.full((len(seqs), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(seqs), width), dtype=np.bool_)
    for r, ids in enumerate(seqs):
        k = min(len(ids), width)
        if k:
            tokens[r, :k] = np.asarray(ids[:k], dtype=np.int32)
            mask[r, :k] = True
    return tokens, mask


def _scan(corpus: Sequence[Document], tok: Tokenizer, order: np.ndarray, *, want: int,
          min_tokens: int, exclude: frozenset[str] = frozenset()):
    """First ``want`` eligible documents in ``order``; tokenizes lazily in growing chunks.

    Returns ``(picked, n_eligible_seen, exhausted)`` with ``picked`` a list of
    ``(corpus_index, token_ids)``.  The result does not depend on the chunking.
    """
    picked: list[tuple[int, list[int]]] = []
    n_eligible = 0
    pos = 0
    chunk = max(4 * want, 512)
    candidates = [int(i) for i in order if corpus[int(i)].id not in exclude] if exclude else [
        int(i) for i in order]
    while pos < len(candidates) and len(picked) < want:
        idx = candidates[pos:pos + chunk]
        pos += len(idx)
        chunk *= 2
        for i, ids in zip(idx, tok.encode_batch([corpus[i].text for i in idx])):
            if len(ids) >= min_tokens:
                n_eligible += 1
                if len(picked) < want:
                    picked.append((i, ids))
    return picked, n_eligible, pos >= len(candidates)


def _check_positive(**kw):
    for k, v in kw.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")


def select_documents(
    corpus: Sequence[Document],
    tokenizer,
    *,
    T: int,
    C: int,
    seed: int,
    min_tokens: int | None = None,
    first_t: bool = False,
    block: int | None = None,
    source: str | None = None,
) -> DocumentSet:
    """Pick T documents with ≥ ``min_tokens`` tokens (default C) and tokenize them.

    ``tokenizer`` is a :class:`Tokenizer` (or a name for :func:`get_tokenizer`).
    ``block`` (default C) is the width of ``tokens_TC``: documents are cut / right-padded
    to ``block`` tokens, e.g. 512 for random-window experiments, while eligibility still
    uses ``min_tokens``.  ``source`` defaults to the corpus' ``.source`` attribute.
    See the module docstring for the selection rule.
    """
    tok = _as_tokenizer(tokenizer)
    _check_positive(T=T, C=C)
    width = C if block is None else block
    _check_positive(block=width)
    min_tokens = C if min_tokens is None else int(min_tokens)
    if min_tokens < 0:
        raise ValueError(f"min_tokens must be >= 0, got {min_tokens}")
    src = source or getattr(corpus, "source", "") or "custom"
    n = len(corpus)
    order = np.arange(n) if first_t else np.random.default_rng(seed).permutation(n)
    picked, n_eligible, _ = _scan(corpus, tok, order, want=T, min_tokens=min_tokens)
    if len(picked) < T:
        raise ValueError(
            f"T={T} but only {n_eligible} documents of source {src!r} have ≥{min_tokens} tokens; "
            f"lower T or C (or min_tokens) ({n} documents in the corpus, tokenizer {tok.name!r})"
        )
    tokens, mask = _pack([ids for _, ids in picked], width, tok.pad_id)
    docs = [corpus[i] for i, _ in picked]
    return DocumentSet(
        tokens_TC=tokens,
        mask_TC=mask,
        ids=[d.id for d in docs],
        sha256=[_sha256(d.text) for d in docs],
        n_tokens=[len(ids) for _, ids in picked],
        source=src,
        tokenizer=tok.name,
        seed=int(seed),
        vocab_map=None,
        pad_id=tok.pad_id,
        tokenizer_vocab_size=tok.vocab_size,
        min_tokens=min_tokens,
        first_t=bool(first_t),
        corpus_size=n,
    )


def restrict_vocab(docs: DocumentSet) -> DocumentSet:
    """Remap token ids to a compact vocabulary ``[0, V')`` of the ids present in ``docs``.

    The pad id is mapped to 0, the other ids present on real tokens follow in increasing
    original-id order.  Returns a new :class:`DocumentSet` with remapped ``tokens_TC``,
    ``pad_id`` 0 and ``vocab_map`` (int32, ``vocab_map[new_id] = original_id``); applied to
    an already restricted set, the maps compose (``vocab_map`` stays relative to the
    tokenizer's ids).  Padding positions become 0.
    """
    tokens, mask = docs.tokens_TC, docs.mask_TC
    present = np.unique(tokens[mask]).astype(np.int64)
    pad = int(docs.pad_id)
    vocab_local = np.concatenate([[pad], present[present != pad]]).astype(np.int64)
    remap = np.zeros(int(max(vocab_local.max(), tokens.max(initial=0))) + 1, dtype=np.int32)
    remap[vocab_local] = np.arange(len(vocab_local), dtype=np.int32)
    new_tokens = np.where(mask, remap[tokens], 0).astype(np.int32)
    if docs.vocab_map is not None:
        vocab_map = np.asarray(docs.vocab_map)[vocab_local].astype(np.int32)
    else:
        vocab_map = vocab_local.astype(np.int32)
    return dataclasses.replace(docs, tokens_TC=new_tokens, mask_TC=mask.copy(),
                               vocab_map=vocab_map, pad_id=0)


def filler_pool(
    corpus: Sequence[Document],
    tokenizer,
    *,
    exclude_ids,
    n: int,
    C: int,
    seed: int,
    min_tokens: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` further eligible documents (≥ ``min_tokens``, default C, tokens) not in ``exclude_ids``.

    For the filler-documents experiment (paper Fig 18).  Uses its own seeded order
    (``default_rng((seed, 1)).permutation``), so it is deterministic and independent of the
    selection made with the same seed.  Returns ``(tokens_NC int32, mask_NC bool, ids)``
    tokenized like :func:`select_documents`.
    """
    tok = _as_tokenizer(tokenizer)
    _check_positive(C=C)
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    min_tokens = C if min_tokens is None else int(min_tokens)
    exclude = frozenset(exclude_ids)
    if n == 0:
        return np.zeros((0, C), np.int32), np.zeros((0, C), np.bool_), []
    order = np.random.default_rng((int(seed), 1)).permutation(len(corpus))
    picked, n_eligible, _ = _scan(corpus, tok, order, want=n, min_tokens=min_tokens,
                                  exclude=exclude)
    if len(picked) < n:
        src = getattr(corpus, "source", "") or "custom"
        raise ValueError(
            f"filler pool: n={n} but only {n_eligible} documents of source {src!r} outside the "
            f"{len(exclude)} excluded ids have ≥{min_tokens} tokens; lower n or C (or min_tokens)"
        )
    tokens, mask = _pack([ids for _, ids in picked], C, tok.pad_id)
    return tokens, mask, [corpus[i].id for i, _ in picked]
