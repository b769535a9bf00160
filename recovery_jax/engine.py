"""The compiled core: loss, batched evaluation, and one episode = M scanned updates + evaluation.

Everything here is a pure function of an explicit state pytree
`{"params", "opt_state", "step", "rng"}` and of the run's hyper-parameters `hp` (`{"lr", "mask_prob",
"vocab"}`: what may differ between the runs of a group); the host loop lives in `runner.py`. One episode is one
XLA program (compiled once per run or group), its input state buffers donated.

The run axis: `episode_R` / `evaluate_R` are the same functions vmapped over a leading axis R of state, hp,
tasks and evaluation sets, so R independent runs (seeds, learning rates, orders, mask probabilities, per-run
restricted vocabularies padded to the group's largest) are one program. A single run is R = 1.

Tasks (docs/PROTOCOL.md §1.1, §3 Fig 7): a task is a pair of arrays (x, y) and its kind (EpisodeSpec.task, the
architecture's `task`) says what they are and what its loss is — "lm": a token sequence x = tokens_C with y = its
0/1 mask (a text document, or an image's colour-cluster ids for Image GPT), mean next-token NLL; "classify": a
batch x = pixels_BHWC with y = labels_B, mean cross-entropy over the batch. The episode, evaluation, run axis and
pairwise map are the same code for both; the T tasks stack on a leading axis (tokens_TC / pixels_TBHWC).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp

from recovery_jax import schedule
from recovery_jax.optim import Optimizer, apply_update

Params = Any
State = dict


def token_nll(logits_BLV: jax.Array, targets_BL: jax.Array) -> jax.Array:
    """Per-position next-token NLL in float32 (no log-softmax tensor kept for the backward pass)."""
    logits_BLV = logits_BLV.astype(jnp.float32)
    lse_BL = jax.nn.logsumexp(logits_BLV, axis=-1)
    target_BL = jnp.take_along_axis(logits_BLV, targets_BL[..., None], axis=-1)[..., 0]
    return lse_BL - target_BL


def masked_doc_losses(logits_BLV, targets_BL, weights_BL) -> jax.Array:
    """HF causal-LM loss per document: logits at 0..L-2 predict targets 1..L-1, mean over the
    targets whose weight is 1 (padding has weight 0, exactly like labels = -100)."""
    nll_BL = token_nll(logits_BLV[:, :-1], targets_BL[:, 1:])
    w_BL = weights_BL[:, 1:].astype(jnp.float32)
    return (nll_BL * w_BL).sum(-1) / jnp.maximum(w_BL.sum(-1), 1.0)


def chunked_lm_loss(h_ND: jax.Array, W_VD: jax.Array, targets_N: jax.Array, weights_N: jax.Array,
                    chunk: int = 512) -> jax.Array:
    """sum_n w_n NLL(h_n @ W_VD^T, target_n) / sum_n w_n, without ever holding the [N, V] logits: the rows go
    through in chunks, and each chunk's gradients (softmax - one-hot) are formed right there, in the forward
    pass, so the backward pass only scales them. For a large vocabulary (pretraining: N = 2048 tokens, V ~ 29k)
    the full logits and their slices, pads and transposes cost more than the matmuls themselves: a NeoX
    pretraining step is 1.2-1.5x faster this way on CPU (benchmarks/pretrain_step.py). W is [V, D], one row per
    token (8 % faster chunks than [D, V] on CPU). Same value and gradients as token_nll on the full logits to
    fp32 rounding (tests/test_engine.py)."""
    return _chunked_lm_loss(h_ND, W_VD, targets_N, weights_N.astype(jnp.float32), chunk)


def _chunked_lm_grads(h_ND, W_VD, targets_N, w_N, chunk):
    N, D = h_ND.shape
    chunk = min(chunk, N)
    pad = -N % chunk  # padded rows: weight 0
    h_KCD = jnp.pad(h_ND, ((0, pad), (0, 0))).reshape(-1, chunk, D)
    t_KC = jnp.pad(targets_N, (0, pad)).reshape(-1, chunk)
    w_KC = jnp.pad(w_N, (0, pad)).reshape(-1, chunk) / jnp.maximum(w_N.sum(), 1.0)
    W_c = W_VD.astype(h_ND.dtype)
    W_f32 = W_VD.astype(jnp.float32)

    def body(dW_VD, xs):
        h_CD, t_C, w_C = xs
        logits_CV = jnp.einsum("cd,vd->cv", h_CD, W_c, preferred_element_type=jnp.float32)
        lse_C = jax.nn.logsumexp(logits_CV, axis=-1)
        nll_C = lse_C - jnp.take_along_axis(logits_CV, t_C[:, None], axis=-1)[:, 0]
        onehot_CV = jnp.arange(logits_CV.shape[-1]) == t_C[:, None]
        d_CV = (jnp.exp(logits_CV - lse_C[:, None]) - onehot_CV) * w_C[:, None]
        dW_VD = dW_VD + jnp.einsum("cv,cd->vd", d_CV, h_CD.astype(jnp.float32))
        return dW_VD, ((nll_C * w_C).sum(), d_CV @ W_f32)

    dW_VD, (loss_K, dh_KCD) = jax.lax.scan(body, jnp.zeros(W_VD.shape, jnp.float32), (h_KCD, t_KC, w_KC))
    dh_ND = dh_KCD.reshape(-1, D)[:N].astype(h_ND.dtype)
    return loss_K.sum(), (dh_ND, dW_VD.astype(W_VD.dtype))


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _chunked_lm_loss(h_ND, W_VD, targets_N, w_N, chunk):
    return _chunked_lm_grads(h_ND, W_VD, targets_N, w_N, chunk)[0]


def _chunked_fwd(h_ND, W_VD, targets_N, w_N, chunk):
    return _chunked_lm_grads(h_ND, W_VD, targets_N, w_N, chunk)  # (loss, its gradients as the residuals)


def _chunked_bwd(chunk, grads, g):
    dh_ND, dW_VD = grads
    return dh_ND * g.astype(dh_ND.dtype), dW_VD * g.astype(dW_VD.dtype), None, None


_chunked_lm_loss.defvjp(_chunked_fwd, _chunked_bwd)


def classify_losses(logits_NK, labels_N) -> jax.Array:
    """Per-image cross-entropy in float32 (torch CrossEntropyLoss before its mean over the batch)."""
    logits_NK = logits_NK.astype(jnp.float32)
    lse_N = jax.nn.logsumexp(logits_NK, axis=-1)
    return lse_N - jnp.take_along_axis(logits_NK, labels_N[:, None], axis=-1)[:, 0]


@dataclass(frozen=True)
class Task:
    """A kind of task: `losses(logits_fn, x_T, y_T, inputs_T) -> [T]`, one loss per task of a stack of T tasks,
    where inputs_T is the model input (x_T, or the training view of it: masked tokens); `token_views`: whether
    the per-step token views (first C tokens, random window, input masking) apply."""

    name: str
    losses: Callable
    token_views: bool


def _lm_task_losses(logits_fn, tokens_TC, mask_TC, inputs_TC):
    return masked_doc_losses(logits_fn(inputs_TC), tokens_TC, mask_TC)


def _classify_task_losses(logits_fn, pixels_TBHWC, labels_TB, inputs_TBHWC):
    """The mean cross-entropy of each task's batch: the T*B images go through the model as one batch."""
    T, B = labels_TB.shape
    logits_NK = logits_fn(inputs_TBHWC.reshape(T * B, *inputs_TBHWC.shape[2:]))
    return classify_losses(logits_NK, labels_TB.reshape(T * B)).reshape(T, B).mean(-1)


