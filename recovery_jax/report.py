"""Report: figures and a markdown summary for one or several run directories (§ numbers: docs/PROTOCOL.md).

    python -m recovery_jax.report RUN_DIR [RUN_DIR ...] --out DIR

For every run: the document-1 curve (Fig 1a), the shift-averaged curve (Fig 1b), the loss heat map, RS per
cycle, the online loss (Fig 1c) and, when ``probes.npz`` exists, the pairwise / gradient / weight-residual /
activation heat maps (Fig 8), the PCA trajectory (Fig 9) and the update magnitudes (Fig 22).  For several runs
the configs are compared on the keys of the config schema (``config.base_config()``, or the toy model's):
keys the schema does not know (a workdir, notes, retired keys) and ``config.PERFORMANCE_KEYS`` are ignored;
runs that differ only in the seed form a group (mean ± std, :mod:`recovery_jax.stats`), groups are
overlaid, and RS is plotted against each config key that varies.
All numbers are recomputed from ``losses.npz`` with :mod:`recovery_jax.metrics` (docs/PROTOCOL.md §2).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recovery_jax import cli, metrics, stats
from recovery_jax import config as config_lib
from recovery_jax.rundir import Run, load_run

__all__ = ["varying_keys", "is_ignored_key", "is_seed_key", "group_runs", "build_report", "main"]

# Always shown in a run's config line, default or not: the protocol (T documents, C tokens, M steps, E epochs).
_PROTOCOL_KEYS = ("seed", "T", "C", "M", "E")


@functools.lru_cache(maxsize=1)
def schema_defaults() -> dict[str, Any]:
    """{flattened key: default} of every key a run config may hold: the training schema and the toy model's."""
    from recovery_jax import toy
    keys = config_lib.flatten(toy.config_record(toy.ToyConfig()))
    keys.update(config_lib.flatten(config_lib.base_config()))  # shared keys (seed, T, M, E): training defaults
    return keys


def is_ignored_key(key: str) -> bool:
    """True for keys that do not define what a run computes: keys the schema does not know (a workdir,
    notes, keys retired since the run was written) and config.PERFORMANCE_KEYS."""
    return key not in schema_defaults() or key in config_lib.PERFORMANCE_KEYS


def is_seed_key(key: str) -> bool:
    """True for the schema's seed keys (``seed``; ``toy.seed`` of toy-model runs)."""
    return key in schema_defaults() and key.split(".")[-1] == "seed"


def _with_config_defaults(run: Run) -> Run:
    """Fill keys a run's config.json lacks (written by an older version) with today's defaults, so that
    a key added since does not show up as a difference between runs. Toy-model runs are left alone."""
    if isinstance(run.config, dict) and "optim" in run.config and "model" in run.config:
        run.config = config_lib.with_defaults(run.config)
    return run


def _hashable(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def varying_keys(configs: Sequence[dict]) -> list[str]:
    """Flattened schema keys whose values differ between configs (a key missing in some config counts as
    differing), in first-appearance order; ignored keys (is_ignored_key) left out."""
    flats = [config_lib.flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flats for k in f if not is_ignored_key(k)))
    return [k for k in keys if len({_hashable(f.get(k, "<missing>")) for f in flats}) > 1]


def group_runs(runs: Sequence[Run]) -> tuple[list[str], dict[tuple, list[int]]]:
    """Group runs that differ only in seed keys. Returns (non-seed varying keys, {group key: run indices})
    where the group key is the tuple of (key, value-json) for the non-seed varying keys."""
    keys = [k for k in varying_keys([r.config for r in runs]) if not is_seed_key(k)]
    flats = [config_lib.flatten(r.config) for r in runs]
    return keys, stats.group_indices([tuple((k, _hashable(f.get(k))) for k in keys) for f in flats])


def _group_label(gk: tuple, maxlen: int = 60) -> str:
    if not gk:
        return "all runs"
    return _truncate(", ".join(f"{k}={json.loads(v)}" for k, v in gk), maxlen)


