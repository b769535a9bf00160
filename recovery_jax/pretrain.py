"""Offline language-model pretraining: a small GPT-NeoX or GPT-2 on the prose that ships inside packages.

    python -m recovery_jax.pretrain --config configs/pretrain/neox_small.py --workdir runs/pretrain/neox_small
        [--config.KEY=VALUE ...] [--overwrite] [--no-progress] [--dry-run]

Why: the paper's main results are about *pretrained* models (Pythia), and no pretrained weights exist offline.
This trains the from-scratch model of a run config the ordinary way (shuffled packed sequences, AdamW, warm-up +
cosine, batch > 1) on the offline Wikipedia sample's sections and the ABC news articles, holding out every
document that a CPU config may use as a cyclic document (`heldout_ids`), and saves Pythia-like revisions:

    WORKDIR/step0/ ... WORKDIR/step<N>/     Hugging Face format (config.json, model.safetensors, tokenizer.json)
    WORKDIR/config.json, model.safetensors  the final revision (hard links), like a hub repo's main
    WORKDIR/pretrain.json                   config, the split and its token counts, held-out loss per revision

A run config then loads them with `model.init=pretrained model.hf_path=WORKDIR [model.revision=stepN]`.
The command is resumable: it checkpoints the training state (WORKDIR/checkpoints/) with every revision and
on Ctrl-C / SIGTERM, continues from there when run again, and does nothing for a finished run of the same config.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np

from recovery_jax import cli
from recovery_jax import config as config_lib

FORMAT = 1
STATUS_FILE = "pretrain.json"


def base_config() -> ml_collections.ConfigDict:
    """Every key of a pretraining config with its default (a config file changes values, never adds keys)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = copy.deepcopy(config_lib.base_config().model)  # the run config's model section, same names
    c.model.preset = "pythia-70m"
    c.data = ml_collections.ConfigDict()
    c.data.sources = "wiki,news"  # offline corpora (recovery_jax/data/sources.py), comma-separated
    c.data.tokenizer = "neox"
    c.data.seq_len = 128  # tokens per packed training sequence (the CPU protocol's largest C)
    # Softmax over only the tokens that occur in the sources (~29k of the NeoX tokenizer's 50k: 1.5x faster
    # steps on CPU), as the CPU runs' data.restrict_vocab does; the saved checkpoints have the full vocabulary,
    # the other tokens' rows keep their initial values. Fine for runs on these corpora with
    # data.restrict_vocab=True (every pretrained CPU config); False trains the full softmax.
    c.data.restrict_vocab = True
    # What is held out: every document the CPU configs may pick as a cyclic document (select_documents) for
    # seeds 0..heldout.seeds-1, T <= heldout.T documents with >= heldout.min_tokens tokens, under each of
    # heldout.tokenizers; and the first heldout.fillers one-off filler documents (filler_pool) of those seeds.
    c.heldout = ml_collections.ConfigDict()
    c.heldout.seeds = 5  # the CPU configs use seeds 0, 1, 2
    c.heldout.T = 25
    c.heldout.min_tokens = 128
    c.heldout.fillers = 16
    c.heldout.tokenizers = "neox,gpt2"
    c.heldout.eval_docs = 64  # held-out documents per source for the held-out loss (first seq_len tokens)
    c.train = ml_collections.ConfigDict()
    c.train.steps = 600
    c.train.batch = 16
    c.train.lr = 1e-3
    c.train.min_lr_ratio = 0.1  # cosine decays to lr * min_lr_ratio
    c.train.warmup = 30
    c.train.weight_decay = 0.1  # on matrices and embeddings, not on biases and LayerNorm
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.clip = 1.0
    c.save = ml_collections.ConfigDict()
    c.save.steps = "0,30,100,300"  # revisions besides the final step (always saved)
    c.progress = True
    return c


def load_config(path: str, overrides=()) -> ml_collections.ConfigDict:
    cfg, _ = config_lib.load_file(path, schema=base_config)
    return validate(config_lib.apply_overrides(cfg, overrides))


def save_steps(cfg) -> list[int]:
    """The revisions' steps, sorted, the final step included."""
    text = str(cfg.save.steps).strip()
    steps = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            s = int(part)
        except ValueError:
            raise config_lib.ConfigError(f"save.steps={text!r}: {part!r} is not an integer; give steps like "
                                         f"'0,100,300'") from None
        if not 0 <= s <= cfg.train.steps:
            raise config_lib.ConfigError(f"save.steps={text!r}: step {s} is outside 0..train.steps={cfg.train.steps}")
        steps.add(s)
    return sorted(steps | {int(cfg.train.steps)})


