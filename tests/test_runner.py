"""End-to-end runs of the engine on a tiny model: results on disk, resume after SIGKILL and Ctrl-C."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from recovery_jax import config as config_lib
from recovery_jax import metrics, runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_config.py")


def tiny(**over):
    return config_lib.load(TINY, [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ref"))
    summary = runner.run(tiny(), d, log=lambda *a: None)
    return d, summary


def test_run_directory_contents(reference_run):
    d, summary = reference_run
    cfg = tiny()
    K = cfg.T * cfg.E
    z = np.load(os.path.join(d, "losses.npz"))
    assert z["eval_losses"].shape == (K + 1, cfg.T)
    assert z["train_losses"].shape == (K * cfg.M,)
    assert z["order"].tolist() == list(range(cfg.T)) * cfg.E
    assert np.isfinite(z["eval_losses"]).all()
    docs = json.load(open(os.path.join(d, "documents.json")))
    assert len(docs["ids"]) == cfg.T and len(docs["sha256"]) == cfg.T
    assert json.load(open(os.path.join(d, "config.json")))["T"] == cfg.T
    s = json.load(open(os.path.join(d, "summary.json")))
    assert len(s["recovery_scores"]) == cfg.E - 1
    np.testing.assert_allclose(s["recovery_scores"], metrics.recovery_scores(z["eval_losses"]), rtol=1e-6)
    assert s["tokens_per_s"] > 0 and s["compile_s"] > 0
    assert not os.path.exists(os.path.join(d, "checkpoints"))  # a finished run keeps results, not state
    assert not os.path.exists(os.path.join(d, "run.lock"))
    # training on a document lowers its loss: row k vs row k-1 for the trained document
    ev = z["eval_losses"]
    drops = [ev[k - 1, z["order"][k - 1]] - ev[k, z["order"][k - 1]] for k in range(1, K + 1)]
    assert np.mean(np.asarray(drops) > 0) > 0.9


def test_same_seed_same_numbers_other_seed_other_documents(reference_run, tmp_path):
    d, _ = reference_run
    runner.run(tiny(), str(tmp_path / "again"), log=lambda *a: None)
    a = np.load(os.path.join(d, "losses.npz"))["eval_losses"]
    b = np.load(str(tmp_path / "again" / "losses.npz"))["eval_losses"]
    np.testing.assert_array_equal(a, b)
    runner.run(tiny(seed=1), str(tmp_path / "seed1"), log=lambda *a: None)
    ids0 = json.load(open(os.path.join(d, "documents.json")))["ids"]
    ids1 = json.load(open(str(tmp_path / "seed1" / "documents.json")))["ids"]
    assert ids0 != ids1


def test_workdir_refusals(reference_run, tmp_path):
    d, _ = reference_run
    with pytest.raises(runner.RunError, match="holds a finished run of this config; pass --resume"):
        runner.run(tiny(), d, log=lambda *a: None)
    with pytest.raises(runner.RunError, match="holds a run of a different config"):
        runner.run(tiny(M=3), d, log=lambda *a: None)
    # keys that only change speed (config.PERFORMANCE_KEYS) may differ: the finished run is recognised
    other = tiny(**{"eval.batch": 1, "model.attention_block": 0, "progress": False})
    logs = []
    assert runner.run(other, d, resume=True, log=logs.append)["recovery_scores"] == \
        json.load(open(os.path.join(d, "summary.json")))["recovery_scores"]
    assert any("already finished" in line for line in logs)
    with pytest.raises(runner.RunError, match=r"different config \(T "):
        runner.run(tiny(T=2, **{"eval.batch": 1}), d, log=lambda *a: None)


def _cli(workdir, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "recovery_jax.train", "--config", TINY, "--workdir", workdir,
                             "--no-progress", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(workdir, proc, timeout=120):
    t0 = time.time()
    ck = os.path.join(workdir, "checkpoints")
    while time.time() - t0 < timeout:
        if os.path.isdir(ck) and any(n.isdigit() for n in os.listdir(ck)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_identical_losses(reference_run, tmp_path):
    ref_dir, _ = reference_run
    work = str(tmp_path / "killed")
    rng = random.Random(0)
    kills = 0
    for attempt in range(6):
        proc = _cli(work, *(["--resume"] if attempt else []))
        if _wait_for_checkpoint(work, proc) and kills < 3:
            time.sleep(rng.uniform(0.0, 0.6))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        break
    assert kills >= 2, "the run finished before it could be killed twice"
    a = np.load(os.path.join(ref_dir, "losses.npz"))
    b = np.load(os.path.join(work, "losses.npz"))
    np.testing.assert_array_equal(a["eval_losses"], b["eval_losses"])
    np.testing.assert_array_equal(a["train_losses"], b["train_losses"])


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_checkpoint(reference_run, tmp_path):
    ref_dir, _ = reference_run
    work = str(tmp_path / "interrupted")
    proc = _cli(work, "--config.checkpoint.every=none")
    seen = []
    for line in proc.stdout:  # the line printed after compilation, right before the first episode
        seen.append(line)
        if "compiled in" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    out = "".join(seen) + out
    assert proc.returncode == 130, out
    assert "continue with --resume" in out
    assert "Traceback" not in out
    z = np.load(os.path.join(work, "losses.npz"))
    assert 0 < int(z["episodes_done"]) < len(z["planned_order"])
    proc = _cli(work, "--resume", "--config.checkpoint.every=none")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "resumed from the checkpoint" in out
    a = np.load(os.path.join(ref_dir, "losses.npz"))
    b = np.load(os.path.join(work, "losses.npz"))
    np.testing.assert_array_equal(a["eval_losses"], b["eval_losses"])


def test_nonfinite_loss_stops_with_partial_results(tmp_path):
    cfg = tiny(**{"optim.name": "sgd", "optim.lr": 1e30})
    with pytest.raises(runner.RunError, match=r"non-finite loss in episode \d+ .*learning rate 1e\+30"):
        runner.run(cfg, str(tmp_path), log=lambda *a: None)
    z = np.load(str(tmp_path / "losses.npz"))
    assert int(z["episodes_done"]) >= 1
    assert np.isfinite(z["eval_losses"][0]).all()
    assert not os.path.exists(str(tmp_path / "run.lock"))


def test_lock_against_two_runs(tmp_path):
    (tmp_path / "run.lock").write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(runner.RunError, match="in use by another run"):
        runner.run(tiny(), str(tmp_path), log=lambda *a: None)
    (tmp_path / "run.lock").write_text("999999999")  # a dead pid: stale lock is taken over
    runner.run(tiny(E=1), str(tmp_path), log=lambda *a: None)


def test_probes_end_to_end(tmp_path):
    cfg = tiny(**{"probes.names": "weights,embed_out,activations,grads,pairwise", "probes.epoch": 2, "E": 3})
    runner.run(cfg, str(tmp_path), log=lambda *a: None)
    p = np.load(str(tmp_path / "probes.npz"))
    K = cfg.T * cfg.E
    for key in ("weight_gram", "embed_out_gram", "activations_gram"):
        assert p[key].shape == (K + 1, K + 1)
        np.testing.assert_allclose(p[key], p[key].T, rtol=1e-10)
    assert p["grads_gram"].shape == (cfg.T, cfg.T) and p["pairwise"].shape == (cfg.T, cfg.T)
    assert (np.diag(p["pairwise"]) > 0).all()  # training on x_i lowers the loss of x_i


def test_pretrained_checkpoint_through_the_runner_matches_transformers(tmp_path):
    """A transformers-made checkpoint, loaded by the runner (vocabulary truncated to the tokenizer's
    50277 rows like the authors): row 0 of the loss tensor equals torch's loss of each document."""
    import torch
    import transformers
    cfg_t = transformers.GPTNeoXConfig(vocab_size=50304, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64, rotary_pct=0.25)
    torch.manual_seed(0)
    model = transformers.GPTNeoXForCausalLM(cfg_t).eval()
    model.save_pretrained(tmp_path / "hf")
    cfg = tiny(**{"model.init": "pretrained", "model.hf_path": str(tmp_path / "hf"), "data.restrict_vocab": False,
                  "data.min_tokens": 8, "E": 1, "optim.name": "sgd", "optim.lr": 1e-3})
    runner.run(cfg, str(tmp_path / "run"), log=lambda *a: None)
    ev = np.load(str(tmp_path / "run" / "losses.npz"))["eval_losses"]
    from recovery_jax import data
    docs = data.select_documents(data.load_corpus("news"), data.get_tokenizer("neox"), T=cfg.T, C=cfg.C,
                                 seed=cfg.seed, min_tokens=8)
    model.resize_token_embeddings(50277)
    with torch.no_grad():
        for t in range(cfg.T):
            n = int(docs.mask_TC[t].sum())
            ids = torch.tensor(docs.tokens_TC[t][:n][None].astype(np.int64))
            want = float(model(input_ids=ids, labels=ids).loss)
            assert abs(ev[0, t] - want) < 1e-4, (t, ev[0, t], want)


def test_resume_of_a_finished_run_changes_nothing(reference_run):
    d, summary = reference_run
    before = open(os.path.join(d, "losses.npz"), "rb").read()
    again = runner.run(tiny(), d, resume=True, log=lambda *a: None)
    assert again["recovery_scores"] == pytest.approx(summary["recovery_scores"], nan_ok=True)
    assert open(os.path.join(d, "losses.npz"), "rb").read() == before
