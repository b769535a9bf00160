"""The host side of a run, as setup → episode loop → finish.

`run` reads like the protocol (docs/PROTOCOL.md §1.1): `setup` prepares the tasks, the model, the compiled
episode and the loss record (restoring a checkpoint on --resume); `episodes` is the loop over episodes; the
run's side jobs (progress, probes, recovery scores, partial results, checkpoints, stop signals) are the small
`Hooks` around it; `finish` writes the summary.

Randomness: one seed. Task selection uses it directly; the order, the parameter init and the training keys
(masks, windows, dropout) each get their own stream derived from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from recovery_jax import config as config_lib
from recovery_jax import data as data_lib
from recovery_jax import interrupts, metrics, models, schedule
from recovery_jax import rundir as rundir_lib
from recovery_jax.engine import Engine, EpisodeSpec, auto_eval_batch, eval_doc_bytes
from recovery_jax.optim import make_optimizer
from recovery_jax.rundir import Losses, RunError


# ----------------------------------------------------------------------------- tasks (documents)


@dataclasses.dataclass
class RunData:
    docs: Any  # data.DocumentSet (training order x_1..x_T)
    train_tokens_TB: np.ndarray
    train_mask_TB: np.ndarray
    eval_tokens_TC: np.ndarray
    eval_mask_TC: np.ndarray
    filler_tokens_NB: np.ndarray | None
    filler_mask_NB: np.ndarray | None
    filler_ids: list
    vocab_size: int
    pad_id: int


def prepare_data(cfg, order: schedule.Order) -> RunData:
    tokenizer = data_lib.get_tokenizer(cfg.data.tokenizer)
    corpus = data_lib.load_corpus(cfg.data.source, path=cfg.data.path, text_field=cfg.data.text_field,
                                  split=cfg.data.split)
    block = cfg.data.block or cfg.C
    min_tokens = cfg.data.min_tokens or cfg.C
    docs = data_lib.select_documents(corpus, tokenizer, T=cfg.T, C=cfg.C, seed=cfg.seed,
                                     min_tokens=min_tokens, first_t=cfg.data.first_t, block=block)
    filler_tok = filler_msk = None
    filler_ids: list = []
    if order.n_fillers:
        filler_tok, filler_msk, filler_ids = data_lib.filler_pool(
            corpus, tokenizer, exclude_ids=set(docs.ids), n=order.n_fillers, C=block, seed=cfg.seed + 1)
    pad_id, vocab_size = tokenizer.pad_id, tokenizer.vocab_size
    if cfg.data.restrict_vocab:  # validation rules out fillers here
        docs = data_lib.restrict_vocab(docs)
        vocab_size, pad_id = docs.vocab_size, 0
    tokens_TB = np.asarray(docs.tokens_TC, np.int32)
    mask_TB = np.asarray(docs.mask_TC, bool)
    lo = cfg.variant.window_start if cfg.variant.window >= 0 else 0
    eval_tok, eval_msk = tokens_TB[:, lo:lo + cfg.C], mask_TB[:, lo:lo + cfg.C]
    if not eval_msk[:, 1:].any(axis=1).all():
        bad = [docs.ids[i] for i in np.flatnonzero(~eval_msk[:, 1:].any(axis=1))]
        raise RunError(f"documents {bad} have no target tokens in the evaluation window; "
                       f"raise data.min_tokens or lower variant.window_start")
    return RunData(docs, tokens_TB, mask_TB, eval_tok, eval_msk, filler_tok, filler_msk, filler_ids,
                   vocab_size, pad_id)


# ----------------------------------------------------------------------------- model and engine


def build_params(cfg, rd: RunData, key) -> tuple[models.ModelConfig, Any]:
    """The model config and initial parameters: pretrained weights (vocabulary cut to the tokens used) or a
    fresh init of the configured shape."""
    if cfg.model.init == "pretrained":
        mcfg, params = models.load_pretrained(cfg.model.hf_path, revision=cfg.model.revision or None)
        if cfg.model.arch != mcfg.arch:
            raise config_lib.ConfigError(
                f"model.arch={cfg.model.arch!r} but {cfg.model.hf_path!r} is a {mcfg.arch} model")
        tok_vocab = int(rd.docs.tokenizer_vocab_size)
        if tok_vocab > mcfg.vocab_size:
            raise config_lib.ConfigError(
                f"the tokenizer's vocabulary ({tok_vocab} tokens, data.tokenizer={cfg.data.tokenizer!r}) is larger "
                f"than the model's ({mcfg.vocab_size}); use the model's own tokenizer")
        if rd.docs.vocab_map is not None:  # only the rows of the tokens present
            mcfg, params = models.restrict_vocab(mcfg, params, np.asarray(rd.docs.vocab_map))
        elif cfg.model.truncate_vocab:  # the authors' resize_token_embeddings(len(tokenizer))
            mcfg, params = models.restrict_vocab(mcfg, params, np.arange(tok_vocab))
        if cfg.model.dropout == "off":
            mcfg = dataclasses.replace(mcfg, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    else:
        own_vocab = cfg.model.truncate_vocab or cfg.data.restrict_vocab
        mcfg = models.model_config(cfg.model, rd.vocab_size if own_vocab else None)
        if rd.vocab_size > mcfg.vocab_size:
            raise config_lib.ConfigError(
                f"the tokenizer has {rd.vocab_size} tokens but the model's vocabulary is {mcfg.vocab_size}")
        params = models.init_params(mcfg, key, scheme=cfg.model.init)
    C = rd.eval_tokens_TC.shape[1]
    if C > mcfg.max_positions:
        raise config_lib.ConfigError(f"C={C} is larger than the model's maximum positions "
                                     f"({mcfg.max_positions}); lower C")
    return mcfg, params


def make_engine(cfg, mcfg: models.ModelConfig, total_steps: int, params, pad_id: int) -> Engine:
    dtype = jnp.bfloat16 if cfg.model.dtype == "bfloat16" else jnp.float32
    model = models.build_model(mcfg, dtype=dtype, remat=cfg.model.remat, attn_block=cfg.model.attention_block)

    def apply_fn(p, ids_BL, deterministic, rngs):
        return model.apply({"params": p}, ids_BL, deterministic=deterministic, rngs=rngs)

    def hidden_fn(p, ids_BL):
        return model.apply({"params": p}, ids_BL, deterministic=True, return_hidden=True)

    trainable = None
    if cfg.optim.freeze_first or cfg.optim.freeze_last:
        trainable = models.trainable_mask(mcfg.arch, params, freeze_first=cfg.optim.freeze_first,
                                          freeze_last=cfg.optim.freeze_last)
    spec = EpisodeSpec(
        M=cfg.M, C=cfg.C, mask_prob=float(cfg.variant.mask_prob),
        mask_id=pad_id if cfg.variant.mask_id < 0 else int(cfg.variant.mask_id),
        window=int(cfg.variant.window), window_start=int(cfg.variant.window_start),
        eval_batch=resolve_eval_batch(cfg, mcfg), every_step_eval=bool(cfg.eval.every_step),
        dropout=models.uses_dropout(mcfg))
    return Engine(apply_fn, make_optimizer(cfg, total_steps, trainable), spec, hidden_fn)


def resolve_eval_batch(cfg, mcfg: models.ModelConfig) -> int:
    """eval.batch as the engine takes it: N >= 1 as given, 0 (all T at once) -> T, -1 (auto) -> sized for the
    backend (engine.auto_eval_batch)."""
    b = int(cfg.eval.batch)
    if b > 0:
        return min(b, cfg.T)
    if b == 0:
        return cfg.T
    free = None
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - memory_stats is optional per backend
        free = None
    doc = eval_doc_bytes(cfg.C, mcfg.hidden_size, mcfg.intermediate_size, mcfg.vocab_size, mcfg.num_heads,
                         int(cfg.model.attention_block))
    return auto_eval_batch(cfg.T, cfg.C, backend=jax.default_backend(), doc_bytes=doc, free_bytes=free)


def seed_streams(seed: int) -> dict:
    root = jax.random.PRNGKey(seed)
    return {"order": np.random.default_rng([seed, 1]), "init": jax.random.fold_in(root, 2),
            "train": jax.random.fold_in(root, 3)}


def make_run_order(cfg) -> schedule.Order:
    return schedule.make_order(cfg.order.kind, cfg.T, cfg.E, seed_streams(cfg.seed)["order"],
                               shuffle_n=cfg.order.shuffle_n, filler_min=cfg.order.filler_min,
                               filler_max=cfg.order.filler_max)


# ----------------------------------------------------------------------------- setup


@dataclasses.dataclass
class Prepared:
    """Everything the episode loop touches: compiled programs, device arrays, state and the loss record."""

    cfg: Any
    order: schedule.Order
    data: RunData
    mcfg: models.ModelConfig
    engine: Engine
    state: dict
    losses: Losses
    start_k: int
    episode: Callable
    evaluate: Callable
    compile_s: float
    n_params: int
    eval_tokens_TC: jax.Array
    eval_mask_TC: jax.Array
    train_tokens_TB: jax.Array
    train_mask_TB: jax.Array
    filler_tokens_NB: jax.Array | None
    filler_mask_NB: jax.Array | None
    probes: Any = None

    @property
    def K(self) -> int:
        return self.order.n_episodes

    def task(self, k: int) -> tuple[jax.Array, jax.Array]:
        """Tokens and mask trained in episode k (a document x_t, or a one-off filler)."""
        d = int(self.order.docs_K[k - 1])
        if d >= 0:
            return self.train_tokens_TB[d], self.train_mask_TB[d]
        f = int(self.order.filler_K[k - 1])
        return self.filler_tokens_NB[f], self.filler_mask_NB[f]

    def end_of_epoch(self, k: int) -> bool:
        return k == self.K or self.order.epoch_K[k] != self.order.epoch_K[k - 1]


def setup(cfg, rundir: rundir_lib.RunDir, ckpt, *, resume: bool, log,
          check_stop: Callable[[], None] = lambda: None) -> Prepared:
    order = make_run_order(cfg)
    rd = prepare_data(cfg, order)
    check_stop()
    streams = seed_streams(cfg.seed)
    mcfg, params = build_params(cfg, rd, streams["init"])
    check_stop()
    K, T = order.n_episodes, cfg.T
    engine = make_engine(cfg, mcfg, K * cfg.M, params, rd.pad_id)
    n_params = int(models.param_count(params))
    rundir.write_json(rundir_lib.DOCUMENTS_FILE, dict(
        rd.docs.to_json(), order_kind=cfg.order.kind, filler_ids=list(rd.filler_ids),
        restrict_vocab=bool(cfg.data.restrict_vocab), vocab_size=int(rd.vocab_size)))
    rundir.write_json(rundir_lib.MODEL_FILE, {"arch": mcfg.arch, "hf_config": models.to_hf_config(mcfg),
                                              "n_params": n_params})
    state = engine.init_state(params, streams["train"])
    del params
    losses = Losses.empty(K, cfg.M, T, every_step=bool(cfg.eval.every_step))
    start_k = 0
    if resume and ckpt.latest() is not None:
        start_k, state, saved = ckpt.restore_run(state, log=log)
        losses.restore(saved, start_k)
        log(f"resumed from the checkpoint after episode {start_k}/{K}")

    dev = lambda x: None if x is None else jnp.asarray(x)  # noqa: E731
    p = Prepared(cfg, order, rd, mcfg, engine, state, losses, start_k, None, None, 0.0, n_params,
                 dev(rd.eval_tokens_TC), dev(rd.eval_mask_TC), dev(rd.train_tokens_TB), dev(rd.train_mask_TB),
                 dev(rd.filler_tokens_NB), dev(rd.filler_mask_NB))
    t0 = time.time()  # compile once, ahead of time, and time it apart from training
    p.episode = engine.episode.lower(state, *p.task(start_k + 1), p.eval_tokens_TC, p.eval_mask_TC).compile()
    p.evaluate = engine.evaluate.lower(state["params"], p.eval_tokens_TC, p.eval_mask_TC).compile()
    p.compile_s = time.time() - t0
    if start_k == 0:
        losses.eval_losses[0] = np.asarray(p.evaluate(state["params"], p.eval_tokens_TC, p.eval_mask_TC))
    if config_lib.probe_names(cfg):
        p.probes = make_probes(cfg, p, rundir)
    return p


def make_probes(cfg, p: Prepared, rundir: rundir_lib.RunDir):
    from recovery_jax.probes import Probes

    probes = Probes(config_lib.probe_names(cfg), engine=p.engine, arch=p.mcfg.arch, params=p.state["params"],
                    eval_tokens_TC=p.eval_tokens_TC, eval_mask_TC=p.eval_mask_TC, train_tokens_TB=p.train_tokens_TB,
                    train_mask_TB=p.train_mask_TB, doc=cfg.probes.doc, epoch=cfg.probes.epoch, T=cfg.T,
                    grad_layer=cfg.probes.grad_layer, max_episodes=cfg.probes.max_episodes,
                    sketch_dim=cfg.probes.sketch_dim, n_episodes=p.K)
    if p.start_k:
        snap = rundir.file(rundir_lib.PROBES_PARTIAL_FILE)
        if not os.path.exists(snap):
            raise RunError(f"cannot resume the probes: {snap} is missing; rerun with --overwrite")
        probes.restore(dict(np.load(snap)), p.start_k)
    return probes


# ----------------------------------------------------------------------------- the loop


def episodes(p: Prepared, hooks: "Hooks") -> None:
    """The protocol: episode k trains M steps on the task of order[k], then evaluates all T tasks."""
    for k in range(p.start_k + 1, p.K + 1):
        p.state, *out = p.episode(p.state, *p.task(k), p.eval_tokens_TC, p.eval_mask_TC)
        p.losses.record(k, *out)
        if not p.losses.finite(k):
            hooks.diverged(k)
        hooks.after_episode(k, p.end_of_epoch(k))


class Hooks:
    """The side jobs of the loop, in the order they run after each episode: progress, probes, the recovery
    scores and partial results at an epoch's end, the checkpoint policy, and a stop signal."""

    def __init__(self, p: Prepared, rundir: rundir_lib.RunDir, ckpt, signals: interrupts.StopSignals, log):
        self.p, self.rundir, self.ckpt, self.signals, self.log = p, rundir, ckpt, signals, log
        self.every = p.cfg.checkpoint.every
        self.saved_k = p.start_k if p.start_k else None  # the episode of the newest checkpoint on disk
        self.rs_reported: set[int] = set()
        self.progress = _Progress(p.K, p.start_k, p.cfg.progress, log)

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc) -> None:
        self.progress.close()

    def after_episode(self, k: int, end_of_epoch: bool) -> None:
        p = self.p
        self.progress.update(loss=float(p.losses.train_losses[(k - 1) * p.cfg.M]), doc=int(p.order.docs_K[k - 1]))
        if p.probes is not None:
            p.probes.after_episode(k, p.state)
            if end_of_epoch:
                p.probes.at_epoch_end(int(p.order.epoch_K[k - 1]) + 1, p.state)
        if end_of_epoch:
            self.report_recovery(k)
            self.rundir.write_losses(p.losses, k, p.order.docs_K)
        if k < p.K and (self.every == "episode" or (self.every == "epoch" and end_of_epoch)):
            self.checkpoint(k)
        if self.signals.hit:
            self.stop(k)

    def report_recovery(self, k: int) -> None:
        rs = metrics.recovery_scores(self.p.losses.eval_losses[: k + 1], self.p.order.docs_K[:k])
        for n, v in enumerate(np.atleast_1d(rs), start=1):
            if n not in self.rs_reported and np.isfinite(v):
                self.rs_reported.add(n)
                self.progress.write(f"  cycle {n}: recovery score {_fmt(float(v))}")

    def checkpoint(self, k: int) -> None:
        if self.saved_k == k:
            return
        if self.p.probes is not None:  # first, so a checkpoint never exists without its probe data
            self.rundir.write_npz(rundir_lib.PROBES_PARTIAL_FILE, **self.p.probes.snapshot())
        self.ckpt.save_run(k, self.p.state, self.p.losses.arrays(k))
        self.saved_k = k

    def stop(self, k: int) -> None:
        """After a stop signal: a checkpoint of this episode whatever the policy, the partial results, exit."""
        self.checkpoint(k)
        self.rundir.write_losses(self.p.losses, k, self.p.order.docs_K)
        raise interrupts.Interrupted(
            f"stopped after episode {k}/{self.p.K}: checkpoint and partial results (losses.npz, episodes 0..{k}) "
            f"are in {self.rundir.path}; continue with --resume", self.signals.code)

    def diverged(self, k: int) -> None:
        p = self.p
        self.rundir.write_losses(p.losses, k, p.order.docs_K)
        raise RunError(f"non-finite loss in episode {k} (epoch {p.order.epoch_K[k - 1] + 1}) with learning rate "
                       f"{p.cfg.optim.lr:g}; lower optim.lr. Results up to episode {k} are in {self.rundir.path}")