def _names(text: str) -> list[str]:
    return [s.strip() for s in str(text).split(",") if s.strip()]


def validate(cfg) -> ml_collections.ConfigDict:
    from recovery_jax.data.sources import SOURCES
    for key in ("train.steps", "train.batch", "train.warmup", "data.seq_len", "heldout.T", "heldout.min_tokens",
                "heldout.eval_docs"):
        v = cfg[key.split(".")[0]][key.split(".")[1]]
        lo = 0 if key in ("train.warmup",) else 1
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise config_lib.ConfigError(f"{key}={v!r} must be an integer >= {lo}")
    for key in ("heldout.seeds", "heldout.fillers"):
        v = cfg[key.split(".")[0]][key.split(".")[1]]
        if not isinstance(v, int) or v < 0:
            raise config_lib.ConfigError(f"{key}={v!r} must be an integer >= 0")
    for key in ("lr", "b1", "b2", "clip", "min_lr_ratio", "weight_decay"):
        v = float(cfg.train[key])
        if not np.isfinite(v) or v < 0 or (key in ("lr", "clip") and v == 0) or (key in ("b1", "b2") and v >= 1):
            raise config_lib.ConfigError(f"train.{key}={cfg.train[key]!r} is out of range")
    if cfg.train.warmup >= cfg.train.steps:
        raise config_lib.ConfigError(f"train.warmup={cfg.train.warmup} must be smaller than train.steps="
                                     f"{cfg.train.steps}")
    if cfg.train.min_lr_ratio > 1:
        raise config_lib.ConfigError(f"train.min_lr_ratio={cfg.train.min_lr_ratio!r} must be in [0, 1]")
    sources = _names(cfg.data.sources)
    bad = [s for s in sources if s not in ("news", "wiki")]
    if not sources or bad:
        raise config_lib.ConfigError(f"data.sources={cfg.data.sources!r}: offline pretraining reads "
                                     f"'news' and/or 'wiki' (of {list(SOURCES)})")
    if cfg.model.init == "pretrained":
        raise config_lib.ConfigError("model.init='pretrained': pretraining starts from a fresh init; "
                                     "choose pythia, normal or gpt2")
    if cfg.model.dtype != "float32":
        raise config_lib.ConfigError(f"model.dtype={cfg.model.dtype!r}: pretraining runs in float32")
    save_steps(cfg)
    return cfg


# ----------------------------------------------------------------------------- the split


def _prefix(order: np.ndarray, long_enough: np.ndarray, want: int) -> np.ndarray:
    """The shortest prefix of `order` holding `want` documents that are long enough (all of it if fewer)."""
    hits = np.flatnonzero(long_enough[order])
    return order if len(hits) < want else order[:hits[want - 1] + 1]


def heldout_ids(ids: list[str], lengths_by_tokenizer: list[np.ndarray], *, seeds: int, T: int, min_tokens: int,
                fillers: int) -> set[str]:
    """Ids of every document a run may train on cyclically: for each seed, tokenizer and order that
    select_documents (seeded permutation, first T with >= min_tokens) and filler_pool (permutation of
    (seed + 1, 1), the next documents outside the T) walk, the prefix up to the T-th (T + fillers-th)
    long-enough document. A run with fewer documents, a shorter C or min_tokens stops earlier in the same
    permutation, so its documents are inside that prefix too."""
    n = len(ids)
    out: set[str] = set()
    for lengths in lengths_by_tokenizer:
        long_enough = np.asarray(lengths) >= min_tokens
        for seed in range(seeds):
            docs = _prefix(np.random.default_rng(seed).permutation(n), long_enough, T)
            fill = _prefix(np.random.default_rng((seed + 1, 1)).permutation(n), long_enough, T + fillers)
            out.update(ids[i] for i in docs)
            out.update(ids[i] for i in (fill if fillers else []))
    return out


@dataclasses.dataclass
class Split:
    """Training documents' token ids (each ending in EOS) and the held-out evaluation sequences per source."""

    train_ids: list[list[int]]
    eval_tokens: dict[str, np.ndarray]  # source -> [N, L] int32
    eval_mask: dict[str, np.ndarray]  # source -> [N, L] bool
    stats: dict
    vocab_map: np.ndarray | None = None  # restricted id -> tokenizer id (data.restrict_vocab), ids remapped


