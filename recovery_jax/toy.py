"""The paper's computational toy model of anticipatory recovery (docs/PROTOCOL.md §4; Sec 4.4, App. A.5; Figs 10–11).

Tasks i = 1..T are single points ``x_i ∈ R^N``.  A slow projection ``P ∈ R^{dim×N}`` and a fast vector
``w ∈ R^dim`` are learned; task i has the invertible map ``f_i`` and loss ``ℓ_i(P, w) = ½‖P x_i − f_i(w)‖²``.
One training step on task i (tasks visited 1..T, cycled over epochs):

1. slow update with the *current* w (left over from the previous task): ``P ← P − α ∇_P ℓ_i = P − α (P x_i − f_i(w)) x_iᵀ``
2. fast solve with the new P: ``w ← f_i⁻¹(P x_i)``, so ℓ_i = 0 right after the step.

Variants: ``"identity"`` (f_i(w) = w, w ← P x_i) and ``"affine"`` (f_i(w) = y_i − w, w ← y_i − P x_i).
Initialisation (A.5): P entries ~ N(0, 1/N²), entries of x_i, y_i and the initial w ~ Unif(−1, 1).

Defaults follow the paper: identity N = dim = 1000, affine N = dim = 100, T = 25, lr 0.01 — except that the
identity variant **diverges at the literal lr 0.01** (α‖x‖² ≈ 0.01·1000/3 ≈ 3.3 > 2, docs/PROTOCOL.md §4), so its default
lr here is 0.001; ``--literal`` restores 0.01 and the run stops with a :class:`ToyDivergenceError`.

``reduction``: ``"sum"`` is the paper's ½‖r‖²; ``"mean"`` is ``torch.nn.MSELoss``'s mean(r²) (gradient
``(2/dim) r xᵀ``), one of the readings that keeps variant (a) stable (UNCONFIRMED which the authors used).

The run is recorded in the engine's format (each step is one "episode" with M = 1): ``eval_losses`` (K+1, T)
with the loss of every task after every step (row 0 before training), ``train_losses`` (K,) the loss of the
task being trained before its update, ``order`` (K,), so :func:`recovery_jax.metrics.recovery_scores` applies.
The states ``f_i⁻¹(P x_i)`` of all tasks are recorded at the end of every epoch (epoch 0 = before training)
for the ring PCA of Fig 11.

CLI: ``python -m recovery_jax.toy --variant affine --epochs 20 --out DIR``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from recovery_jax import cli, metrics
from recovery_jax.config import ConfigError

__all__ = ["ToyConfig", "ToyResult", "ToyDivergenceError", "default_config", "validate", "config_record",
           "run_toy", "save_toy", "main"]

VARIANTS = ("identity", "affine")
REDUCTIONS = ("sum", "mean")


class ToyDivergenceError(RuntimeError):
    """The toy model's losses blew up (gradient-descent step too large)."""


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return dataclasses.field(default=default, metadata={"choices": choices})


def _integer(default: int, lo: int, what: str) -> Any:
    return dataclasses.field(default=default, metadata={"lo": lo, "what": what})


def _positive(default: float, what: str) -> Any:
    return dataclasses.field(default=default, metadata={"positive": True, "what": what})


@dataclasses.dataclass
class ToyConfig:
    """One toy run. A field's metadata is the rule `validate` holds it to (its command-line flag is --<field>)."""

    variant: str = _choice("affine", VARIANTS)
    N: int = _integer(100, 1, "the input dimension")
    dim: int = _integer(100, 1, "the embedding dimension")
    T: int = _integer(25, 2, "the number of tasks (one task has nothing to interfere with)")
    epochs: int = _integer(20, 1, "the number of epochs (RS needs >= 2)")
    lr: float = _positive(0.01, "the learning rate")
    reduction: str = _choice("sum", REDUCTIONS)
    seed: int = _integer(0, 0, "the seed")
    literal: bool = False
    # a loss above factor × (initial mean loss) counts as divergence
    divergence_factor: float = _positive(1e8, "the divergence factor")


