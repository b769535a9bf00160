"""Figures from run results (docs/PROTOCOL.md §2 metrics; every § below is a section of docs/PROTOCOL.md; figure
numbers of the NeurIPS v2 text).

Every ``plot_*`` function builds and **returns** a :class:`matplotlib.figure.Figure` (labelled axes, a title
naming the run, a legend where several series are drawn); :func:`save_figure` writes it as PNG (dpi 120) and
releases it.  Uses the non-interactive Agg backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from recovery_jax import metrics  # noqa: E402

__all__ = [
    "DPI",
    "save_figure",
    "plot_doc_curve",
    "plot_shift_averaged",
    "plot_recovery_scores",
    "plot_online_loss",
    "plot_heatmap",
    "plot_pairwise",
    "plot_grads_cosine",
    "plot_weight_residual_cosine",
    "plot_activation_cosine",
    "plot_pca_trajectory",
    "plot_loss_heatmap",
    "plot_rs_vs_config",
    "plot_update_magnitudes",
    "plot_ring_panels",
]

DPI = 120


def _new_figure(figsize=(7.5, 4.5)) -> Figure:
    # Figure objects not registered with pyplot: nothing leaks when many figures are made.
    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Save ``fig`` as PNG (written to a temp name, then renamed) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi, format="png")
    os.replace(tmp, path)
    return path


def _series(series, default_label: str = "run") -> list[tuple[str, Any, Any]]:
    """Normalise ``series`` into a list of (label, losses, order): accepts one array, (label, losses[, order])
    tuples or a list of them.  ``losses`` may be (K+1, T), a (R, K+1, T) stack or a list of runs."""
    if isinstance(series, np.ndarray):
        return [(default_label, series, None)]
    if isinstance(series, tuple) and len(series) in (2, 3) and isinstance(series[0], str):
        series = [series]
    out = []
    for i, s in enumerate(series):
        if isinstance(s, np.ndarray):
            out.append((f"{default_label} {i}", s, None))
        else:
            lab, L = s[0], s[1]
            o = s[2] if len(s) > 2 else None
            out.append((str(lab), L, o))
    return out


def _legend(ax, handles=None, labels=None) -> None:
    """Legend inside the axes when short; below the axes (2 columns) when long or numerous."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    labels = [lab if len(lab) <= 70 else lab[:69] + "…" for lab in labels]
    if len(labels) > 5 or max(len(lab) for lab in labels) > 40:
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncol=1 if max(len(lab) for lab in labels) > 35 else 2, frameon=False)
    else:
        ax.legend(handles, labels, fontsize=8)


def _epoch_grid(ax, n_epochs: float) -> None:
    for e in range(1, int(np.floor(n_epochs)) + 1):
        ax.axvline(e, color="0.8", lw=0.8, zorder=0)
    ax.set_xlim(0, max(n_epochs, 1e-9))


# ---------------------------------------------------------------------------------------------------------
# Loss curves
# ---------------------------------------------------------------------------------------------------------


