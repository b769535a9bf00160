"""The host side of a run, as setup → episode loop → finish.

`run` reads like the protocol (docs/PROTOCOL.md §1.1): `setup` prepares the tasks, the model, the compiled
episode and the loss record (restoring a checkpoint on --resume); `episodes` is the loop over episodes; the
run's side jobs (progress, probes, recovery scores, partial results, checkpoints, stop signals) are the small
`Hooks` around it; `finish` writes the summary.

Randomness: one seed. Task selection uses it directly; the order, the parameter init and the training keys
(masks, windows, dropout) each get their own stream derived from it.
"""

from __future__ import annotations

import contextlib
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
from recovery_jax import interrupts, metrics, models, schedule, sharding, vision
from recovery_jax import optim as optim_lib
from recovery_jax import rundir as rundir_lib
from recovery_jax.engine import Engine, EpisodeSpec, auto_eval_batch, default_hp, eval_chunks, eval_doc_bytes
from recovery_jax.optim import make_optimizer
from recovery_jax.rundir import Losses, RunError


# ----------------------------------------------------------------------------- tasks (documents)


@dataclasses.dataclass
class RunData:
    """The T tasks as arrays: for text (and Image GPT) runs token ids and their 0/1 mask; for classifier runs the
    `tokens` fields hold pixels_TBHWC and the `mask` fields labels_TB (engine.TASKS says how each is trained)."""

    docs: Any  # data.DocumentSet, or vision.ImageTasks (training order x_1..x_T)
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
    if vision.is_image_run(cfg):  # images -> tasks (docs/PROTOCOL.md §3 Fig 7); trained and evaluated as they are
        t = vision.prepare(cfg)
        return RunData(t, t.x_T, t.y_T, t.x_T, t.y_T, None, None, [], t.vocab_size, 0)
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
    if vision.is_image_run(cfg):
        return vision.build_params(cfg, rd.docs, key)
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


def make_engine(cfg, mcfg: models.ModelConfig, total_steps: int, params, pad_id: int, *, vocab_mask: bool = False,
                mask_prob: float | None = None) -> Engine:
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
        M=cfg.M, C=cfg.C, mask_prob=float(cfg.variant.mask_prob if mask_prob is None else mask_prob),
        mask_id=pad_id if cfg.variant.mask_id < 0 else int(cfg.variant.mask_id),
        window=int(cfg.variant.window), window_start=int(cfg.variant.window_start),
        eval_batch=resolve_eval_batch(cfg, mcfg), every_step_eval=bool(cfg.eval.every_step),
        dropout=models.uses_dropout(mcfg), vocab_mask=vocab_mask, task=models.registry.get(mcfg).task)
    return Engine(apply_fn, make_optimizer(cfg, total_steps, trainable), spec, hidden_fn)


def resolve_eval_batch(cfg, mcfg: models.ModelConfig) -> int:
    """eval.batch as the engine takes it: N >= 1 as given, 0 (all T at once) -> T, -1 (auto) -> sized for the
    backend (engine.auto_eval_batch)."""
    b = int(cfg.eval.batch)
    if b > 0:
        return min(b, cfg.T)
    if b == 0:
        return cfg.T
    if vision.is_image_run(cfg):
        return vision.eval_batch(cfg, mcfg)
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


# Keys that may differ between the runs of one compiled group: they change values (documents, order, init,
# learning rate, masking), never shapes or the program. Everything else must be equal (group_signature).
PER_RUN_KEYS = ("seed", "optim.lr", "variant.mask_prob", "order.kind", "order.shuffle_n", "data.source",
                "data.path", "data.text_field", "data.split", "data.first_t") + config_lib.PERFORMANCE_KEYS