def default_config(variant: str = "affine", literal: bool = False, **overrides) -> ToyConfig:
    """Paper defaults (A.5): identity N=dim=1000 (lr 0.001, or 0.01 with ``literal``), affine N=dim=100 lr 0.01."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "identity":
        cfg = ToyConfig(variant=variant, N=1000, dim=1000, lr=0.01 if literal else 0.001, literal=literal)
    else:
        cfg = ToyConfig(variant=variant, N=100, dim=100, lr=0.01, literal=literal)
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _memory_bytes(cfg: ToyConfig) -> int:
    """Peak float64 memory of run_toy: P and X (N columns), the (T, dim) task arrays, the recorded
    states (epochs+1, T, dim) and losses (K+1, T)."""
    N, D, T, E = cfg.N, cfg.dim, cfg.T, cfg.epochs
    return 8 * (D * N + T * N + 4 * T * D + T * T + (E + 1) * T * D + (E * T + 1) * (T + 1))


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def validate(cfg: ToyConfig) -> ToyConfig:
    """Reject, before any work, what would crash the run or quietly give NaN or empty results
    (no task, a zero-dimensional state, no epoch); each message names the value and the valid range."""
    for field in dataclasses.fields(cfg):
        name, value, rule = field.name, getattr(cfg, field.name), field.metadata
        if "choices" in rule and value not in rule["choices"]:
            raise ConfigError(f"--{name} {value!r} is not valid; choose one of: {', '.join(rule['choices'])}")
        integer = not isinstance(value, bool) and isinstance(value, (int, np.integer))
        if "lo" in rule and (not integer or value < rule["lo"]):
            raise ConfigError(f"--{name} {value!r} is not valid: {rule['what']} must be an integer >= {rule['lo']}")
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if rule.get("positive") and (not number or value <= 0):
            raise ConfigError(f"--{name} {value!r} is not valid: {rule['what']} must be a finite number > 0")
    need, have = _memory_bytes(cfg), _physical_memory()
    if have and need > 0.8 * have:
        raise ConfigError(f"toy model with N={cfg.N}, dim={cfg.dim}, T={cfg.T}, epochs={cfg.epochs} needs "
                          f"~{need / 2**30:.1f} GiB; this machine has {have / 2**30:.1f} GiB: lower --N, --dim, "
                          f"--T or --epochs")
    return cfg


def config_record(cfg: ToyConfig) -> dict:
    """The config.json of a toy run: the toy's fields, plus the protocol keys the report reads (T, M=1, E)."""
    return {"kind": "toy", "toy": dataclasses.asdict(cfg), "seed": cfg.seed, "T": cfg.T, "M": 1, "E": cfg.epochs}


@dataclasses.dataclass
class ToyResult:
    config: ToyConfig
    eval_losses: np.ndarray  # (K+1, T)
    train_losses: np.ndarray  # (K,)
    order: np.ndarray  # (K,)
    states: np.ndarray  # (epochs+1, T, dim): f_i^{-1}(P x_i) at the end of each epoch (0 = init)
    stability: float  # max_i α_eff ‖x_i‖²; > 2 means the P update overshoots

    @property
    def recovery_scores(self) -> np.ndarray:
        return metrics.recovery_scores(self.eval_losses, self.order)


