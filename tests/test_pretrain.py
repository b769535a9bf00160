"""Offline pretraining (recovery_jax.pretrain): the held-out split covers what runs select, a tiny model's
held-out loss falls, its revisions reload in our loader and in transformers with equal logits, an interrupted
pretraining resumes bit for bit, and bad input is one error line."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from recovery_jax import cli, models
from recovery_jax import pretrain as P
from recovery_jax.data.documents import filler_pool, select_documents
from recovery_jax.data.sources import Document

ROOT = Path(__file__).resolve().parents[1]
SMALL = str(ROOT / "configs" / "pretrain" / "neox_small.py")
TINY = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=64",
        "data.sources=news", "data.seq_len=32", "train.batch=4", "train.steps=12", "train.warmup=2",
        "train.lr=1e-2", "save.steps=0,6", "heldout.eval_docs=8", "progress=false"]


# ----------------------------------------------------------------------------- the split


class _WordTokenizer:
    """One token per whitespace-separated word: lengths are easy to control."""

    name, pad_id, eos_id, vocab_size = "words", 0, 0, 1000

    def encode_batch(self, texts):
        return [[1 + (hash(w) % 998) for w in t.split()] for t in texts]


def test_heldout_ids_cover_every_selection():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=120)
    corpus = [Document(f"d{i}", " ".join(["w"] * int(n))) for i, n in enumerate(lengths)]
    ids = [d.id for d in corpus]
    held = P.heldout_ids(ids, [lengths], seeds=4, T=10, min_tokens=40, fillers=6)
    assert 0 < len(held) < len(ids)
    tok = _WordTokenizer()
    for seed in range(4):
        for T in (3, 10):
            for C in (10, 25, 40):
                docs = select_documents(corpus, tok, T=T, C=C, seed=seed)
                assert set(docs.ids) <= held, (seed, T, C)
                for n in (1, 6):
                    _, _, fill = filler_pool(corpus, tok, exclude_ids=docs.ids, n=n, C=C, seed=seed + 1)
                    assert set(fill) <= held, (seed, T, C, n)
    # a selection the rule does not cover (more documents than heldout.T) escapes it: the test can fail
    docs = select_documents(corpus, tok, T=40, C=10, seed=0)
    assert not set(docs.ids) <= P.heldout_ids(ids, [lengths], seeds=1, T=3, min_tokens=40, fillers=0)


@pytest.mark.slow
def test_cpu_configs_train_only_on_heldout_documents():
    """Every text CPU config's cyclic documents (seeds 0..2, as runs select them) are held out. (Fig 18's one-off
    filler documents are not cyclic documents; its run uses up to E x 16 = 80 of them, more than
    heldout.fillers covers, and it trains from scratch.)"""
    from recovery_jax import config as config_lib
    from recovery_jax import runner, sweep

    cfg = P.load_config(SMALL)
    held = set()
    for s in P.make_split(cfg).stats["sources"].values():
        held |= set(s["heldout_ids"])
    checked = 0
    for f in sorted((ROOT / "configs" / "cpu").glob("*.py")):
        if config_lib.load_file(str(f))[1] is None:
            continue  # base.py: its runs are the sweeps' runs
        runs, _ = sweep.build_runs(str(f))
        for run in runs:
            c = run.cfg
            if c.data.source not in ("news", "wiki") or c.model.arch not in ("gpt_neox", "gpt2"):
                continue
            rd = runner.prepare_data(c, runner.make_run_order(c))
            assert set(rd.docs.ids) <= held, (f.name, c.seed)
            checked += 1
    assert checked > 20


# ----------------------------------------------------------------------------- pretraining


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("pretrain") / "w"
    cfg = P.load_config(SMALL, TINY)
    record = P.pretrain(cfg, str(wd), log=lambda *a: None)
    return cfg, wd, record


@pytest.mark.parametrize("config", ["neox_small.py", "gpt2_small.py"])
def test_training_step_is_the_mean_next_token_loss(config):
    """The pretraining step's loss (engine.chunked_lm_loss on the final hidden state and the [V, D] output
    projection: GPT-NeoX's embed_out transposed, GPT-2's tied wte) and its update equal plain autodiff through
    the model's own logits (masked_doc_losses, the run engine's loss) to fp32 rounding."""
    import jax
    import jax.numpy as jnp
    import optax

    from recovery_jax.engine import masked_doc_losses

    cfg = P.load_config(str(ROOT / "configs" / "pretrain" / config), TINY)
    V = 300
    built = P.build(cfg, V, np.arange(0, V, 2, dtype=np.int32))  # a restricted vocabulary, as when pretraining
    optimizer, _ = P.make_optimizer(cfg)
    state = {"params": built.params, "opt_state": optimizer.init(built.params), "step": np.int32(0)}
    ids = jnp.asarray(np.random.default_rng(0).integers(0, V // 2, (4, 32)), jnp.int32)
    train_step, _ = P.step_fns(built.module, optimizer, built.train_cfg)

    def plain(params):
        logits = built.module.apply({"params": params}, ids)
        return masked_doc_losses(logits, ids, jnp.ones_like(ids, bool)).mean()

    want, grads = jax.value_and_grad(plain)(built.params)
    updates, _ = optimizer.update(grads, optimizer.init(built.params), built.params)
    want_params = optax.apply_updates(built.params, updates)
    new_state, loss = train_step(jax.tree_util.tree_map(jnp.copy, state), ids)
    assert abs(float(loss) - float(want)) < 1e-5
    for a, b in zip(jax.tree_util.tree_leaves(new_state["params"]), jax.tree_util.tree_leaves(want_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_heldout_loss_falls_and_revisions_are_written(tiny_run):
    cfg, wd, record = tiny_run
    steps = [r["step"] for r in record["revisions"]]
    assert steps == [0, 6, 12]
    losses = [r["heldout_loss"]["news"] for r in record["revisions"]]
    assert losses[2] < losses[1] < losses[0] - 0.3, losses
    on_disk = json.loads((wd / "pretrain.json").read_text())
    assert on_disk["finished"] and on_disk["revisions"] == json.loads(json.dumps(record["revisions"]))
    for name in ("step0", "step6", "step12"):
        assert (wd / name / "config.json").is_file() and (wd / name / "model.safetensors").is_file()
    assert (wd / "model.safetensors").read_bytes() == (wd / "step12" / "model.safetensors").read_bytes()
    assert not (wd / "checkpoints").exists()  # a finished run keeps its revisions, not its training state
    # the split: no held-out document is a training document, the counts add up
    news = record["split"]["sources"]["news"]
    assert news["train_documents"] + news["heldout_documents"] == news["documents"] == 300


def test_revision_reloads_with_equal_logits_in_transformers(tiny_run):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import jax.numpy as jnp

    _, wd, _ = tiny_run
    ids = np.random.default_rng(0).integers(0, 50277, (2, 12))
    for d in (wd, wd / "step6"):
        mcfg, params = models.load_pretrained(str(d))
        assert mcfg.vocab_size == 50277 and mcfg.hidden_size == 32 and mcfg.num_layers == 2
        ours = np.asarray(models.build_model(mcfg).apply({"params": params}, jnp.asarray(ids)))
        hf = transformers.AutoModelForCausalLM.from_pretrained(str(d)).eval()
        with torch.no_grad():
            theirs = hf(torch.tensor(ids)).logits.numpy()
        np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=1e-4)


def test_saved_weights_are_the_trained_ones(tiny_run):
    """The restricted softmax's trained rows land on their token ids; the other rows keep the init."""
    cfg, wd, record = tiny_run
    split = P.make_split(cfg)
    built = P.build(cfg, 50277, split.vocab_map)
    mcfg, step0 = models.load_pretrained(str(wd / "step0"))
    _, final = models.load_pretrained(str(wd))
    emb0, emb = step0["embed_in"]["embedding"], final["embed_in"]["embedding"]
    np.testing.assert_array_equal(emb0, np.asarray(built.init["embed_in"]["embedding"]))
    unused = np.setdiff1d(np.arange(50277), split.vocab_map)
    np.testing.assert_array_equal(emb[unused], emb0[unused])
    assert np.abs(emb[split.vocab_map] - emb0[split.vocab_map]).max() > 0
    _, cut = models.restrict_vocab(mcfg, final, split.vocab_map)
    back = models.scatter_vocab(mcfg, built.init, cut, split.vocab_map)
    for a, b in zip(*(map(np.asarray, __import__("jax").tree_util.tree_leaves(t)) for t in (back, final))):
        np.testing.assert_array_equal(a, b)