def group_signature(cfg) -> str:
    """Runs with equal signatures can share one compiled program (one group). Filler orders have a random
    number of episodes, and probes keep per-run host state: such runs are never grouped."""
    flat = {k: v for k, v in config_lib.flatten(config_lib.to_dict(cfg)).items() if k not in PER_RUN_KEYS}
    if cfg.order.kind == "filler" or config_lib.probe_names(cfg):
        flat["alone"] = [cfg.seed, cfg.order.kind, cfg.data.source, cfg.optim.lr, cfg.variant.mask_prob]
    flat["order.partial"] = cfg.order.kind == "partial"  # shuffle_n only matters for partial orders
    return json.dumps(flat, sort_keys=True)


def run_bytes(cfg) -> int:
    """A rough upper bound on one run's memory in a group: parameters, gradients and optimizer state (fp32, the
    preset's full vocabulary), its tokens, and the activations of a training step and an evaluation chunk."""
    if vision.is_image_run(cfg):
        return vision.run_bytes(cfg)
    mcfg = models.model_config(cfg.model, None)
    n = models.param_count(models.param_shapes(mcfg))
    slots = {"sgd": 0, "momentum": 1}.get(cfg.optim.name, 2)
    act = eval_doc_bytes(cfg.C, mcfg.hidden_size, mcfg.intermediate_size, mcfg.vocab_size, mcfg.num_heads,
                         int(cfg.model.attention_block)) * (mcfg.num_layers + 1)
    return int(4 * n * (2 + slots) + 8 * cfg.T * (cfg.data.block or cfg.C) + act)


def max_group_size(cfg, share: float = 0.5) -> int:
    """How many runs of this config fit in `share` of the memory: the host's RAM on CPU, the first device's
    memory on an accelerator."""
    limit = None
    try:
        limit = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 - memory_stats is optional per backend
        limit = None
    if not limit:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, int(share * limit) // max(run_bytes(cfg), 1))


@dataclasses.dataclass
class Slot:
    """One run of a group: its config, directory, tasks, model config and loss record."""

    cfg: Any
    rundir: rundir_lib.RunDir
    ckpt: Any
    order: schedule.Order
    data: RunData
    mcfg: models.ModelConfig
    losses: Losses
    n_params: int
    probes: Any = None
    failed: str | None = None  # why this run stopped early (a non-finite loss in a group)


@dataclasses.dataclass
class Prepared:
    """Everything the episode loop touches: the group's runs, compiled programs, stacked device arrays."""

    runs: list[Slot]
    engine: Engine
    state: dict  # leading run axis R on every leaf
    hp_R: dict
    start_k: int
    episode: Callable = None
    evaluate: Callable = None
    compile_s: float = 0.0
    eval_tokens_RTC: jax.Array = None
    eval_mask_RTC: jax.Array = None
    train_tokens_RTB: jax.Array = None
    train_mask_RTB: jax.Array = None
    mesh: Any = None  # a jax Mesh when the group spans devices (recovery_jax/sharding.py); None: one device
    take: Callable = None  # with a mesh: (tokens_RTB, mask_RTB, t_R) -> this episode's tasks, placed; (tokens_RB, mask_RB) -> placed

    @property
    def cfg(self):
        return self.runs[0].cfg

    @property
    def order(self) -> schedule.Order:
        return self.runs[0].order

    @property
    def K(self) -> int:
        return self.order.n_episodes

    @property
    def R(self) -> int:
        return len(self.runs)

    def task(self, k: int) -> tuple[jax.Array, jax.Array]:
        """Tokens and mask each run trains on in episode k (a document x_t, or a one-off filler)."""
        if self.R == 1 and self.order.docs_K[k - 1] < 0:  # fillers: only ever one run (group_signature)
            d = self.runs[0].data
            f = int(self.order.filler_K[k - 1])
            tok_RB, msk_RB = jnp.asarray(d.filler_tokens_NB[f])[None], jnp.asarray(d.filler_mask_NB[f])[None]
            return (tok_RB, msk_RB) if self.take is None else self.take(tok_RB, msk_RB)
        t_R = np.asarray([r.order.docs_K[k - 1] for r in self.runs])
        if self.take is not None:
            return self.take(self.train_tokens_RTB, self.train_mask_RTB, t_R)
        r_R = np.arange(self.R)
        return self.train_tokens_RTB[r_R, t_R], self.train_mask_RTB[r_R, t_R]

    def end_of_epoch(self, k: int) -> bool:
        return k == self.K or self.order.epoch_K[k] != self.order.epoch_K[k - 1]

    def run_state(self, r: int) -> dict:
        if self.mesh is not None:  # host copies, leaf by leaf (works across processes)
            return sharding.host_run_state(self.state, r, self.mesh)
        return jax.tree_util.tree_map(lambda x: x[r], self.state)


