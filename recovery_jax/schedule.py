"""Document orders over a whole run, and the per-step views of a training document.

Orders are computed up front on the host from the run seed, so a run's full order is known
(and saved) before the first step. Views (random masking, random window) run inside the
compiled episode with a per-step key.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

FILLER = -1  # order entry for a one-off filler document (not among the T evaluated ones)


@dataclass(frozen=True)
class Order:
    docs_K: np.ndarray  # document index trained in episode k = 1..K (docs_K[k-1]); FILLER for fillers
    filler_K: np.ndarray  # index into the filler pool for filler episodes, -1 otherwise
    epoch_K: np.ndarray  # epoch (0-based) of each episode

    @property
    def n_episodes(self) -> int:
        return len(self.docs_K)

    @property
    def n_fillers(self) -> int:
        return int((self.filler_K >= 0).sum())


def make_order(kind: str, T: int, E: int, rng: np.random.Generator, *, shuffle_n: int = 0,
               filler_min: int = 20, filler_max: int = 100) -> Order:
    """cyclic: x_1..x_T every epoch. shuffled: x_1 first, the other T-1 re-shuffled every epoch.
    partial: x_1 first, x_2..x_N re-shuffled every epoch, x_{N+1}..x_T fixed (docs/PROTOCOL.md §3 Fig 12).
    filler: x_1..x_T, then a random number in [filler_min, filler_max] of documents each used
    once in the whole run (Fig 18)."""
    docs, fillers, epochs = [], [], []
    next_filler = 0
    for e in range(E):
        if kind == "cyclic":
            ep = list(range(T))
        elif kind in ("shuffled", "partial"):
            n = T if kind == "shuffled" else shuffle_n
            middle = list(rng.permutation(np.arange(1, n)))
            ep = [0] + middle + list(range(n, T))
        elif kind == "filler":
            ep = list(range(T))
            count = int(rng.integers(filler_min, filler_max + 1))
            ep += [FILLER] * count
        else:
            raise ValueError(f"unknown order kind {kind!r}; valid: cyclic, shuffled, partial, filler")
        for d in ep:
            docs.append(d)
            epochs.append(e)
            if d == FILLER:
                fillers.append(next_filler)
                next_filler += 1
            else:
                fillers.append(-1)
    return Order(np.asarray(docs, np.int32), np.asarray(fillers, np.int32), np.asarray(epochs, np.int32))


def mask_tokens(tokens_L: jax.Array, key: jax.Array, prob: float, mask_id: int) -> jax.Array:
    """Replace each input token by mask_id with probability prob (labels stay unchanged, Fig 4a)."""
    hit = jax.random.bernoulli(key, prob, tokens_L.shape)
    return jnp.where(hit, jnp.asarray(mask_id, tokens_L.dtype), tokens_L)


def window_offset(key: jax.Array, start: int, W: int) -> jax.Array:
    """Start of a training window [start + s, start + s + C) with s uniform in [-W, W] (Fig 4b)."""
    return start + jax.random.randint(key, (), -W, W + 1)