TASKS = {"lm": Task("lm", _lm_task_losses, True), "classify": Task("classify", _classify_task_losses, False)}


CPU_EVAL_TOKENS = 640  # tokens per evaluation chunk on CPU (measured: benchmarks/README.md, engine note 1)


def eval_doc_bytes(C: int, d: int, ff: int, V: int, H: int, attn_block: int = 0) -> int:
    """Rough high-water mark of one document's forward activations (fp32): the logits and their logsumexp
    temporary, the MLP hidden layer twice (pre/post activation), attention logits and probabilities for one
    query block, and ~8 residual-stream-sized tensors."""
    rows = attn_block if 0 < attn_block < C else C
    return 4 * C * (2 * V + 2 * ff + 8 * d + 2 * H * rows)


def auto_eval_batch(T: int, C: int, *, backend: str, doc_bytes: int, free_bytes: int | None = None,
                    mem_fraction: float = 0.25) -> int:
    """Documents per evaluation chunk for eval.batch = -1. CPU: ~CPU_EVAL_TOKENS tokens per chunk, which
    keeps the [chunk*C, ff] activations in cache (1.3-1.4x faster than all T at once on a 2-core Xeon).
    Accelerators: as many documents as fit in `mem_fraction` of the free device memory (all T if unknown)."""
    if backend == "cpu":
        b = CPU_EVAL_TOKENS // max(C, 1)
    elif free_bytes:
        b = int(mem_fraction * free_bytes) // max(doc_bytes, 1)
    else:
        b = T
    return int(min(max(b, 1), T))