def make_split(cfg) -> Split:
    from recovery_jax import data as data_lib

    tok = data_lib.get_tokenizer(cfg.data.tokenizer)
    others = [data_lib.get_tokenizer(t) for t in _names(cfg.heldout.tokenizers) if t != cfg.data.tokenizer]
    L = int(cfg.data.seq_len)
    encoded = {}
    for source in _names(cfg.data.sources):
        corpus = data_lib.load_corpus(source)
        texts = [d.text for d in corpus]
        enc = tok.encode_batch(texts)
        lengths = [np.array([len(e) for e in enc])] + [np.array([len(e) for e in t.encode_batch(texts)])
                                                       for t in others]
        encoded[source] = ([d.id for d in corpus], enc, lengths)
    vocab_map = remap = None
    if cfg.data.restrict_vocab:  # every token of the sources (held-out documents included) and EOS
        present = set().union(*(set().union(*map(set, enc)) for _, enc, _ in encoded.values()))
        vocab_map = np.array(sorted(present | {tok.eos_id}), np.int32)
        remap = np.zeros(tok.vocab_size, np.int32)
        remap[vocab_map] = np.arange(len(vocab_map), dtype=np.int32)
    ids_of = (lambda e: e) if remap is None else (lambda e: remap[np.asarray(e, np.int64)].tolist())
    eos = tok.eos_id if remap is None else int(remap[tok.eos_id])
    train_ids: list[list[int]] = []
    eval_tokens, eval_mask = {}, {}
    stats = {"tokenizer": tok.name, "vocabulary": int(tok.vocab_size if vocab_map is None else len(vocab_map)),
             "sources": {}}
    for source, (ids, enc, lengths) in encoded.items():
        held = heldout_ids(ids, lengths, seeds=cfg.heldout.seeds, T=cfg.heldout.T,
                           min_tokens=cfg.heldout.min_tokens, fillers=cfg.heldout.fillers)
        train = [i for i, d in enumerate(ids) if d not in held]
        test = [i for i, d in enumerate(ids) if d in held]
        train_ids += [ids_of(enc[i]) + [eos] for i in train]
        picked = [i for i in test if len(enc[i]) >= L][:cfg.heldout.eval_docs]
        eval_tokens[source] = np.array([ids_of(enc[i][:L]) for i in picked], np.int32).reshape(len(picked), L)
        eval_mask[source] = np.ones_like(eval_tokens[source], bool)
        stats["sources"][source] = {
            "documents": len(ids), "train_documents": len(train), "heldout_documents": len(test),
            "train_tokens": int(sum(len(enc[i]) + 1 for i in train)),
            "heldout_tokens": int(sum(len(enc[i]) for i in test)),
            "eval_sequences": len(picked), "heldout_ids": sorted(held)}
    stats["train_tokens"] = int(sum(len(x) for x in train_ids))
    if stats["train_tokens"] < L * cfg.train.batch:
        raise config_lib.ConfigError(f"only {stats['train_tokens']} training tokens: fewer than one batch of "
                                     f"train.batch={cfg.train.batch} x data.seq_len={L}")
    return Split(train_ids, eval_tokens, eval_mask, stats, vocab_map)


