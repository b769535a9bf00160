"""Statistics that need per-episode model states, accumulated during the run (docs/PROTOCOL.md §2.6–2.11).

The authors' visualisation scripts read a checkpoint per episode, which no training script of
theirs saves. Here each probe keeps only what its statistic needs:

| probe        | kept during the run                                  | cost                                        |
|--------------|------------------------------------------------------|---------------------------------------------|
| weights      | Gram matrix of all flattened parameter states        | host: (K+1)·P float32 states, or (K+1)·S with probes.sketch_dim=S; one dot per pair |
| embed_out    | Gram matrix of the unembedding matrix states (Fig 9) | as above with P = V·d                       |
| activations  | final hidden states of one document (Fig 8d, 22a)    | (K+1)·C·d floats; one forward per episode   |
| grads        | per-document gradients of one block's attention       | T gradients once, at the end of epoch probes.epoch |
| pairwise     | R[i,j] = L_j(θ*) − L_j(θ* after M steps on x_i)       | T extra episodes once, at the end of epoch probes.epoch |

With probes.sketch_dim = S > 0 the weight states are CountSketch-projected to S dimensions
(a fixed random bucket and sign per coordinate): inner products, hence Gram-based cosines, residual
cosines and PCA, are preserved in expectation with error ~ |a||b|/sqrt(S), and memory is (K+1)·S.
Only the first probes.max_episodes episodes are tracked when it is > 0 (Fig 9 uses 3 epochs).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recovery_jax import models


def _flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree_util.tree_leaves(tree)])


def _countsketch(tree, dim: int, seed: int = 0) -> jax.Array:
    out = jnp.zeros((dim,), jnp.float32)
    for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):
        x = jnp.ravel(leaf).astype(jnp.float32)
        kb, ks = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), i))
        bucket = jax.random.randint(kb, x.shape, 0, dim)
        sign = jnp.where(jax.random.bernoulli(ks, 0.5, x.shape), 1.0, -1.0)
        out = out + jax.ops.segment_sum(sign * x, bucket, num_segments=dim)
    return out


def attention_params(arch: str, params, layer: int):
    """All parameters of one block's attention (docs/PROTOCOL.md §2.7 leaves the exact tensor open)."""
    return models.get_by_path(params, models.block_param_path(arch, layer, "attn"))


# Fig 22's update magnitudes, per tracked state (of the CountSketch when probes.sketch_dim > 0)
_DIFF_NORM_KEY = {"weights": "weight_diff_norms", "activations": "act_diff_norms"}


class Probes:
    """Host-side accumulator; `after_episode` is called with the state after each episode k."""

    def __init__(self, names, *, engine, arch, params, eval_tokens_TC, eval_mask_TC, train_tokens_TB,
                 train_mask_TB, doc: int, epoch: int, T: int, grad_layer: int, max_episodes: int,
                 sketch_dim: int, n_episodes: int):
        self.names = list(names)
        self.engine, self.arch = engine, arch
        self.eval_tok, self.eval_msk = eval_tokens_TC, eval_mask_TC
        self.train_tok, self.train_msk = train_tokens_TB, train_mask_TB
        self.doc, self.epoch, self.T = doc, epoch, T
        self.max_k = max_episodes or n_episodes
        self.sketch_dim = sketch_dim
        self.out: dict[str, Any] = {}
        self._vecs: dict[str, list] = {n: [] for n in ("weights", "embed_out", "activations") if n in self.names}
        self.grad_layer = grad_layer if grad_layer >= 0 else models.num_blocks(arch, params) // 2
        self._jit_vec = {}
        for n in self._vecs:
            self._jit_vec[n] = jax.jit(self._vector_fn(n))
        self.after_episode(0, {"params": params})

    def _vector_fn(self, name):
        dim = self.sketch_dim
        if name == "activations":
            doc_tok = self.eval_tok[self.doc][None]

            def f(params):
                _, hidden = self.engine.apply_hidden(params, doc_tok)
                return hidden.astype(jnp.float32).ravel()
            return f
        pick = (lambda p: p) if name == "weights" else (lambda p: models.unembedding(self.arch, p))  # Fig 9
        if dim:
            return lambda params: _countsketch(pick(params), dim)
        return lambda params: _flat(pick(params))

    def after_episode(self, k: int, state) -> None:
        if k > self.max_k:
            return
        for name in self._vecs:
            self._vecs[name].append(np.asarray(self._jit_vec[name](state["params"])))

    def at_epoch_end(self, epoch: int, state) -> None:
        """epoch is 1-based: the state after `epoch` full epochs."""
        if epoch != self.epoch:
            return
        params = state["params"]
        if "grads" in self.names:
            self.out["grads_gram"], self.out["grads_layer"] = self._grads_gram(params), self.grad_layer
        if "pairwise" in self.names:
            self.out["pairwise"] = self.pairwise(state)
        self.out["probe_epoch"] = epoch

    def _grads_gram(self, params):
        sel = lambda p: attention_params(self.arch, p, self.grad_layer)

        @jax.jit
        def grad_vec(p, tok, msk):
            g = jax.grad(lambda q: self.engine.loss(q, tok[None], tok[None], msk[None]))(p)
            return _flat(sel(g))
        G = np.stack([np.asarray(grad_vec(params, self.eval_tok[t], self.eval_msk[t])) for t in range(self.T)])
        return G @ G.T

    def pairwise(self, state) -> np.ndarray:
        """R[i, j] = L_j(θ*) − L_j(after M steps on x_i from θ*), one program over all i."""
        base = np.asarray(self.engine.evaluate(state["params"], self.eval_tok, self.eval_msk))
        fn = jax.jit(lambda st, tok, msk: self.engine.train_then_eval(st, tok, msk, self.eval_tok, self.eval_msk))
        rows = np.asarray(fn(state, self.train_tok, self.train_msk))
        return base[None, :] - rows

    def snapshot(self) -> dict[str, np.ndarray]:
        """Everything accumulated so far, to be saved beside a checkpoint for --resume."""
        snap = {f"out__{k}": np.asarray(v) for k, v in self.out.items()}
        for name, vecs in self._vecs.items():
            snap[f"vecs__{name}"] = np.stack(vecs) if vecs else np.zeros((0,), np.float32)
        return snap

    def restore(self, snap: dict[str, np.ndarray], episodes_done: int) -> None:
        """Back to the state after `episodes_done` episodes (a snapshot may be one save ahead)."""
        for key, v in snap.items():
            kind, name = key.split("__", 1)
            if kind == "out":
                self.out[name] = v
            elif name in self._vecs:
                self._vecs[name] = list(v[: episodes_done + 1]) if v.ndim == 2 else []

    def finish(self) -> dict[str, np.ndarray]:
        out = dict(self.out)
        for name, vecs in self._vecs.items():
            if not vecs:
                continue
            V = np.stack(vecs).astype(np.float64)
            key = {"weights": "weight_gram", "embed_out": "embed_out_gram", "activations": "activations_gram"}[name]
            out[key] = V @ V.T
            if name in _DIFF_NORM_KEY:  # direct ||v(k) − v(k−1)||: no cancellation as from the Gram matrix
                out[_DIFF_NORM_KEY[name]] = np.linalg.norm(np.diff(V, axis=0), axis=1)
            if name == "activations":
                out["act_doc"] = np.asarray(self.doc)
        if "weight_gram" in out:
            out["weight_sketch_dim"] = np.asarray(self.sketch_dim)
        return {k: np.asarray(v) for k, v in out.items()}
