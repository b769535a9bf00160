"""Every plot function returns a labelled Figure and saves a valid PNG."""

import numpy as np
import pytest

from recovery_jax import metrics
from recovery_jax import plots as P

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T, E = 6, 4
K = T * E


def _losses(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 3.0, size=(K + 1, T))


def _gram(n, d=20, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, d)) + 1.0
    return X @ X.T


def _check(fig, tmp_path, name):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes, "figure has no axes"
    main = axes[0]
    assert main.get_xlabel().strip(), f"{name}: empty xlabel"
    assert main.get_ylabel().strip(), f"{name}: empty ylabel"
    title = main.get_title() or (fig._suptitle.get_text() if fig._suptitle is not None else "")
    assert title.strip(), f"{name}: empty title"
    path = P.save_figure(fig, tmp_path / f"{name}.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    return main


def test_doc_curve_and_shift_average(tmp_path):
    L1, L2 = _losses(0), _losses(1)
    fig = P.plot_doc_curve([("cyclic", np.stack([L1, L2]), None), ("single", L1, None)], title="runA: doc 1")
    ax = _check(fig, tmp_path, "doc")
    assert "runA" in ax.get_title()
    assert ax.get_legend() is not None
    # black circles at L[(n−1)T, 0]
    x, y = ax.lines[1].get_data()
    np.testing.assert_allclose(x, np.arange(E))
    fig = P.plot_shift_averaged([("a", [L1, L2], None), ("b", L1, None)], title="runA: shift")
    ax = _check(fig, tmp_path, "shift")
    assert ax.get_legend() is not None
    fig = P.plot_shift_averaged(("tail", L1, None), title="runA", include_tail=True)
    _check(fig, tmp_path, "shift_tail")


def test_rs_and_online_and_config_plots(tmp_path):
    fig = P.plot_recovery_scores({"cyclic": np.array([[0.2, 0.5, 0.6], [0.3, 0.4, 0.7]]), "x": [0.1, 0.1, 0.0]},
                                 title="runs: RS")
    ax = _check(fig, tmp_path, "rs")
    assert ax.get_legend() is not None
    tl = np.random.default_rng(0).uniform(size=K * 2)
    _, pe = metrics.online_loss(tl, 2, T)
    _check(P.plot_online_loss([("a", pe, T), ("b", np.stack([pe, pe * 0.9]), T)], title="runA: online"),
           tmp_path, "online")
    _check(P.plot_rs_vs_config([1e-4, 1e-3, 1e-2], [0.2, 0.4, 0.5], [0.01, 0.02, 0.03], key="optim.lr",
                               title="sweep: RS vs lr"), tmp_path, "rs_vs_lr")
    _check(P.plot_rs_vs_config(["sgd", "adam"], [0.2, 0.6], None, key="optim.name", title="sweep"),
           tmp_path, "rs_vs_name")


def test_heatmaps_pca_updates(tmp_path):
    G = _gram(K + 1)
    _check(P.plot_pairwise(np.random.default_rng(0).standard_normal((T, T)), title="runA: pairwise"),
           tmp_path, "pairwise")
    _check(P.plot_grads_cosine(_gram(T), title="runA: grads"), tmp_path, "grads")
    _check(P.plot_weight_residual_cosine(G, T, title="runA: wres"), tmp_path, "wres")
    _check(P.plot_activation_cosine(G, T, title="runA: act"), tmp_path, "act")
    _check(P.plot_loss_heatmap(_losses(), title="runA: losses"), tmp_path, "loss_heatmap")
    _check(P.plot_pca_trajectory(G, T, n_epochs=3, dims=3, title="runA: pca"), tmp_path, "pca3")
    _check(P.plot_pca_trajectory(G, T, n_epochs=2, dims=2, title="runA: pca2"), tmp_path, "pca2")
    # a probe over the first episodes only (probes.max_episodes): the run's whole order is longer than the Gram
    short = _gram(2 * T + 1)
    _check(P.plot_pca_trajectory(short, T, n_epochs=3, dims=3, order=np.tile(np.arange(T), 4), title="runA: pca"),
           tmp_path, "pca_short")
    _check(P.plot_update_magnitudes(T, metrics.update_magnitudes_from_gram(G), np.ones(K), title="runA: upd"),
           tmp_path, "upd")
    c, r = metrics.pca_from_gram(_gram(T), k=2)
    _check(P.plot_ring_panels([("epoch 0", c, r), ("epoch 1", c, r)], title="toy: ring"), tmp_path, "ring")


def test_heatmap_has_colorbar():
    fig = P.plot_grads_cosine(_gram(T), title="runA: grads")
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    assert fig.axes[-1].get_ylabel()  # colorbar label


def test_missing_labels_would_fail():
    """The checker itself must be able to fail."""
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot()
    with pytest.raises(AssertionError):
        _check(fig, None, "empty")