class Stream:
    """Packed training sequences: each epoch concatenates the training documents in a new seeded order and
    cuts [L]-token sequences; sequence g of the run is a pure function of (seed, g), so a resumed run reads
    the same batches."""

    def __init__(self, docs: list[list[int]], L: int, seed: int):
        self.docs, self.L, self.seed = docs, L, seed
        self.per_epoch = sum(len(d) for d in docs) // L
        self._epoch, self._flat = -1, None

    def _load(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            order = np.random.default_rng((self.seed, 7, epoch)).permutation(len(self.docs))
            self._flat = np.fromiter((t for i in order for t in self.docs[i]), np.int32)
            self._epoch = epoch
        return self._flat

    def batch(self, step: int, B: int) -> np.ndarray:
        rows = []
        for g in range(step * B, (step + 1) * B):
            flat = self._load(g // self.per_epoch)
            j = g % self.per_epoch
            rows.append(flat[j * self.L:(j + 1) * self.L])
        return np.stack(rows)


# ----------------------------------------------------------------------------- training


def make_optimizer(cfg):
    import jax
    import optax

    t = cfg.train
    schedule = optax.warmup_cosine_decay_schedule(0.0, t.lr, int(t.warmup), int(t.steps),
                                                  end_value=t.lr * t.min_lr_ratio)
    decay = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(optax.clip_by_global_norm(t.clip),
                       optax.adamw(schedule, b1=t.b1, b2=t.b2, weight_decay=t.weight_decay, mask=decay)), schedule


@dataclasses.dataclass
class Built:
    """The model as saved (`mcfg`: the full vocabulary, `init`: its initial params) and as trained (`train_cfg`,
    `module`, `params`: the vocabulary of `vocab_map` where the softmax is restricted)."""

    mcfg: object
    init: dict
    train_cfg: object
    module: object
    params: dict
    vocab_map: np.ndarray | None

    def full(self, params) -> dict:
        """Trained params in the saved model's full vocabulary."""
        from recovery_jax import models
        if self.vocab_map is None:
            return params
        return models.scatter_vocab(self.mcfg, self.init, params, self.vocab_map)


def build(cfg, vocab_size: int, vocab_map: np.ndarray | None = None) -> Built:
    """The from-scratch model of the config's model section, initialized as a run initializes it (same seed
    stream), restricted to the rows of `vocab_map` for training."""
    import jax

    from recovery_jax import models
    from recovery_jax.runner import seed_streams

    mcfg = models.model_config(cfg.model, vocab_size if cfg.model.truncate_vocab else None)
    if cfg.data.seq_len > mcfg.max_positions:
        raise config_lib.ConfigError(f"data.seq_len={cfg.data.seq_len} is larger than the model's maximum "
                                     f"positions ({mcfg.max_positions})")
    init = models.init_params(mcfg, seed_streams(cfg.seed)["init"], scheme=cfg.model.init)
    train_cfg, params = mcfg, init
    if vocab_map is not None:
        train_cfg, params = models.restrict_vocab(mcfg, init, vocab_map)
    module = models.build_model(train_cfg, remat=cfg.model.remat, attn_block=cfg.model.attention_block)
    jax.block_until_ready(params)
    return Built(mcfg, init, train_cfg, module, params, vocab_map)


def step_fns(model, optimizer, mcfg, full_logits: bool = False):
    """The jitted training step (state donated) and the held-out loss. The training loss is the mean next-token
    NLL of the packed sequences (every sequence has L - 1 targets), computed from the final hidden state by
    engine.chunked_lm_loss: the [B, L, V] logits are never materialised. full_logits: the same loss through the
    model's own logits instead (slower; the reference of benchmarks/pretrain_step.py)."""
    import jax
    import jax.numpy as jnp
    import optax

    from recovery_jax import models
    from recovery_jax.engine import chunked_lm_loss, masked_doc_losses

    def full_logits_loss(params, ids_BL):
        return masked_doc_losses(model.apply({"params": params}, ids_BL), ids_BL, jnp.ones_like(ids_BL, bool)).mean()

    def chunked_loss(params, ids_BL):
        _, h_BLD = model.apply({"params": params}, ids_BL, return_hidden=True)  # the logits are dead code
        B, L = ids_BL.shape
        targets_BL = jnp.roll(ids_BL, -1, axis=1)  # position l predicts l + 1; the last one has no target
        weights_BL = jnp.broadcast_to(jnp.arange(L) < L - 1, (B, L))
        return chunked_lm_loss(h_BLD.reshape(B * L, -1), models.output_projection(mcfg, params),
                               targets_BL.reshape(-1), weights_BL.reshape(-1))

    loss_fn = full_logits_loss if full_logits else chunked_loss

    def train_step(state, ids_BL):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], ids_BL)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, loss

    def eval_losses(params, ids_BL, mask_BL):
        return masked_doc_losses(model.apply({"params": params}, ids_BL), ids_BL, mask_BL)

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_losses)


def heldout_loss(eval_fn, params, split: Split, chunk: int = 16) -> dict[str, float]:
    out = {}
    for source, tokens in split.eval_tokens.items():
        if not len(tokens):
            continue
        losses = [np.asarray(eval_fn(params, tokens[i:i + chunk], split.eval_mask[source][i:i + chunk]))
                  for i in range(0, len(tokens), chunk)]
        out[source] = float(np.concatenate(losses).mean())
    if out:
        out["mean"] = float(np.mean([v for v in out.values()]))
    return out