def setup(cfgs: list, rundirs: list, ckpts: list, *, resume: bool, log,
          check_stop: Callable[[], None] = lambda: None) -> Prepared:
    """Tasks, models, the compiled group episode and the loss records of R runs (R = 1: a single run)."""
    runs, params_R, hp_R, keys_R = [], [], [], []
    for cfg, rundir, ckpt in zip(cfgs, rundirs, ckpts):
        order = make_run_order(cfg)
        rd = prepare_data(cfg, order)
        check_stop()
        streams = seed_streams(cfg.seed)
        mcfg, params = build_params(cfg, rd, streams["init"])
        check_stop()
        n_params = int(models.param_count(params))
        rundir.write_json(rundir_lib.DOCUMENTS_FILE, dict(
            rd.docs.to_json(), order_kind=cfg.order.kind, filler_ids=list(rd.filler_ids),
            restrict_vocab=bool(cfg.data.restrict_vocab), vocab_size=int(rd.vocab_size)))
        rundir.write_json(rundir_lib.MODEL_FILE, {"arch": mcfg.arch, "hf_config": models.to_hf_config(mcfg),
                                                  "n_params": n_params})
        runs.append(Slot(cfg, rundir, ckpt, order, rd, mcfg, Losses.empty(
            order.n_episodes, cfg.M, cfg.T, every_step=bool(cfg.eval.every_step)), n_params))
        params_R.append(params)
        keys_R.append(streams["train"])
    if len({r.order.n_episodes for r in runs}) != 1 or len({r.order.epoch_K.tobytes() for r in runs}) != 1:
        raise RunError("the runs of a group need the same episodes per epoch; run them with --no-group")
    cfg = cfgs[0]
    images = vision.is_image_run(cfg)  # image models' output sizes are fixed by their data: nothing to pad
    V = runs[0].data.vocab_size if images else max(r.mcfg.vocab_size for r in runs)
    group_mcfg = runs[0].mcfg if images else dataclasses.replace(runs[0].mcfg, vocab_size=V)  # padded to the largest
    engine = make_engine(cfg, group_mcfg, runs[0].order.n_episodes * cfg.M, params_R[0],
                         runs[0].data.pad_id, vocab_mask=not images and any(r.mcfg.vocab_size != V for r in runs),
                         mask_prob=max(c.variant.mask_prob for c in cfgs))
    states = []
    for r, params, key in zip(runs, params_R, keys_R):
        state = engine.init_state(params if images else models.pad_vocab(r.mcfg, params, V), key)
        hp_R.append(default_hp(engine.spec, optim_lib.effective_lr(r.cfg), V if images else r.mcfg.vocab_size)
                    | {"mask_prob": jnp.asarray(r.cfg.variant.mask_prob, jnp.float32)})
        states.append(state)
    del params_R

    start_k = 0
    if resume:
        found = {r.ckpt.latest() for r in runs}
        if len(found) > 1:
            raise RunError(f"the runs of this group were checkpointed after different episodes ({sorted(found, key=str)});"
                           f" resume them one by one (--no-group)")
        if found != {None}:
            for i, r in enumerate(runs):
                k, states[i], saved = r.ckpt.restore_run(states[i], log=log)
                r.losses.restore(saved, k)
                start_k = k
            log(f"resumed from the checkpoint after episode {start_k}/{runs[0].order.n_episodes}")
    stack = lambda xs: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *xs)  # noqa: E731
    p = Prepared(runs, engine, stack(states), stack(hp_R), start_k)
    del states
    p.eval_tokens_RTC = jnp.asarray(np.stack([r.data.eval_tokens_TC for r in runs]))
    p.eval_mask_RTC = jnp.asarray(np.stack([r.data.eval_mask_TC for r in runs]))
    p.train_tokens_RTB = jnp.asarray(np.stack([r.data.train_tokens_TB for r in runs]))
    p.train_mask_RTB = jnp.asarray(np.stack([r.data.train_mask_TB for r in runs]))
    episode_R, evaluate_R = engine.episode_R, engine.evaluate_R
    # -- devices (recovery_jax/sharding.py): a group spanning several devices has its stacked arrays placed on
    # the mesh and its programs jitted with their shardings; on one device this is skipped (today's program)
    p.mesh = sharding.group_mesh(cfgs, group_mcfg, log)
    if p.mesh is not None:
        episode_R, evaluate_R = sharding.shard_group(p, p.mesh, group_mcfg.arch)
    # --
    t0 = time.time()  # compile once, ahead of time, and time it apart from training
    p.episode = episode_R.lower(p.state, *p.task(start_k + 1), p.eval_tokens_RTC, p.eval_mask_RTC, p.hp_R).compile()
    p.evaluate = evaluate_R.lower(p.state["params"], p.eval_tokens_RTC, p.eval_mask_RTC, p.hp_R).compile()
    p.compile_s = time.time() - t0
    if start_k == 0:
        row0_R = np.asarray(p.evaluate(p.state["params"], p.eval_tokens_RTC, p.eval_mask_RTC, p.hp_R))
        for r, row0 in zip(runs, row0_R):
            r.losses.eval_losses[0] = row0
    for i, r in enumerate(runs):
        if config_lib.probe_names(r.cfg):
            r.probes = make_probes(r, engine, p.run_state(i)["params"], start_k)
    return p