def plot_doc_curve(
    series,
    doc: int = 0,
    title: str = "",
    ylabel: str = "loss",
    T: int | None = None,
    logy: bool = False,
    epochs_range: tuple[float, float] | None = None,
) -> Figure:
    """Loss of one document against epochs (x = k/T), black circles just before each (re)training (§2.2, Fig 1a).

    ``series``: an eval_losses array or (label, eval_losses[, order]) tuples, e.g. cyclic vs shuffled.  When
    ``eval_losses`` is a (R, K+1, T) stack or a list of same-shape runs the mean over runs is drawn with ±std
    shading (the black circles use the first run's order).  Epoch boundaries are drawn as grey vertical lines.
    ``logy``: symmetric-log y-axis (linear near 0, so exact zeros stay visible); ``epochs_range``: show only
    that x-window, with the y-range fitted to it.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    n_ep = 0.0
    ylo, yhi, min_pos = np.inf, -np.inf, np.inf
    for j, (lab, L, o) in enumerate(_series(series)):
        stack = np.asarray(L, dtype=np.float64)
        if stack.ndim == 2:
            stack = stack[None]
        TT = T or stack.shape[2]
        mean = stack.mean(axis=0)
        k, loss, bk, bl = metrics.doc_curve(mean, doc=doc, order=o)
        x = k / TT
        color = f"C{j}"
        ax.plot(x, loss, color=color, lw=1.4, label=f"{lab}" + (f" (mean of {stack.shape[0]})" if len(stack) > 1 else ""))
        if stack.shape[0] > 1:
            sd = stack[:, :, doc].std(axis=0)
            ax.fill_between(x, loss - sd, loss + sd, color=color, alpha=0.2, lw=0)
        ax.plot(bk / TT, bl, "o", color="black", ms=4.5, zorder=5, label="just before (re)training" if j == 0 else None)
        n_ep = max(n_ep, k[-1] / TT)
        if epochs_range is not None:
            vis = (x >= epochs_range[0]) & (x <= epochs_range[1])
            if vis.any():
                ylo = min(ylo, float(np.nanmin(loss[vis])))
                yhi = max(yhi, float(np.nanmax(loss[vis])))
        pos = loss[np.isfinite(loss) & (loss > 0)]
        if pos.size:
            min_pos = min(min_pos, float(np.percentile(pos, 5)))
    _epoch_grid(ax, n_ep)
    if logy:
        ax.set_yscale("symlog", linthresh=min_pos if np.isfinite(min_pos) else 1e-3)
        ax.set_ylim(bottom=0.0)
    if epochs_range is not None:
        ax.set_xlim(*epochs_range)
        if np.isfinite(ylo) and np.isfinite(yhi):
            pad = 0.05 * (yhi - ylo if yhi > ylo else 1.0)
            ax.set_ylim(ylo - pad, yhi + pad)
    ax.set_xlabel("epochs (episode k / T)")
    ax.set_ylabel(f"{ylabel} of document {doc + 1}")
    ax.set_title(title or f"loss of document {doc + 1}")
    _legend(ax)
    return fig


def plot_shift_averaged(
    series,
    title: str = "",
    include_tail: bool = False,
    ylabel: str = "loss",
) -> Figure:
    """Shift-averaged loss curves (§2.3, Fig 1b) with ±std shading over seeds × documents.

    ``series``: (label, losses, orders) tuples; ``losses`` one (K+1, T) tensor, a stack or a list of runs
    (pooled), ``orders`` None / one order / list of orders.  x = s/T epochs since just before first training.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    n_ep = 0.0
    for j, (lab, L, o) in enumerate(_series(series)):
        s, mean, std, cnt = metrics.shift_averaged(L, orders=o, include_tail=include_tail, return_counts=True)
        T = (np.asarray(L).shape[-1]) if not isinstance(L, (list, tuple)) else np.asarray(L[0]).shape[-1]
        x = s / T
        n_runs = 1 if (isinstance(L, np.ndarray) and L.ndim == 2) else len(L)
        ax.plot(x, mean, color=f"C{j}", lw=1.4, label=f"{lab}" + (f" ({n_runs} runs)" if n_runs > 1 else ""))
        ax.fill_between(x, mean - std, mean + std, color=f"C{j}", alpha=0.2, lw=0)
        n_ep = max(n_ep, x[-1])
    _epoch_grid(ax, n_ep)
    ax.set_xlabel("epochs since just before first training (s / T)")
    ax.set_ylabel(f"shift-averaged {ylabel}")
    ax.set_title(title or "shift-averaged loss")
    _legend(ax)
    return fig