def eval_chunks(T: int, eval_batch: int) -> tuple[int, int]:
    """(chunks, tasks per chunk) for evaluating T tasks at most eval_batch at a time (0: all at once): the
    fewest chunks, made as even as possible, so the padding of the last chunk is never a near-empty chunk's
    worth of wasted forward passes (T=12 in chunks of <= 10: 2 x 6, not 2 x 10 with 8 padded documents). The
    losses are bit-identical; on a 2-core CPU a chunk's time hardly depends on its size (41-53 ms for either,
    noise included), so the saving is in memory and on accelerators, where chunks are sized to free memory."""
    if not eval_batch or eval_batch >= T:
        return 1, T
    n = -(-T // eval_batch)
    return n, -(-T // n)


@dataclass(frozen=True)
class EpisodeSpec:
    """Static facts the compiled episode needs (hashable: part of the jit cache key)."""
    M: int
    C: int
    mask_prob: float = 0.0
    mask_id: int = 0
    window: int = -1  # random window shift W; -1: train on the first C tokens
    window_start: int = 0
    eval_batch: int = 0  # 0: all documents in one batch
    every_step_eval: bool = False
    dropout: bool = False
    # the runs of a group have vocabularies of different sizes, padded to the largest: logits at ids >=
    # hp["vocab"] are masked out, so each run's softmax is over its own tokens only
    vocab_mask: bool = False
    task: str = "lm"  # a key of TASKS: what a task's arrays are and what its loss is


def default_hp(spec: "EpisodeSpec", lr: float, vocab: int) -> dict:
    """One run's hyper-parameters as the compiled episode takes them (float32/int32 scalars)."""
    return {"lr": jnp.asarray(lr, jnp.float32), "mask_prob": jnp.asarray(spec.mask_prob, jnp.float32),
            "vocab": jnp.asarray(vocab, jnp.int32)}


class Engine:
    """Binds a model's apply function and an optimizer to the compiled episode and evaluation."""

    def __init__(self, apply_fn: Callable, optimizer: Optimizer, spec: EpisodeSpec,
                 hidden_fn: Callable | None = None):
        self.apply_fn = apply_fn  # (params, input_ids_BL, deterministic, rngs) -> logits_BLV
        self.apply_hidden = hidden_fn  # (params, input_ids_BL) -> (logits_BLV, hidden_BLD), for probes
        self.opt = optimizer
        self.spec = spec
        if spec.task not in TASKS:
            raise ValueError(f"unknown task kind {spec.task!r}; valid: {list(TASKS)}")
        self.task = TASKS[spec.task]
        self.episode = jax.jit(self._episode, donate_argnums=(0,))
        self.evaluate = jax.jit(self._evaluate)
        self.episode_R = jax.jit(self._episode_R, donate_argnums=(0,))
        self.evaluate_R = jax.jit(self._evaluate_R)

    # ------------------------------------------------------------------ the run axis
    @staticmethod
    def _over_runs(fn, *args_R):
        """fn vmapped over the leading run axis; for a group of one, fn itself on the squeezed arguments: the
        single-run program (no batched matmuls), bit for bit what the run computes outside a group."""
        R = jax.tree_util.tree_leaves(args_R)[0].shape[0]
        if R == 1:
            out = fn(*jax.tree_util.tree_map(lambda x: x[0], args_R))
            return jax.tree_util.tree_map(lambda x: x[None], out)
        return jax.vmap(fn)(*args_R)

    def _episode_R(self, state_R, tokens_RB, mask_RB, eval_tokens_RTC, eval_mask_RTC, hp_R):
        return self._over_runs(self._episode, state_R, tokens_RB, mask_RB, eval_tokens_RTC, eval_mask_RTC, hp_R)

    def _evaluate_R(self, params_R, tokens_RTC, mask_RTC, hp_R):
        return self._over_runs(self._evaluate, params_R, tokens_RTC, mask_RTC, hp_R)

    # ------------------------------------------------------------------ state
    def init_state(self, params: Params, rng: jax.Array) -> State:
        """opt_state is None for an optimizer reset at every episode (Adam reset): its moments live only inside
        the episode, so neither memory between episodes nor a checkpoint holds them (2/3 of a checkpoint's
        bytes; one orbax save of a ~4M-parameter state took 0.33-0.51 s with the moments, 0.13-0.16 s without)."""
        return {"params": params, "opt_state": None if self.opt.reset_each_episode else self.opt.direction.init(params),
                "step": jnp.zeros((), jnp.int32), "rng": rng}

    # ------------------------------------------------------------------ losses
    def logits(self, params, ids_BL, deterministic=True, rngs=None, hp=None) -> jax.Array:
        logits = self.apply_fn(params, ids_BL, deterministic, rngs)
        if self.spec.vocab_mask and hp is not None:
            logits = jnp.where(jnp.arange(logits.shape[-1]) < hp["vocab"], logits, -jnp.inf)
        return logits

    def loss(self, params, inputs_BL, targets_BL, weights_BL, dropout_key=None, hp=None) -> jax.Array:
        """Mean over a stack of tasks of their losses (one task during training: a document, or a batch of
        labelled images whose loss is already the batch mean). Train mode (dropout) with a dropout_key."""
        deterministic = dropout_key is None
        rngs = None if deterministic else {"dropout": dropout_key}
        return self.task.losses(lambda x: self.logits(params, x, deterministic, rngs, hp),
                                targets_BL, weights_BL, inputs_BL).mean()

    def _evaluate(self, params, tokens_TC, mask_TC, hp=None) -> jax.Array:
        """Loss of every task in eval mode, batched (in chunks of eval_batch tasks when memory requires).
        tokens_TC / mask_TC: the tasks' x and y stacked on axis 0 (tokens and mask, or pixels and labels)."""
        def losses(x, y):
            return self.task.losses(lambda v: self.logits(params, v, hp=hp), x, y, x)
        T = tokens_TC.shape[0]
        n, b = eval_chunks(T, self.spec.eval_batch)
        if n == 1:
            return losses(tokens_TC, mask_TC)
        pad = n * b - T

        def chunks(a):
            return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)).reshape(n, b, *a.shape[1:])
        out = jax.lax.map(lambda xs: losses(*xs), (chunks(tokens_TC), chunks(mask_TC)))
        return out.reshape(-1)[:T]

    # ------------------------------------------------------------------ one episode
    def _view(self, tokens_B, mask_B, key, mask_prob=None):
        """The training input of one step: window (Fig 4b), then input masking (Fig 4a; a run of a group whose
        own mask_prob is 0 draws a mask that hits nothing, so its inputs equal the run's alone)."""
        s = self.spec
        if not self.task.token_views:  # a batch of labelled images is trained on as it is
            return tokens_B, tokens_B, mask_B
        if s.window >= 0:
            k_win, key = jax.random.split(key)
            off = schedule.window_offset(k_win, s.window_start, s.window)
            tokens = jax.lax.dynamic_slice(tokens_B, (off,), (s.C,))
            mask = jax.lax.dynamic_slice(mask_B, (off,), (s.C,))
        else:
            tokens, mask = tokens_B[: s.C], mask_B[: s.C]
        inputs = tokens
        if s.mask_prob > 0:
            inputs = schedule.mask_tokens(tokens, key, s.mask_prob if mask_prob is None else mask_prob, s.mask_id)
        return inputs, tokens, mask

    def _episode(self, state: State, tokens_B, mask_B, eval_tokens_TC, eval_mask_TC, hp=None):
        """M updates on one task (each loss recorded before its update), then evaluation of all T tasks.
        Returns (state, train_losses_M, eval_losses_T[, step_eval_losses_MT])."""
        s = self.spec
        lr = None if hp is None else hp["lr"]
        params = state["params"]
        opt_state = self.opt.direction.init(params) if self.opt.reset_each_episode else state["opt_state"]
        rng, ep_key = jax.random.split(state["rng"])
        keys = jax.random.split(ep_key, s.M)

        def step(carry, key):
            params, opt_state, gstep = carry
            k_view, k_drop = jax.random.split(key)
            inputs, targets, weights = self._view(tokens_B, mask_B, k_view, None if hp is None else hp["mask_prob"])
            loss, grads = jax.value_and_grad(self.loss)(
                params, inputs[None], targets[None], weights[None], k_drop if s.dropout else None, hp)
            direction, opt_state = self.opt.direction.update(grads, opt_state, params)
            params = apply_update(params, direction, self.opt.lr_at(gstep, lr))
            out = (loss, self._evaluate(params, eval_tokens_TC, eval_mask_TC, hp)) if s.every_step_eval else loss
            return (params, opt_state, gstep + 1), out

        (params, opt_state, gstep), out = jax.lax.scan(step, (params, opt_state, state["step"]), keys)
        new_state = {"params": params, "opt_state": None if self.opt.reset_each_episode else opt_state,
                     "step": gstep, "rng": rng}
        eval_T = self._evaluate(params, eval_tokens_TC, eval_mask_TC, hp)
        if s.every_step_eval:
            train_M, step_eval_MT = out
            return new_state, train_M, eval_T, step_eval_MT
        return new_state, out, eval_T

    def train_then_eval(self, state: State, tokens_TB, mask_TB, eval_tokens_TC, eval_mask_TC, hp=None) -> jax.Array:
        """Row i: all-document losses after one episode on document i, each from the same `state`
        (the pairwise recovery matrix, docs/PROTOCOL.md §2.6). One sequential program over i."""
        def one(xs):
            return self._episode(state, xs[0], xs[1], eval_tokens_TC, eval_mask_TC, hp)[2]
        return jax.lax.map(one, (tokens_TB, mask_TB))