def test_finished_run_is_skipped_and_another_config_refused(tiny_run, capsys):
    cfg, wd, _ = tiny_run
    stamp = (wd / "pretrain.json").stat().st_mtime_ns
    assert cli.guarded(P.main, ["--config", SMALL, "--workdir", str(wd)] + [f"--config.{o}" for o in TINY]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (wd / "pretrain.json").stat().st_mtime_ns == stamp
    code = cli.guarded(P.main, ["--config", SMALL, "--workdir", str(wd)] + [f"--config.{o}" for o in TINY]
                       + ["--config.train.lr=1e-3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]


def test_interrupted_pretraining_resumes_bit_for_bit(tiny_run, tmp_path, monkeypatch):
    from recovery_jax.interrupts import Interrupted, StopSignals

    cfg, ref_dir, _ = tiny_run
    wd = tmp_path / "w"
    real_batch = P.Stream.batch

    def batch(self, step, B):  # a SIGINT arrives while step 8 runs
        if step == 8 and StopSignals._active is not None:
            StopSignals._active.signum = signal.SIGINT
        return real_batch(self, step, B)

    monkeypatch.setattr(P.Stream, "batch", batch)
    with pytest.raises(Interrupted) as e:
        P.pretrain(cfg, str(wd), log=lambda *a: None)
    assert "after step 9 of 12" in e.value.message and e.value.code == 130
    assert not (wd / "model.safetensors").exists() and (wd / "step6").is_dir()
    monkeypatch.setattr(P.Stream, "batch", real_batch)
    record = P.pretrain(cfg, str(wd), log=lambda *a: None)
    assert record["finished"] and [r["step"] for r in record["revisions"]] == [0, 6, 12]
    assert (wd / "model.safetensors").read_bytes() == (ref_dir / "model.safetensors").read_bytes()


def test_model_config_reaches_a_run(tiny_run, tmp_path):
    """A run config loads a revision with model.init=pretrained, model.hf_path and model.revision."""
    from recovery_jax import config as config_lib
    from recovery_jax import runner

    _, wd, _ = tiny_run
    cfg = config_lib.load(str(ROOT / "configs" / "cpu" / "base.py"),
                          ["model.init=pretrained", f"model.hf_path={wd}", "model.revision=step6", "T=3", "C=16",
                           "E=2", "M=2", "progress=false"])
    summary = runner.run(cfg, str(tmp_path / "run"))
    assert len(summary["recovery_scores"]) == 1


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("extra, needle", [
    (["--config.train.warmup=12"], "train.warmup=12"),
    (["--config.save.steps=0,x"], "save.steps"),
    (["--config.save.steps=0,99"], "step 99"),
    (["--config.data.sources=news,cnn"], "data.sources"),
    (["--config.train.lr=0"], "train.lr"),
    (["--config.model.init=pretrained"], "model.init"),
    (["--config.train.bogus=1"], "train.bogus"),
    (["--config.train.steps=many"], "train.steps"),
    (["--config.data.seq_len=4096"], "data.seq_len=4096"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, extra, needle):
    argv = ["--config", SMALL, "--workdir", str(tmp_path / "w")] + [f"--config.{o}" for o in TINY] + extra
    assert cli.guarded(P.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not (tmp_path / "w" / "step0").exists()


def test_bad_paths_are_one_error_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for argv in (["--config", SMALL, "--workdir", str(f)],
                 ["--config", str(tmp_path / "missing.py"), "--workdir", str(tmp_path / "w")],
                 ["--config", str(ROOT / "configs" / "cpu" / "base.py"), "--workdir", str(tmp_path / "w")]):
        assert cli.guarded(P.main, argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


def test_dry_run_prints_the_split(capsys, tmp_path):
    assert cli.guarded(P.main, ["--config", SMALL, "--workdir", str(tmp_path / "w"), "--dry-run"]
                       + [f"--config.{o}" for o in TINY]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sources"]["news"]["documents"] == 300 and out["revisions"] == [0, 6, 12]
    assert not os.path.exists(tmp_path / "w" / "step0")


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "pretrain").glob("*.py")), ids=lambda p: p.name)
def test_every_pretraining_config_loads(path):
    cfg = P.load_config(str(path))
    assert cfg.train.steps >= 1 and P.save_steps(cfg)[-1] == cfg.train.steps
    doc = path.read_text().split('"""')[1]
    assert f"--config configs/pretrain/{path.name}" in doc, "the docstring gives the command for this very file"


def test_gpt2_pretraining_reloads_with_equal_logits(tmp_path):
    """The GPT-2 config (tied embeddings: the restricted softmax's rows go back into wte) exports a checkpoint
    that transformers reads to the same logits."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import jax.numpy as jnp

    tiny = [o for o in TINY if not o.startswith(("train.steps", "save.steps"))] + ["train.steps=4", "save.steps=0"]
    cfg = P.load_config(str(ROOT / "configs" / "pretrain" / "gpt2_small.py"), tiny)
    record = P.pretrain(cfg, str(tmp_path / "g"), log=lambda *a: None)
    assert record["model"]["arch"] == "gpt2" and record["model"]["vocab_size"] == 50257
    mcfg, params = models.load_pretrained(str(tmp_path / "g"))
    ids = np.random.default_rng(1).integers(0, 50257, (2, 10))
    ours = np.asarray(models.build_model(mcfg).apply({"params": params}, jnp.asarray(ids)))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "g")).eval()
    with torch.no_grad():
        theirs = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=1e-4)
