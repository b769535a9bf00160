"""Metrics of anticipatory recovery: pure numpy functions of loss tensors and Gram matrices.

Everything here follows the index conventions of ``docs/PROTOCOL.md`` §2:

* ``eval_losses`` is the loss tensor **L[k, t]** of shape ``(K + 1, T)`` (§2.1): row ``k = 0`` is the
  evaluation before any training, row ``k`` (1-based episode index) the evaluation of all ``T`` documents
  right after episode ``k``.  ``K = E·T`` for the plain cyclic protocol.
* ``order`` is an int array of length ``K``: ``order[k - 1]`` is the document (``0..T-1``) trained in
  episode ``k``; ``-1`` marks an episode that trained a *filler* document which is not among the ``T``
  evaluated ones (Fig 18).  ``order=None`` always means the cyclic order ``order[k - 1] = (k - 1) mod T``,
  for which document ``t`` is trained for the n-th time in episode ``k_n(t) = (n − 1)·T + t + 1``.
* ``train_losses`` has length ``K·M``; entry ``(k − 1)·M + j`` is the loss of step ``j`` of episode ``k``,
  recorded **before** that step's update (§2.1, §2.5).
* Gram-matrix helpers take ``G[i, j] = <w(i), w(j)>`` of flattened states ``w(k)`` (row/col ``k`` = state
  after episode ``k``, row 0 = before training) and reproduce §2.8–§2.11 without materialising the states.

No function here imports JAX or the engine; all return numpy arrays or plain Python scalars.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = [
    "cyclic_order",
    "as_order",
    "visit_episodes",
    "epoch_of_episode",
    "recovery_score_components",
    "recovery_scores",
    "per_document_recovery",
    "positive_transfer_flag",
    "shift_averaged",
    "doc_curve",
    "online_loss",
    "revisit_recovery",
    "cosine_from_gram",
    "residual_gram",
    "pca_from_gram",
    "update_magnitudes_from_gram",
    "epoch_slice",
    "pairwise_normalized",
    "pairwise_offset_profile",
    "summarize",
    "jsonable",
]


# ---------------------------------------------------------------------------------------------------------
# Orders and visits (§1.1, §2.1)
# ---------------------------------------------------------------------------------------------------------


def cyclic_order(T: int, E: int) -> np.ndarray:
    """Cyclic order of ``E`` epochs over ``T`` documents: ``order[k-1] = (k-1) mod T`` (docs/PROTOCOL.md §1.1, §2.1)."""
    if T <= 0 or E < 0:
        raise ValueError(f"cyclic_order needs T > 0 and E >= 0, got T={T}, E={E}")
    return np.tile(np.arange(T, dtype=np.int32), E)


def _check_losses(eval_losses: np.ndarray) -> np.ndarray:
    L = np.asarray(eval_losses, dtype=np.float64)
    if L.ndim != 2:
        raise ValueError(f"eval_losses must have shape (K+1, T), got shape {L.shape}")
    if L.shape[0] < 1 or L.shape[1] < 1:
        raise ValueError(f"eval_losses is empty: shape {L.shape}")
    return L


def as_order(order: np.ndarray | Sequence[int] | None, K: int, T: int) -> np.ndarray:
    """Validate ``order`` (length ``K``, values in ``-1..T-1``); ``None`` gives the cyclic order of length K."""
    if order is None:
        return (np.arange(K) % T).astype(np.int64)
    o = np.asarray(order).astype(np.int64).reshape(-1)
    if o.shape[0] != K:
        raise ValueError(f"order has length {o.shape[0]} but the loss tensor has K={K} episodes")
    if o.size and (o.min() < -1 or o.max() >= T):
        raise ValueError(f"order values must lie in -1..{T - 1} (−1 = filler document), got {o.min()}..{o.max()}")
    return o


def visit_episodes(order_K: np.ndarray | Sequence[int], T: int) -> list[np.ndarray]:
    """Episodes (1-based ``k``) in which each document ``t = 0..T-1`` is trained.

    ``visit_episodes(order, T)[t][n - 1]`` is ``k_n(t)`` of docs/PROTOCOL.md §2.1 (the n-th visit).  For the cyclic
    order this is ``(n − 1)·T + t + 1``.  Filler episodes (``order == -1``) belong to no document.
    """
    o = np.asarray(order_K).astype(np.int64).reshape(-1)
    k = np.arange(1, o.shape[0] + 1)
    return [k[o == t] for t in range(T)]


def epoch_of_episode(order: np.ndarray | Sequence[int]) -> np.ndarray:
    """Epoch number (1-based) of every episode: a new epoch starts at each visit of ``order[0]``.

    For the cyclic order and for the shuffled baseline (x_1 kept first, docs/PROTOCOL.md §3 Fig 1a) this is
    ``(k − 1) // T + 1``; for filler orders (Fig 18: fixed documents first, then fillers) it gives the
    variable-length epochs.
    """
    o = np.asarray(order).astype(np.int64).reshape(-1)
    if o.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.cumsum(o == o[0]).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Recovery score (§2.4)
# ---------------------------------------------------------------------------------------------------------


def _cycle_intervals(L: np.ndarray, order: np.ndarray | None):
    """Per cycle n = 1..: list of (t, a_t, b_t) with a_t = k_n(t), b_t = k_{n+1}(t) − 1."""
    K, T = L.shape[0] - 1, L.shape[1]
    o = as_order(order, K, T)
    visits = visit_episodes(o, T)
    n_cycles = max((len(v) - 1 for v in visits), default=0)
    cycles = []
    for n in range(1, n_cycles + 1):
        cycles.append([(t, int(v[n - 1]), int(v[n]) - 1) for t, v in enumerate(visits) if len(v) >= n + 1])
    return cycles


def recovery_score_components(eval_losses: np.ndarray, order: np.ndarray | Sequence[int] | None = None) -> dict:
    """Document-averaged ingredients of the recovery score for every cycle ``n`` (docs/PROTOCOL.md §2.4).

    For cycle ``n`` (between the n-th and the (n+1)-th training of each document) and document ``t``:
    ``a_t = k_n(t)`` (right after the n-th training), ``b_t = k_{n+1}(t) − 1`` (right before the (n+1)-th).

    * ``l_after[n-1]  = mean_t L[a_t, t]``             (the paper's l_after(n − 1))
    * ``l_max[n-1]    = mean_t max_{a_t ≤ k ≤ b_t} L[k, t]``  (per-document maximum, then averaged)
    * ``l_before[n-1] = mean_t L[b_t, t]``
    * ``rs[n-1] = (l_max − l_before) / (l_max − l_after)``: a ratio of averages, not an average of ratios.

    Documents without an (n+1)-th visit (general orders) are skipped for cycle ``n``; so are documents whose
    losses on ``[a_t, b_t]`` are not all finite.  ``n_docs`` counts the documents used.  ``rs`` is NaN where
    no document qualifies or the denominator is 0 (no forgetting at all).

    Returns a dict of numpy arrays with keys ``n, l_after, l_max, l_before, rs, n_docs``.
    """
    L = _check_losses(eval_losses)
    cycles = _cycle_intervals(L, None if order is None else np.asarray(order))
    out = {k: [] for k in ("n", "l_after", "l_max", "l_before", "rs", "n_docs")}
    for n, items in enumerate(cycles, start=1):
        la, lm, lb = [], [], []
        for t, a, b in items:
            seg = L[a : b + 1, t]
            if not np.all(np.isfinite(seg)):
                continue
            la.append(seg[0])
            lm.append(seg.max())
            lb.append(seg[-1])
        if la:
            l_after, l_max, l_before = float(np.mean(la)), float(np.mean(lm)), float(np.mean(lb))
            den = l_max - l_after
            rs = (l_max - l_before) / den if den != 0 else math.nan
        else:
            l_after = l_max = l_before = rs = math.nan
        for key, val in zip(out, (n, l_after, l_max, l_before, rs, len(la))):
            out[key].append(val)
    return {
        "n": np.asarray(out["n"], dtype=np.int64),
        "l_after": np.asarray(out["l_after"], dtype=np.float64),
        "l_max": np.asarray(out["l_max"], dtype=np.float64),
        "l_before": np.asarray(out["l_before"], dtype=np.float64),
        "rs": np.asarray(out["rs"], dtype=np.float64),
        "n_docs": np.asarray(out["n_docs"], dtype=np.int64),
    }


def recovery_scores(eval_losses: np.ndarray, order: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
    """Recovery score RS(n) for n = 1, 2, … (docs/PROTOCOL.md §2.4); ``E − 1`` values for a cyclic run of E epochs.

    ``rs[n - 1] = (l_max(n) − l_before(n)) / (l_max(n) − l_after(n − 1))`` with the document averages of
    :func:`recovery_score_components`.  ``order=None`` means cyclic with ``T = eval_losses.shape[1]``; for a
    general (shuffled, filler) order each document's actual visit episodes are used.  The paper's headline
    "RS at epoch 4" (E = 5) is ``recovery_scores(L)[3]``.
    """
    return recovery_score_components(eval_losses, order)["rs"]


def per_document_recovery(eval_losses: np.ndarray, order: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
    """Per-document ratio ``(max − before) / (max − after)`` of shape ``(n_cycles, T)``, NaN where undefined.

    An extra diagnostic (not a paper metric; the paper averages before dividing, §2.4).
    """
    L = _check_losses(eval_losses)
    cycles = _cycle_intervals(L, None if order is None else np.asarray(order))
    out = np.full((len(cycles), L.shape[1]), np.nan)
    for i, items in enumerate(cycles):
        for t, a, b in items:
            seg = L[a : b + 1, t]
            den = seg.max() - seg[0]
            if np.all(np.isfinite(seg)) and den != 0:
                out[i, t] = (seg.max() - seg[-1]) / den
    return out


def positive_transfer_flag(
    eval_losses: np.ndarray,
    order: np.ndarray | Sequence[int] | None = None,
    rel_tol: float = 0.05,
) -> dict:
    """Flag cycles whose RS is not trustworthy because there was (almost) no forgetting (docs/PROTOCOL.md §2.4 footnote).

    Some randomly initialised models have losses that fall throughout the epoch (positive transfer between all
    documents): then ``l_max ≈ l_after`` and RS divides by ~0 or exceeds 1.  A cycle is flagged when

    * the relative forgetting ``(l_max − l_after) / |l_max|`` is below ``rel_tol``, or
    * ``l_before < l_after`` (the loss fell below its just-trained value: RS > 1), or RS is NaN.

    Returns a dict with numpy arrays ``flags`` (bool per cycle), ``rel_forgetting``, ``frac_docs_max_at_start``
    (share of documents whose in-cycle maximum is the just-trained loss, i.e. no rise at all) and the booleans
    ``any`` and ``last`` (the last cycle, the one the paper reports).
    """
    L = _check_losses(eval_losses)
    comp = recovery_score_components(L, order)
    den = np.abs(comp["l_max"])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(den > 0, (comp["l_max"] - comp["l_after"]) / den, 0.0)
    flags = (rel < rel_tol) | (comp["l_before"] < comp["l_after"]) | ~np.isfinite(comp["rs"])
    frac = []
    for items in _cycle_intervals(L, None if order is None else np.asarray(order)):
        at_start = [bool(L[a, t] >= L[a : b + 1, t].max()) for t, a, b in items]
        frac.append(float(np.mean(at_start)) if at_start else math.nan)
    flags = np.asarray(flags, dtype=bool)
    return {
        "flags": flags,
        "rel_forgetting": np.asarray(rel, dtype=np.float64),
        "frac_docs_max_at_start": np.asarray(frac, dtype=np.float64),
        "any": bool(flags.any()) if flags.size else False,
        "last": bool(flags[-1]) if flags.size else False,
    }


# ---------------------------------------------------------------------------------------------------------
# Curves (§2.2, §2.3)
# ---------------------------------------------------------------------------------------------------------


def _as_run_list(eval_losses_list_or_array, orders) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    if isinstance(eval_losses_list_or_array, np.ndarray) and eval_losses_list_or_array.ndim == 2:
        runs = [eval_losses_list_or_array]
        ords = [orders]
    else:
        if isinstance(eval_losses_list_or_array, np.ndarray) and eval_losses_list_or_array.ndim == 3:
            runs = list(eval_losses_list_or_array)
        elif isinstance(eval_losses_list_or_array, (list, tuple)):
            runs = list(eval_losses_list_or_array)
        else:
            runs = [np.asarray(eval_losses_list_or_array)]
        if orders is None:
            ords = [None] * len(runs)
        elif isinstance(orders, np.ndarray) and orders.ndim == 1:
            ords = [orders] * len(runs)
        else:
            ords = list(orders)
            if len(ords) != len(runs):
                raise ValueError(f"{len(runs)} loss tensors but {len(ords)} orders")
    return [_check_losses(L) for L in runs], ords


def shift_averaged(
    eval_losses_list_or_array,
    orders=None,
    include_tail: bool = False,
    return_counts: bool = False,
):
    """Shift-averaged loss curve S[s] (docs/PROTOCOL.md §2.3), averaged over documents and, if several runs, over runs.

    Each document's curve is re-aligned so that ``s = 0`` is the evaluation just before its **first** training:
    ``s = k − (k_1(t) − 1)``; for the cyclic order ``k_1(t) − 1 = t`` and ``S[s] = mean_t L[s + t, t]``
    (A.4's worked example).  Plot against ``x = s / T`` epochs.

    Parameters
    ----------
    eval_losses_list_or_array:
        one ``(K+1, T)`` tensor, a ``(R, K+1, T)`` stack or a list of ``(K_r+1, T)`` tensors (same T).
    orders:
        ``None`` (cyclic), one order used for every run, or a list with one order (or None) per run.
    include_tail:
        By default ``s ∈ [0, s_max]`` where ``s_max`` is one less than the smallest last-available shift over
        all (run, document) pairs — for a cyclic run of E epochs exactly ``(E − 1)·T``, the range docs/PROTOCOL.md §2.3
        recommends, where every document contributes.  With ``include_tail=True`` the curve continues up to
        the largest available shift (the ragged tail, fewer documents per point; see ``counts``).
    return_counts:
        also return the number of (run, document) values averaged at each s.

    Returns
    -------
    ``(s, mean, std)`` (or ``(s, mean, std, counts)``): std is the population std (ddof 0) over all
    pooled (run × document) values at each s — the paper's shading "std over seeds × documents".
    Documents never trained are left out; s < 0 is never shown.
    """
    runs, ords = _as_run_list(eval_losses_list_or_array, orders)
    Ts = {L.shape[1] for L in runs}
    if len(Ts) != 1:
        raise ValueError(f"shift_averaged needs runs with the same number of documents T, got {sorted(Ts)}")
    series = []  # (start index, values from s=0)
    for L, o in zip(runs, ords):
        K, T = L.shape[0] - 1, L.shape[1]
        visits = visit_episodes(as_order(o, K, T), T)
        for t in range(T):
            if len(visits[t]) == 0:
                continue
            start = int(visits[t][0]) - 1
            series.append(L[start:, t])
    if not series:
        raise ValueError("shift_averaged: no document was ever trained")
    lengths = np.array([len(v) for v in series])
    s_max = int(lengths.max() - 1) if include_tail else max(int(lengths.min() - 2), 0)
    n_s = s_max + 1
    stack = np.full((len(series), n_s), np.nan)
    for i, v in enumerate(series):
        m = min(len(v), n_s)
        stack[i, :m] = v[:m]
    counts = np.sum(np.isfinite(stack), axis=0).astype(np.int64)
    with np.errstate(invalid="ignore"), _np_warnings_off():
        mean = np.nanmean(stack, axis=0)
        std = np.nanstd(stack, axis=0)
    s = np.arange(n_s)
    if return_counts:
        return s, mean, std, counts
    return s, mean, std


class _np_warnings_off:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def doc_curve(eval_losses: np.ndarray, doc: int = 0, order: np.ndarray | Sequence[int] | None = None):
    """Loss curve of one document (docs/PROTOCOL.md §2.2, Fig 1a) and its "black circle" points.

    Returns ``(k, loss, before_visit_k, before_visit_loss)``: ``k = 0..K`` and ``loss = L[k, doc]``;
    ``before_visit_k = k_n(doc) − 1`` are the evaluations just before each (re)training, i.e.
    ``(n − 1)·T`` for doc 0 in the cyclic order, and ``before_visit_loss = L[before_visit_k, doc]``.
    Plot against ``k / T`` for an x-axis in epochs.
    """
    L = _check_losses(eval_losses)
    K, T = L.shape[0] - 1, L.shape[1]
    if not 0 <= doc < T:
        raise ValueError(f"doc must be in 0..{T - 1}, got {doc}")
    v = visit_episodes(as_order(order, K, T), T)[doc]
    before = (v - 1).astype(np.int64)
    return np.arange(K + 1), L[:, doc].copy(), before, L[before, doc].copy()


# ---------------------------------------------------------------------------------------------------------
# Online (prequential) loss (§2.5)
# ---------------------------------------------------------------------------------------------------------


def online_loss(
    train_losses: np.ndarray,
    M: int,
    order_or_T,
    first_epoch: int = 2,
    exclude_filler: bool = True,
) -> tuple[float, np.ndarray]:
    """Prequential online loss (docs/PROTOCOL.md §2.5, Fig 1c, Table 1).

    The online loss of episode ``k`` is the loss of the document about to be trained, before any update:
    ``train_losses[(k − 1)·M]`` (the first step of the episode).  Returns
    ``(mean over episodes of epochs ≥ first_epoch, per-episode array of length K)``.  Table 1 uses epochs
    2–5 (``first_epoch=2``; episodes T+1 … 5T for E = 5).

    ``order_or_T``: an int ``T`` (cyclic order; epoch of episode k is ``(k − 1)//T + 1``) or an order array
    (epochs from :func:`epoch_of_episode`).  Filler episodes (order −1, always-new documents) are excluded
    from the mean when ``exclude_filler``.  The mean is NaN when no episode qualifies.
    """
    tl = np.asarray(train_losses, dtype=np.float64).reshape(-1)
    if M <= 0:
        raise ValueError(f"M must be positive, got {M}")
    if tl.size % M:
        raise ValueError(f"train_losses has {tl.size} entries, not a multiple of M={M}")
    K = tl.size // M
    per_episode = tl[::M][:K]
    if isinstance(order_or_T, (int, np.integer)):
        order = np.arange(K) % int(order_or_T)
    else:
        order = np.asarray(order_or_T).astype(np.int64).reshape(-1)
        if order.shape[0] != K:
            raise ValueError(f"order has length {order.shape[0]} but train_losses has K={K} episodes of M={M}")
    keep = epoch_of_episode(order) >= first_epoch
    if exclude_filler:
        keep &= order >= 0
    mean = float(np.mean(per_episode[keep])) if keep.any() else math.nan
    return mean, per_episode


# ---------------------------------------------------------------------------------------------------------
# Revisit check for one document (shuffled baseline, Fig 1a)
# ---------------------------------------------------------------------------------------------------------


def revisit_recovery(
    eval_losses: np.ndarray,
    doc: int = 0,
    order: np.ndarray | Sequence[int] | None = None,
    tol: float = 0.05,
) -> dict:
    """Peak vs just-before-revisit loss of one document for every revisit (epochs e ≥ 2).

    For the e-th visit (e = 2..) of ``doc`` the interval is ``[k_{e−1}, k_e − 1]``; reported are the peak
    ``max L[k, doc]`` over it (and where it occurs), the loss ``before = L[k_e − 1, doc]`` just before the
    revisit, ``after = L[k_{e−1}, doc]`` and the relative drop ``(peak − before) / peak``.

    Acceptance check for the shuffled baseline (Fig 1a: "no recovery"): document 1's loss just before its
    last revisit is within ``tol`` (5 %) of its peak in that epoch, i.e. ``rel_drop[-1] ≤ tol`` →
    ``no_recovery_at_last_revisit``.
    """
    L = _check_losses(eval_losses)
    K, T = L.shape[0] - 1, L.shape[1]
    v = visit_episodes(as_order(order, K, T), T)[doc]
    res: dict[str, Any] = {k: [] for k in ("epoch", "peak", "peak_k", "before", "before_k", "after", "rel_drop")}
    for e in range(2, len(v) + 1):
        a, b = int(v[e - 2]), int(v[e - 1]) - 1
        seg = L[a : b + 1, doc]
        i = int(np.nanargmax(seg)) if np.any(np.isfinite(seg)) else 0
        peak = float(seg[i])
        before = float(seg[-1])
        res["epoch"].append(e)
        res["peak"].append(peak)
        res["peak_k"].append(a + i)
        res["before"].append(before)
        res["before_k"].append(b)
        res["after"].append(float(seg[0]))
        res["rel_drop"].append((peak - before) / peak if peak != 0 else math.nan)
    out = {k: np.asarray(val) for k, val in res.items()}
    last = float(out["rel_drop"][-1]) if len(out["rel_drop"]) else math.nan
    out["doc"] = doc
    out["tol"] = tol
    out["last_rel_drop"] = last
    out["no_recovery_at_last_revisit"] = bool(last <= tol) if np.isfinite(last) else False
    return out


# ---------------------------------------------------------------------------------------------------------
# Gram-matrix statistics (§2.7–§2.11)
# ---------------------------------------------------------------------------------------------------------


def _check_gram(G: np.ndarray) -> np.ndarray:
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"a Gram matrix must be square, got shape {G.shape}")
    return 0.5 * (G + G.T)


def cosine_from_gram(G: np.ndarray) -> np.ndarray:
    """Cosine-similarity matrix ``G[i,j] / sqrt(G[i,i] G[j,j])`` (§2.7–§2.9); NaN for zero-norm vectors."""
    G = _check_gram(G)
    d = np.sqrt(np.clip(np.diag(G), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        C = G / np.outer(d, d)
    C[~np.isfinite(C)] = np.nan
    return np.clip(C, -1.0, 1.0, where=np.isfinite(C), out=C)


def _window_matrix(n: int, window: int, literal: bool) -> np.ndarray:
    h = int(window) // 2
    A = np.zeros((n, n))
    for t in range(n):
        lo, hi = max(0, t - h), min(n - 1, t + h)
        A[t, lo : hi + 1] = 1.0 / (window if literal else hi - lo + 1)
    return A


def residual_gram(G: np.ndarray, window: int, literal: bool = False) -> np.ndarray:
    """Gram matrix of the weight residuals of docs/PROTOCOL.md §2.8, computed from the Gram matrix of the states only.

    ``w_res(t) = w(t) − mean{ w(n) : t − ⌊window/2⌋ ≤ n ≤ t + ⌊window/2⌋ }`` with ``window = T``: the residual
    is a linear combination ``R w`` of the states (``R = I − A``, ``A`` the moving-average matrix), so its Gram
    matrix is ``R G Rᵀ``.  Row/col ``t`` of ``G`` is the state after episode ``t`` (``t = 0..K``).

    Edges: the window is **clipped** to the available states ``[0, K]`` and the mean is over the states that
    exist, so residuals near the ends use a shorter, one-sided window (Fig 8c shows epochs 2–4, whose windows
    are complete when epochs 1 and 5 are present).  ``literal=True`` divides the (clipped) sum by ``window``
    instead of by the number of terms, as the paper's formula is written (T + 1 terms over T).

    Take the cosine with :func:`cosine_from_gram` and slice epochs with :func:`epoch_slice`.
    """
    G = _check_gram(G)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    R = np.eye(G.shape[0]) - _window_matrix(G.shape[0], window, literal)
    return R @ G @ R.T


def pca_from_gram(G: np.ndarray, k: int = 3, indices: Sequence[int] | np.ndarray | None = None):
    """Exact PCA of the (centred) states from their Gram matrix (§2.10, Fig 9).

    With ``J = I − 11ᵀ/n`` the centred Gram matrix is ``Gc = J G J = Xc Xcᵀ``; its eigen-decomposition
    ``Gc = U Λ Uᵀ`` gives the principal-component coordinates ``Xc V_k = U_k Λ_k^{1/2}`` (same as sklearn's
    ``PCA(k).fit_transform(X)`` up to the sign of each component) without materialising ``X``.

    ``indices`` selects the states first (e.g. ``range(1, 3*T + 1)`` for the first 3 epochs).
    Signs are fixed so that the largest-magnitude coordinate of each component is positive.

    Returns ``(coords of shape (n, k), explained_variance_ratio of shape (k,))`` where the ratio is relative to
    the total variance of the selected states.
    """
    G = _check_gram(G)
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64)
        G = G[np.ix_(idx, idx)]
    n = G.shape[0]
    J = np.eye(n) - np.full((n, n), 1.0 / n)
    Gc = J @ G @ J
    Gc = 0.5 * (Gc + Gc.T)
    lam, U = np.linalg.eigh(Gc)
    lam, U = lam[::-1], U[:, ::-1]
    lam = np.clip(lam, 0.0, None)
    kk = min(k, n)
    coords = U[:, :kk] * np.sqrt(lam[:kk])
    for j in range(kk):
        i = int(np.argmax(np.abs(coords[:, j])))
        if coords[i, j] < 0:
            coords[:, j] *= -1
    total = lam.sum()
    ratio = lam[:kk] / total if total > 0 else np.zeros(kk)
    if kk < k:  # pad so the shapes are always (n, k)
        coords = np.concatenate([coords, np.zeros((n, k - kk))], axis=1)
        ratio = np.concatenate([ratio, np.zeros(k - kk)])
    return coords, ratio


def update_magnitudes_from_gram(G: np.ndarray) -> np.ndarray:
    """``||w(k) − w(k−1)||₂`` for k = 1..K from the Gram matrix (§2.11, Fig 22b).

    ``||w(k) − w(k−1)||² = G[k,k] + G[k−1,k−1] − 2 G[k,k−1]``, clipped at 0.  This subtracts numbers of order
    ``||w||²``: the Gram matrix must be accumulated in float64 for small updates of large models; prefer the
    probe's direct ``weight_diff_norms`` when it exists.
    """
    G = _check_gram(G)
    d = np.diag(G)
    sq = d[1:] + d[:-1] - 2.0 * np.diag(G, k=1)
    return np.sqrt(np.clip(sq, 0.0, None))


def epoch_slice(T: int, first_epoch: int, last_epoch: int) -> slice:
    """Rows of a (K+1)-indexed tensor or Gram matrix for episodes of epochs ``first..last`` (1-based, cyclic).

    Epoch e consists of episodes ``(e − 1)·T + 1 … e·T``; e.g. Fig 8c's epochs 2–4 are ``slice(T+1, 4T+1)``.
    """
    if first_epoch < 1 or last_epoch < first_epoch:
        raise ValueError(f"bad epoch range {first_epoch}..{last_epoch}")
    return slice((first_epoch - 1) * T + 1, last_epoch * T + 1)


def pairwise_normalized(R: np.ndarray, diagonal: str = "nan", scale: str = "maxabs") -> np.ndarray:
    """Pairwise recovery matrix R[i, j] (§2.6; row = trained doc i, column = evaluated doc j) for display.

    ``diagonal``: ``"nan"`` masks i = j (training on x_j itself dominates the colour scale; how the paper showed
    the diagonal is UNCONFIRMED), ``"zero"`` sets it to 0, ``"keep"`` leaves it.  ``scale``: ``"maxabs"``
    divides by the largest off-diagonal |R| (values in [−1, 1]), ``"row"`` divides each row by its own
    off-diagonal max |R|, ``"none"`` leaves the units (loss differences).
    """
    R = np.array(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"pairwise matrix must be square, got {R.shape}")
    off = R.copy()
    np.fill_diagonal(off, np.nan)
    if diagonal == "nan":
        R = off.copy()
    elif diagonal == "zero":
        np.fill_diagonal(R, 0.0)
    elif diagonal != "keep":
        raise ValueError(f"diagonal must be nan|zero|keep, got {diagonal!r}")
    with _np_warnings_off(), np.errstate(invalid="ignore", divide="ignore"):
        if scale == "maxabs":
            m = np.nanmax(np.abs(off))
            if np.isfinite(m) and m > 0:
                R = R / m
        elif scale == "row":
            m = np.nanmax(np.abs(off), axis=1, keepdims=True)
            m[~np.isfinite(m) | (m == 0)] = 1.0
            R = R / m
        elif scale != "none":
            raise ValueError(f"scale must be maxabs|row|none, got {scale!r}")
    return R


def pairwise_offset_profile(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``R[i, (i + d) mod T]`` over i for each cyclic offset ``d = 0..T−1`` (who helps whom, Fig 8b)."""
    R = np.asarray(R, dtype=np.float64)
    T = R.shape[0]
    i = np.arange(T)
    prof = np.array([np.nanmean(R[i, (i + d) % T]) for d in range(T)])
    return np.arange(T), prof


# ---------------------------------------------------------------------------------------------------------
# Summary (called by the engine, written to summary.json)
# ---------------------------------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays (recursively) to JSON-serialisable Python values; NaN/inf → None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def summarize(
    eval_losses: np.ndarray,
    train_losses: np.ndarray | None,
    order: np.ndarray | Sequence[int] | None,
    M: int,
    first_epoch: int = 2,
    doc: int = 0,
) -> dict:
    """All scalar metrics of one run as a JSON-serialisable dict (NaN → None). Keys:

    * ``T, K, M, E`` (E = number of epochs from :func:`epoch_of_episode`), ``n_cycles``
    * ``recovery_scores`` (RS(n), n = 1..) and ``rs_last`` (the paper's reported cycle, §2.4)
    * ``recovery_components``: ``n, l_after, l_max, l_before, n_docs`` per cycle
    * ``positive_transfer``: ``flags, rel_forgetting, frac_docs_max_at_start, any, last`` (§2.4 footnote)
    * ``online_loss``: ``mean`` over epochs ≥ ``first_epoch`` (§2.5, Table 1), ``first_epoch``,
      ``per_epoch`` means (epoch 1, 2, …); ``None`` when ``train_losses`` is None
    * ``revisit_doc0``: :func:`revisit_recovery` of document ``doc`` (shuffled-baseline check)
    * ``mean_loss_initial``, ``mean_loss_final``: document-mean loss of rows 0 and K
    """
    L = _check_losses(eval_losses)
    K, T = L.shape[0] - 1, L.shape[1]
    o = as_order(order, K, T)
    comp = recovery_score_components(L, o)
    pt = positive_transfer_flag(L, o)
    rev = revisit_recovery(L, doc=doc, order=o)
    epochs = epoch_of_episode(o)
    out: dict[str, Any] = {
        "T": T,
        "K": K,
        "M": int(M),
        "E": int(epochs.max()) if epochs.size else 0,
        "n_cycles": int(comp["rs"].shape[0]),
        "recovery_scores": comp["rs"],
        "rs_last": comp["rs"][-1] if comp["rs"].size else None,
        "recovery_components": {k: comp[k] for k in ("n", "l_after", "l_max", "l_before", "n_docs")},
        "positive_transfer": pt,
        "revisit_doc0": rev,
        "mean_loss_initial": float(np.mean(L[0])),
        "mean_loss_final": float(np.mean(L[-1])),
    }
    if train_losses is not None and np.asarray(train_losses).size:
        mean, per_ep = online_loss(train_losses, M, o, first_epoch=first_epoch)
        per_epoch = []
        for e in range(1, int(epochs.max()) + 1 if epochs.size else 1):
            sel = (epochs == e) & (o >= 0)
            per_epoch.append(float(np.mean(per_ep[sel])) if sel.any() else math.nan)
        out["online_loss"] = {"mean": mean, "first_epoch": first_epoch, "per_epoch": per_epoch}
    else:
        out["online_loss"] = None
    return jsonable(out)