def export_revision(workdir: Path, name: str, mcfg, params, tok) -> Path:
    """One Hugging Face checkpoint directory (weights, config, tokenizer), written under a temporary name and
    renamed, so a killed export never leaves a half revision."""
    import shutil

    from recovery_jax import models

    final = workdir / name
    tmp = workdir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    models.export_hf(mcfg.arch, models.to_hf_config(mcfg), params, tmp)
    if tok.backend is not None and hasattr(tok.backend, "save"):
        tok.backend.save(str(tmp / "tokenizer.json"))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _link_main(workdir: Path, revision: Path) -> None:
    """The final revision's files at the top of the work directory (hard links where possible)."""
    import shutil

    for f in revision.iterdir():
        dst = workdir / f.name
        tmp = workdir / f".{f.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(f, tmp)
        except OSError:
            shutil.copy2(f, tmp)
        os.replace(tmp, dst)


def _same_run(a: dict, b: dict) -> bool:
    a, b = dict(a), dict(b)
    a.pop("progress", None), b.pop("progress", None)
    return a == b


def pretrain(cfg, workdir: str, *, overwrite: bool = False, log=print) -> dict:
    """Pretrain (or continue / skip) into `workdir`; returns the status record written to pretrain.json."""
    import jax

    from recovery_jax.checkpoint import Checkpointer
    from recovery_jax.interrupts import StopSignals
    from recovery_jax.rundir import RunError, write_json_atomic

    wd = Path(workdir)
    status_path = wd / STATUS_FILE
    status = json.loads(status_path.read_text()) if status_path.is_file() else None
    if status is not None and not _same_run(status.get("config", {}), config_lib.to_dict(cfg)):
        if not overwrite:
            raise RunError(f"{workdir} holds a pretraining run of another config; add --overwrite to replace it "
                           f"or choose another --workdir")
        import shutil
        shutil.rmtree(wd)
        status = None
    if status is not None and status.get("finished"):
        log(f"{workdir}: already finished ({status['steps']} steps, held-out loss "
            f"{status['revisions'][-1]['heldout_loss'].get('mean', float('nan')):.3f}); nothing to do")
        return status
    wd.mkdir(parents=True, exist_ok=True)

    with StopSignals() as stop:
        from recovery_jax import data as data_lib
        tok = data_lib.get_tokenizer(cfg.data.tokenizer)
        t0 = time.perf_counter()
        split = make_split(cfg)
        stats = split.stats
        log(f"split: {stats['train_tokens']} training tokens; " + "; ".join(
            f"{s}: {v['train_documents']} train / {v['heldout_documents']} held-out documents"
            for s, v in stats["sources"].items()) + f" ({time.perf_counter() - t0:.1f}s)")
        built = build(cfg, tok.vocab_size, split.vocab_map)
        mcfg, model, params = built.mcfg, built.module, built.params
        from recovery_jax import models
        log(f"model: {mcfg.arch} {mcfg.num_layers} x {mcfg.hidden_size}, {models.param_count(built.init) / 1e6:.1f}M "
            f"parameters, vocabulary {mcfg.vocab_size}"
            + (f" (softmax over the {built.train_cfg.vocab_size} tokens of the sources while training)"
               if split.vocab_map is not None else ""))
        optimizer, schedule = make_optimizer(cfg)
        state = {"params": params, "opt_state": optimizer.init(params), "step": np.int32(0)}
        train_step, eval_fn = step_fns(model, optimizer, built.train_cfg)
        ckpt = Checkpointer(str(wd), keep=1)
        history = {"step": [], "loss": []}
        revisions: list[dict] = []
        if ckpt.latest() is not None and status is not None:
            start, state, arrays = ckpt.restore_run(state)
            history = {"step": list(map(int, arrays.get("history_step", []))),
                       "loss": list(map(float, arrays.get("history_loss", [])))}
            revisions = [r for r in status.get("revisions", []) if r["step"] <= start]
            log(f"resuming at step {start}")
        start = int(state["step"])
        stream = Stream(split.train_ids, int(cfg.data.seq_len), int(cfg.seed))
        B, L, total = int(cfg.train.batch), int(cfg.data.seq_len), int(cfg.train.steps)
        todo = [s for s in save_steps(cfg) if s not in {r["step"] for r in revisions}]
        record = {"format": FORMAT, "config": config_lib.to_dict(cfg), "command": " ".join(["python -m recovery_jax.pretrain"]
                                                                                  + sys.argv[1:]),
                  "model": {"arch": mcfg.arch, "num_layers": mcfg.num_layers, "hidden_size": mcfg.hidden_size,
                            "parameters": models.param_count(built.init), "vocab_size": mcfg.vocab_size,
                            "trained_vocab_size": built.train_cfg.vocab_size},
                  "split": stats, "steps": total, "tokens_per_step": B * L,
                  "sequences_per_epoch": stream.per_epoch, "finished": False}

        def write(**extra):
            record.update(revisions=revisions, history=history, **extra)
            write_json_atomic(status_path, record)

        def save_state(step):
            ckpt.save_run(step, state, {"history_step": np.asarray(history["step"], np.int64),
                                        "history_loss": np.asarray(history["loss"], np.float64)})

        def revision(step):
            h = heldout_loss(eval_fn, state["params"], split)
            path = export_revision(wd, f"step{step}", mcfg, built.full(state["params"]), tok)
            revisions.append({"step": step, "revision": path.name, "tokens_seen": step * B * L,
                              "heldout_loss": h, "lr": float(schedule(step))})
            log(f"  step {step}: held-out loss " + ", ".join(f"{k} {v:.3f}" for k, v in h.items())
                + f" -> {path}")
            save_state(step)
            write()

        stop.check("stopped before training; nothing written yet beyond the split (rerun to start)")
        if start in todo:
            revision(start)
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
        t_train, step_s, tokens_done, running = time.perf_counter(), 0.0, 0, None
        try:
            for step in range(start, total):
                t_step = time.perf_counter()
                state, loss = train_step(state, stream.batch(step, B))
                loss = float(loss)
                step_s += time.perf_counter() - t_step
                if not np.isfinite(loss):
                    raise RunError(f"training loss is {loss} at step {step + 1}; lower train.lr (now {cfg.train.lr})")
                running = loss if running is None else 0.95 * running + 0.05 * loss
                tokens_done += B * L
                tps = tokens_done / step_s
                if (step + 1) % 10 == 0 or step + 1 == total:
                    history["step"].append(step + 1)
                    history["loss"].append(loss)
                if bar is not None:
                    bar.set_postfix(loss=f"{running:.3f}", tok_s=f"{tps:.0f}", refresh=False)
                    bar.update(1)
                if step + 1 in todo:
                    revision(step + 1)
                if stop.hit:
                    save_state(step + 1)
                    write(tokens_per_s=tps)
                    stop.check(f"stopped after step {step + 1} of {total}; training state saved in "
                               f"{ckpt.shown}; run the same command again to continue")
        finally:
            if bar is not None:
                bar.close()
        wall = time.perf_counter() - t_train
        _link_main(wd, wd / f"step{total}")
        ckpt.clear()
        tps = tokens_done / step_s if step_s > 0 else None
        write(finished=True, tokens_per_s=tps, train_wall_s=wall, step_s=step_s)
        log(f"done: {total} steps, held-out loss {revisions[-1]['heldout_loss'].get('mean', float('nan')):.3f} "
            f"(step0 {revisions[0]['heldout_loss'].get('mean', float('nan')):.3f}); "
            f"{tps or 0:.0f} tokens/s in training steps (first step's compilation included); {wall:.0f}s wall "
            f"with held-out evaluation and revisions; revisions in {wd}: "
            + ", ".join(r["revision"] for r in revisions))
        jax.clear_caches()
        return record