def plot_loss_heatmap(eval_losses: np.ndarray, title: str = "") -> Figure:
    """The whole loss tensor L[k, t] as an image: documents (rows) × episodes (x in epochs)."""
    L = np.asarray(eval_losses, dtype=np.float64)
    K, T = L.shape[0] - 1, L.shape[1]
    fig = _new_figure(figsize=(9, 4.2))
    ax = fig.add_subplot()
    im = ax.imshow(L.T, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis",
                   extent=(-0.5 / T, (K + 0.5) / T, 0.5, T + 0.5))
    fig.colorbar(im, ax=ax, label="eval loss")
    ax.set_xlabel("epochs (episode k / T)")
    ax.set_ylabel("document")
    ax.set_title(title or "loss of every document after every episode")
    return fig


def plot_online_loss(series, title: str = "", first_epoch: int = 2) -> Figure:
    """Online (prequential) loss per episode (§2.5, Fig 1c): ``series`` of (label, per_episode[, T]) tuples.

    ``per_episode`` is the array from :func:`recovery_jax.metrics.online_loss` (or an (R, K) stack → mean ± std).
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    if isinstance(series, tuple):
        series = [series]
    n_ep = 0.0
    for j, s in enumerate(series):
        lab, pe = s[0], np.asarray(s[1], dtype=np.float64)
        T = s[2] if len(s) > 2 and s[2] else None
        stack = pe if pe.ndim == 2 else pe[None]
        mean = stack.mean(axis=0)
        k = np.arange(1, mean.size + 1)
        x = (k - 1) / T if T else k
        ax.plot(x, mean, color=f"C{j}", lw=1.0, label=lab)
        if stack.shape[0] > 1:
            sd = stack.std(axis=0)
            ax.fill_between(x, mean - sd, mean + sd, color=f"C{j}", alpha=0.2, lw=0)
        if T:
            n_ep = max(n_ep, mean.size / T)
    if n_ep:
        _epoch_grid(ax, n_ep)
        ax.axvspan(0, first_epoch - 1, color="0.92", zorder=-1, label="excluded from the mean")
        ax.set_xlabel("epochs (episode)")
    else:
        ax.set_xlabel("episode k")
    ax.set_ylabel("online loss (first step of the episode)")
    ax.set_title(title or "online (prequential) loss")
    _legend(ax)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Recovery scores
# ---------------------------------------------------------------------------------------------------------


def plot_recovery_scores(rs_by_label: dict[str, Any], title: str = "") -> Figure:
    """RS(n) per cycle as grouped bars; each value is an (n_cycles,) array or an (R, n_cycles) stack
    (bar = mean over runs, error bar = std over runs, §2.4 "error bars come from trials")."""
    fig = _new_figure()
    ax = fig.add_subplot()
    labels = list(rs_by_label)
    width = 0.8 / max(len(labels), 1)
    n_max = 0
    for j, lab in enumerate(labels):
        v = rs_by_label[lab]
        stack = [np.asarray(r, dtype=np.float64) for r in v] if isinstance(v, (list, tuple)) and len(v) and np.ndim(v[0]) == 1 else None
        if stack is not None:
            n = min(len(r) for r in stack)
            arr = np.stack([r[:n] for r in stack])
        else:
            arr = np.asarray(v, dtype=np.float64)
            arr = arr if arr.ndim == 2 else arr[None]
        n = arr.shape[1]
        n_max = max(n_max, n)
        mean = np.nanmean(arr, axis=0) if arr.size else arr
        err = np.nanstd(arr, axis=0) if arr.shape[0] > 1 else None
        xs = np.arange(1, n + 1) + (j - (len(labels) - 1) / 2) * width
        ax.bar(xs, mean, width=width, yerr=err, capsize=3, color=f"C{j}",
               label=lab + (f" (n={arr.shape[0]})" if arr.shape[0] > 1 else ""))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(1, n_max + 1))
    ax.set_xlabel("cycle n (between the n-th and (n+1)-th training)")
    ax.set_ylabel("recovery score RS(n)")
    ax.set_title(title or "recovery score per cycle")
    _legend(ax)
    return fig


def plot_rs_vs_config(
    values: Sequence[Any],
    rs_mean: Sequence[float],
    rs_std: Sequence[float] | None = None,
    key: str = "config value",
    title: str = "",
    ylabel: str = "recovery score (last cycle)",
    labels: Sequence[str | None] | None = None,
) -> Figure:
    """RS (mean ± std over seeds) against one config value (Figs 2, 3, 5, 16, 19 style).

    ``labels`` (optional, one per point) splits the points into separate lines, e.g. when another config key
    varies too.  Numeric values get a numeric x-axis (log scale when positive and spanning > 1 decade);
    others are categorical.
    """
    fig = _new_figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    vals = list(values)
    mean = np.asarray(rs_mean, dtype=np.float64)
    std = np.zeros_like(mean) if rs_std is None else np.asarray(rs_std, dtype=np.float64)
    labs = [None] * len(vals) if labels is None else list(labels)
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in vals)
    if numeric:
        x = np.asarray(vals, dtype=np.float64)
        ux = np.unique(x)
        if np.all(ux > 0) and ux.max() / ux.min() > 10:
            ax.set_xscale("log")
        ax.set_xticks(ux)
        ax.set_xticklabels([f"{v:g}" for v in ux])
    else:
        cats: list[str] = []
        for v in vals:
            if str(v) not in cats:
                cats.append(str(v))
        x = np.array([cats.index(str(v)) for v in vals], dtype=np.float64)
        ax.set_xticks(np.arange(len(cats)))
        ax.set_xticklabels(cats, rotation=20, ha="right")
    series: dict[Any, list[int]] = {}
    for i, lab in enumerate(labs):
        series.setdefault(lab, []).append(i)
    for j, (lab, idx) in enumerate(series.items()):
        idx = np.asarray(idx)
        idx = idx[np.argsort(x[idx], kind="stable")]
        ax.errorbar(x[idx], mean[idx], yerr=std[idx], fmt="o-", capsize=4, color=f"C{j}",
                    label=(lab if lab else "mean ± std over seeds"))
    ax.set_xlabel(key)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"recovery score vs {key}")
    _legend(ax)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Heat maps (§2.6–§2.9)
# ---------------------------------------------------------------------------------------------------------


def plot_heatmap(
    matrix: np.ndarray,
    title: str,
    xlabel: str,
    ylabel: str,
    cbar_label: str,
    cmap: str = "viridis",
    symmetric: bool = False,
    extent=None,
    tick_labels_from_one: bool = False,
) -> Figure:
    """Generic heat map with a colourbar (``symmetric``: colour range centred on 0)."""
    A = np.asarray(matrix, dtype=np.float64)
    fig = _new_figure(figsize=(6.2, 5.2))
    ax = fig.add_subplot()
    kw: dict[str, Any] = {}
    if symmetric:
        m = np.nanmax(np.abs(A)) if np.any(np.isfinite(A)) else 1.0
        kw.update(vmin=-m, vmax=m)
    if extent is None and tick_labels_from_one:
        extent = (0.5, A.shape[1] + 0.5, A.shape[0] + 0.5, 0.5)
    cm = plt.get_cmap(cmap).with_extremes(bad="0.75")  # masked entries (NaN, e.g. the pairwise diagonal) grey
    im = ax.imshow(A, cmap=cm, interpolation="nearest", aspect="auto", extent=extent, **kw)
    fig.colorbar(im, ax=ax, label=cbar_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def plot_pairwise(R: np.ndarray, title: str = "", diagonal: str = "nan", scale: str = "none") -> Figure:
    """Pairwise recovery matrix (§2.6, Fig 8b): row = trained document i, column = evaluated document j,
    value = L_j(θ*) − L_j(θ* after M steps on x_i) (positive: the loss on x_j fell).  Diagonal masked by default."""
    A = metrics.pairwise_normalized(R, diagonal=diagonal, scale=scale)
    return plot_heatmap(A, title or "pairwise recovery", "evaluated document j", "trained document i",
                        "loss decrease on j" + ("" if scale == "none" else " (normalised)"),
                        cmap="RdBu_r", symmetric=True, tick_labels_from_one=True)


def plot_grads_cosine(grads_gram: np.ndarray, title: str = "") -> Figure:
    """Cosine similarity of per-document gradients (§2.7, Fig 8a) from their Gram matrix."""
    C = metrics.cosine_from_gram(grads_gram)
    return plot_heatmap(C, title or "gradient cosine similarity", "document j", "document i",
                        "cos(g_i, g_j)", cmap="RdBu_r", symmetric=True, tick_labels_from_one=True)


def plot_weight_residual_cosine(
    weight_gram: np.ndarray, T: int, epochs: tuple[int, int] = (2, 4), title: str = "", window: int | None = None
) -> Figure:
    """Cosine of weight residuals w_res (§2.8, Fig 8c) for episodes of ``epochs`` (default 2–4), from the Gram
    matrix of the states (residuals use the full run; window edges clipped, see ``metrics.residual_gram``)."""
    K = weight_gram.shape[0] - 1
    Gr = metrics.residual_gram(weight_gram, window or T)
    e0, e1 = epochs
    e1 = min(e1, K // T)
    e0 = min(e0, e1)
    sl = metrics.epoch_slice(T, e0, e1)
    C = metrics.cosine_from_gram(Gr)[sl, sl]
    ext = ((sl.start - 0.5) / T, (sl.stop - 0.5) / T, (sl.stop - 0.5) / T, (sl.start - 0.5) / T)
    return plot_heatmap(C, title or f"weight-residual cosine, epochs {e0}-{e1}", "epochs (episode / T)",
                        "epochs (episode / T)", "cos(w_res(i), w_res(j))", cmap="RdBu_r", symmetric=True, extent=ext)


def plot_activation_cosine(act_gram: np.ndarray, T: int, n_epochs: int = 3, doc: int = 0, title: str = "") -> Figure:
    """Cosine similarity of one document's final hidden states across checkpoints (§2.9, Fig 8d):
    states 0..n_epochs·T (0 = before training)."""
    n = min(act_gram.shape[0], n_epochs * T + 1)
    C = metrics.cosine_from_gram(np.asarray(act_gram)[:n, :n])
    ext = (-0.5 / T, (n - 0.5) / T, (n - 0.5) / T, -0.5 / T)
    return plot_heatmap(C, title or f"activation cosine of document {doc + 1}", "epochs (checkpoint / T)",
                        "epochs (checkpoint / T)", "cosine similarity", cmap="viridis", extent=ext)


def plot_update_magnitudes(
    T: int, weight_norms: np.ndarray | None = None, act_norms: np.ndarray | None = None, title: str = ""
) -> Figure:
    """Update magnitudes between consecutive episodes (§2.11, Fig 22): ||w(k)−w(k−1)|| and ||a(k)−a(k−1)||."""
    fig = _new_figure()
    ax = fig.add_subplot()
    n_ep = 0.0
    lines = []
    if weight_norms is not None:
        k = np.arange(1, len(weight_norms) + 1)
        lines += ax.plot(k / T, weight_norms, color="C0", label="weights ||w(k) − w(k−1)||")
        n_ep = max(n_ep, len(weight_norms) / T)
    if act_norms is not None:
        k = np.arange(1, len(act_norms) + 1)
        target = ax.twinx() if weight_norms is not None else ax
        lines += target.plot(k / T, act_norms, color="C1", label="activations ||a(k) − a(k−1)||")
        if target is not ax:
            target.set_ylabel("activation update norm")
        n_ep = max(n_ep, len(act_norms) / T)
    _epoch_grid(ax, n_ep)
    ax.set_xlabel("epochs (episode k / T)")
    ax.set_ylabel("weight update norm" if weight_norms is not None else "activation update norm")
    ax.set_title(title or "update magnitudes")
    _legend(ax, lines, [ln.get_label() for ln in lines])
    return fig


# ---------------------------------------------------------------------------------------------------------
# PCA (§2.10 Fig 9; §4 Fig 11)
# ---------------------------------------------------------------------------------------------------------


def plot_pca_trajectory(
    gram: np.ndarray,
    T: int,
    n_epochs: int = 3,
    dims: int = 3,
    title: str = "",
    order: np.ndarray | None = None,
    include_initial: bool = False,
    annotate_every: int | None = None,
) -> Figure:
    """PCA trajectory of weight states after each episode of the first ``n_epochs`` epochs (Fig 9), from their
    Gram matrix; points coloured by epoch and annotated with the document just trained (1-based)."""
    K = gram.shape[0] - 1
    last = min(K, n_epochs * T)
    idx = np.arange(0 if include_initial else 1, last + 1)
    coords, ratio = metrics.pca_from_gram(gram, k=dims, indices=idx)
    # the probe may cover only the first K episodes of the run (probes.max_episodes): their part of the order
    o = metrics.as_order(None if order is None else np.asarray(order)[:K], K, T)
    ep = np.where(idx > 0, (idx - 1) // T + 1, 0)
    fig = _new_figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d") if dims == 3 else fig.add_subplot()
    cmap = plt.get_cmap("viridis", max(int(ep.max()), 1) + (1 if include_initial else 0))
    step = annotate_every or max(1, T // 12)
    for e in np.unique(ep):
        m = ep == e
        pts = coords[m]
        lab = "initial" if e == 0 else f"epoch {e}"
        col = cmap(int(e) - (0 if include_initial else 1))
        if dims == 3:
            ax.plot(pts[:, 0], pts[:, 1], pts[:, 2], "-o", ms=3, color=col, label=lab)
        else:
            ax.plot(pts[:, 0], pts[:, 1], "-o", ms=3, color=col, label=lab)
    for i, k in enumerate(idx):
        if k == 0:
            continue
        d = int(o[k - 1])
        if d >= 0 and d % step == 0:
            txt = f"{d + 1}"
            if dims == 3:
                ax.text(coords[i, 0], coords[i, 1], coords[i, 2], txt, fontsize=7)
            else:
                ax.annotate(txt, coords[i, :2], fontsize=7)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}%)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}%)")
    if dims == 3:
        ax.set_zlabel(f"PC3 ({100 * ratio[2]:.1f}%)")
    ax.set_title(title or "PCA of weights (labels: document just trained)")
    _legend(ax)
    return fig


def plot_ring_panels(panels: Iterable[tuple[str, np.ndarray, np.ndarray]], title: str = "") -> Figure:
    """2-D PCA panels (Fig 11): each panel (label, coords (T, ≥2), explained ratio); points coloured and
    connected in task order (closing the cycle), task 1 marked."""
    panels = list(panels)
    n = len(panels)
    cols = 3 if n in (5, 6) else min(n, 4)
    rows = int(np.ceil(n / cols))
    fig = _new_figure(figsize=(3.2 * cols, 3.1 * rows + 0.4))
    fig.suptitle(title or "2-D PCA per epoch")
    for j, (lab, c, ratio) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, j + 1)
        T = c.shape[0]
        cyc = np.vstack([c[:, :2], c[:1, :2]])
        ax.plot(cyc[:, 0], cyc[:, 1], "-", color="0.7", lw=0.8, zorder=1)
        sc = ax.scatter(c[:, 0], c[:, 1], c=np.arange(1, T + 1), cmap="hsv", s=18, zorder=2,
                        vmin=1, vmax=T + 1)
        ax.scatter(c[:1, 0], c[:1, 1], s=70, facecolors="none", edgecolors="black", zorder=3, label="task 1")
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}%)", fontsize=8)
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}%)", fontsize=8)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=7, loc="best")
    fig.colorbar(sc, ax=fig.axes, label="task index", shrink=0.8)
    return fig