# ----------------------------------------------------------------------------- run and finish


def run(cfg, workdir: str, *, resume: bool = False, overwrite: bool = False, log=print) -> dict:
    """Train cyclically and write the run directory; returns the summary dict."""
    from recovery_jax.checkpoint import Checkpointer  # orbax is heavy; import only for a run

    cfg = config_lib.validate(cfg)
    t_start = time.time()
    with interrupts.StopSignals() as signals, jax.default_matmul_precision(cfg.model.matmul_precision), \
            rundir_lib.RunDir.open(workdir, config_lib.to_dict(cfg), resume=resume, overwrite=overwrite) as rundir:
        if resume and os.path.exists(rundir.file(rundir_lib.SUMMARY_FILE)):
            log(f"the run in {workdir} is already finished; nothing to resume")
            with open(rundir.file(rundir_lib.SUMMARY_FILE)) as f:
                return json.load(f)
        ckpt = Checkpointer(rundir.path, keep=cfg.checkpoint.keep)
        stopped = lambda: signals.check(_before_training(rundir.path, ckpt.latest() if resume else None))  # noqa
        p = setup(cfg, rundir, ckpt, resume=resume, log=log, check_stop=stopped)
        stopped()
        log(_banner(p))
        t_train = time.time()
        with Hooks(p, rundir, ckpt, signals, log) as hooks:
            episodes(p, hooks)
        summary = finish(p, rundir, ckpt, train_s=time.time() - t_train, total_s=time.time() - t_start)
        _print_table(summary, log)
        return summary