def run_toy(cfg: ToyConfig, progress: Callable[[str], None] | None = None) -> ToyResult:
    """Train the toy model for ``cfg.epochs`` epochs and record all losses (numpy, float64).

    Raises :class:`ToyDivergenceError` when a loss becomes non-finite or exceeds
    ``cfg.divergence_factor`` × the initial mean loss.
    """
    validate(cfg)
    rng = np.random.default_rng(cfg.seed)
    N, D, T = cfg.N, cfg.dim, cfg.T
    P = rng.normal(0.0, 1.0 / N, size=(D, N))
    X = rng.uniform(-1.0, 1.0, size=(T, N))  # rows x_i
    w = rng.uniform(-1.0, 1.0, size=D)
    Y = rng.uniform(-1.0, 1.0, size=(T, D)) if cfg.variant == "affine" else np.zeros((T, D))
    affine = cfg.variant == "affine"
    # loss(r) = ½‖r‖² ("sum") or mean(r²) ("mean"); dℓ/dr = r or (2/D) r
    scale_loss, scale_grad = (0.5, 1.0) if cfg.reduction == "sum" else (1.0 / D, 2.0 / D)
    stability = float(cfg.lr * scale_grad * np.max(np.sum(X * X, axis=1)))

    # Only the products P x_j enter the losses, the fast solve and the states, so the run tracks
    # PX = X Pᵀ (T × dim) instead of P (dim × N): the update P ← P − α r x_iᵀ becomes
    # PX ← PX − α (X x_i) rᵀ, with X x_i a column of the Gram matrix X Xᵀ.  O(T·dim) per step, exact.
    PX = X @ P.T
    XX = X @ X.T
    del P

    def f(w_):  # f_i(w) for all tasks, shape (T, D)
        return Y - w_[None, :] if affine else np.broadcast_to(w_, (T, D))

    def all_losses(PX_, w_):
        R = PX_ - f(w_)
        return scale_loss * np.sum(R * R, axis=1)

    def states(PX_):  # f_i^{-1}(P x_i)
        return Y - PX_ if affine else PX_.copy()

    K = cfg.epochs * T
    order = metrics.cyclic_order(T, cfg.epochs).astype(np.int32)
    eval_losses = np.empty((K + 1, T))
    train_losses = np.empty(K)
    st = np.empty((cfg.epochs + 1, T, D))
    eval_losses[0] = all_losses(PX, w)
    st[0] = states(PX)
    limit = cfg.divergence_factor * max(float(np.mean(eval_losses[0])), 1e-12)
    t0 = time.time()
    for k in range(1, K + 1):
        i = int(order[k - 1])
        r = PX[i] - (Y[i] - w if affine else w)  # P x_i − f_i(w)
        train_losses[k - 1] = scale_loss * float(r @ r)
        PX -= (cfg.lr * scale_grad) * np.outer(XX[:, i], r)  # slow update of P, seen through X
        w = Y[i] - PX[i] if affine else PX[i].copy()  # fast solve w = f_i^{-1}(P x_i)
        eval_losses[k] = all_losses(PX, w)
        worst = float(np.max(eval_losses[k]))
        if not math.isfinite(worst) or worst > limit:
            e = (k - 1) // T + 1
            raise ToyDivergenceError(
                f"toy model ({cfg.variant}, N={N}, dim={D}, lr={cfg.lr}, reduction={cfg.reduction}) diverged at "
                f"step {k} (epoch {e}): max task loss {worst:.3g} > {cfg.divergence_factor:.0e} × initial mean "
                f"loss. The P update multiplies P x_i by (1 − α_eff‖x_i‖²) with α_eff‖x_i‖² up to {stability:.2f} "
                f"> 2, so it overshoots. docs/PROTOCOL.md §4: the literal Fig 10(a) setting (lr 0.01, N=1000, ½-sum loss) "
                f"diverges; use lr 0.001 (the default without --literal) or --reduction mean."
            )
        if k % T == 0:
            e = k // T
            st[e] = states(PX)
            if progress is not None:
                rs = metrics.recovery_scores(eval_losses[: k + 1], order[:k])
                rs_txt = f"  RS({len(rs)})={rs[-1]:.3f}" if len(rs) else ""
                progress(
                    f"epoch {e:3d}/{cfg.epochs}  mean task loss {np.mean(eval_losses[k]):.4g}  "
                    f"task-1 loss {eval_losses[k, 0]:.4g}{rs_txt}  ({time.time() - t0:.1f}s)"
                )
    return ToyResult(cfg, eval_losses, train_losses, order, st, stability)


