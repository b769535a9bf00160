"""Report: figures and a markdown summary for one or several run directories.

    python -m recovery_jax.report RUN_DIR [RUN_DIR ...] --out DIR

For every run: the document-1 curve (Fig 1a), the shift-averaged curve (Fig 1b), the loss heat map, RS per
cycle, the online loss (Fig 1c) and, when ``probes.npz`` exists, the pairwise / gradient / weight-residual /
activation heat maps (Fig 8), the PCA trajectory (Fig 9) and the update magnitudes (Fig 22).  For several runs
the configs are compared (flattened dotted keys, workdir-like keys ignored): runs that differ only in seed
keys form a group (mean ± std), groups are overlaid, and RS is plotted against each config key that varies.
All numbers are recomputed from ``losses.npz`` with :mod:`recovery_jax.metrics` (PAPER.md §2).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recovery_jax import metrics
from recovery_jax.results import Run, RunDirError, load_run

__all__ = ["flatten_config", "varying_keys", "is_ignored_key", "is_seed_key", "group_runs", "build_report", "main"]

# Last components of flattened config keys that name places or bookkeeping, not experimental conditions.
_IGNORED_NAMES = {
    "out", "output", "outdir", "workdir", "run_dir", "rundir", "run_name", "name_suffix", "tag", "tags",
    "timestamp", "time", "date", "host", "hostname", "notes", "note", "comment", "git_commit", "git_sha",
    "commit", "run_id", "uuid", "started", "finished", "created", "version", "cache", "log_every",
    "progress", "verbose", "print_every",
}
_IGNORED_RE = re.compile(r"(^|_)(dir|path|paths|root|file|filename)$")


def is_ignored_key(key: str) -> bool:
    """True for workdir-like keys (``workdir``, ``out_dir``, ``*.cache_dir``, ``*_path``, timestamps…)."""
    last = key.split(".")[-1].lower()
    return last in _IGNORED_NAMES or bool(_IGNORED_RE.search(last))


def is_seed_key(key: str) -> bool:
    """True for keys whose last component names a seed (``seed``, ``data.seed``, ``order.shuffle_seed``)."""
    return "seed" in key.split(".")[-1].lower()


def flatten_config(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict → {dotted key: leaf value}; lists are kept as leaves."""
    out: dict[str, Any] = {}
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten_config(v, key))
            else:
                out[key] = v
    else:
        out[prefix or "value"] = cfg
    return out


def _with_config_defaults(run: Run) -> Run:
    """Fill keys a run's config.json lacks (written by an older version) with today's defaults, so that
    a key added since does not show up as a difference between runs. Toy-model runs are left alone."""
    if isinstance(run.config, dict) and "optim" in run.config and "model" in run.config:
        from recovery_jax.config import with_defaults
        run.config = with_defaults(run.config)
    return run


