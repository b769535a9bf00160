"""The computational toy model (docs/PROTOCOL.md §4)."""

import dataclasses
import json

import numpy as np
import pytest

from recovery_jax import metrics, toy


def test_affine_recovery_rises_and_matches_paper_check_values():
    # docs/PROTOCOL.md §4 check (numpy, seed 0, N = dim = 100, lr 0.01, ½-sum loss): RS(1..5) ≈ 0.44, 0.57, 0.67, 0.74, 0.79
    res = toy.run_toy(toy.default_config("affine", epochs=6))
    rs = res.recovery_scores
    assert rs.shape == (5,)
    assert rs[3] > rs[0] > 0.3
    assert np.all(np.diff(rs) > 0)
    np.testing.assert_allclose(rs, [0.44, 0.57, 0.67, 0.74, 0.79], atol=0.02)
    # loss tensor in the engine's format; the trained task's loss is exactly 0 after its step
    L = res.eval_losses
    assert L.shape == (6 * 25 + 1, 25)
    k = np.arange(1, L.shape[0])
    np.testing.assert_allclose(L[k, res.order], 0.0, atol=1e-12)
    # train_losses[k-1] is the loss of the trained task before its update = L[k-1, order[k-1]]
    np.testing.assert_allclose(res.train_losses, L[k - 1, res.order], rtol=1e-12)
    assert res.states.shape == (7, 25, 100)


def test_small_fast_config_and_determinism():
    cfg = toy.default_config("affine", N=40, dim=40, T=10, epochs=8, seed=3)
    a, b = toy.run_toy(cfg), toy.run_toy(cfg)
    np.testing.assert_array_equal(a.eval_losses, b.eval_losses)
    c = toy.run_toy(toy.default_config("affine", N=40, dim=40, T=10, epochs=8, seed=4))
    assert not np.allclose(a.eval_losses, c.eval_losses)
    rs = a.recovery_scores
    assert rs[-1] > rs[0]


def test_identity_literal_lr_diverges_with_clear_message():
    # literal Fig 10(a): N = dim = 1000, lr 0.01 → α‖x‖² ≈ 3.3 > 2 (blows up within the first epoch)
    cfg = toy.default_config("identity", literal=True, epochs=3)
    assert cfg.lr == 0.01 and cfg.N == 1000 and cfg.dim == 1000
    with pytest.raises(toy.ToyDivergenceError, match=r"diverged.*> 2"):
        toy.run_toy(cfg)
    # the stable default (lr 0.001) recovers strongly: docs/PROTOCOL.md §4 check RS ≈ 0.88 → 0.97 over 20 epochs
    ok = toy.run_toy(toy.default_config("identity", epochs=20))
    assert ok.config.lr == 0.001
    rs = ok.recovery_scores
    assert rs[0] == pytest.approx(0.88, abs=0.01) and rs[-1] == pytest.approx(0.97, abs=0.01)


def test_mean_reduction_is_stable_at_literal_lr():
    res = toy.run_toy(toy.default_config("identity", literal=True, reduction="mean", epochs=1))
    assert res.config.N == 1000 and res.config.lr == 0.01
    assert np.all(np.isfinite(res.eval_losses))
    assert res.eval_losses[-1].mean() < res.eval_losses[0].mean()


def test_cli_writes_run_dir(tmp_path, capsys):
    out = tmp_path / "toyrun"
    rc = toy.main(["--variant", "affine", "--N", "30", "--T", "8", "--epochs", "4", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "epoch   4/4" in printed and "RS(n) =" in printed
    for fn in ("losses.npz", "summary.json", "config.json", "toy_task1_loss.png", "toy_task1_loss_late.png",
               "toy_pca_ring.png"):
        assert (out / fn).is_file(), fn
    s = json.loads((out / "summary.json").read_text())
    with np.load(out / "losses.npz") as z:
        np.testing.assert_allclose(s["recovery_scores"], metrics.recovery_scores(z["eval_losses"]), rtol=1e-6)
        assert z["eval_losses"].shape == (4 * 8 + 1, 8)
    # the toy output is a valid run directory for the report
    from recovery_jax.rundir import load_run

    assert load_run(out).T == 8
    rc = toy.main(["--variant", "identity", "--literal", "--epochs", "2", "--no-plots",
                   "--out", str(tmp_path / "lit")])
    assert rc == 1
    assert "DIVERGED" in capsys.readouterr().err


def _reference_toy(variant, N, dim, T, epochs, lr, seed):
    """Literal docs/PROTOCOL.md §4 algorithm with an explicit P (same random draws as toy.run_toy)."""
    rng = np.random.default_rng(seed)
    P = rng.normal(0.0, 1.0 / N, size=(dim, N))
    X = rng.uniform(-1.0, 1.0, size=(T, N))
    w = rng.uniform(-1.0, 1.0, size=dim)
    Y = rng.uniform(-1.0, 1.0, size=(T, dim)) if variant == "affine" else np.zeros((T, dim))
    f = (lambda i, w_: Y[i] - w_) if variant == "affine" else (lambda i, w_: w_)
    finv = (lambda i, v: Y[i] - v) if variant == "affine" else (lambda i, v: v)
    losses = [[0.5 * np.sum((P @ X[j] - f(j, w)) ** 2) for j in range(T)]]
    for _ in range(epochs):
        for i in range(T):
            P = P - lr * np.outer(P @ X[i] - f(i, w), X[i])  # slow update with the old w
            w = finv(i, P @ X[i])  # fast solve with the new P
            losses.append([0.5 * np.sum((P @ X[j] - f(j, w)) ** 2) for j in range(T)])
    return np.array(losses)


@pytest.mark.parametrize("variant", ["affine", "identity"])
def test_matches_literal_algorithm(variant):
    cfg = toy.default_config(variant, N=30, dim=20, T=6, epochs=3, lr=0.02, seed=5)
    res = toy.run_toy(cfg)
    ref = _reference_toy(variant, 30, 20, 6, 3, 0.02, 5)
    np.testing.assert_allclose(res.eval_losses, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("field,value,fragment", [
    ("T", 0, "--T 0 is not valid: the number of tasks"), ("T", 1, "must be an integer >= 2"),
    ("N", -1, "--N -1 is not valid"), ("dim", 0, "--dim 0 is not valid"), ("epochs", 0, "--epochs 0 is not valid"),
    ("seed", -2, "--seed -2"), ("lr", 0.0, "--lr 0.0 is not valid"), ("lr", float("inf"), "finite number > 0"),
    ("variant", "cubic", "--variant 'cubic' is not valid; choose one of: identity, affine"),
    ("reduction", "max", "choose one of: sum, mean"),
])
def test_validate_names_the_value_and_the_valid_range(field, value, fragment):
    from recovery_jax.config import ConfigError

    cfg = dataclasses.replace(toy.default_config("affine", N=8, dim=8, T=4, epochs=2), **{field: value})
    with pytest.raises(ConfigError) as e:
        toy.run_toy(cfg)  # refused before any work, also through the API
    assert fragment in str(e.value)


def test_config_record_is_what_save_toy_writes(tmp_path):
    cfg = toy.default_config("affine", N=8, dim=8, T=4, epochs=2, seed=3)
    toy.save_toy(toy.run_toy(cfg), tmp_path, plots=False)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored == json.loads(json.dumps(toy.config_record(cfg)))
    assert stored["kind"] == "toy" and stored["T"] == 4 and stored["E"] == 2 and stored["toy"]["seed"] == 3