def _truncate(s: str, maxlen: int = 60) -> str:
    return s if len(s) <= maxlen else s[: maxlen - 1] + "…"


def _fmt_cfg(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and not isinstance(v, bool):
        return f"{float(v):g}"
    if v is None:
        return "—"
    return str(v)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines + [""]


def _figure_md(caption: str, fn: str) -> list[str]:
    return [f"**{caption}**", "", f"![{caption}]({fn})", ""]


def _nan_for_none(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


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
        save(P.plot_recovery_scores({label: _nan_for_none(rs)},
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
    if an is None and "activations_gram" in pr:  # runs from before the probe kept the direct norms
        an = metrics.update_magnitudes_from_gram(pr["activations_gram"])
    if wn is not None or an is not None:
        save(P.plot_update_magnitudes(T, weight_norms=wn, act_norms=an, title=f"{label}: update magnitudes"),
             "update_magnitudes", "Magnitude of weight/activation updates (Fig 22)")
    return figs


@dataclasses.dataclass
class _Group:
    """Runs of one condition (one per seed): its key, labels and seed statistics."""

    key: tuple  # ((config key, value-json), ...) of the non-seed varying keys
    idx: list[int]  # run indices
    label: str  # short, for plots (numbered "G3: ..." when short labels collide)
    full_label: str  # for tables
    stats: dict  # stats.seed_stats of the runs' summaries


@dataclasses.dataclass
class _Report:
    """What every section reads: the runs, their labels and recomputed summaries, the groups."""

    runs: list[Run]
    labels: list[str]
    summaries: list[dict]
    doc: int
    out: Path
    gkeys: list[str]  # non-seed config keys that vary between runs
    groups: list[_Group]

    @property
    def n_cycles(self) -> int:
        return max((len(s["recovery_scores"]) for s in self.summaries), default=0)

    def save(self, fig, fn: str, caption: str) -> list[str]:
        from recovery_jax import plots as P
        P.save_figure(fig, self.out / fn)
        return _figure_md(caption, fn)

    @property
    def comparison_name(self) -> str:
        parents = {r.path.parent for r in self.runs}
        if len(self.labels) <= 3:
            return ", ".join(self.labels)
        if len(parents) == 1:
            return f"{next(iter(parents)).name}/ ({len(self.labels)} runs)"
        return f"{len(self.labels)} runs"


def _run_labels(runs: Sequence[Run]) -> list[str]:
    """Unique labels: the run folder's name, prefixed by its parent's where names repeat."""
    labels: list[str] = []
    for r in runs:
        lab = r.name
        if lab in labels:
            lab = f"{r.path.parent.name}_{r.name}"
        while lab in labels:
            lab += "_"
        labels.append(lab)
    return labels


def _groups(runs: Sequence[Run], summaries: Sequence[dict]) -> tuple[list[str], list[_Group]]:
    gkeys, groups = group_runs(runs)
    short = [_group_label(gk) for gk in groups]
    numbered = len(set(short)) < len(short)  # truncated labels collide: number the groups
    out = []
    for i, (gk, idx) in enumerate(groups.items()):
        label, full = short[i], _group_label(gk, maxlen=10**6)
        if numbered:
            label, full = f"G{i + 1}: {_group_label(gk, maxlen=56)}", f"G{i + 1}: {full}"
        out.append(_Group(gk, idx, label, full, stats.seed_stats([summaries[j] for j in idx])))
    return gkeys, out


def load_runs(run_dirs: Sequence[str | Path], doc: int = 0) -> list[Run]:
    """Read the run directories and check the focal document exists in every run (before writing anything)."""
    if not run_dirs:
        raise cli.UsageError("no run directories given")
    runs = [_with_config_defaults(load_run(d)) for d in run_dirs]
    if isinstance(doc, bool) or not isinstance(doc, (int, np.integer)):
        raise cli.UsageError(f"--doc {doc!r} must be an integer document index")
    smallest = min(runs, key=lambda r: r.T)
    if not 0 <= doc < smallest.T:
        raise cli.UsageError(f"--doc {doc} is out of range for {smallest.path} (T={smallest.T} documents): "
                             f"give 0 <= --doc <= {smallest.T - 1}")
    return runs


# ----------------------------------------------------------------------------- the sections


def _section_intro(rep: _Report, title: str | None) -> list[str]:
    return [
        f"# {title or 'Anticipatory-recovery report'}", "",
        f"{len(rep.runs)} run(s). All numbers recomputed from `losses.npz` with `recovery_jax.metrics` "
        "(docs/PROTOCOL.md §2): RS(n) = (l_max − l_before)/(l_max − l_after), a ratio of document averages over the "
        "cycle between the n-th and (n+1)-th training; online loss = first-step training loss of each episode, "
        "averaged over epochs ≥ 2. \"positive transfer\" flags cycles with (almost) no forgetting, whose RS "
        "is not meaningful (§2.4 footnote).", "",
    ]


def _section_runs(rep: _Report) -> list[str]:
    n_cyc, doc = rep.n_cycles, rep.doc
    header = ["run", "T", "K", "M"] + [f"RS({n})" for n in range(1, n_cyc + 1)] + [
        "online loss (ep ≥ 2)", "positive transfer (last cycle)", f"doc {doc + 1}: drop before last revisit"]
    rows = []
    for lab, r, s in zip(rep.labels, rep.runs, rep.summaries):
        rs = s["recovery_scores"] + [None] * (n_cyc - len(s["recovery_scores"]))
        ol = stats.get(s, "online_loss", "mean")
        rows.append([lab, r.T, r.K, r.M] + [stats.fmt(v, 4) for v in rs] + [
            stats.fmt(ol, 4), stats.fmt(s["positive_transfer"]["last"]), stats.fmt(s["revisit_doc0"]["last_rel_drop"])])
    return ["## Runs", ""] + _md_table(header, rows)


def _section_config_differences(rep: _Report) -> list[str]:
    vkeys = varying_keys([r.config for r in rep.runs])
    md = ["## Config differences", ""]
    if not vkeys:
        return md + ["The configs do not differ (apart from keys outside the config schema).", ""]
    flats = [config_lib.flatten(r.config) for r in rep.runs]
    return md + _md_table(["run"] + vkeys, [[lab] + [_fmt_cfg(f.get(k)) for k in vkeys]
                                            for lab, f in zip(rep.labels, flats)])


def _section_groups(rep: _Report) -> list[str]:
    n_cyc = rep.n_cycles
    header = ["group", "runs"] + [f"RS({n})" for n in range(1, n_cyc + 1)] + ["online loss (ep ≥ 2)"]
    rows = [[g.full_label, len(g.idx)] + [stats.pm(stats.cycle_stat(g.stats, n)) for n in range(n_cyc)]
            + [stats.pm(g.stats["online_loss"])] for g in rep.groups]
    return ["## Groups (runs differing only in seed keys; mean ± std over runs)", ""] + _md_table(header, rows)


def _section_comparison_figures(rep: _Report) -> list[str]:
    from recovery_jax import plots as P

    runs, name, doc = rep.runs, rep.comparison_name, rep.doc
    doc_series, shift_series, online_series, rs_by_group = [], [], [], {}
    for g in rep.groups:
        losses = [runs[i].eval_losses for i in g.idx]
        orders = [runs[i].order for i in g.idx]
        if len({L.shape for L in losses}) == 1:
            doc_series.append((g.label, np.stack(losses), orders[0]))
        else:
            doc_series += [(f"{g.label} [{rep.labels[i]}]", runs[i].eval_losses, runs[i].order) for i in g.idx]
        if len({L.shape[1] for L in losses}) == 1:
            shift_series.append((g.label, losses, orders))
        online_ER = [metrics.online_loss(runs[i].train_losses, runs[i].M, runs[i].order)[1]
                     for i in g.idx if runs[i].train_losses.size]
        if online_ER and len({p.shape for p in online_ER}) == 1:
            online_series.append((g.label, np.stack(online_ER), runs[g.idx[0]].T))
        rs = [rep.summaries[i]["recovery_scores"] for i in g.idx]
        rs_by_group[g.label] = [_nan_for_none(r) for r in rs if r]
    md = ["## Comparison figures", ""]
    md += rep.save(P.plot_doc_curve(doc_series, doc=doc, title=f"{name} — loss of document {doc + 1}"),
                   "compare_doc_curve.png", f"Loss of document {doc + 1} per group (mean ± std over seeds)")
    if shift_series and len({s[1][0].shape[1] for s in shift_series}) == 1:
        md += rep.save(P.plot_shift_averaged(shift_series, title=f"{name} — shift-averaged loss"),
                       "compare_shift_averaged.png", "Shift-averaged loss per group (±std over seeds × documents)")
    if any(rs_by_group.values()):
        md += rep.save(P.plot_recovery_scores({k: v for k, v in rs_by_group.items() if v},
                                              title=f"{name} — recovery score per cycle"),
                       "compare_rs.png", "Recovery score per cycle per group (error bars: std over seeds)")
    if online_series:
        md += rep.save(P.plot_online_loss(online_series, title=f"{name} — online loss"),
                       "compare_online_loss.png", "Online loss per episode per group")
    return md


def _section_rs_vs_keys(rep: _Report) -> list[str]:
    """RS of the last cycle against each non-seed key that varies (one point per group)."""
    from recovery_jax import plots as P

    md: list[str] = []
    for key in rep.gkeys:
        xs, points, series = [], [], []
        for g in rep.groups:
            val = json.loads(dict(g.key)[key])
            if g.stats["rs_last"]["mean"] is None or isinstance(val, (dict, list)):
                continue
            xs.append(val)
            points.append(g.stats["rs_last"])
            others = _group_label(tuple((k, v) for k, v in g.key if k != key), maxlen=10**6)
            series.append(None if others == "all runs" else others)
        if len({_hashable(x) for x in xs}) < 2:
            continue
        means, stds = [p["mean"] for p in points], [p["std"] for p in points]
        md += rep.save(P.plot_rs_vs_config(xs, means, stds, key=key, labels=series,
                                           title=f"{rep.comparison_name} — RS (last cycle) vs {key}"),
                       f"rs_vs_{_safe(key)}.png", f"Recovery score of the last cycle vs `{key}` (mean ± std over seeds)")
        with_others = any(series)
        md += _md_table([key, "RS (last cycle)"] + (["other keys"] if with_others else []),
                        [[_fmt_cfg(x), stats.pm(p)] + ([_truncate(sl or "")] if with_others else [])
                         for x, p, sl in zip(xs, points, series)])
    return md


def _config_brief(config: dict) -> str:
    """The protocol keys and every schema key whose value differs from its default."""
    defaults = schema_defaults()
    flat = config_lib.flatten(config)
    shown = [(k, v) for k, v in flat.items() if not is_ignored_key(k)
             and (k in _PROTOCOL_KEYS or _hashable(v) != _hashable(defaults[k]))]
    return ", ".join(f"`{k}={_fmt_cfg(v)}`" for k, v in shown[:40])


def _stored_rs_differs(stored: Any, recomputed: list) -> bool:
    if stored is None or stored == recomputed:
        return False
    return not (isinstance(stored, list) and len(stored) == len(recomputed) and all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)
        for a, b in zip(stored, recomputed)))


def _section_run_details(rep: _Report, per_run_figures: bool) -> list[str]:
    doc = rep.doc
    md = ["## Per-run details", ""]
    for lab, r, s in zip(rep.labels, rep.runs, rep.summaries):
        md += [f"### {lab}", "", f"Path: `{r.path}`", ""]
        brief = _config_brief(r.config)
        if brief:
            md += [f"Config (protocol and non-default values): {brief}", ""]
        comp, pt = s["recovery_components"], s["positive_transfer"]
        if comp["n"]:
            md += _md_table(
                ["n", "l_after(n−1)", "l_max(n)", "l_before(n)", "RS(n)", "docs", "positive transfer"],
                [[n] + [stats.fmt(v, 4) for v in (a, m, b, rsv)] + [nd, stats.fmt(f)]
                 for n, a, m, b, rsv, nd, f in zip(comp["n"], comp["l_after"], comp["l_max"], comp["l_before"],
                                                   s["recovery_scores"], comp["n_docs"], pt["flags"])])
        else:
            md += ["No complete cycle (each document needs two visits): no recovery score.", ""]
        if s["online_loss"]:
            ol = s["online_loss"]
            md += [f"Online loss (epochs ≥ {ol['first_epoch']}): **{stats.fmt(ol['mean'], 4)}**;"
                   " per epoch: " + ", ".join(stats.fmt(v) for v in ol["per_epoch"]), ""]
        rev = s["revisit_doc0"]
        if rev["epoch"]:
            md += [f"Document {doc + 1}, relative drop (peak − before)/peak before each revisit (epochs "
                   + ", ".join(str(e) for e in rev["epoch"]) + "): "
                   + ", ".join(stats.fmt(v) for v in rev["rel_drop"])
                   + f"; no recovery at the last revisit (≤ {rev['tol']:.0%}): "
                   + stats.fmt(rev["no_recovery_at_last_revisit"]), ""]
        if r.summary is not None and _stored_rs_differs(r.summary.get("recovery_scores"), s["recovery_scores"]):
            md += ["Note: the stored summary.json RS differs from the recomputed values.", ""]
        for caption, fn in (_run_figures(r, lab, s, rep.out, doc) if per_run_figures else []):
            md += _figure_md(caption, fn)
    return md


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    doc: int = 0,
    title: str | None = None,
    per_run_figures: bool = True,
) -> Path:
    """Load the runs, write figures and ``report.md`` into ``out_dir``; returns the report path.

    ``per_run_figures=False`` writes only the comparison figures (several runs) and the tables.

    Raises :class:`recovery_jax.rundir.RunDirError` for a directory that is not a run directory and
    :class:`recovery_jax.cli.UsageError` for a document index outside some run's documents.
    """
    runs = load_runs(run_dirs, doc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [_run_summary(r, doc) for r in runs]
    gkeys, groups = _groups(runs, summaries) if len(runs) > 1 else ([], [])
    rep = _Report(runs, _run_labels(runs), summaries, doc, out, gkeys, groups)
    md = _section_intro(rep, title) + _section_runs(rep)
    if len(runs) > 1:
        md += (_section_config_differences(rep) + _section_groups(rep) + _section_comparison_figures(rep)
               + _section_rs_vs_keys(rep))
    md += _section_run_details(rep, per_run_figures)
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = cli.ArgumentParser(
        prog="python -m recovery_jax.report",
        description="Figures and a markdown report (report.md) for one or several recovery_jax run directories.",
    )
    ap.add_argument("runs", nargs="+", help="run directories (each with config.json and losses.npz)")
    ap.add_argument("--out", required=True, help="output directory for report.md and the PNG figures")
    ap.add_argument("--doc", type=cli.nonneg_int, default=0,
                    help="0-based focal document for the single-document plots (0 <= DOC < T of every run)")
    ap.add_argument("--title", default=None)
    ap.add_argument("--no-per-run-figures", action="store_true",
                    help="only the comparison figures and the tables (faster for large sweeps)")
    args = ap.parse_args(argv)
    cli.check_out_dir(args.out, "--out")
    path = build_report(args.runs, args.out, doc=args.doc, title=args.title,
                        per_run_figures=not args.no_per_run_figures)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
