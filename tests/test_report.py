"""Report and run-directory reading on synthetic run directories written with the results helpers."""

import json
import os

import numpy as np
import pytest

from recovery_jax import cli, metrics, report
from recovery_jax import config as config_lib
from recovery_jax.rundir import RunDirError, load_run, write_json_atomic, write_npz_atomic

T, E, M = 5, 3, 2
K = T * E


def _synthetic_losses(recovery: float, seed: int) -> np.ndarray:
    """Cyclic run: after training a document its loss is 1/(n+1); it rises linearly to +1 at half an epoch,
    then falls back by ``recovery`` × the rise before the revisit (exact RS = ``recovery`` without noise)."""
    rng = np.random.default_rng(seed)
    L = np.full((K + 1, T), 3.0)
    last = np.full(T, -1)
    n = np.zeros(T, int)
    for k in range(1, K + 1):
        t = (k - 1) % T
        last[t], n[t] = k, n[t] + 1
        for j in range(T):
            if last[j] < 0:
                continue
            d = k - last[j]  # 0..T-1
            rise = min(d, 2) / 2  # peak at d = 2
            fall = recovery * max(d - 2, 0) / (T - 1 - 2)
            L[k, j] = 1.0 / (n[j] + 1) + rise - fall
    return L + 1e-4 * rng.standard_normal(L.shape)


def _write_run(d, lr, seed, recovery, probes=False):
    L = _synthetic_losses(recovery, seed).astype(np.float32)
    train = np.repeat(L[np.arange(K), np.arange(K) % T], M).astype(np.float32)
    order = metrics.cyclic_order(T, E)
    cfg = {"seed": seed, "T": T, "C": 32, "M": M, "E": E, "workdir": str(d),
           "data": {"source": "synthetic"}, "model": {"name": "tiny"},
           "optim": {"name": "sgd", "lr": lr}, "order": {"kind": "cyclic"}}
    write_json_atomic(os.path.join(d, "config.json"), cfg)
    write_json_atomic(os.path.join(d, "documents.json"), {"source": "synthetic", "ids": list(range(T))})
    write_npz_atomic(os.path.join(d, "losses.npz"), eval_losses=L, train_losses=train, order=order)
    write_json_atomic(os.path.join(d, "summary.json"), metrics.summarize(L, train, order, M))
    if probes:
        W = np.random.default_rng(seed).standard_normal((K + 1, 12)) + 2
        write_npz_atomic(os.path.join(d, "probes.npz"), weight_gram=W @ W.T, pairwise=np.eye(T), grads_gram=np.eye(T) + 1)
    return L


def test_synthetic_losses_have_the_designed_rs():
    # after 1/(n+1), max 1/(n+1)+1, before 1/(n+1)+1−r  →  RS = r exactly (up to the 1e-4 noise)
    np.testing.assert_allclose(metrics.recovery_scores(_synthetic_losses(0.7, 0)), [0.7, 0.7], atol=2e-3)


def test_load_run_roundtrip(tmp_path):
    d = tmp_path / "runA"
    L = _write_run(d, 1e-3, 0, 0.5, probes=True)
    run = load_run(d)
    assert run.name == "runA" and run.T == T and run.K == K and run.M == M
    np.testing.assert_array_equal(run.eval_losses, L)
    np.testing.assert_array_equal(run.order, metrics.cyclic_order(T, E))
    assert run.config["optim"]["lr"] == 1e-3
    assert run.summary["recovery_scores"] == pytest.approx([0.5, 0.5], abs=2e-3)
    assert set(run.probes) == {"weight_gram", "pairwise", "grads_gram"}
    assert run.step_eval_losses is None
    # no temp files left behind
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "documents.json", "losses.npz", "probes.npz",
                                                   "summary.json"]