def _hashable(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def varying_keys(configs: Sequence[dict]) -> list[str]:
    """Flattened keys whose values differ between configs (a key missing in some config counts as differing),
    excluding workdir-like keys; in first-appearance order."""
    flats = [flatten_config(c) for c in configs]
    keys: list[str] = []
    for f in flats:
        for k in f:
            if k not in keys:
                keys.append(k)
    out = []
    for k in keys:
        if is_ignored_key(k):
            continue
        vals = {_hashable(f.get(k, "<missing>")) for f in flats}
        if len(vals) > 1:
            out.append(k)
    return out


def group_runs(runs: Sequence[Run]) -> tuple[list[str], "OrderedDict[tuple, list[int]]"]:
    """Group runs that differ only in seed keys. Returns (non-seed varying keys, {group key: run indices})
    where the group key is the tuple of (key, value-json) for the non-seed varying keys."""
    keys = [k for k in varying_keys([r.config for r in runs]) if not is_seed_key(k)]
    flats = [flatten_config(r.config) for r in runs]
    groups: "OrderedDict[tuple, list[int]]" = OrderedDict()
    for i, f in enumerate(flats):
        gk = tuple((k, _hashable(f.get(k))) for k in keys)
        groups.setdefault(gk, []).append(i)
    return keys, groups


def _group_label(gk: tuple, maxlen: int = 60) -> str:
    if not gk:
        return "all runs"
    s = ", ".join(f"{k}={json.loads(v)}" for k, v in gk)
    return s if len(s) <= maxlen else s[: maxlen - 1] + "…"


def _group_label_trunc(s: str, maxlen: int = 60) -> str:
    return s if len(s) <= maxlen else s[: maxlen - 1] + "…"


def _fmt(v: Any, nd: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "—" if not math.isfinite(float(v)) else f"{float(v):.{nd}f}"
    return str(v)


def _fmt_cfg(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and not isinstance(v, bool):
        return f"{float(v):g}"
    if v is None:
        return "—"
    return str(v)


def _pm(vals: Sequence[float | None], nd: int = 3) -> str:
    arr = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return "—"
    if arr.size == 1:
        return f"{arr[0]:.{nd}f}"
    return f"{arr.mean():.{nd}f} ± {arr.std():.{nd}f}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def _run_summary(run: Run, doc: int) -> dict:
    train = run.train_losses if run.train_losses.size else None
    return metrics.summarize(run.eval_losses, train, run.order, run.M, doc=doc)


def _run_figures(run: Run, label: str, summ: dict, out: Path, doc: int) -> list[tuple[str, str]]:
    """Write all figures available from one run; returns [(caption, file name)]."""
    from recovery_jax import plots as P

    figs: list[tuple[str, str]] = []
    T, base = run.T, _safe(label)

    def save(fig, stem: str, caption: str):
        fn = f"{base}_{stem}.png"
        P.save_figure(fig, out / fn)
        figs.append((caption, fn))

    save(P.plot_doc_curve([(label, run.eval_losses, run.order)], doc=doc,
                          title=f"{label}: loss of document {doc + 1}"),
         f"doc{doc + 1}", f"Loss of document {doc + 1} (Fig 1a); black circles: just before each (re)training")
    save(P.plot_shift_averaged([(label, run.eval_losses, run.order)], title=f"{label}: shift-averaged loss"),
         "shift_averaged", "Shift-averaged loss, ±std over documents (Fig 1b)")
    save(P.plot_loss_heatmap(run.eval_losses, title=f"{label}: eval loss of every document"),
         "loss_heatmap", "Loss of every document after every episode")
    rs = summ["recovery_scores"]
    if rs:
        save(P.plot_recovery_scores({label: np.array([np.nan if v is None else v for v in rs])},
                                    title=f"{label}: recovery score per cycle"),
             "rs", "Recovery score per cycle (§2.4)")
    if run.train_losses.size:
        _, pe = metrics.online_loss(run.train_losses, run.M, run.order)
        save(P.plot_online_loss([(label, pe, T)], title=f"{label}: online (prequential) loss"),
             "online_loss", "Online loss: first-step training loss of each episode (§2.5)")
    pr = run.probes or {}
    if "pairwise" in pr:
        save(P.plot_pairwise(pr["pairwise"], title=f"{label}: pairwise recovery (diagonal masked)"),
             "pairwise", "Pairwise recovery R[i, j] (Fig 8b)")
    if "grads_gram" in pr:
        save(P.plot_grads_cosine(pr["grads_gram"], title=f"{label}: gradient cosine similarity"),
             "grads_cosine", "Gradient cosine similarity (Fig 8a)")
    if "weight_gram" in pr and pr["weight_gram"].shape[0] > T:
        Gw = pr["weight_gram"]
        save(P.plot_weight_residual_cosine(Gw, T, title=f"{label}: weight-residual cosine"),
             "weight_residual_cosine", "Weight-residual cosine, epochs 2-4 (Fig 8c)")
    pca_gram = pr.get("embed_out_gram", pr.get("weight_gram"))
    if pca_gram is not None and pca_gram.shape[0] >= 4:
        which = "embed_out" if "embed_out_gram" in pr else "all weights"
        save(P.plot_pca_trajectory(pca_gram, T, n_epochs=3, dims=3, order=run.order,
                                   title=f"{label}: PCA of {which} (first 3 epochs)"),
             "pca", f"PCA trajectory of {which} (Fig 9)")
    if "activations_gram" in pr:
        d = int(pr.get("act_doc", 0))
        save(P.plot_activation_cosine(pr["activations_gram"], T, doc=d,
                                      title=f"{label}: activation cosine of document {d + 1}"),
             "activation_cosine", "Activation cosine similarity across checkpoints (Fig 8d)")
    wn = pr.get("weight_diff_norms")
    if wn is None and "weight_gram" in pr:
        wn = metrics.update_magnitudes_from_gram(pr["weight_gram"])
    an = pr.get("act_diff_norms")
    if wn is not None or an is not None:
        save(P.plot_update_magnitudes(T, weight_norms=wn, act_norms=an, title=f"{label}: update magnitudes"),
             "update_magnitudes", "Magnitude of weight/activation updates (Fig 22)")
    return figs


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    doc: int = 0,
    title: str | None = None,
    per_run_figures: bool = True,
) -> Path:
    """Load the runs, write figures and ``report.md`` into ``out_dir``; returns the report path.

    ``per_run_figures=False`` writes only the comparison figures (several runs) and the tables.

    Raises :class:`recovery_jax.results.RunDirError` for a directory that is not a run directory.
    """
    from recovery_jax import plots as P

    if not run_dirs:
        raise ValueError("no run directories given")
    runs = [_with_config_defaults(load_run(d)) for d in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    labels: list[str] = []
    for r in runs:
        lab = r.name
        if lab in labels:
            lab = f"{r.path.parent.name}_{r.name}"
        while lab in labels:
            lab += "_"
        labels.append(lab)

    summaries = [_run_summary(r, doc) for r in runs]
    n_cyc = max((len(s["recovery_scores"]) for s in summaries), default=0)
    md: list[str] = [f"# {title or 'Anticipatory-recovery report'}", ""]
    md += [
        f"{len(runs)} run(s). All numbers recomputed from `losses.npz` with `recovery_jax.metrics` "
        "(PAPER.md §2): RS(n) = (l_max − l_before)/(l_max − l_after), a ratio of document averages over the "
        "cycle between the n-th and (n+1)-th training; online loss = first-step training loss of each episode, "
        "averaged over epochs ≥ 2. \"positive transfer\" flags cycles with (almost) no forgetting, whose RS "
        "is not meaningful (§2.4 footnote).",
        "",
        "## Runs",
        "",
    ]
    header = ["run", "T", "K", "M"] + [f"RS({n})" for n in range(1, n_cyc + 1)] + [
        "online loss (ep ≥ 2)", "positive transfer (last cycle)", f"doc {doc + 1}: drop before last revisit"]
    rows = []
    for lab, r, s in zip(labels, runs, summaries):
        rs = s["recovery_scores"] + [None] * (n_cyc - len(s["recovery_scores"]))
        ol = s["online_loss"]["mean"] if s["online_loss"] else None
        rev = s["revisit_doc0"]
        rows.append([lab, r.T, r.K, r.M] + [_fmt(v) for v in rs] + [
            _fmt(ol), _fmt(s["positive_transfer"]["last"]), _fmt(rev["last_rel_drop"], 3)])
    md += _md_table(header, rows) + [""]

    # ---- several runs: config differences, groups, overlays
    if len(runs) > 1:
        vkeys = varying_keys([r.config for r in runs])
        md += ["## Config differences", ""]
        if vkeys:
            flats = [flatten_config(r.config) for r in runs]
            md += _md_table(["run"] + vkeys, [[lab] + [_fmt_cfg(f.get(k)) for k in vkeys] for lab, f in zip(labels, flats)])
        else:
            md += ["The configs do not differ (apart from workdir-like keys)."]
        md += [""]
        gkeys, groups = group_runs(runs)
        glabels = [_group_label(gk) for gk in groups]
        numbered = len(set(glabels)) < len(glabels)  # truncated labels collide: number the groups
        if numbered:
            glabels = [f"G{i + 1}: {_group_label(gk, maxlen=56)}" for i, gk in enumerate(groups)]
        md += ["## Groups (runs differing only in seed keys; mean ± std over runs)", ""]
        gheader = ["group", "runs"] + [f"RS({n})" for n in range(1, n_cyc + 1)] + ["online loss (ep ≥ 2)"]
        grows = []
        rs_by_group: dict[str, list[np.ndarray]] = {}
        for gl, (gk, idx) in zip(glabels, groups.items()):
            rs_list = [summaries[i]["recovery_scores"] for i in idx]
            cells = []
            for n in range(n_cyc):
                cells.append(_pm([rl[n] if n < len(rl) else None for rl in rs_list]))
            ol = [summaries[i]["online_loss"]["mean"] if summaries[i]["online_loss"] else None for i in idx]
            full = _group_label(gk, maxlen=10**6)
            if numbered:
                full = f"{gl.split(':', 1)[0]}: {full}"
            grows.append([full, len(idx)] + cells + [_pm(ol)])
            rs_by_group[gl] = [np.array([np.nan if v is None else v for v in rl]) for rl in rs_list if rl]
        md += _md_table(gheader, grows) + [""]

        md += ["## Comparison figures", ""]
        parents = {r.path.parent for r in runs}
        if len(labels) <= 3:
            comp_name = ", ".join(labels)
        elif len(parents) == 1:
            comp_name = f"{next(iter(parents)).name}/ ({len(labels)} runs)"
        else:
            comp_name = f"{len(labels)} runs"

        def save(fig, fn: str, caption: str):
            P.save_figure(fig, out / fn)
            md.extend([f"**{caption}**", "", f"![{caption}]({fn})", ""])

        same_shape = {}
        for gl, (gk, idx) in zip(glabels, groups.items()):
            shapes = {runs[i].eval_losses.shape for i in idx}
            same_shape[gl] = len(shapes) == 1
        doc_series, shift_series, online_series = [], [], []
        for gl, (gk, idx) in zip(glabels, groups.items()):
            Ls = [runs[i].eval_losses for i in idx]
            os_ = [runs[i].order for i in idx]
            if same_shape[gl]:
                doc_series.append((gl, np.stack(Ls), os_[0]))
            else:
                doc_series += [(f"{gl} [{labels[i]}]", runs[i].eval_losses, runs[i].order) for i in idx]
            if len({L.shape[1] for L in Ls}) == 1:
                shift_series.append((gl, Ls, os_))
            pes = [metrics.online_loss(runs[i].train_losses, runs[i].M, runs[i].order)[1]
                   for i in idx if runs[i].train_losses.size]
            if pes and len({p.shape for p in pes}) == 1:
                online_series.append((gl, np.stack(pes), runs[idx[0]].T))
        save(P.plot_doc_curve(doc_series, doc=doc, title=f"{comp_name} — loss of document {doc + 1}"),
             "compare_doc_curve.png", f"Loss of document {doc + 1} per group (mean ± std over seeds)")
        if len({s[1][0].shape[1] for s in shift_series}) == 1 and shift_series:
            save(P.plot_shift_averaged(shift_series, title=f"{comp_name} — shift-averaged loss"),
                 "compare_shift_averaged.png", "Shift-averaged loss per group (±std over seeds × documents)")
        if any(len(v) for v in rs_by_group.values()):
            save(P.plot_recovery_scores({k: v for k, v in rs_by_group.items() if v},
                                        title=f"{comp_name} — recovery score per cycle"),
                 "compare_rs.png", "Recovery score per cycle per group (error bars: std over seeds)")
        if online_series:
            save(P.plot_online_loss(online_series, title=f"{comp_name} — online loss"),
                 "compare_online_loss.png", "Online loss per episode per group")

        # RS vs each varying non-seed key
        for key in gkeys:
            xs, means, stds, series_lab = [], [], [], []
            for gk, idx in groups.items():
                d = dict(gk)
                val = json.loads(d[key])
                last = [summaries[i]["rs_last"] for i in idx]
                arr = np.array([np.nan if v is None else v for v in last], dtype=np.float64)
                if not np.any(np.isfinite(arr)) or isinstance(val, (dict, list)):
                    continue
                xs.append(val)
                means.append(float(np.nanmean(arr)))
                stds.append(float(np.nanstd(arr)))
                others = _group_label(tuple((k, v) for k, v in gk if k != key), maxlen=10**6)
                series_lab.append(None if others == "all runs" else others)
            if len({_hashable(x) for x in xs}) < 2:
                continue
            fn = f"rs_vs_{_safe(key)}.png"
            save(P.plot_rs_vs_config(xs, means, stds, key=key, labels=series_lab,
                                     title=f"{comp_name} — RS (last cycle) vs {key}"),
                 fn, f"Recovery score of the last cycle vs `{key}` (mean ± std over seeds)")
            md += _md_table([key, "RS (last cycle)"] + (["other keys"] if any(series_lab) else []),
                            [[_fmt_cfg(x), f"{m:.3f} ± {s:.3f}"] + ([_group_label_trunc(sl or "")] if any(series_lab) else [])
                             for x, m, s, sl in zip(xs, means, stds, series_lab)]) + [""]

    # ---- per-run details
    md += ["## Per-run details", ""]
    for lab, r, s in zip(labels, runs, summaries):
        md += [f"### {lab}", "", f"Path: `{r.path}`", ""]
        flat = flatten_config(r.config)
        brief = {k: flat[k] for k in flat if not is_ignored_key(k) and k.split(".")[0] in
                 ("seed", "T", "C", "M", "E", "data", "model", "optim", "order", "toy")}
        if brief:
            md += ["Config: " + ", ".join(f"`{k}={_fmt_cfg(v)}`" for k, v in list(brief.items())[:40]), ""]
        comp = s["recovery_components"]
        pt = s["positive_transfer"]
        if comp["n"]:
            md += _md_table(
                ["n", "l_after(n−1)", "l_max(n)", "l_before(n)", "RS(n)", "docs", "positive transfer"],
                [[n, _fmt(a), _fmt(m), _fmt(b), _fmt(rsv), nd, _fmt(f)] for n, a, m, b, rsv, nd, f in zip(
                    comp["n"], comp["l_after"], comp["l_max"], comp["l_before"], s["recovery_scores"],
                    comp["n_docs"], pt["flags"])],
            ) + [""]
        else:
            md += ["No complete cycle (each document needs two visits): no recovery score.", ""]
        if s["online_loss"]:
            pe = s["online_loss"]["per_epoch"]
            md += [f"Online loss (epochs ≥ {s['online_loss']['first_epoch']}): **{_fmt(s['online_loss']['mean'])}**;"
                   " per epoch: " + ", ".join(_fmt(v, 3) for v in pe), ""]
        rev = s["revisit_doc0"]
        if rev["epoch"]:
            md += [f"Document {doc + 1}, relative drop (peak − before)/peak before each revisit (epochs "
                   + ", ".join(str(e) for e in rev["epoch"]) + "): "
                   + ", ".join(_fmt(v, 3) for v in rev["rel_drop"])
                   + f"; no recovery at the last revisit (≤ {rev['tol']:.0%}): {_fmt(rev['no_recovery_at_last_revisit'])}",
                   ""]
        if r.summary is not None and r.summary.get("recovery_scores") not in (None, s["recovery_scores"]):
            stored = r.summary.get("recovery_scores")
            if not (isinstance(stored, list) and len(stored) == len(s["recovery_scores"]) and all(
                    (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)
                    for a, b in zip(stored, s["recovery_scores"]))):
                md += ["Note: the stored summary.json RS differs from the recomputed values.", ""]
        for caption, fn in (_run_figures(r, lab, s, out, doc) if per_run_figures else []):
            md += [f"**{caption}**", "", f"![{caption}]({fn})", ""]

    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m recovery_jax.report",
        description="Figures and a markdown report (report.md) for one or several recovery_jax run directories.",
    )
    ap.add_argument("runs", nargs="+", help="run directories (each with config.json and losses.npz)")
    ap.add_argument("--out", required=True, help="output directory for report.md and the PNG figures")
    ap.add_argument("--doc", type=int, default=0, help="0-based focal document for the single-document plots")
    ap.add_argument("--title", default=None)
    ap.add_argument("--no-per-run-figures", action="store_true",
                    help="only the comparison figures and the tables (faster for large sweeps)")
    args = ap.parse_args(argv)
    try:
        path = build_report(args.runs, args.out, doc=args.doc, title=args.title,
                            per_run_figures=not args.no_per_run_figures)
    except RunDirError as e:
        ap.error(str(e))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
