"""The host side of a run: documents, model, order, the episode loop, results on disk.

Randomness: one seed. Document selection uses it directly; the order, the parameter init and the
training keys (masks, windows, dropout) each get their own stream derived from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recovery_jax import config as config_lib
from recovery_jax import metrics, models, rundir as rundir_lib, schedule
from recovery_jax import data as data_lib
from recovery_jax.engine import Engine, EpisodeSpec, auto_eval_batch, eval_doc_bytes
from recovery_jax.optim import make_optimizer
from recovery_jax.rundir import RunError


# ----------------------------------------------------------------------------- documents


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
                                     min_tokens=min_tokens, first_t=cfg.data.first_t,
                                     block=block)
    filler_tok = filler_msk = None
    filler_ids: list = []
    if order.n_fillers:
        filler_tok, filler_msk, filler_ids = data_lib.filler_pool(
            corpus, tokenizer, exclude_ids=set(docs.ids), n=order.n_fillers, C=block, seed=cfg.seed + 1)
    pad_id = tokenizer.pad_id
    vocab_size = tokenizer.vocab_size
    if cfg.data.restrict_vocab:
        if filler_tok is not None:
            raise config_lib.ConfigError("data.restrict_vocab cannot be combined with order.kind='filler' "
                                         "(filler documents bring tokens outside the T documents)")
        docs = data_lib.restrict_vocab(docs)
        vocab_size = docs.vocab_size
        pad_id = 0
    tokens_TB = np.asarray(docs.tokens_TC, np.int32)
    mask_TB = np.asarray(docs.mask_TC, bool)
    if cfg.variant.window >= 0:
        lo = cfg.variant.window_start
        eval_tok, eval_msk = tokens_TB[:, lo:lo + cfg.C], mask_TB[:, lo:lo + cfg.C]
    else:
        eval_tok, eval_msk = tokens_TB[:, :cfg.C], mask_TB[:, :cfg.C]
    if not eval_msk[:, 1:].any(axis=1).all():
        bad = [docs.ids[i] for i in np.flatnonzero(~eval_msk[:, 1:].any(axis=1))]
        raise RunError(f"documents {bad} have no target tokens in the evaluation window; "
                       f"raise data.min_tokens or lower variant.window_start")
    return RunData(docs, tokens_TB, mask_TB, eval_tok, eval_msk, filler_tok, filler_msk, filler_ids,
                   vocab_size, pad_id)


# ----------------------------------------------------------------------------- model


_SHAPE_KEYS = {
    "gpt_neox": {"hidden_size": "hidden_size", "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
                 "intermediate_size": "intermediate_size", "max_positions": "max_position_embeddings"},
    "gpt2": {"hidden_size": "n_embd", "num_layers": "n_layer", "num_heads": "n_head",
             "intermediate_size": "n_inner", "max_positions": "n_positions"},
}


def model_config(cfg, vocab_size: int) -> tuple[str, dict]:
    """The HF-style config of a from-scratch model: a preset, its shape overrides, our vocabulary."""
    arch, hf = models.preset_config(cfg.model.preset)
    if arch != cfg.model.arch:
        raise config_lib.ConfigError(
            f"model.preset={cfg.model.preset!r} is a {arch} model but model.arch={cfg.model.arch!r}")
    hf = dict(hf)
    for ours, theirs in _SHAPE_KEYS[arch].items():
        value = cfg.model[ours]
        if value:
            hf[theirs] = int(value)
    if cfg.model.truncate_vocab or cfg.data.restrict_vocab:
        hf["vocab_size"] = int(vocab_size)
    elif vocab_size > hf["vocab_size"]:
        raise config_lib.ConfigError(
            f"the tokenizer has {vocab_size} tokens but the model's vocabulary is {hf['vocab_size']}")
    if arch == "gpt2" and cfg.model.dropout == "off":
        hf.update(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    return arch, hf


def max_positions(arch: str, hf: dict) -> int:
    return int(hf["max_position_embeddings"] if arch == "gpt_neox" else hf["n_positions"])


def restrict_vocab_params(arch: str, hf: dict, params, vocab_map: np.ndarray):
    """Keep only the embedding rows (and output columns) of the tokens present in the documents."""
    params = dict(params)
    if arch == "gpt_neox":
        params["embed_in"] = {"embedding": params["embed_in"]["embedding"][vocab_map]}
        params["embed_out"] = {"kernel": params["embed_out"]["kernel"][:, vocab_map]}
    else:
        params["wte"] = {"embedding": params["wte"]["embedding"][vocab_map]}
    return params, dict(hf, vocab_size=int(len(vocab_map)))


def build_params(cfg, rd: RunData, key) -> tuple[str, dict, Any]:
    if cfg.model.init == "pretrained":
        arch, hf, params = models.load_hf(cfg.model.hf_path, revision=cfg.model.revision or None)
        if cfg.model.arch != arch:
            raise config_lib.ConfigError(f"model.arch={cfg.model.arch!r} but {cfg.model.hf_path!r} is a {arch} model")
        tok_vocab = int(rd.docs.tokenizer_vocab_size)
        if tok_vocab > hf["vocab_size"]:
            raise config_lib.ConfigError(
                f"the tokenizer's vocabulary ({tok_vocab} tokens, data.tokenizer={cfg.data.tokenizer!r}) is larger "
                f"than the model's ({hf['vocab_size']}); use the model's own tokenizer")
        if rd.docs.vocab_map is not None:  # only the rows of the tokens present
            params, hf = restrict_vocab_params(arch, hf, params, np.asarray(rd.docs.vocab_map))
        elif cfg.model.truncate_vocab:  # the authors' resize_token_embeddings(len(tokenizer))
            params, hf = restrict_vocab_params(arch, hf, params, np.arange(tok_vocab))
        if arch == "gpt2" and cfg.model.dropout == "off":
            hf.update(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    else:
        arch, hf = model_config(cfg, rd.vocab_size)
        params = models.init_params(arch, hf, key, scheme=cfg.model.init)
    need = rd.eval_tokens_TC.shape[1]
    if need > max_positions(arch, hf):
        raise config_lib.ConfigError(f"C={need} is larger than the model's maximum positions "
                                     f"({max_positions(arch, hf)}); lower C")
    return arch, hf, params


def make_engine(cfg, arch: str, hf: dict, total_steps: int, params, pad_id: int) -> Engine:
    dtype = jnp.bfloat16 if cfg.model.dtype == "bfloat16" else jnp.float32
    model = models.build_model(arch, hf, dtype=dtype, remat=cfg.model.remat,
                                attn_block=cfg.model.attention_block)

    def apply_fn(p, ids_BL, deterministic, rngs):
        return model.apply({"params": p}, ids_BL, deterministic=deterministic, rngs=rngs)

    def hidden_fn(p, ids_BL):
        return model.apply({"params": p}, ids_BL, deterministic=True, return_hidden=True)

    trainable = None
    if cfg.optim.freeze_first or cfg.optim.freeze_last:
        trainable = models.trainable_mask(arch, params, freeze_first=cfg.optim.freeze_first,
                                          freeze_last=cfg.optim.freeze_last)
    opt = make_optimizer(cfg, total_steps, trainable)
    spec = EpisodeSpec(
        M=cfg.M, C=cfg.C, mask_prob=float(cfg.variant.mask_prob),
        mask_id=pad_id if cfg.variant.mask_id < 0 else int(cfg.variant.mask_id),
        window=int(cfg.variant.window), window_start=int(cfg.variant.window_start),
        eval_batch=resolve_eval_batch(cfg, arch, hf), every_step_eval=bool(cfg.eval.every_step),
        dropout=(arch == "gpt2" and cfg.model.dropout == "from_hf"))
    return Engine(apply_fn, opt, spec, hidden_fn)


def resolve_eval_batch(cfg, arch: str, hf: dict) -> int:
    """eval.batch as the engine takes it: N >= 1 as given, 0 (all T at once) -> T, -1 (auto) -> sized for the
    backend (engine.auto_eval_batch)."""
    b = int(cfg.eval.batch)
    if b > 0:
        return min(b, cfg.T)
    if b == 0:
        return cfg.T
    m = models.parse_config(arch, hf)
    free = None
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if stats.get("bytes_limit"):
            free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - memory_stats is optional per backend
        free = None
    doc = eval_doc_bytes(cfg.C, m.d_model, m.d_ff, m.vocab_size, m.n_heads, int(cfg.model.attention_block))
    return auto_eval_batch(cfg.T, cfg.C, backend=jax.default_backend(), doc_bytes=doc, free_bytes=free)


# ----------------------------------------------------------------------------- the run


def seed_streams(seed: int) -> dict:
    root = jax.random.PRNGKey(seed)
    return {"order": np.random.default_rng([seed, 1]), "init": jax.random.fold_in(root, 2),
            "train": jax.random.fold_in(root, 3)}


def make_run_order(cfg) -> schedule.Order:
    return schedule.make_order(cfg.order.kind, cfg.T, cfg.E, seed_streams(cfg.seed)["order"],
                               shuffle_n=cfg.order.shuffle_n, filler_min=cfg.order.filler_min,
                               filler_max=cfg.order.filler_max)


def _fmt(x: float) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.3f}"


def run(cfg, workdir: str, *, resume: bool = False, overwrite: bool = False, log=print) -> dict:
    """Train cyclically and write the run directory; returns the summary dict."""
    cfg = config_lib.validate(cfg)
    with jax.default_matmul_precision(cfg.model.matmul_precision):
        return _run(cfg, workdir, resume=resume, overwrite=overwrite, log=log)


def _run(cfg, workdir: str, *, resume: bool, overwrite: bool, log) -> dict:
    from recovery_jax import checkpoint as ckpt_lib  # orbax is heavy; import only for a run

    t_start = time.time()
    rundir = rundir_lib.RunDir.open(workdir, config_lib.to_dict(cfg), resume=resume, overwrite=overwrite)
    try:
        if resume and os.path.exists(rundir.file("summary.json")):
            log(f"the run in {workdir} is already finished; nothing to resume")
            with open(rundir.file("summary.json")) as f:
                return json.load(f)
        order = make_run_order(cfg)
        rd = prepare_data(cfg, order)
        streams = seed_streams(cfg.seed)
        arch, hf, params = build_params(cfg, rd, streams["init"])
        K = order.n_episodes
        total_steps = K * cfg.M
        engine = make_engine(cfg, arch, hf, total_steps, params, rd.pad_id)
        n_params = int(models.param_count(params))
        docs_meta = dict(rd.docs.to_json(), order_kind=cfg.order.kind, filler_ids=list(rd.filler_ids),
                         restrict_vocab=bool(cfg.data.restrict_vocab), vocab_size=int(rd.vocab_size))
        rundir.write_json("documents.json", docs_meta)
        rundir.write_json("model.json", {"arch": arch, "hf_config": hf, "n_params": n_params})

        state = engine.init_state(params, streams["train"])
        del params
        T = cfg.T
        eval_losses = np.full((K + 1, T), np.nan, np.float32)
        train_losses = np.full((K * cfg.M,), np.nan, np.float32)
        step_eval = np.full((K * cfg.M, T), np.nan, np.float32) if cfg.eval.every_step else None
        start_k = 0
        ckpt = ckpt_lib.Checkpointer(rundir.path, keep=cfg.checkpoint.keep)
        if resume and ckpt.latest() is not None:
            state, saved = ckpt.restore(state)
            start_k = int(saved["episode"])
            eval_losses[: start_k + 1] = saved["eval_losses"][: start_k + 1]
            train_losses[: start_k * cfg.M] = saved["train_losses"][: start_k * cfg.M]
            if step_eval is not None:
                step_eval[: start_k * cfg.M] = saved["step_eval_losses"][: start_k * cfg.M]
            log(f"resumed from the checkpoint after episode {start_k}/{K}")

        eval_tok = jnp.asarray(rd.eval_tokens_TC)
        eval_msk = jnp.asarray(rd.eval_mask_TC)
        train_tok = jnp.asarray(rd.train_tokens_TB)
        train_msk = jnp.asarray(rd.train_mask_TB)
        fill_tok = None if rd.filler_tokens_NB is None else jnp.asarray(rd.filler_tokens_NB)
        fill_msk = None if rd.filler_mask_NB is None else jnp.asarray(rd.filler_mask_NB)

        def doc_arrays(k):
            d = int(order.docs_K[k - 1])
            if d >= 0:
                return train_tok[d], train_msk[d]
            f = int(order.filler_K[k - 1])
            return fill_tok[f], fill_msk[f]

        # Compile once, ahead of time, and time it separately from the run.
        t0 = time.time()
        args0 = (state, *doc_arrays(max(start_k, 0) + 1), eval_tok, eval_msk)
        episode = engine.episode.lower(*args0).compile()
        evaluate = engine.evaluate.lower(state["params"], eval_tok, eval_msk).compile()
        compile_s = time.time() - t0
        if start_k == 0:
            eval_losses[0] = np.asarray(evaluate(state["params"], eval_tok, eval_msk))
        probes = None
        if config_lib.probe_names(cfg):
            from recovery_jax.probes import Probes
            if cfg.order.kind == "filler" and "pairwise" in config_lib.probe_names(cfg):
                raise config_lib.ConfigError("the pairwise probe needs the T documents only; not with order.kind='filler'")
            probes = Probes(config_lib.probe_names(cfg), engine=engine, arch=arch, params=state["params"],
                            eval_tokens_TC=eval_tok, eval_mask_TC=eval_msk, train_tokens_TB=train_tok,
                            train_mask_TB=train_msk, doc=cfg.probes.doc, epoch=cfg.probes.epoch, T=T,
                            grad_layer=cfg.probes.grad_layer, max_episodes=cfg.probes.max_episodes,
                            sketch_dim=cfg.probes.sketch_dim, n_episodes=K)
            if start_k:
                snap = rundir.file("probes_partial.npz")
                if not os.path.exists(snap):
                    raise RunError(f"cannot resume the probes: {snap} is missing; rerun with --overwrite")
                probes.restore(dict(np.load(snap)), start_k)
        def save_checkpoint(k):
            if probes is not None:  # first, so a checkpoint never exists without its probe data
                rundir.write_npz("probes_partial.npz", **probes.snapshot())
            ckpt.save(k, state, eval_losses, train_losses, step_eval)

        # Installed before the line that says training starts: a Ctrl-C from then on stops cleanly after the
        # next episode (checkpoint + partial results), never with nothing saved.
        stopper = _Interrupt()
        progress = None
        try:
            log(f"model {arch} {n_params / 1e6:.2f}M params | T={T} C={cfg.C} M={cfg.M} E={cfg.E} "
                f"| {K} episodes | optimizer {cfg.optim.name} lr {cfg.optim.lr:g}"
                + (f" | restricted softmax: {rd.vocab_size} tokens (data.restrict_vocab)" if cfg.data.restrict_vocab else "")
                + f" | evaluation in chunks of {engine.spec.eval_batch} documents"
                + f" | compiled in {compile_s:.1f}s")
            progress = _progress(K, start_k, cfg.progress, log)
            t_train = time.time()
            rs_reported = set()
            k = start_k
            for k in range(start_k + 1, K + 1):
                tok, msk = doc_arrays(k)
                out = episode(state, tok, msk, eval_tok, eval_msk)
                state, tl, el = out[0], out[1], out[2]
                train_losses[(k - 1) * cfg.M: k * cfg.M] = np.asarray(tl)
                eval_losses[k] = np.asarray(el)
                if step_eval is not None:
                    step_eval[(k - 1) * cfg.M: k * cfg.M] = np.asarray(out[3])
                if not np.isfinite(eval_losses[k]).all() or not np.isfinite(train_losses[(k - 1) * cfg.M: k * cfg.M]).all():
                    _save_partial(rundir, eval_losses, train_losses, step_eval, order, k)
                    raise RunError(f"non-finite loss in episode {k} (epoch {order.epoch_K[k - 1] + 1}) with "
                                   f"learning rate {cfg.optim.lr:g}; lower optim.lr. "
                                   f"Results up to episode {k} are in {rundir.path}")
                progress.update(1, loss=float(train_losses[(k - 1) * cfg.M]), doc=int(order.docs_K[k - 1]))
                end_of_epoch = k == K or order.epoch_K[k] != order.epoch_K[k - 1]
                if probes is not None:
                    probes.after_episode(k, state)
                    if end_of_epoch:
                        probes.at_epoch_end(int(order.epoch_K[k - 1]) + 1, state)
                if end_of_epoch:
                    rs = metrics.recovery_scores(eval_losses[: k + 1], order.docs_K[:k])
                    for n, v in enumerate(np.atleast_1d(rs), start=1):
                        if n not in rs_reported and np.isfinite(v):
                            rs_reported.add(n)
                            progress.write(f"  cycle {n}: recovery score {_fmt(float(v))}")
                    _save_partial(rundir, eval_losses, train_losses, step_eval, order, k)
                    if cfg.checkpoint.every == "epoch" and k < K:
                        save_checkpoint(k)
                elif cfg.checkpoint.every == "episode":
                    save_checkpoint(k)
                if stopper.hit:
                    save_checkpoint(k)
                    _save_partial(rundir, eval_losses, train_losses, step_eval, order, k)
                    raise KeyboardInterrupt
        finally:
            if progress is not None:
                progress.close()
            stopper.restore()
        train_s = time.time() - t_train
        done = K - start_k
        summary = metrics.summarize(eval_losses, train_losses, order.docs_K, cfg.M)
        train_tokens = done * cfg.M * cfg.C
        eval_tokens = done * T * cfg.C
        summary.update({
            "episodes": K, "n_params": n_params, "restrict_vocab": bool(cfg.data.restrict_vocab),
            "vocab_size": int(rd.vocab_size), "compile_s": compile_s, "train_wall_s": train_s,
            "total_wall_s": time.time() - t_start, "episodes_per_s": done / max(train_s, 1e-9),
            "train_tokens_per_s": train_tokens / max(train_s, 1e-9),
            "tokens_per_s": (train_tokens + eval_tokens) / max(train_s, 1e-9),
            "resumed_from_episode": start_k, "device": jax.devices()[0].device_kind,
        })
        _save_partial(rundir, eval_losses, train_losses, step_eval, order, K)
        if probes is not None:
            rundir.write_npz("probes.npz", **probes.finish())
            if os.path.exists(rundir.file("probes_partial.npz")):
                os.unlink(rundir.file("probes_partial.npz"))
        rundir.write_json("summary.json", summary)
        ckpt.clear()
        _print_table(summary, log)
        return summary
    finally:
        rundir.release()


def _save_partial(rundir, eval_losses, train_losses, step_eval, order, k):
    """losses.npz holds exactly the episodes done so far (rows 0..k), atomically replaced."""
    M = len(train_losses) // len(order.docs_K)
    arrays = {"eval_losses": eval_losses[: k + 1], "train_losses": train_losses[: k * M],
              "order": order.docs_K[:k], "planned_order": order.docs_K, "episodes_done": np.asarray(k)}
    if step_eval is not None:
        arrays["step_eval_losses"] = step_eval[: k * M]
    rundir.write_npz("losses.npz", **arrays)


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


class _progress:
    def __init__(self, total, initial, enabled, log=print):
        self.bar = None
        self.log = log
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="ep", dynamic_ncols=True)

    def update(self, n, **post):
        if self.bar is not None:
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(n)

    def write(self, msg):
        if self.bar is not None:
            self.bar.write(msg)
        else:
            self.log(msg)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Interrupt:
    """Turn the first Ctrl-C into a flag checked at the episode boundary (state is consistent there)."""

    def __init__(self):
        self.hit = False
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._old = None

    def _handler(self, signum, frame):
        if self.hit:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.hit = True

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