def make_probes(run: Slot, engine: Engine, params, start_k: int):
    from recovery_jax.probes import Probes

    cfg, d = run.cfg, run.data
    probes = Probes(config_lib.probe_names(cfg), engine=engine, arch=run.mcfg.arch, params=params,
                    eval_tokens_TC=jnp.asarray(d.eval_tokens_TC), eval_mask_TC=jnp.asarray(d.eval_mask_TC),
                    train_tokens_TB=jnp.asarray(d.train_tokens_TB), train_mask_TB=jnp.asarray(d.train_mask_TB),
                    doc=cfg.probes.doc, epoch=cfg.probes.epoch, T=cfg.T, grad_layer=cfg.probes.grad_layer,
                    max_episodes=cfg.probes.max_episodes, sketch_dim=cfg.probes.sketch_dim,
                    n_episodes=run.order.n_episodes)
    if start_k:
        snap = run.rundir.file(rundir_lib.PROBES_PARTIAL_FILE)
        if not os.path.exists(snap):
            raise RunError(f"cannot resume the probes: {snap} is missing; rerun with --overwrite")
        probes.restore(dict(np.load(snap)), start_k)
    return probes


# ----------------------------------------------------------------------------- the loop


def episodes(p: Prepared, hooks: "Hooks") -> None:
    """The protocol: episode k trains M steps on the task of order[k], then evaluates all T tasks (every
    run of the group at once)."""
    for k in range(p.start_k + 1, p.K + 1):
        p.state, *out_R = p.episode(p.state, *p.task(k), p.eval_tokens_RTC, p.eval_mask_RTC, p.hp_R)
        for run, *out in zip(p.runs, *map(np.asarray, out_R)):
            run.losses.record(k, *out)
        hooks.after_episode(k, p.end_of_epoch(k))