def finish(p: Prepared, rundir: rundir_lib.RunDir, ckpt, *, train_s: float, total_s: float) -> dict:
    cfg, K = p.cfg, p.K
    done = K - p.start_k
    summary = metrics.summarize(p.losses.eval_losses, p.losses.train_losses, p.order.docs_K, cfg.M)
    train_tokens, eval_tokens = done * cfg.M * cfg.C, done * cfg.T * cfg.C
    summary.update({
        "episodes": K, "n_params": p.n_params, "restrict_vocab": bool(cfg.data.restrict_vocab),
        "vocab_size": int(p.data.vocab_size), "compile_s": p.compile_s, "train_wall_s": train_s,
        "total_wall_s": total_s, "episodes_per_s": done / max(train_s, 1e-9),
        "train_tokens_per_s": train_tokens / max(train_s, 1e-9),
        "tokens_per_s": (train_tokens + eval_tokens) / max(train_s, 1e-9),
        "resumed_from_episode": p.start_k, "device": jax.devices()[0].device_kind,
    })
    rundir.write_losses(p.losses, K, p.order.docs_K)
    if p.probes is not None:
        rundir.write_npz(rundir_lib.PROBES_FILE, **p.probes.finish())
        if os.path.exists(rundir.file(rundir_lib.PROBES_PARTIAL_FILE)):
            os.unlink(rundir.file(rundir_lib.PROBES_PARTIAL_FILE))
    rundir.write_json(rundir_lib.SUMMARY_FILE, summary)
    ckpt.clear()
    return summary