def test_atomic_writers_replace_and_json_nan(tmp_path):
    p = tmp_path / "x.json"
    write_json_atomic(p, {"a": np.float32(1.5), "b": float("nan"), "c": np.arange(3)})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": None, "c": [0, 1, 2]}
    write_json_atomic(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    # anything but a regular file is left alone (an atomic replace would swap e.g. /dev/null for a file)
    (tmp_path / "dir.json").mkdir()
    os.mkfifo(tmp_path / "fifo.npz")
    with pytest.raises(RunDirError, match="is not a regular file; not replacing it"):
        write_json_atomic(tmp_path / "dir.json", {"a": 1})
    with pytest.raises(RunDirError, match="is not a regular file"):
        write_npz_atomic(tmp_path / "fifo.npz", a=np.arange(2))
    assert (tmp_path / "dir.json").is_dir() and not (tmp_path / "fifo.npz").is_file()
    q = tmp_path / "y.npz"
    write_npz_atomic(q, a=np.arange(4))
    with np.load(q) as z:
        np.testing.assert_array_equal(z["a"], np.arange(4))


def test_load_run_errors(tmp_path):
    with pytest.raises(RunDirError, match="no such directory"):
        load_run(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunDirError, match="not a run directory.*losses.npz"):
        load_run(empty)
    bad = tmp_path / "bad"
    write_npz_atomic(bad / "losses.npz", eval_losses=np.zeros((K + 1, T)), order=np.zeros(K - 1, np.int32))
    write_json_atomic(bad / "config.json", {})
    with pytest.raises(RunDirError, match="order has"):
        load_run(bad)
    noconf = tmp_path / "noconf"
    write_npz_atomic(noconf / "losses.npz", eval_losses=np.zeros((K + 1, T)))
    with pytest.raises(RunDirError, match="config.json"):
        load_run(noconf)


def test_config_diff_helpers():
    a = {"seed": 0, "workdir": "/x", "optim": {"lr": 1e-3, "name": "sgd"}, "data": {"cache_dir": "/a"}}
    b = {"seed": 1, "workdir": "/y", "optim": {"lr": 2e-3, "name": "sgd"}, "data": {"cache_dir": "/b"}}
    assert config_lib.flatten(a)["optim.lr"] == 1e-3
    assert report.varying_keys([a, b]) == ["seed", "optim.lr"]
    # seed and ignored keys come from the schema (config.base_config(), the toy's config record), not from names
    assert report.is_seed_key("seed") and report.is_seed_key("toy.seed") and not report.is_seed_key("optim.lr")
    assert not report.is_seed_key("order.shuffle_seed")  # no such key in the schema
    assert report.is_ignored_key("data.cache_dir") and report.is_ignored_key("workdir")
    assert report.is_ignored_key("model.name")  # not a schema key (retired or never one)
    assert not report.is_ignored_key("model.preset") and not report.is_ignored_key("data.path")
    assert all(report.is_ignored_key(k) for k in config_lib.PERFORMANCE_KEYS)
    assert report.varying_keys([{"eval": {"batch": 4}, "T": 5}, {"eval": {"batch": 8}, "T": 5}]) == []


def test_report_two_runs(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs / "lr1_s0", 1e-3, 0, 0.3, probes=True)
    _write_run(runs / "lr1_s1", 1e-3, 1, 0.3)
    _write_run(runs / "lr2_s0", 2e-3, 0, 0.8)
    out = tmp_path / "rep"
    rc = report.main([str(runs / "lr1_s0"), str(runs / "lr1_s1"), str(runs / "lr2_s0"), "--out", str(out)])
    assert rc == 0
    text = (out / "report.md").read_text()
    # RS numbers of each run (designed as 0.3 and 0.8) and the group mean ± std
    for lab in ("lr1_s0", "lr1_s1", "lr2_s0"):
        s = metrics.summarize(load_run(runs / lab).eval_losses, None, None, M)
        for v in s["recovery_scores"]:
            assert f"{v:.4f}" in text
    assert "0.30" in text and "0.80" in text
    assert "optim.lr" in text and "seed" in text and "workdir" not in text.split("## Per-run details")[0]
    assert "| optim.lr=0.001 | 2 |" in text
    # figures exist and are referenced
    for fn in ("compare_doc_curve.png", "compare_shift_averaged.png", "compare_rs.png", "rs_vs_optim.lr.png",
               "lr1_s0_doc1.png", "lr1_s0_shift_averaged.png", "lr1_s0_pairwise.png", "lr1_s0_pca.png",
               "lr1_s0_weight_residual_cosine.png", "lr2_s0_loss_heatmap.png"):
        assert (out / fn).is_file() and (out / fn).read_bytes()[:4] == b"\x89PNG", fn
        assert f"]({fn})" in text
    # probes only for the run that has them
    assert not (out / "lr2_s0_pairwise.png").exists()


def test_report_single_run_and_non_run_dir(tmp_path, capsys):
    _write_run(tmp_path / "only", 1e-3, 0, 0.5)
    assert report.main([str(tmp_path / "only"), "--out", str(tmp_path / "r1")]) == 0
    assert "RS(1)" in (tmp_path / "r1" / "report.md").read_text()
    notrun = tmp_path / "notrun"
    notrun.mkdir()
    assert cli.guarded(report.main, [str(notrun), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and "losses.npz" in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_report_groups_with_long_colliding_labels(tmp_path, monkeypatch):
    """Group labels are truncated for plots; groups must stay distinct even when the truncated labels agree."""
    dirs = []
    for i, lr in enumerate((1e-3, 2e-3, 3e-3)):
        d = tmp_path / f"run{i}"
        _write_run(d, lr, 0, 0.2 + 0.3 * i)
        cfg = json.loads((d / "config.json").read_text())
        cfg["data"]["path"] = "x" * 60 + f"_{i}"  # a schema key with long values
        write_json_atomic(d / "config.json", cfg)
        dirs.append(str(d))
    keys, groups = report.group_runs([load_run(d) for d in dirs])
    assert len(groups) == 3 and "optim.lr" in keys
    from recovery_jax import plots

    seen = {}
    orig = plots.plot_recovery_scores

    def spy(rs_by_label, title=""):
        seen[title] = dict(rs_by_label)
        return orig(rs_by_label, title=title)

    monkeypatch.setattr(plots, "plot_recovery_scores", spy)
    out = tmp_path / "rep"
    report.build_report(dirs, out, per_run_figures=False)
    assert not (out / "run0_doc1.png").exists()
    compare = [v for k, v in seen.items() if "per cycle" in k and "run0:" not in k and len(v) > 1]
    assert len(compare) == 1 and len(compare[0]) == 3  # one bar series per group
    text = (out / "report.md").read_text()
    group_section = text.split("## Groups")[1].split("##")[0]
    assert sum(line.startswith("| G") for line in group_section.splitlines()) == 3
    assert (out / "compare_rs.png").is_file()


def test_summarize_degenerate_inputs():
    # no episode at all, and a single epoch (no complete cycle): no RS, but a valid summary
    s0 = metrics.summarize(np.ones((1, 3)), np.zeros(0), None, M=1)
    assert s0["recovery_scores"] == [] and s0["rs_last"] is None and s0["online_loss"] is None
    s1 = metrics.summarize(np.ones((4, 3)), np.ones(6), None, M=2)
    assert s1["recovery_scores"] == [] and s1["online_loss"]["mean"] is None
    json.dumps(s1, allow_nan=False)


def test_report_and_sweep_print_the_same_seed_statistics(tmp_path):
    """The group row of report.md is stats.pm of the seeds' RS, the number sweep_summary.md prints."""
    from recovery_jax import stats

    dirs = [tmp_path / f"s{seed}" for seed in range(3)]
    for seed, (d, rec) in enumerate(zip(dirs, (0.2, 0.3, 0.7))):
        _write_run(d, 1e-3, seed, rec)
    report.build_report(dirs, tmp_path / "rep", per_run_figures=False)
    text = (tmp_path / "rep" / "report.md").read_text()
    summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
    rs1 = [s["recovery_scores"][0] for s in summaries]
    # hand-computed: RS(1) ≈ 0.2, 0.3, 0.7 → mean 0.4, population std sqrt(((.2)²+(.1)²+(.3)²)/3) ≈ 0.216
    assert np.mean(rs1) == pytest.approx(0.4, abs=2e-3) and np.std(rs1) == pytest.approx(0.216, abs=2e-3)
    cell = stats.pm(stats.cycle_stat(stats.seed_stats(summaries), 0))
    assert cell == stats.pm(stats.mean_std(rs1))
    assert f"| all runs | 3 | {cell} |" in text


def test_fig22_update_magnitudes_plot_weights_and_activations(tmp_path, monkeypatch):
    """Both curves of Fig 22: from the probe's direct norms, or (older runs) from the Gram matrices."""
    rng = np.random.default_rng(3)
    W, A = rng.standard_normal((K + 1, 12)), rng.standard_normal((K + 1, 30))
    direct_w, direct_a = np.linalg.norm(np.diff(W, axis=0), axis=1), np.linalg.norm(np.diff(A, axis=0), axis=1)
    seen = []
    from recovery_jax import plots
    real = plots.plot_update_magnitudes
    monkeypatch.setattr(plots, "plot_update_magnitudes",
                        lambda T, weight_norms=None, act_norms=None, title="": seen.append((weight_norms, act_norms))
                        or real(T, weight_norms=weight_norms, act_norms=act_norms, title=title))
    for name, probes in (("old", dict(weight_gram=W @ W.T, activations_gram=A @ A.T)),
                         ("new", dict(weight_gram=W @ W.T, activations_gram=A @ A.T,
                                      weight_diff_norms=direct_w * 2, act_diff_norms=direct_a * 2))):
        _write_run(tmp_path / name, 1e-3, 0, 0.5)
        write_npz_atomic(os.path.join(tmp_path / name, "probes.npz"), **probes)
        assert report.main([str(tmp_path / name), "--out", str(tmp_path / f"rep_{name}")]) == 0
        assert (tmp_path / f"rep_{name}" / f"{name}_update_magnitudes.png").is_file()
    (w_old, a_old), (w_new, a_new) = seen
    np.testing.assert_allclose(w_old, direct_w, rtol=1e-6)
    np.testing.assert_allclose(a_old, direct_a, rtol=1e-6)
    np.testing.assert_array_equal(w_new, direct_w * 2)  # the direct norms win over the Gram matrices
    np.testing.assert_array_equal(a_new, direct_a * 2)