class Hooks:
    """The side jobs of the loop, in the order they run after each episode: non-finite losses, progress,
    probes, the recovery scores and partial results at an epoch's end, the checkpoint policy, a stop signal."""

    def __init__(self, p: Prepared, signals: interrupts.StopSignals, log):
        self.p, self.signals, self.log = p, signals, log
        self.every = p.cfg.checkpoint.every
        self.saved_k = p.start_k if p.start_k else None  # the episode of the newest checkpoints on disk
        self.rs_reported: set[int] = set()
        self.progress = _Progress(p.K, p.start_k, p.cfg.progress, log)

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc) -> None:
        self.progress.close()

    def live(self) -> list[Slot]:
        return [r for r in self.p.runs if r.failed is None]

    def after_episode(self, k: int, end_of_epoch: bool) -> None:
        p = self.p
        for r in self.live():
            if not r.losses.finite(k):
                self.diverged(r, k)
        m = p.cfg.M
        self.progress.update(loss=float(np.mean([r.losses.train_losses[(k - 1) * m] for r in p.runs])),
                             doc=int(p.order.docs_K[k - 1]))
        for i, r in enumerate(self.live()):
            if r.probes is not None:
                state = p.run_state(i)
                r.probes.after_episode(k, state)
                if end_of_epoch:
                    r.probes.at_epoch_end(int(p.order.epoch_K[k - 1]) + 1, state)
        if end_of_epoch:
            self.report_recovery(k)
            for r in self.live():
                r.rundir.write_losses(r.losses, k, r.order.docs_K)
        if k < p.K and (self.every == "episode" or (self.every == "epoch" and end_of_epoch)):
            self.checkpoint(k)
        if sharding.any_process(self.signals.hit):  # every process stops after the same episode
            self.stop(k)

    def report_recovery(self, k: int) -> None:
        rs_R = np.asarray([np.atleast_1d(metrics.recovery_scores(r.losses.eval_losses[: k + 1], r.order.docs_K[:k]))
                           for r in self.live()])
        for n in range(1, rs_R.shape[1] + 1 if rs_R.size else 1):
            v = rs_R[:, n - 1]
            if n not in self.rs_reported and np.isfinite(v).all():
                self.rs_reported.add(n)
                spread = f" ± {float(v.std(ddof=1)):.3f} over {len(v)} runs" if len(v) > 1 else ""
                self.progress.write(f"  cycle {n}: recovery score {_fmt(float(v.mean()))}{spread}")

    def checkpoint(self, k: int) -> None:
        if self.saved_k == k:
            return
        for i, r in enumerate(self.p.runs):
            if r.failed is not None:
                continue
            if r.probes is not None:  # first, so a checkpoint never exists without its probe data
                r.rundir.write_npz(rundir_lib.PROBES_PARTIAL_FILE, **r.probes.snapshot())
            r.ckpt.save_run(k, self.p.run_state(i), r.losses.arrays(k))
        self.saved_k = k

    def stop(self, k: int) -> None:
        """After a stop signal: checkpoints of this episode whatever the policy, the partial results, exit."""
        self.checkpoint(k)
        for r in self.live():
            r.rundir.write_losses(r.losses, k, r.order.docs_K)
        where = self.p.runs[0].rundir.path if self.p.R == 1 else f"the {self.p.R} run directories"
        raise interrupts.Interrupted(
            f"stopped after episode {k}/{self.p.K}: checkpoint and partial results (losses.npz, episodes 0..{k}) "
            f"are in {where}; continue with --resume", self.signals.code)

    def diverged(self, r: Slot, k: int) -> None:
        r.rundir.write_losses(r.losses, k, r.order.docs_K)
        r.failed = (f"non-finite loss in episode {k} (epoch {r.order.epoch_K[k - 1] + 1}) with learning rate "
                    f"{r.cfg.optim.lr:g}; lower optim.lr. Results up to episode {k} are in {r.rundir.path}")
        if self.p.R == 1:
            raise RunError(r.failed)
        self.log(f"run {r.rundir.path}: {r.failed}")


# ----------------------------------------------------------------------------- run and finish


CACHE_ENV = "RECOVERY_JAX_COMPILATION_CACHE"