def _before_training(path: str, checkpoint: int | None) -> str:
    """What is on disk when a stop signal arrives before the first episode."""
    if checkpoint is not None:
        return (f"stopped before training resumed: the checkpoint after episode {checkpoint} in {path} is "
                f"unchanged; continue with --resume")
    return (f"stopped before training started: no episode was trained and nothing was saved but the config in "
            f"{path}; run the same command with --resume to start it")


def _banner(p: Prepared) -> str:
    cfg = p.cfg
    return (f"model {p.mcfg.arch} {p.n_params / 1e6:.2f}M params | T={cfg.T} C={cfg.C} M={cfg.M} E={cfg.E} "
            f"| {p.K} episodes | optimizer {cfg.optim.name} lr {cfg.optim.lr:g}"
            + (f" | restricted softmax: {p.data.vocab_size} tokens (data.restrict_vocab)"
               if cfg.data.restrict_vocab else "")
            + f" | evaluation in chunks of {p.engine.spec.eval_batch} documents"
            + f" | compiled in {p.compile_s:.1f}s")


def _fmt(x: float) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _print_table(summary: dict, log) -> None:
    rs = summary.get("recovery_scores", [])
    log("\n  cycle | recovery score")
    for n, v in enumerate(rs, start=1):
        log(f"  {n:5d} | {_fmt(v)}")
    online = summary.get("online_loss") or {}
    if online.get("mean") is not None:
        log(f"  online loss (epochs {online.get('first_epoch', 2)}..E): {_fmt(online['mean'])}")
    log(f"  {summary['episodes']} episodes in {summary['train_wall_s']:.1f}s "
        f"({summary['tokens_per_s']:.0f} tokens/s incl. evaluation; compile {summary['compile_s']:.1f}s)")


class _Progress:
    def __init__(self, total, initial, enabled, log=print):
        self.bar = None
        self.log = log
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="ep", dynamic_ncols=True)

    def update(self, **post):
        if self.bar is not None:
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)

    def write(self, msg):
        if self.bar is not None:
            self.bar.write(msg)
        else:
            self.log(msg)

    def close(self):
        if self.bar is not None:
            self.bar.close()