def save_toy(result: ToyResult, out: str | Path, plots: bool = True) -> dict:
    """Write ``config.json``, ``losses.npz``, ``toy_states.npz``, ``summary.json`` and (optionally) the
    task-1 loss plots (Fig 10: whole run on a symlog axis, and the last 3 epochs on a linear axis) and the
    ring PCA plot (Fig 11) to ``out``; returns the summary dict.

    The directory is a valid run directory for :func:`recovery_jax.rundir.load_run` / the report.
    """
    from recovery_jax.rundir import write_json_atomic, write_npz_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    write_json_atomic(out / "config.json", config_record(cfg))
    write_npz_atomic(
        out / "losses.npz",
        eval_losses=result.eval_losses.astype(np.float32),
        train_losses=result.train_losses.astype(np.float32),
        order=result.order.astype(np.int32),
    )
    write_npz_atomic(out / "toy_states.npz", states=result.states.astype(np.float32))
    summary = metrics.summarize(result.eval_losses, result.train_losses, result.order, M=1)
    summary["toy"] = {"variant": cfg.variant, "stability_alpha_x2": result.stability, "lr": cfg.lr}
    write_json_atomic(out / "summary.json", summary)
    if plots:
        from recovery_jax import plots as P

        name = out.name or str(out)
        series = [(f"task 1 ({cfg.variant})", result.eval_losses, result.order)]
        fig = P.plot_doc_curve(series, doc=0, ylabel="task loss", logy=True,
                               title=f"{name}: toy model ({cfg.variant}) — loss of task 1 (Fig 10)")
        P.save_figure(fig, out / "toy_task1_loss.png")
        e0 = max(cfg.epochs - 3, 0)
        fig = P.plot_doc_curve(series, doc=0, ylabel="task loss", epochs_range=(e0, cfg.epochs),
                               title=f"{name}: toy model ({cfg.variant}) — task 1, epochs {e0}–{cfg.epochs}")
        P.save_figure(fig, out / "toy_task1_loss_late.png")
        fig = plot_toy_ring(result, title=f"{name}: toy model ({cfg.variant}) — PCA of f_i⁻¹(P x_i) (Fig 11)")
        P.save_figure(fig, out / "toy_pca_ring.png")
    return summary


def ring_epochs(epochs: int) -> list[int]:
    """Epochs shown in the Fig 11 panels: 0 (before training), 1, 2, 5, 10, 20, 50, 100 up to ``epochs``."""
    cand = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    sel = [e for e in cand if e <= epochs]
    if epochs not in sel:
        sel.append(epochs)
    return sel


def plot_toy_ring(result: ToyResult, title: str, epochs: list[int] | None = None):
    """Fig 11: one 2-D PCA panel per selected epoch of the points f_i⁻¹(P x_i), i = 1..T (PCA fit per epoch)."""
    from recovery_jax import plots as P

    sel = epochs if epochs is not None else ring_epochs(result.config.epochs)
    panels = []
    for e in sel:
        S = result.states[e]
        coords, ratio = metrics.pca_from_gram(S @ S.T, k=2)
        panels.append((f"epoch {e}" + (" (init)" if e == 0 else ""), coords, ratio))
    return P.plot_ring_panels(panels, title=title)


def main(argv: list[str] | None = None) -> int:
    ap = cli.ArgumentParser(
        prog="python -m recovery_jax.toy",
        description="Computational toy model of anticipatory recovery (docs/PROTOCOL.md §4, Figs 10-11).",
    )
    ap.add_argument("--variant", choices=VARIANTS, default="affine", help="identity: f=id; affine: f_i(w)=y_i-w")
    ap.add_argument("--N", type=int, default=None, help="input dimension (default 1000 identity / 100 affine)")
    ap.add_argument("--dim", type=int, default=None, help="embedding dimension M (default = N)")
    ap.add_argument("--T", type=int, default=None, help="number of tasks (default 25)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default 20)")
    ap.add_argument("--lr", type=float, default=None, help="GD learning rate (default 0.001 identity / 0.01 affine)")
    ap.add_argument("--reduction", choices=REDUCTIONS, default=None, help="sum: ½‖r‖² (paper); mean: mean(r²)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--literal",
        action="store_true",
        help="identity variant: use the paper's literal lr 0.01 (diverges; detected and reported)",
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args(argv)
    cli.check_out_dir(args.out, "--out")
    cfg = validate(default_config(
        args.variant,
        literal=args.literal,
        N=args.N,
        dim=args.dim if args.dim is not None else args.N,
        T=args.T,
        epochs=args.epochs,
        lr=args.lr,
        reduction=args.reduction,
        seed=args.seed,
    ))
    print(
        f"toy model: variant={cfg.variant} N={cfg.N} dim={cfg.dim} T={cfg.T} epochs={cfg.epochs} lr={cfg.lr} "
        f"reduction={cfg.reduction} seed={cfg.seed}",
        flush=True,
    )
    try:
        res = run_toy(cfg, progress=lambda s: print(s, flush=True))
    except ToyDivergenceError as e:
        print(f"DIVERGED: {e}", file=sys.stderr, flush=True)
        return 1
    summary = save_toy(res, args.out, plots=not args.no_plots)
    rs = summary["recovery_scores"]
    print("RS(n) = " + ", ".join(f"{v:.3f}" if v is not None else "nan" for v in rs), flush=True)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