def enable_compilation_cache() -> str | None:
    """JAX's persistent compilation cache, so a process that runs shapes compiled before (by any earlier
    process) loads the program instead of compiling it. Where: $RECOVERY_JAX_COMPILATION_CACHE, else
    $XDG_CACHE_HOME/recovery_jax/xla (~/.cache/...); set the variable to "off" to disable it."""
    where = os.environ.get(CACHE_ENV)
    if where is not None and where.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "recovery_jax", "xla")
    try:
        os.makedirs(where, exist_ok=True)
    except OSError:
        return None  # an unwritable cache is no reason to stop a run
    if jax.config.jax_compilation_cache_dir != where:
        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return where


def run(cfg, workdir: str, *, resume: bool = False, overwrite: bool = False, log=print) -> dict:
    """Train cyclically and write the run directory; returns the summary dict (a group of one run)."""
    out = run_group([cfg], [workdir], resume=resume, overwrite=overwrite, log=log)[0]
    if isinstance(out, Exception):
        raise out
    return out


def run_group(cfgs: list, workdirs: list[str], *, resume: bool = False, overwrite: bool = False,
              log=print) -> list:
    """Train R runs as one compiled program, each into its own run directory (the files of a single run).
    Returns, per run, its summary dict or the RunError that stopped it (a non-finite loss)."""
    from recovery_jax.checkpoint import Checkpointer  # orbax is heavy; import only for a run

    cfgs = [config_lib.validate(c) for c in cfgs]
    sharding.check(cfgs)  # the mesh's config errors before any run directory is touched
    enable_compilation_cache()
    if len({group_signature(c) for c in cfgs}) > 1:
        raise config_lib.ConfigError("these runs cannot share one compiled program (they differ in more than "
                                     f"{', '.join(PER_RUN_KEYS[:4])}, ...); run them with --no-group")
    t_start = time.time()
    with contextlib.ExitStack() as stack:
        signals = stack.enter_context(interrupts.StopSignals())
        stack.enter_context(jax.default_matmul_precision(cfgs[0].model.matmul_precision))
        # several processes (sharding.py): process 0 writes the run directories, the others only read them
        opener = rundir_lib.RunDir.open if sharding.is_primary() else sharding.FollowerDir.open
        with sharding.agreed():  # a refused run directory stops every process, not only process 0
            rundirs = [stack.enter_context(opener(w, config_lib.to_dict(c), resume=resume, overwrite=overwrite))
                       for c, w in zip(cfgs, workdirs)]
        finished = [resume and os.path.exists(rd.file(rundir_lib.SUMMARY_FILE)) for rd in rundirs]
        if all(finished):
            log(f"the run{'s' if len(workdirs) > 1 else ''} in {', '.join(workdirs)} "
                f"{'are' if len(workdirs) > 1 else 'is'} already finished; nothing to resume")
            return [json.load(open(rd.file(rundir_lib.SUMMARY_FILE))) for rd in rundirs]
        if any(finished):
            raise RunError("some runs of this group are finished and some are not; resume the unfinished ones")
        ckpts = [Checkpointer(rd.path, keep=c.checkpoint.keep) if sharding.is_primary()
                 else sharding.follower_checkpointer(rd.path, c.checkpoint.keep) for rd, c in zip(rundirs, cfgs)]
        latest = [ck.latest() for ck in ckpts] if resume else []
        stopped = lambda: signals.check(_before_training(workdirs, latest))  # noqa: E731
        with sharding.host_staging(cfgs):  # a group spread over accelerators is built in host memory first
            p = setup(cfgs, rundirs, ckpts, resume=resume, log=log, check_stop=stopped)
        signals.check(_before_training(workdirs, [p.start_k or None]))
        log(_banner(p))
        t_train = time.time()
        with Hooks(p, signals, log) as hooks:
            episodes(p, hooks)
        out = [finish(p, r, train_s=time.time() - t_train, total_s=time.time() - t_start) for r in p.runs]
        for r, o in zip(p.runs, out):
            if p.R > 1:
                log(f"\n{r.rundir.path}:")
            if isinstance(o, dict):
                _print_table(o, log)
        return out