def parse(argv):
    p, overrides, rest = cli.config_command("python -m recovery_jax.pretrain", __doc__, argv,
                                            config_help="a pretraining config file (see configs/pretrain/)",
                                            workdir_help="where the revisions and pretrain.json go")
    p.add_argument("--dry-run", action="store_true", help="print the split and the plan, train nothing")
    args = p.parse_args(rest)
    cli.check_out_dir(args.workdir, "--workdir")
    cfg = load_config(args.config, overrides)
    if args.no_progress:
        cfg.progress = False
    return args, cfg


def main(argv) -> int:
    from recovery_jax.interrupts import StopSignals

    with StopSignals():
        args, cfg = parse(argv)
        if args.dry_run:
            split = make_split(cfg)
            s = split.stats
            print(json.dumps({"train_tokens": s["train_tokens"], "sources": {
                k: {kk: vv for kk, vv in v.items() if kk != "heldout_ids"} for k, v in s["sources"].items()},
                "steps": cfg.train.steps, "tokens_per_step": cfg.train.batch * cfg.data.seq_len,
                "revisions": save_steps(cfg)}, indent=2))
            return 0
        pretrain(cfg, args.workdir, overwrite=args.overwrite)
        print(f"load with: --config.model.init=pretrained --config.model.hf_path={args.workdir} "
              f"[--config.model.revision=stepN]")
        return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