def finish(p: Prepared, run: Slot, *, train_s: float, total_s: float):
    """The summary of one run of the group (or its RunError), its files, and no more checkpoints."""
    if run.failed is not None:
        return RunError(run.failed)
    cfg, K = run.cfg, p.K
    done = K - p.start_k
    summary = metrics.summarize(run.losses.eval_losses, run.losses.train_losses, run.order.docs_K, cfg.M)
    unit = _task_units(run)  # tokens per document (text, Image GPT) or images per batch (classifiers)
    train_tokens, eval_tokens = done * cfg.M * unit, done * cfg.T * unit
    summary.update({
        "episodes": K, "n_params": run.n_params, "restrict_vocab": bool(cfg.data.restrict_vocab),
        "vocab_size": int(run.data.vocab_size), "compile_s": p.compile_s, "train_wall_s": train_s,
        "total_wall_s": total_s, "episodes_per_s": done / max(train_s, 1e-9),
        "train_tokens_per_s": train_tokens / max(train_s, 1e-9),
        "tokens_per_s": (train_tokens + eval_tokens) / max(train_s, 1e-9),
        "resumed_from_episode": p.start_k, "device": jax.devices()[0].device_kind, "group_size": p.R,
        "task_unit": "images" if getattr(run.data.docs, "task", "lm") == "classify" else "tokens",
    })
    run.rundir.write_losses(run.losses, K, run.order.docs_K)
    if run.probes is not None:
        run.rundir.write_npz(rundir_lib.PROBES_FILE, **run.probes.finish())
        if os.path.exists(run.rundir.file(rundir_lib.PROBES_PARTIAL_FILE)):
            os.unlink(run.rundir.file(rundir_lib.PROBES_PARTIAL_FILE))
    run.rundir.write_json(rundir_lib.SUMMARY_FILE, summary)
    run.ckpt.clear()
    return summary


def _before_training(workdirs: list[str], checkpoints: list) -> str:
    """What is on disk when a stop signal arrives before the first episode."""
    where = workdirs[0] if len(workdirs) == 1 else f"the {len(workdirs)} run directories"
    if any(c is not None for c in checkpoints):
        return (f"stopped before training resumed: the checkpoints in {where} are unchanged "
                f"(after episode {max(c for c in checkpoints if c is not None)}); continue with --resume")
    return (f"stopped before training started: no episode was trained and nothing was saved but the config in "
            f"{where}; run the same command with --resume to start it")


def _task_units(run: Slot) -> int:
    """What a task holds, for the throughput numbers: C tokens, or data.batch_size images of a classifier run."""
    docs = run.data.docs
    return int(run.cfg.data.batch_size) if getattr(docs, "task", "lm") == "classify" else int(run.cfg.C)


def _banner(p: Prepared) -> str:
    cfg, r0 = p.cfg, p.runs[0]
    vocab = sorted({r.data.vocab_size for r in p.runs})
    docs = r0.data.docs
    shape = (f"T={cfg.T} batches of {cfg.data.batch_size} images ({docs.image_size} px)"
             if getattr(docs, "task", "lm") == "classify" else f"T={cfg.T} C={cfg.C}")
    return (f"model {r0.mcfg.arch} {r0.n_params / 1e6:.2f}M params | {shape} M={cfg.M} E={cfg.E} "
            f"| {p.K} episodes | optimizer {cfg.optim.name} lr "
            f"{'/'.join(sorted({f'{r.cfg.optim.lr:g}' for r in p.runs}))}"
            + (f" | {p.R} runs in one program" if p.R > 1 else "")
            + (f" | restricted softmax: {'/'.join(map(str, vocab))} tokens (data.restrict_vocab)"
               if cfg.data.restrict_vocab else "")
            + " | evaluation in {} chunk(s) of {} documents".format(*eval_chunks(cfg.T, p.engine.spec.eval_batch))
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
        f"({summary['tokens_per_s']:.0f} {summary.get('task_unit', 'tokens')}/s incl. evaluation; "
        f"compile {summary['compile_s']:.1f}s)")


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
