"""Reproduce the paper's figures at CPU scale and regenerate the tables of docs/REPRODUCTION.md.

    python -m recovery_jax.reproduce --out runs/repro [--only fig1,fig5b] [--rerun] [--dry-run]
        [--tables-only] [--import-summaries ROOT ...] [--doc docs/REPRODUCTION.md] [--records DIR]
        [--figures DIR] [--seeds 0,1,2] [--config.KEY=VALUE ...]

One registry (`ROWS`, below) holds a row per claim of the paper: the figure, the claim, the CPU config,
which groups of its sweep are compared, how the measurement cell is written, the verdict rules and a
hand-written note. For every selected row without a complete record, reproduce

1. runs the row's sweep into OUT/<id> the way `python -m recovery_jax.sweep --config configs/cpu/<file>.py
   --workdir OUT/<id> --reuse OUT` does (grouped; finished runs are skipped, unfinished ones resumed,
   runs of the same config finished under OUT copied), or the toy model for the `toy` row;
2. writes a small record, RECORDS/<id>.json (default docs/repro/): the per-group numbers the tables need,
   the command, CPU and wall time, no absolute path; the statistics rows (Figs 8, 9, 22, 23) also get the
   report's figures of one run per sweep point copied to FIGURES (default docs/figures/);
3. rewrites the generated parts of the doc from every record under RECORDS: the text between
   `<!-- reproduce:NAME:begin -->` and `<!-- reproduce:NAME:end -->` for NAME = results (the results
   table), status (every figure: paper config, CPU config, status) and compute (CPU time and wall per
   record). Everything outside the markers is written by hand.

Rows that need a pretrained model (`needs=("pretrain/NAME",)`) first run `python -m recovery_jax.pretrain
--config configs/pretrain/NAME.py --workdir OUT/pretrain/NAME` (resumable) and pass
`--config.model.hf_path=OUT/pretrain/NAME` to their sweep; without that module they are skipped with a note.

Verdicts are computed from the numbers (`Monotone`, `Greater`, `Above`, `Below`, `Flat`, `Flag`: each says
yes / partly / not shown / no and why; a row's verdict is the weakest of its rules); the note after it is
prose kept in the registry. When the computed verdict differs from the one the note was written for
(`expect`), the table says so.

Options: `--tables-only` rewrites the tables from the records and runs nothing; `--dry-run` prints what
would run; a row is skipped when its record is complete and its runs are in OUT/<id>, all finished (so a fresh
clone, whose OUT is empty, recomputes every selected row and replaces its record; a row with an unfinished run in
OUT/<id> is resumed); `--rerun` runs it anyway (the sweep still skips finished runs in OUT);
`--import-summaries ROOT` (repeatable) makes records from ROOT/<id>/sweep_summary.json of earlier sweeps
instead of running; `--seeds` and `--config.KEY=VALUE` are passed to every sweep (for tiny test runs; the
record and the table say so).
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from recovery_jax import cli, stats

RECORD_VERSION = 1
LEVELS = ("no", "not shown", "partly", "yes")  # weakest first: a row's verdict is the weakest of its rules
PRETRAIN_MODULE = "recovery_jax.pretrain"
MARKERS = ("results", "status", "compute")
DEFAULT_DOC = os.path.join("docs", "REPRODUCTION.md")


# ----------------------------------------------------------------------------- values of a record's groups


class MissingGroup(KeyError):
    """A group a row compares is not in its record (the config's groups changed)."""


METRIC_NAMES = {"rs_last": "RS", "online_loss": "online loss", "doc1_revisit_drop": "doc-1 drop",
                "mean_loss_final": "final loss"}


def metric_name(metric: str) -> str:
    m = re.fullmatch(r"rs(\d+)", metric)
    return f"RS({m.group(1)})" if m else METRIC_NAMES.get(metric, metric)


def metric_stat(group: dict, metric: str) -> dict:
    """{"mean", "std", "n"} of a metric of a record group: rs_last, online_loss, doc1_revisit_drop,
    mean_loss_final, or rsN (RS of cycle N, 1-based)."""
    m = re.fullmatch(r"rs(\d+)", metric)
    if m:
        n = int(m.group(1)) - 1
        per = group.get("rs_per_cycle") or {"mean": []}
        if not 0 <= n < len(per["mean"]):
            return {"mean": None, "std": None, "n": 0}
        return {"mean": per["mean"][n], "std": per["std"][n], "n": per["n"][n]}
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRIC_NAMES)}, rsN")
    return group.get(metric) or {"mean": None, "std": None, "n": 0}


@dataclasses.dataclass
class Context:
    """What a rule reads: the row's groups by label (in the row's order) and the record's extras."""

    groups: dict  # label -> record group
    extra: dict

    @property
    def labels(self) -> list[str]:
        if not self.groups:  # a record made before the row's groups were (e.g. variants added to its config)
            raise MissingGroup("any of the row's groups")
        return list(self.groups)

    def get(self, label: str, metric: str) -> tuple[float, float]:
        if label not in self.groups:
            raise MissingGroup(label)
        st = metric_stat(self.groups[label], metric)
        if st.get("mean") is None:
            raise MissingGroup(f"{label} ({metric_name(metric)})")
        return float(st["mean"]), float(st.get("std") or 0.0)


# ----------------------------------------------------------------------------- verdict rules


@dataclasses.dataclass(frozen=True)
class Verdict:
    level: str  # one of LEVELS, or "—" (cannot be computed)
    basis: str  # what it was computed from, one short phrase


def _f(v: float) -> str:
    return f"{v:.3f}"


@dataclasses.dataclass(frozen=True)
class Monotone:
    """The metric rises (or falls) along the groups. yes: every step goes that way; no: the ends are reversed
    by more than their two stds, or no step goes that way by more than its two stds; partly otherwise."""

    direction: str  # "rises" | "falls"
    metric: str = "rs_last"
    labels: tuple[str, ...] = ()  # default: every group of the row, in order

    def judge(self, ctx: Context) -> Verdict:
        labels = list(self.labels) or ctx.labels
        vals = [ctx.get(lab, self.metric) for lab in labels]
        sign = 1.0 if self.direction == "rises" else -1.0
        steps = [(sign * (b[0] - a[0]), a[1] + b[1]) for a, b in zip(vals, vals[1:])]
        good = sum(s > 0 for s, _ in steps)
        what = f"{metric_name(self.metric)} {self.direction} at {good} of {len(steps)} steps"
        if good == len(steps):
            return Verdict("yes", what)
        ends, ends_noise = sign * (vals[-1][0] - vals[0][0]), vals[0][1] + vals[-1][1]
        if ends < -ends_noise:
            return Verdict("no", f"{what}; the ends are reversed beyond their stds")
        if not any(s > noise for s, noise in steps):
            return Verdict("no", f"{what}, none beyond the stds")
        return Verdict("partly", what)


@dataclasses.dataclass(frozen=True)
class Greater:
    """a above b (lower=True: a below b). yes: the gap exceeds std_a + std_b; no: reversed by more than that;
    not shown: within the stds. metric_b: compare another metric of b (e.g. RS(19) of a vs RS(4) of a)."""

    a: str
    b: str
    metric: str = "rs_last"
    metric_b: str | None = None
    lower: bool = False

    def judge(self, ctx: Context) -> Verdict:
        mb = self.metric_b or self.metric
        (ma, sa), (mb_, sb) = ctx.get(self.a, self.metric), ctx.get(self.b, mb)
        gap, noise = (mb_ - ma if self.lower else ma - mb_), sa + sb
        if self.metric_b is None:  # two groups, one metric
            first, second = (self.b, self.a) if self.lower else (self.a, self.b)
            prefix = "" if self.metric == "rs_last" else f"{metric_name(self.metric)} "
            text = f"{prefix}{first} − {second} {_f(gap)}"
        else:  # two metrics (of one group or two)
            na, nb = metric_name(self.metric), (metric_name(mb) if self.a == self.b else f"{self.b} {metric_name(mb)}")
            text = f"{self.a} {na} − {nb} {_f(gap)}" if not self.lower else f"{nb} − {self.a} {na} {_f(gap)}"
        if gap > noise:
            return Verdict("yes", f"{text} > stds {_f(noise)}")
        if -gap > noise:
            return Verdict("no", f"{text}, reversed beyond stds {_f(noise)}")
        return Verdict("not shown", f"{text} within stds {_f(noise)}")


@dataclasses.dataclass(frozen=True)
class Level:
    """Every group clearly on one side of a level. above: yes if every mean − std > threshold, partly if some
    mean is above it, no otherwise; below (e.g. no doc-1 recovery when shuffled): yes if every mean + std <=
    threshold, partly if every mean is, no otherwise."""

    threshold: float
    metric: str = "rs_last"
    labels: tuple[str, ...] = ()
    above: bool = True

    def judge(self, ctx: Context) -> Verdict:
        labels = list(self.labels) or ctx.labels
        vals = [ctx.get(lab, self.metric) for lab in labels]
        name = metric_name(self.metric)
        if self.above:
            clear = sum(m - s > self.threshold for m, s in vals)
            what = (f"{name} − std > {self.threshold:g} for {clear} of {len(vals)}" if len(vals) > 1
                    else f"{name} {_f(vals[0][0])} vs {self.threshold:g}")
            sure, some = clear == len(vals), any(m > self.threshold for m, _ in vals)
        else:
            what = f"{'/'.join(labels)} {name} {', '.join(_f(m) for m, _ in vals)} vs ≤ {self.threshold:g}"
            sure = all(m + s <= self.threshold for m, s in vals)
            some = all(m <= self.threshold for m, _ in vals)
        return Verdict("yes" if sure else "partly" if some else "no", what)


def Above(threshold: float, metric: str = "rs_last", labels: tuple[str, ...] = ()) -> Level:  # noqa: N802
    return Level(threshold, metric, labels, above=True)


def Below(threshold: float, metric: str = "rs_last", labels: tuple[str, ...] = ()) -> Level:  # noqa: N802
    return Level(threshold, metric, labels, above=False)


@dataclasses.dataclass(frozen=True)
class Flat:
    """Little effect: the range of the means. yes: <= tol; partly: <= 2 tol; no otherwise."""

    tol: float
    metric: str = "rs_last"
    labels: tuple[str, ...] = ()

    def judge(self, ctx: Context) -> Verdict:
        labels = list(self.labels) or ctx.labels
        means = [ctx.get(lab, self.metric)[0] for lab in labels]
        rng = max(means) - min(means)
        what = f"{metric_name(self.metric)} range {_f(rng)} vs {self.tol:g}"
        return Verdict("yes" if rng <= self.tol else "partly" if rng <= 2 * self.tol else "no", what)


@dataclasses.dataclass(frozen=True)
class Flag:
    """A yes/no fact of the record's extras (e.g. the toy model's literal setting diverges)."""

    key: str
    text: str

    def judge(self, ctx: Context) -> Verdict:
        value = ctx.extra.get(self.key)
        return Verdict("yes" if value else "no", f"{self.text}: {'yes' if value else 'no'}")


def verdict(rules: Sequence[Any], ctx: Context) -> Verdict:
    """The weakest verdict of the rules, bases joined; "—" when a group the rules need is missing."""
    try:
        outs = [r.judge(ctx) for r in rules]
    except MissingGroup as e:
        return Verdict("—", f"group {e.args[0]!r} is not in the record")
    if not outs:
        return Verdict("—", "no rule")
    level = min((o.level for o in outs), key=LEVELS.index)
    return Verdict(level, "; ".join(o.basis for o in outs))


# ----------------------------------------------------------------------------- the registry: one row per claim


@dataclasses.dataclass(frozen=True)
class Extra:
    """A further metric shown after the main values: doc-1 drop, online loss, final loss."""

    metric: str
    nd: int = 3
    labels: tuple[str, ...] = ()  # default: every group of the row


@dataclasses.dataclass(frozen=True)
class Row:
    id: str  # record name (docs/repro/<id>.json) and --only name
    fig: str  # the Fig column of the results table
    claim: str  # the paper's claim
    comparison: str  # what is compared at CPU scale
    config: str | None  # configs/cpu/<file>.py; None: not a sweep (the toy model)
    groups: tuple[tuple[str, str], ...] = ()  # (label, sweep group name) shown, in order; (): all, as recorded
    style: str = "axis"  # axis: "v1 / v2 / v3" (values named in the comparison); labelled: "label v; label v"
    shown: tuple[str, ...] = ("rs_last",)  # metrics shown per group (the first is the main one)
    per_cycle: tuple[str, ...] = ()  # labels whose per-cycle RS means are shown
    extras: tuple[Extra, ...] = ()
    bold: tuple[str, ...] = ()  # labels whose main values are bold
    note: str = ""  # text after the numbers; may hold {metric@label[:spec]} and {extra.KEY} fields
    rules: tuple = ()  # verdict rules (the weakest counts); (): no RS claim (statistics rows)
    expect: str | None = None  # the verdict `reason` was written for
    reason: str = ""  # hand-written prose after the verdict; may hold the same fields as `note`
    needs: tuple[str, ...] = ()  # "pretrain/NAME": a model pretrained by recovery_jax.pretrain
    record: str | None = None  # the id of another row whose record (same runs) this row reads
    figures: tuple[str, ...] = ()  # report figure stems copied to docs/figures/<id>_[point_]<stem>.png
    missing: str = "not run yet"  # the cell of a row without a record
    # the "every figure" table
    paper: str = ""  # the figure as the paper shows it
    paper_config: str = ""  # the configs/paper/ file(s)
    cpu_config: str = ""  # what the configs/cpu/ file does

    @property
    def record_id(self) -> str:
        return self.record or self.id


def axis(key: str, values: Sequence[Any], label: str | None = None) -> tuple[tuple[str, str], ...]:
    """The groups of a grid axis: labels LABEL=value (or the value alone), names as the sweep writes them."""
    from recovery_jax.sweep import format_value
    return tuple(((f"{label}={format_value(v)}" if label else format_value(v)), f"{key}={format_value(v)}")
                 for v in values)


CLEAR = 0.2  # "clear recovery": about twice the RS of the shuffled control of row fig1 (0.11)
PRETRAIN = ("pretrain/neox_small",)

ROWS: list[Row] = [
    Row("fig1", "1a, 1b", "Cyclic training shows anticipatory recovery; a shuffled order does not",
        "cyclic vs shuffled (x_1 first, rest re-shuffled every epoch)", "configs/cpu/fig1.py",
        groups=(("cyclic", "cyclic"), ("shuffled", "shuffled")), style="labelled", per_cycle=("cyclic",),
        extras=(Extra("doc1_revisit_drop", 2),), bold=("cyclic", "shuffled"),
        rules=(Greater("cyclic", "shuffled"), Below(0.05, "doc1_revisit_drop", ("shuffled",))), expect="yes",
        paper="Fig 1(a,b) loss of x_1, shift-averaged, cyclic vs shuffled (T=100, 20 seeds)",
        paper_config="`fig1.py`", cpu_config="`fig1.py`"),
    Row("fig1c", "1c, Table 1", "Cyclic order gives a lower online (prequential) loss than shuffling",
        "same runs, online loss of epochs 2–5", "configs/cpu/fig1.py", record="fig1",
        groups=(("cyclic", "cyclic"), ("shuffled", "shuffled")), style="labelled", shown=("online_loss",),
        bold=("cyclic", "shuffled"), rules=(Greater("cyclic", "shuffled", "online_loss", lower=True),),
        expect="yes", reason="(one model size; two sizes: row `table1`)",
        paper="Fig 1(c) online loss, cyclic vs shuffled", paper_config="`table1.py`",
        cpu_config="`fig1.py` (4×256; the runs of row `fig1`)"),
    Row("table1", "Table 1", "Cyclic order gives a lower online loss than shuffling at every model size",
        "4×128 and 4×256 from scratch, cyclic vs shuffled, online loss of epochs 2–5", "configs/cpu/table1.py",
        groups=(("4×128 cyclic", "cyclic/model.hidden_size=128"), ("4×128 shuffled", "shuffled/model.hidden_size=128"),
                ("4×256 cyclic", "cyclic/model.hidden_size=256"), ("4×256 shuffled", "shuffled/model.hidden_size=256")),
        style="labelled", shown=("online_loss",),
        rules=(Greater("4×128 cyclic", "4×128 shuffled", "online_loss", lower=True),
               Greater("4×256 cyclic", "4×256 shuffled", "online_loss", lower=True)), expect="yes",
        paper="Table 1 online loss, 4 sizes × cyclic/shuffled (T=100, C=512, 10 seeds)", paper_config="`table1.py`",
        cpu_config="`table1.py` (4×128 and 4×256)"),
    Row("fig2a", "2a", "Pretrained models recover more than the same model from scratch",
        "a 4×256 GPT-NeoX pretrained offline (`configs/pretrain/neox_small.py`) vs the same shape from scratch",
        "configs/cpu/fig2a.py", groups=(("pretrained", "pretrained"), ("scratch", "scratch")), style="labelled",
        per_cycle=("pretrained", "scratch"), rules=(Greater("pretrained", "scratch"),), needs=PRETRAIN,
        extras=(Extra("online_loss", 2), Extra("mean_loss_final", 2)), expect="no",
        reason="the offline-pretrained model recovers *less* than the same model from scratch, while it forgets less "
               "(lower online loss) and fits each document further (lower final loss). Its pretraining is 1.2 M tokens "
               "(held-out loss 6.40, a weak LM); Pythia's is 300 B, and the paper's smallest checkpoint of Fig 16 "
               "already has 12 B: this tests 'pretrained' only in the weak sense available offline (see Fig 16's row)",
        paper="Fig 2(a) model size, pretrained", paper_config="`fig2a.py` (160M…2.8B)",
        cpu_config="`fig2a.py` (pretrained vs scratch; variants `pretrained`, `scratch`)"),
    Row("fig2b", "2b", "Larger models recover more (random init)",
        "2×64 / 2×128 / 4×128 / 4×256 from scratch (4 heads, MLP 4× width)", "configs/cpu/fig2b.py",
        groups=(("2×64", "model.num_layers=2/model.hidden_size=64/model.intermediate_size=256"),
                ("2×128", "model.num_layers=2/model.hidden_size=128/model.intermediate_size=512"),
                ("4×128", "model.num_layers=4/model.hidden_size=128/model.intermediate_size=512"),
                ("4×256", "model.num_layers=4/model.hidden_size=256/model.intermediate_size=1024")),
        rules=(Monotone("rises"),),
        paper="Fig 2(b) model size, random init (step0 weights)", paper_config="`fig2b.py`",
        cpu_config="`fig2b.py` (2×64 … 4×256 from scratch)"),
    Row("fig3a", "3a", "Recovery needs width (≥ 512 of 2048)",
        "hidden size 32 / 64 / 128 / 256 (4 blocks, MLP 1024 fixed as in the paper)", "configs/cpu/fig3a.py",
        groups=axis("model.hidden_size", [32, 64, 128, 256], "width"), bold=("width=256",),
        rules=(Monotone("rises"),), expect="yes", reason="RS rises with width at every step",
        paper="Fig 3(a) width, from scratch", paper_config="`fig3a.py` (128…2048, MLP 8192)",
        cpu_config="`fig3a.py` (32…256, MLP 1024)"),
    Row("fig3b", "3b", "Recovery needs depth (≥ 8 of 16 blocks)", "1 / 2 / 4 / 6 blocks (width 256)",
        "configs/cpu/fig3b.py", groups=axis("model.num_layers", [1, 2, 4, 6], "blocks"), bold=("blocks=1",),
        rules=(Monotone("rises"),), expect="partly",
        reason="one block has almost none, two or more recover; no gain beyond 4 blocks (6 is slightly lower)",
        paper="Fig 3(b) depth, from scratch", paper_config="`fig3b.py` (2…16)", cpu_config="`fig3b.py` (1…6)"),
    Row("fig4a", "4a", "Random token masking weakens recovery, which stays clear",
        "mask probability p = 0 / 0.1 / 0.3", "configs/cpu/fig4a.py",
        groups=axis("variant.mask_prob", [0.0, 0.1, 0.3], "p"), bold=("p=0.3",),
        rules=(Monotone("falls"), Above(CLEAR, labels=("p=0.3",))), expect="yes",
        paper="Fig 4(a) random masking", paper_config="`fig4a.py` (p 0…0.3)", cpu_config="`fig4a.py` (p 0, 0.1, 0.3)"),
    Row("fig4b", "4b", "Random window shifts weaken recovery, which stays clear",
        "block 128, C=64 window at [32, 96), shift W = 0 / 16 / 32", "configs/cpu/fig4b.py",
        groups=axis("variant.window", [0, 16, 32], "W"), bold=("W=32",),
        rules=(Monotone("falls"), Above(CLEAR, labels=("W=32",))), expect="yes",
        paper="Fig 4(b) random window", paper_config="`fig4b.py` (block 512, W 0…128)",
        cpu_config="`fig4b.py` (block 128, W 0…32)"),
    Row("fig5a", "5a", "Recovery at every number of documents T, even 200", "T = 6 / 12 / 24", "configs/cpu/fig5a.py",
        groups=axis("T", [6, 12, 24], "T"), rules=(Above(CLEAR),), expect="yes",
        reason="(clear recovery at every T; here it grows with T)",
        paper="Fig 5(a) T", paper_config="`fig5a.py` (10…200)", cpu_config="`fig5a.py` (6, 12, 24)"),
    Row("fig5b", "5b", "More gradient steps per document, more recovery; none at M=1", "M = 1 / 5 / 10 / 20",
        "configs/cpu/fig5b.py", groups=axis("M", [1, 5, 10, 20], "M"), bold=("M=1", "M=20"),
        rules=(Monotone("rises"),), expect="yes",
        paper="Fig 5(b) M", paper_config="`fig5b.py` (1, 5, 10, 20)", cpu_config="`fig5b.py` (same)"),
    Row("fig5c", "5c", "Longer context, less recovery (at fixed M)", "C = 32 / 64 / 128", "configs/cpu/fig5c.py",
        groups=axis("C", [32, 64, 128], "C"), bold=("C=64",), per_cycle=("C=32", "C=64", "C=128"),
        rules=(Monotone("falls"),), expect="partly",
        reason="64 > 128 in cycles 2–4, 32 > 64 in cycles 2–3, but C=32 levels off in cycle 4, where its documents "
               "are nearly memorized (mean final loss {mean_loss_final@C=32:.2f})",
        paper="Fig 5(c) C", paper_config="`fig5c.py` (128…1024)", cpu_config="`fig5c.py` (32, 64, 128)"),
    Row("fig5d", "5d", "Freezing more of the first blocks lowers RS (≈ 8 trainable blocks needed)",
        "6 blocks × 256, embedding + first B blocks frozen, B = 0 / 2 / 4", "configs/cpu/fig5d.py",
        groups=axis("optim.freeze_first", [0, 2, 4], "B"), bold=("B=2",), extras=(Extra("online_loss", 2),),
        rules=(Monotone("falls"),), expect="no",
        reason="freezing random blocks raises RS here. The paper freezes *pretrained* blocks (row `fig5d_pretrained`); "
               "frozen random blocks are fixed random features, and fewer trainable weights means less forgetting "
               "(lower online loss)",
        paper="Fig 5(d) frozen blocks", paper_config="`fig5d.py` (B 0, 4…12 of 16)",
        cpu_config="`fig5d.py` (B 0, 2, 4 of 6, from scratch)"),
    Row("fig5d_pretrained", "5d", "Freezing more of the first (pretrained) blocks lowers RS",
        "the pretrained 4×256 model (`configs/pretrain/neox_small.py`), embedding + first B blocks frozen, "
        "B = 0 / 1 / 2 / 3",
        "configs/cpu/fig5d_pretrained.py", groups=axis("optim.freeze_first", [0, 1, 2, 3], "B"),
        extras=(Extra("online_loss", 2),), rules=(Monotone("falls"),), needs=PRETRAIN, expect="yes",
        reason="RS falls with every pretrained block frozen, as in the paper, where freezing *random* blocks (row "
               "`fig5d`) raised it: the claim is about frozen pretrained features, and holds for them here",
        paper="Fig 5(d) frozen blocks, pretrained", paper_config="`fig5d.py`",
        cpu_config="`fig5d_pretrained.py` (B 0…3 of the 4 pretrained blocks)"),
    Row("fig6", "6a", "Adam (reset per document) gives stronger recovery than plain GD (v1: 0.689 vs 0.211)",
        "Adam-reset 3e-4 / Adam without reset 3e-4 / SGD 0.1", "configs/cpu/fig6.py",
        groups=(("Adam-reset", "adam_reset"), ("Adam", "adam"), ("SGD", "sgd")), bold=("Adam-reset", "SGD"),
        rules=(Greater("Adam-reset", "SGD"),), expect="yes",
        reason="(Adam-reset > SGD); Adam without reset (not in the paper) is higher still",
        paper="Fig 6(a) Adam-reset vs GD, random init",
        paper_config="`fig6.py` (step0/main × sgd / adam_reset 1e-4 / 1e-5)",
        cpu_config="`fig6.py` (panel a, + Adam without reset)"),
    Row("fig6b", "6b", "On a pretrained model too, Adam-reset recovers more than plain GD",
        "the pretrained 4×256 model (`configs/pretrain/neox_small.py`), Adam-reset vs SGD", "configs/cpu/fig6b.py",
        groups=(("Adam-reset", "adam_reset"), ("SGD", "sgd")), style="labelled",
        rules=(Greater("Adam-reset", "SGD"),), needs=PRETRAIN, expect="yes",
        reason="(the same SGD lr 0.1 as panel a; Adam-reset's runs are those of row `fig2a`)",
        paper="Fig 6(b) Adam-reset vs GD, pretrained", paper_config="`fig6.py` (main)",
        cpu_config="`fig6b.py` (variants `adam_reset`, `sgd`)"),
    Row("fig7a", "7a", "Image GPT fine-tuned cyclically on single images shows anticipatory recovery",
        "`configs/cpu/fig7a.py`: a tiny Image GPT **from scratch** (2 × 64, 16 colour clusters by k-means, 16 × 16 "
        "crops of the scikit-image photos = C=256 colour tokens, T=25, M=10, E=5, one Adam 1e-3 never reset, labels = "
        "input_ids); cyclic vs shuffled", "configs/cpu/fig7a.py",
        groups=(("cyclic", "cyclic"), ("shuffled", "shuffled")), style="labelled", per_cycle=("cyclic", "shuffled"),
        bold=("cyclic", "shuffled"), extras=(Extra("doc1_revisit_drop", 2), Extra("online_loss", 3)),
        rules=(Greater("cyclic", "shuffled"),), expect="not shown",
        reason="cyclic is only slightly above the shuffled control (the gap is about one seed std), so the RS here is "
               "mostly not anticipatory. A model trained from scratch is still learning what all images share (colour "
               "statistics, smoothness), so training on any image lowers the loss of every other one, in either "
               "order, and RS counts that transfer as recovery. The paper's ImageNet-pretrained Image GPT has learned "
               "that already; `configs/paper/fig7a.py` (network + accelerator) is the test of the claim",
        paper="Fig 7(a) Image GPT on CIFAR (code: CIFAR-100)",
        paper_config="`fig7a.py` (openai/imagegpt-small, its 512 clusters, C=1024, Adam 1e-3 never reset)",
        cpu_config="`fig7a.py` (tiny Image GPT from scratch, photo crops, k-means colours)"),
    Row("fig7b", "7b", "Image classifiers (ViT and VGG) also recover, less than LLMs",
        "`configs/cpu/fig7b.py`: scikit-learn digits (8 × 8, gray repeated to RGB) in T=25 fixed batches of 32, a tiny "
        "ViT (2 × 64, 2 × 2 patches) and a tiny VGG (8/16 channels, dropout 0.5 in train mode, eval mode for the "
        "losses), both **from scratch**, Adam reset per batch at 1e-3, M=10, E=5; cyclic vs shuffled",
        "configs/cpu/fig7b.py",
        groups=(("ViT cyclic", "cyclic/model.arch=vit/model.preset=vit-tiny"),
                ("ViT shuffled", "shuffled/model.arch=vit/model.preset=vit-tiny"),
                ("VGG cyclic", "cyclic/model.arch=vgg/model.preset=vgg-tiny"),
                ("VGG shuffled", "shuffled/model.arch=vgg/model.preset=vgg-tiny")),
        style="labelled", bold=("ViT cyclic", "ViT shuffled", "VGG cyclic", "VGG shuffled"),
        rules=(Greater("ViT cyclic", "ViT shuffled"), Greater("VGG cyclic", "VGG shuffled")), expect="not shown",
        reason="no order effect: cyclic and shuffled give the same RS for both architectures; the VGG's RS(1) = "
               "{rs1@VGG cyclic:.1f} / {rs1@VGG shuffled:.1f} (above 1: after one epoch a batch's loss just before "
               "its revisit is lower than right after it was trained). From scratch, the classifiers are still "
               "learning to read digits, and every batch holds the same ten classes, so a step on any batch lowers "
               "the loss on all of them (the §2.4 positive-transfer case, though the last cycle is not flagged). The "
               "paper fine-tunes ImageNet-pretrained models on their own training images; `configs/paper/fig7b_vit.py` "
               "and `fig7b_vgg.py` need ImageNet and an accelerator",
        paper="Fig 7(b) ImageNet classification, ViT and VGG-19",
        paper_config="`fig7b_vit.py` (google/vit-base-patch16-224), `fig7b_vgg.py` (timm/vgg19.tv_in1k = "
                     "torchvision's weights), ImageFolder over ImageNet train",
        cpu_config="`fig7b.py` (tiny ViT and VGG from scratch on digits batches)"),
    Row("fig8", "8a–d", "Gradient, pairwise-recovery, weight-residual and activation similarities show the cyclic "
        "structure (statistics, no RS claim)", "probes grads, pairwise, weights, activations of one run (seed 0)",
        "configs/cpu/fig8.py", groups=(("all seeds", ""),), style="labelled",
        figures=("grads_cosine", "pairwise", "weight_residual_cosine", "activation_cosine"),
        reason="expected (paper): gradient cosines mostly positive, peaking at the centre; pairwise recovery largest "
               "b documents away; equally spaced weight-residual stripes, one per epoch; activation similarity "
               "growing each epoch",
        paper="Fig 8(a–d) gradient / pairwise / weight-residual / activation cosines (410M)",
        paper_config="`fig8.py` (probes grads, pairwise, weights, activations)", cpu_config="`fig8.py`"),
    Row("fig9", "9", "The output-embedding weights trace a converging helix, one turn per epoch (statistics)",
        "PCA of embed_out over the first 3 epochs (seed 0)", "configs/cpu/fig9.py", groups=(("all seeds", ""),),
        style="labelled", figures=("pca",), reason="expected (paper): a converging helix, one turn per epoch",
        paper="Fig 9 PCA of embed_out (1B, 3 epochs)", paper_config="`fig9.py` (probe embed_out, sketched)",
        cpu_config="`fig9.py`"),
    Row("toy", "10, 11", "Toy model: the slow/fast model shows anticipatory recovery that keeps growing with epochs",
        "`recovery_jax.toy`, T=25, 20 epochs, seeds 0, 1, 2; affine: N=dim=100, lr 0.01; identity: N=dim=1000, "
        "lr 0.001", None,
        groups=(("affine", "affine"), ("identity", "identity")), style="labelled", shown=("rs4", "rs19"),
        bold=("affine",), note="identity at the literal lr 0.01 diverges at step {extra.literal_diverged_at_step}",
        rules=(Greater("affine", "affine", "rs19", "rs4"), Greater("identity", "identity", "rs19", "rs4"),
               Flag("literal_diverged_at_step", "the literal identity setting diverges")),
        expect="yes", reason="(and the docs/PROTOCOL.md §4 divergence of the literal Fig 10(a) setting is confirmed)",
        paper="Fig 10, 11 toy model, ring PCA", paper_config="—",
        cpu_config="`python -m recovery_jax.toy --variant affine\\|identity`; Fig 11's PCA from its `toy_states.npz`"),
    Row("fig12", "12", "Partial shuffling (x_2..x_N re-shuffled) leaves some recovery, even at N = T−1",
        "T=12, N = 4 / 8 / 11 (the ends are row `fig1`: cyclic and full shuffle)", "configs/cpu/fig12.py",
        groups=axis("order.shuffle_n", [4, 8, 11], "N"), bold=("N=11",),
        extras=(Extra("doc1_revisit_drop", 2, ("N=11",)),),
        rules=(Monotone("falls"), Above(0.1, "doc1_revisit_drop", ("N=11",))), expect="yes",
        reason="RS falls with N; at N=11 the fixed x_12 → x_1 transition still gives x_1 a clear recovery "
               "(full shuffle: doc-1 drop 0.00)",
        paper="Fig 12 partial shuffle", paper_config="`fig12.py` (T=25, N 8, 16, 24)",
        cpu_config="`fig12.py` (T=12, N 4, 8, 11)"),
    Row("fig13", "13", "With one step per document (M=1), a larger learning rate brings some recovery",
        "M=1, Adam-reset lr 3e-4 / 3e-3", "configs/cpu/fig13.py", groups=axis("optim.lr", [3e-4, 3e-3], "lr"),
        rules=(Greater("lr=0.003", "lr=0.0003"),),
        paper="Fig 13 M=1 with lr 0.01", paper_config="`fig13.py`", cpu_config="`fig13.py` (Adam lr 3e-4 vs 3e-3)"),
    Row("fig14", "14", "The number of attention heads has a small effect", "heads 1 / 2 / 4 / 8 (4 × 256)",
        "configs/cpu/fig14.py", groups=axis("model.num_heads", [1, 2, 4, 8], "heads"), rules=(Flat(0.1),),
        paper="Fig 14 attention heads", paper_config="`fig14.py` (2…16 heads, scratch)",
        cpu_config="`fig14.py` (1…8 heads)"),
    Row("fig15", "15", "The Pythia init gives more recovery than an isotropic N(0, 0.02) init",
        "model.init pythia vs normal", "configs/cpu/fig15.py",
        groups=(("pythia", "model.init=pythia"), ("normal", "model.init=normal")), style="labelled",
        rules=(Greater("pythia", "normal"),),
        paper="Fig 15 init: Pythia vs N(0, 0.02)", paper_config="`fig15.py`", cpu_config="`fig15.py`"),
    Row("fig16", "16", "Recovery grows with the number of pre-training steps",
        "revisions step0 / step30 / step100 / step300 / step600 of the offline pretraining "
        "(`configs/pretrain/neox_small.py`: 0 / 61 k / 205 k / 614 k / 1.2 M tokens)",
        "configs/cpu/fig16.py", groups=axis("model.revision", ["step0", "step30", "step100", "step300", "step600"]),
        rules=(Monotone("rises"),), needs=PRETRAIN, expect="no",
        reason="at this scale RS *falls* with pretraining, from step0 (the untrained init) to step300, with step600 a "
               "little higher: the opposite of the paper. Its checkpoints start at 6000 steps of 2 M tokens (12 B "
               "tokens, 10⁴× all of ours); a model that has seen 0.06–1.2 M tokens of prose is between random and "
               "pretrained, and recovers less than either end of the paper's range",
        paper="Fig 16 pre-training steps (step6000…main)", paper_config="`fig16.py`",
        cpu_config="`fig16.py` (revisions step0, 30, 100, 300, 600 of the offline pretraining)"),
    Row("fig17", "17", "Recovery persists under a cosine learning-rate decay over 10 epochs",
        "E=10, Adam-reset lr 3e-4 cosine-decayed to 0 over the run", "configs/cpu/fig17.py",
        groups=(("cosine lr", ""),), style="labelled", per_cycle=("cosine lr",), rules=(Above(CLEAR, "rs4"),),
        expect="yes",
        reason="RS(4), the cycle every E=5 row reports, is as high as with a constant lr (0.57); recovery then peaks in "
               "cycle 5 and fades as the lr decays to 0 (cycle 9: the lr is ~2 % of its peak, documents are hardly "
               "forgotten or relearned, so there is little to recover)",
        paper="Fig 17 cosine lr, 10 epochs", paper_config="`fig17.py`", cpu_config="`fig17.py`"),
    Row("fig18", "18", "Recovery persists with random filler documents between the fixed ones",
        "8 fixed + 8…16 one-off filler documents, full vocabulary, 4×128, C=32", "configs/cpu/fig18.py",
        groups=(("fillers", ""),), style="labelled", per_cycle=("fillers",), rules=(Above(CLEAR),),
        paper="Fig 18 random filler documents", paper_config="`fig18.py` (20 fixed + 20…100 fillers)",
        cpu_config="`fig18.py` (8 fixed + 8…16 fillers, full vocabulary, 4×128, C=32)"),
    Row("fig19a", "19a", "At a fixed total update (lr × M constant), more and smaller steps recover more",
        "(M, Adam-reset lr) = (1, 3e-3) / (5, 6e-4) / (10, 3e-4) / (20, 1.5e-4)", "configs/cpu/fig19a.py",
        groups=(("M=1", "M=1/optim.lr=0.003"), ("M=5", "M=5/optim.lr=0.0006"), ("M=10", "M=10/optim.lr=0.0003"),
                ("M=20", "M=20/optim.lr=0.00015")), rules=(Monotone("rises"),),
        paper="Fig 19(a) M with inverse lr scaling", paper_config="`fig19a.py` ((M, lr) zip)",
        cpu_config="`fig19a.py` (Adam lr × M constant)"),
    Row("fig19b", "19b", "A long context needs more steps: at a large C, RS rises with M", "C=128, M = 10 / 20 / 40",
        "configs/cpu/fig19b.py", groups=axis("M", [10, 20, 40], "M"), rules=(Monotone("rises"),),
        paper="Fig 19(b) C=1024 with M 10, 20, 40", paper_config="`fig19b.py`", cpu_config="`fig19b.py` (C=128)"),
    Row("fig20", "20", "A GPT-2 architecture shows anticipatory recovery too",
        "4×256 GPT-2 (GPT-2 tokenizer) from scratch (GPT-2 init) and pretrained offline "
        "(`configs/pretrain/gpt2_small.py`: 300 steps, 0.6 M tokens)", "configs/cpu/fig20.py",
        groups=(("scratch", "scratch"), ("pretrained", "pretrained")), style="labelled",
        per_cycle=("scratch", "pretrained"), rules=(Above(CLEAR),), needs=("pretrain/gpt2_small",), expect="yes",
        reason="both recover clearly; the offline-pretrained GPT-2 recovers less than the same model from scratch, "
               "the ordering row `fig2a` found for GPT-NeoX (pretraining 0.6 M tokens, held-out loss 10.36 -> 7.16)",
        paper="Fig 20 GPT2-large (pretrained)", paper_config="`fig20.py`",
        cpu_config="`fig20.py` (4×256 GPT-2, variants `scratch`, `pretrained`)"),
    Row("fig21", "21", "Recovery on Wikipedia text with a random-init model",
        "sections of the gensim Wikipedia sample as documents", "configs/cpu/fig21.py",
        groups=(("wiki", ""),), style="labelled", per_cycle=("wiki",), rules=(Above(CLEAR),),
        paper="Fig 21 wikitext-103, random init",
        paper_config="`fig21.py` (no wikitext-103 loader: offline Wikipedia sample `data.source=\"wiki\"`, or export "
                     "wikitext-103 to .jsonl and use `data.source=files`)",
        cpu_config="`fig21.py` (wiki sample)"),
    Row("fig22", "22", "Activation changes are stepwise per epoch, weight changes decrease (statistics)",
        "update magnitudes of x_1's activations and of the weights, E=4 (seed 0)", "configs/cpu/fig22.py",
        groups=(("all seeds", ""),), style="labelled", figures=("update_magnitudes",),
        reason="expected (paper): activation changes stepwise per epoch, weight changes decreasing monotonically",
        paper="Fig 22 update magnitudes (410M, 4 epochs)", paper_config="`fig22.py` (probes activations, weights)",
        cpu_config="`fig22.py`"),
    Row("fig23", "23", "Longer cycles split the pairwise-recovery matrix into two blobs (statistics)",
        "pairwise recovery after 4 epochs, T = 12 / 24 (seed 0)", "configs/cpu/fig23.py",
        groups=axis("T", [12, 24], "T"), figures=("pairwise",),
        reason="expected (paper): as T grows the bright centre splits into two blobs with a border without recovery",
        paper="Fig 23 pairwise matrices, T 50, 100, 200", paper_config="`fig23.py`", cpu_config="`fig23.py` (T 12, 24)"),
]

ROW_BY_ID = {r.id: r for r in ROWS}


def check_registry(rows: Sequence[Row] = ROWS) -> None:
    """Registry mistakes are bugs: ids unique, records of existing rows, labels the rules and cells use exist."""
    ids = [r.id for r in rows]
    assert len(set(ids)) == len(ids), "row ids repeat"
    by_id = {r.id: r for r in rows}
    for r in rows:
        assert r.style in ("axis", "labelled"), r.id
        assert r.record is None or (r.record in by_id and by_id[r.record].record is None), r.id
        labels = {lab for lab, _ in r.groups}
        used = set(r.per_cycle) | set(r.bold) | {lab for e in r.extras for lab in e.labels}
        for rule in r.rules:
            used |= set(getattr(rule, "labels", ()))
            used |= {getattr(rule, k) for k in ("a", "b") if hasattr(rule, k)}
        assert not r.groups or used <= labels, f"{r.id}: labels {sorted(used - labels)} are not groups"
        assert all(n.startswith("pretrain/") for n in r.needs), r.id


check_registry()


# ----------------------------------------------------------------------------- records


def _round(x: Any, nd: int = 6) -> Any:
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, list):
        return [_round(v, nd) for v in x]
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    return x


GROUP_KEYS = ("n", "rs_last", "rs_per_cycle", "online_loss", "doc1_revisit_drop", "mean_loss_final",
              "positive_transfer_last")


def record_group(name: str, seeds: Sequence[int], st: dict) -> dict:
    """One group of a record: its sweep name, seeds and the seed statistics the tables read (rounded)."""
    return {"name": name, "seeds": list(seeds), **{k: _round(st[k]) for k in GROUP_KEYS if k in st}}


def portable(path: str, out: str | None = None) -> str:
    """A path as a record may hold it: relative to the working directory when below it, else relative to
    --out written as OUT/..., else its last two parts."""
    a = os.path.abspath(path)
    cwd = os.getcwd()
    if a == cwd or a.startswith(cwd + os.sep):
        return os.path.relpath(a, cwd)
    if out is not None:
        o = os.path.abspath(out)
        if a == o or a.startswith(o + os.sep):
            rel = os.path.relpath(a, o)
            return "OUT" if rel == "." else os.path.join("OUT", rel)
    return os.path.join(*a.split(os.sep)[-2:])


def record_from_summary(row: Row, summary: dict, *, source: str, command: str, overrides: Sequence[str] = (),
                        date: str | None = None, extra: dict | None = None) -> dict:
    """The record of a row from a sweep_summary.json (recovery_jax.sweep.summarize_sweep)."""
    by_status: dict[str, int] = {}
    for r in summary.get("runs", []):
        by_status[r.get("status", "?")] = by_status.get(r.get("status", "?"), 0) + 1
    return {
        "version": RECORD_VERSION, "id": row.id, "config": row.config, "source": source, "command": command,
        "overrides": list(overrides), "seeds": list(summary.get("seeds", [])),
        "n_runs": summary.get("n_runs"), "n_runs_done": summary.get("n_runs_done"), "runs_by_status": by_status,
        "cpu_s": round(float(summary.get("cpu_s_total") or 0.0), 1),
        "wall_s": round(float(summary.get("wall_s_total") or 0.0), 1),
        "date": date or datetime.date.today().isoformat(),
        "groups": [record_group(g["name"], g.get("seeds", []), g["stats"]) for g in summary.get("groups", [])],
        "extra": dict(extra or {}),
    }


def write_record(records_dir: str, record: dict) -> str:
    from recovery_jax.rundir import write_json_atomic
    os.makedirs(records_dir, exist_ok=True)
    path = os.path.join(records_dir, f"{record['id']}.json")
    write_json_atomic(path, record)
    return path


def load_records(records_dir: str, warn: Callable[[str], None] | None = None) -> dict[str, dict]:
    """{id: record} of RECORDS/*.json; files of no registry row are left out (with a warning)."""
    out: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(records_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
        rid = rec.get("id") if isinstance(rec, dict) else None
        if rid not in ROW_BY_ID or os.path.basename(path) != f"{rid}.json":
            if warn:
                warn(f"warning: {path} is not the record of a registry row; left out of the tables")
            continue
        out[rid] = rec
    for path in sorted(glob.glob(os.path.join(records_dir, "pretrain", "*.json"))):  # pretraining_record's
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
        if isinstance(rec, dict) and rec.get("id") == f"pretrain/{os.path.basename(path)[:-5]}":
            out[rec["id"]] = rec
    return out


def pretraining_record(need: str, command: str, workdir: str, *, wall_s: float | None, cpu_s: float | None) -> dict:
    """What a pretraining cost and reached (RECORDS/pretrain/NAME.json, a line of the compute table). Without a
    measured wall (a pretraining finished before this command ran), its own training-loop wall from
    pretrain.json, said so."""
    with open(os.path.join(workdir, "pretrain.json"), encoding="utf-8") as f:
        status = json.load(f)
    measured = wall_s is not None
    revs = status.get("revisions") or [{}]
    return {"id": need, "command": command, "steps": status.get("steps"),
            "wall_s": round(float(wall_s if measured else status.get("train_wall_s") or 0.0), 1),
            "cpu_s": round(float(cpu_s), 1) if cpu_s is not None else None,
            "wall_from": "this command" if measured else "pretrain.json train_wall_s (training loop only)",
            "tokens_per_s": status.get("tokens_per_s"),
            "heldout_loss": {str(r.get("revision")): (r.get("heldout_loss") or {}).get("mean") for r in revs},
            "date": datetime.date.fromtimestamp(os.path.getmtime(os.path.join(workdir, "pretrain.json"))).isoformat()}


def unfinished_runs(row_dir: str) -> list[str]:
    """Run directories under row_dir that were started (config.json, or the sweep's sweep_run.json) but never
    finished (no summary.json).

    A row whose record is complete is still resumed when its sweep was interrupted after the record was
    written by an earlier invocation (e.g. a --rerun stopped half way), so its runs are never left half done.
    """
    from recovery_jax.rundir import SUMMARY_FILE
    from recovery_jax.sweep import SWEEP_FILE
    out = []
    for dirpath, dirnames, filenames in os.walk(row_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "checkpoints")
        started = "config.json" in filenames or SWEEP_FILE in filenames
        if started and SUMMARY_FILE not in filenames:
            out.append(dirpath)
    return out


def record_complete(rec: dict | None) -> bool:
    return bool(rec) and rec.get("n_runs") is not None and rec.get("n_runs_done") == rec.get("n_runs") \
        and not rec.get("runs_by_status", {}).get("failed")


# ----------------------------------------------------------------------------- rendering


_FIELD = re.compile(r"\{(?:extra\.(\w+)|(\w+)@([^}:]+))(?::([^}]*))?\}")


def fill(text: str, ctx: Context) -> str:
    """Fill {metric@label[:spec]} (a group's mean) and {extra.KEY} fields of a note; "?" when missing."""
    def one(m: re.Match) -> str:
        key, metric, label, spec = m.group(1), m.group(2), m.group(3), m.group(4)
        if key is not None:
            v = ctx.extra.get(key)
        else:
            try:
                v = ctx.get(label, metric)[0]
            except MissingGroup:
                v = None
        if v is None:
            return "?"
        return format(v, spec) if spec and isinstance(v, (int, float)) else (f"{v:.3f}" if isinstance(v, float)
                                                                           else str(v))
    return _FIELD.sub(one, text)


def row_groups(row: Row, rec: dict) -> tuple[dict, list[str]]:
    """({label: record group} in the row's order, [labels missing from the record])."""
    by_name = {g["name"]: g for g in rec.get("groups", [])}
    if not row.groups:
        return {(g["name"] or "(config)"): g for g in rec.get("groups", [])}, []
    found, missing = {}, []
    for label, name in row.groups:
        if name in by_name:
            found[label] = by_name[name]
        else:
            missing.append(label)
    return found, missing


def context(row: Row, rec: dict) -> Context:
    return Context(row_groups(row, rec)[0], rec.get("extra") or {})


def _pm(st: dict, nd: int = 3) -> str:
    return stats.pm(st, nd)


def measurement(row: Row, rec: dict | None, figures_link: str = "figures") -> str:
    """The Measurement cell of a row from its record."""
    if rec is None:
        text = row.missing
        if row.figures:
            text += f"; figures will be `docs/figures/{row.id}_*.png`"
        return text
    groups, missing = row_groups(row, rec)
    ctx = Context(groups, rec.get("extra") or {})
    parts: list[str] = []
    vals = []
    for label, g in groups.items():
        cells = [_pm(metric_stat(g, m)) for m in row.shown]
        if label in row.bold:
            cells[0] = f"**{cells[0]}**"
        if row.style == "axis":
            vals.append(cells[0])
            continue
        if len(row.shown) == 1:
            prefix = "" if row.shown[0] == "rs_last" else f"{metric_name(row.shown[0])} "
            v = f"{label} {prefix}{cells[0]}" if not (len(groups) == 1 and row.figures) else f"RS {cells[0]}"
        else:
            v = f"{label}: " + ", ".join(f"{metric_name(m)} {c}" for m, c in zip(row.shown, cells))
        if label in row.per_cycle:
            v += " (per cycle " + ", ".join(stats.fmt(x, 2) for x in g["rs_per_cycle"]["mean"]) + ")"
        vals.append(v)
    if vals:
        parts.append(" / ".join(vals) if row.style == "axis" else "; ".join(vals))
    if row.style == "axis":
        if row.shown[0] != "rs_last" and parts:
            parts[0] = f"{metric_name(row.shown[0])} {parts[0]}"
        cyc = [f"{lab}: " + ", ".join(stats.fmt(x, 2) for x in groups[lab]["rs_per_cycle"]["mean"])
               for lab in row.per_cycle if lab in groups]
        if cyc:
            parts.append("per cycle " + "; ".join(cyc))
    for e in row.extras:
        labs = [lab for lab in (e.labels or tuple(groups)) if lab in groups]
        cells = [_pm(metric_stat(groups[lab], e.metric), e.nd) for lab in labs]
        if row.style == "axis" and not e.labels:
            parts.append(f"{metric_name(e.metric)} " + " / ".join(cells))
        else:
            parts.append(f"{metric_name(e.metric)}: " + ", ".join(f"{lab} {c}" for lab, c in zip(labs, cells)))
    if row.note:
        parts.append(fill(row.note, ctx))
    for label, g in groups.items():
        if g.get("positive_transfer_last"):
            parts.append(f"last cycle flagged for positive transfer in {g['positive_transfer_last']} of {g.get('n')} "
                         f"runs{f' of {label}' if len(groups) > 1 else ''} (RS not meaningful, §2.4)")
    ns = sorted({g.get("n") for g in groups.values()})
    if ns and ns != [3]:
        parts.append(f"{'/'.join(str(n) for n in ns)} seed(s) per group")
    if missing:
        parts.append(f"group(s) {', '.join(missing)} not in the record")
    if rec.get("figures"):
        parts.append("figures: " + ", ".join(f"[{n}]({figures_link}/{n})" for n in rec["figures"]))
    text = "; ".join(parts)
    if rec.get("overrides") or rec.get("seeds_override"):
        what = " ".join(f"`--config.{o}`" for o in rec.get("overrides", []))
        if rec.get("seeds_override"):
            what = (what + " " if what else "") + f"`--seeds {rec['seeds_override']}`"
        text = f"⚠ with {what}: {text}"
    if not record_complete(rec):
        text = f"**incomplete** ({rec.get('n_runs_done')} of {rec.get('n_runs')} runs): {text}"
    return text


def holds(row: Row, rec: dict | None) -> str:
    """The "Holds here?" cell: the computed verdict, what it was computed from, the note."""
    if rec is None:
        return "—"
    ctx = context(row, rec)
    reason = fill(row.reason, ctx)
    if not row.rules:
        return f"see the figures: {reason}" if row.figures else reason or "—"
    v = verdict(row.rules, ctx)
    text = f"**{v.level}** (computed: {v.basis})"
    if reason:
        text += f" {reason}" if reason.startswith("(") else f": {reason}"
    if row.expect and v.level != row.expect:
        text += f". ⚠ The note was written for **{row.expect}**: recheck it against these numbers"
    return text


def _cell(text: str) -> str:
    return text.replace("\n", " ")  # a "|" inside a cell is written as "\\|" where the text is made


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def results_table(records: dict, figures_link: str = "figures") -> str:
    rows = []
    for row in ROWS:
        rec = records.get(row.record_id)
        rows.append([row.claim, f"{row.fig} (`{row.id}`)", row.comparison, measurement(row, rec, figures_link),
                     holds(row, rec)])
    return _table(["Claim of the paper", "Fig (row)", "CPU comparison",
                   "Measurement (RS of the last cycle unless stated; mean ± std over seeds)", "Holds here?"], rows)


def status_cell(row: Row, rec: dict | None) -> str:
    if rec is None:
        if row.needs:
            return (f"{row.missing}: needs a pretrained model (`configs/pretrain/{row.needs[0].split('/', 1)[1]}.py`, "
                    f"`python -m {PRETRAIN_MODULE}`)")
        return row.missing
    if not record_complete(rec):
        return f"incomplete (`{row.id}`: {rec.get('n_runs_done')} of {rec.get('n_runs')} runs)"
    if not row.rules:
        return f"measured (`{row.id}`): figures" if rec.get("figures") else f"measured (`{row.id}`)"
    return f"measured (`{row.id}`): **{verdict(row.rules, context(row, rec)).level}**"


def status_table(records: dict) -> str:
    rows = [[row.paper, row.paper_config, row.cpu_config, status_cell(row, records.get(row.record_id))]
            for row in ROWS]
    return _table(["Paper", "`configs/paper/`", "`configs/cpu/`", "At CPU scale"], rows)


def _minutes(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s:.0f} s" if s < 60 else f"{s / 60:.1f} min"


def compute_table(records: dict) -> str:
    rows, cpu, wall = [], 0.0, 0.0
    for rid in sorted(k for k in records if k.startswith("pretrain/")):  # run first, by the rows that need them
        rec = records[rid]
        rows.append([f"`{rid}`", f"`{rec.get('command', '')}`", f"{rec.get('steps')} steps",
                     _minutes(rec.get("cpu_s")), _minutes(rec.get("wall_s")), rec.get("date", "")])
        cpu += rec.get("cpu_s") or 0.0
        wall += rec.get("wall_s") or 0.0
    for row in ROWS:
        rec = records.get(row.id)
        if row.record is not None or rec is None:
            continue
        st = rec.get("runs_by_status", {})
        computed = sum(st.get(k, 0) for k in ("ran", "resumed", "skipped", "computed"))
        runs = f"{computed}" + (f" (+{st['reused']} copied)" if st.get("reused") else "")
        if st.get("failed"):
            runs += f" ({st['failed']} failed)"
        rows.append([f"`{row.id}`", f"`{rec.get('command', '')}`", runs, _minutes(rec.get("cpu_s")),
                     _minutes(rec.get("wall_s")), rec.get("date", "")])
        cpu += rec.get("cpu_s") or 0.0
        wall += rec.get("wall_s") or 0.0
    rows.append(["**all**", "", "", f"**{_minutes(cpu)}**", f"**{_minutes(wall)}**", ""])
    return _table(["Row", "Command that made the record", "Runs", "CPU time of the runs", "Wall", "Date"], rows)


def replace_marked(text: str, name: str, content: str, where: str = "the doc") -> str:
    begin, end = f"<!-- reproduce:{name}:begin -->", f"<!-- reproduce:{name}:end -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{where} needs exactly one {begin} ... {end} pair (the generated {name} table goes "
                         f"between them)")
    i, j = text.index(begin) + len(begin), text.index(end)
    return text[:i] + "\n" + content + "\n" + text[j:]


def render_doc(text: str, records: dict, figures_link: str = "figures", where: str = "the doc") -> str:
    for name, content in (("results", results_table(records, figures_link)), ("status", status_table(records)),
                          ("compute", compute_table(records))):
        text = replace_marked(text, name, content, where)
    return text


def write_tables(doc: str, records_dir: str, figures_dir: str, log: Callable[[str], None] = print) -> bool:
    """Rewrite the marked tables of doc from the records; returns whether the file changed."""
    with open(doc, encoding="utf-8") as f:
        old = f.read()
    records = load_records(records_dir, warn=lambda m: print(m, file=sys.stderr))
    link = os.path.relpath(os.path.abspath(figures_dir), os.path.dirname(os.path.abspath(doc)))
    new = render_doc(old, records, link.replace(os.sep, "/"), where=doc)
    if new != old:
        with open(doc, "w", encoding="utf-8") as f:
            f.write(new)
    log(f"tables: {doc} {'rewritten' if new != old else 'unchanged'} from {len(records)} record(s) in {records_dir}")
    return new != old


# ----------------------------------------------------------------------------- running


def _cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


@dataclasses.dataclass
class Options:
    out: str
    records: str
    figures: str
    overrides: list[str]
    seeds: list[int] | None
    seeds_text: str | None
    rerun: bool
    dry_run: bool


def pretrain_available() -> bool:
    try:
        return importlib.util.find_spec(PRETRAIN_MODULE) is not None
    except (ImportError, ValueError):
        return False


def ensure_pretrained(need: str, opts: Options, log: Callable[[str], None], done: dict) -> tuple[str | None, str]:
    """Run the pretraining a row needs (once per invocation); (its workdir, "") or (None, why not)."""
    if need in done:
        return done[need]
    name = need.split("/", 1)[1]
    cfg = os.path.join("configs", "pretrain", f"{name}.py")
    workdir = os.path.join(opts.out, "pretrain", name)
    if not pretrain_available():
        result: tuple[str | None, str] = (None, f"needs pretraining: {PRETRAIN_MODULE} not available")
    elif not os.path.exists(cfg):
        result = (None, f"needs pretraining: {cfg} does not exist")
    elif opts.dry_run:
        result = (workdir, f"would first run python -m {PRETRAIN_MODULE} --config {cfg} --workdir {workdir}")
    else:
        os.makedirs(workdir, exist_ok=True)
        log_path = os.path.join(opts.out, "pretrain", f"{name}.log")
        command = f"python -m {PRETRAIN_MODULE} --config {cfg} --workdir {workdir}"
        log(f"{need}: {command} --no-progress (log: {log_path}) ...")
        finished_before = _finished_pretraining(workdir)
        cpu0, t0 = _cpu_seconds(), time.time()
        with open(log_path, "a") as f:
            rc = subprocess.run([sys.executable, "-m", PRETRAIN_MODULE, "--config", cfg, "--workdir", workdir,
                                 "--no-progress"],
                                stdout=f, stderr=subprocess.STDOUT).returncode
        result = (workdir, "") if rc == 0 else (None, f"pretraining failed (exit {rc}); see {log_path}")
        record_path = os.path.join(opts.records, "pretrain", f"{name}.json")
        if rc == 0 and _finished_pretraining(workdir) and (not finished_before or not os.path.exists(record_path)):
            measured = not finished_before  # else: its time is what pretrain.json says
            rec = pretraining_record(need, f"python -m {PRETRAIN_MODULE} --config {cfg} --workdir OUT/pretrain/{name}",
                                     workdir, wall_s=time.time() - t0 if measured else None,
                                     cpu_s=_cpu_seconds() - cpu0 if measured else None)
            os.makedirs(os.path.dirname(record_path), exist_ok=True)
            write_record(opts.records, rec)  # id "pretrain/NAME": RECORDS/pretrain/NAME.json
    done[need] = result
    return result


def _finished_pretraining(workdir: str) -> bool:
    try:
        with open(os.path.join(workdir, "pretrain.json"), encoding="utf-8") as f:
            return bool(json.load(f).get("finished"))
    except (OSError, ValueError, AttributeError):
        return False


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name.replace("=", "")).strip("_")


def copy_figures(row: Row, runs: Sequence[Any], workdir: str, figures_dir: str) -> list[str]:
    """Report figures of one run (the smallest seed) per sweep point, copied to FIGURES/<id>[_point]_<stem>.png."""
    from recovery_jax import report
    first: dict[str, Any] = {}
    for r in runs:
        if r.point.name not in first or r.seed < first[r.point.name].seed:
            first[r.point.name] = r
    names = []
    os.makedirs(figures_dir, exist_ok=True)
    for point, r in first.items():
        run_dir = os.path.join(workdir, r.name)
        if not os.path.exists(os.path.join(run_dir, "summary.json")):
            continue
        rep_dir = os.path.join(workdir, "report_" + _safe(r.name))
        report.build_report([run_dir], rep_dir, title=f"{row.id}: {r.name}")
        for stem in row.figures:
            found = sorted(glob.glob(os.path.join(rep_dir, f"*_{stem}.png")))
            if not found:
                continue
            name = f"{row.id}_{_safe(point) + '_' if len(first) > 1 and point else ''}{stem}.png"
            shutil.copyfile(found[0], os.path.join(figures_dir, name))
            names.append(name)
    return names


def _rs_brief(row: Row, rec: dict) -> str:
    groups, _ = row_groups(row, rec)
    return ", ".join(f"{lab} {_pm(metric_stat(g, row.shown[0]))}" for lab, g in list(groups.items())[:6])


def run_sweep_row(row: Row, opts: Options, log: Callable[[str], None], extra_overrides: Sequence[str] = ()) -> dict:
    """Run (or skip, resume, copy) the runs of the row's sweep into OUT/<id>; returns its record."""
    from recovery_jax import config as config_lib
    from recovery_jax import sweep
    from recovery_jax.rundir import write_json_atomic
    overrides = list(opts.overrides) + list(extra_overrides)
    runs, _ = sweep.build_runs(row.config, overrides, seeds=opts.seeds)
    workdir = os.path.join(opts.out, row.id)
    reusable = sweep.index_finished_runs(opts.out)
    counts: dict[str, int] = {}
    for r in runs:
        st = sweep.run_status(os.path.join(workdir, r.name), r.cfg)
        if st == "new" and sweep._config_key(config_lib.to_dict(r.cfg)) in reusable:
            st = "copy"
        counts[st] = counts.get(st, 0) + 1
    what = ", ".join(f"{n} {k}" for k, n in counts.items())
    argv = ["--config", row.config, "--workdir", portable(workdir, opts.out), "--reuse", portable(opts.out, opts.out)]
    argv += [f"--seeds {opts.seeds_text}"] if opts.seeds_text else []
    argv += [f"--config.{o}" for o in overrides]
    command = " ".join(["python -m recovery_jax.sweep"] + argv)
    if opts.dry_run:
        log(f"{row.id}: would run {len(runs)} run(s) of {row.config} ({what}) into {workdir}, --reuse {opts.out}"
            + (f"; then figures into {opts.figures}/{row.id}_*.png" if row.figures else ""))
        return {}
    log(f"{row.id}: {row.config}: {len(runs)} run(s) ({what}) into {workdir} ...")
    os.makedirs(workdir, exist_ok=True)
    t0 = time.time()
    with open(os.path.join(workdir, "reproduce.log"), "a") as f:
        def slog(m: str) -> None:
            print(m, file=f, flush=True)
        results = sweep.execute(runs, workdir, log=slog, reuse_root=opts.out)
    seeds_used = sorted({r.seed for r in runs})
    summary = sweep.summarize_sweep(results, runs, config_path=row.config, workdir=portable(workdir, opts.out),
                                    seeds=seeds_used,
                                    command=command)
    write_json_atomic(os.path.join(workdir, "sweep_summary.json"), summary)
    with open(os.path.join(workdir, "sweep_summary.md"), "w") as f:
        f.write(sweep.summary_markdown(summary))
    rec = record_from_summary(row, summary, source=portable(os.path.join(workdir, "sweep_summary.json"), opts.out),
                              command=command, overrides=opts.overrides)  # the pretrained path is no deviation
    if opts.seeds_text:
        rec["seeds_override"] = opts.seeds_text
    if row.figures:
        rec["figures"] = copy_figures(row, runs, workdir, opts.figures)
    rec["row_wall_s"] = round(time.time() - t0, 1)
    return rec


TOY_SEEDS = (0, 1, 2)
TOY_EPOCHS = 20


def run_toy_row(row: Row, opts: Options, log: Callable[[str], None]) -> dict:
    """The toy model (docs/PROTOCOL.md §4): affine and identity × seeds, 20 epochs, and the literal identity
    setting (lr 0.01), which must diverge."""
    from recovery_jax import toy
    seeds = list(opts.seeds or TOY_SEEDS)
    workdir = os.path.join(opts.out, "toy")
    if opts.dry_run:
        log(f"{row.id}: would run recovery_jax.toy: affine and identity × seeds {seeds}, {TOY_EPOCHS} epochs, and the "
            f"literal identity setting, into {workdir}")
        return {}
    log(f"{row.id}: recovery_jax.toy: affine and identity × seeds {seeds}, {TOY_EPOCHS} epochs, into {workdir} ...")
    cpu0, t0 = _cpu_seconds(), time.time()
    groups = []
    for variant in ("affine", "identity"):
        summaries = []
        for seed in seeds:
            cfg = toy.validate(toy.default_config(variant, seed=seed, epochs=TOY_EPOCHS))
            summaries.append(toy.save_toy(toy.run_toy(cfg), os.path.join(workdir, variant, f"seed={seed}"),
                                          plots=False))
        groups.append(record_group(variant, seeds, stats.seed_stats(summaries)))
    step = None
    try:
        toy.run_toy(toy.validate(toy.default_config("identity", literal=True, epochs=5)))
    except toy.ToyDivergenceError as e:
        m = re.search(r"at step (\d+)", str(e))
        step = int(m.group(1)) if m else -1
    seeds_txt = ",".join(str(s) for s in seeds)
    return {
        "version": RECORD_VERSION, "id": row.id, "config": None, "source": portable(workdir, opts.out),
        "command": f"python -m recovery_jax.toy --variant {{affine,identity}} --epochs {TOY_EPOCHS} --seed "
                   f"{{{seeds_txt}}} --no-plots --out DIR; python -m recovery_jax.toy --variant identity --literal "
                   f"--epochs 5 --out DIR",
        "overrides": [], "seeds": seeds, "n_runs": 2 * len(seeds) + 1, "n_runs_done": 2 * len(seeds) + 1,
        "runs_by_status": {"ran": 2 * len(seeds) + 1},
        "cpu_s": round(_cpu_seconds() - cpu0, 1), "wall_s": round(time.time() - t0, 1),
        "date": datetime.date.today().isoformat(), "groups": groups,
        "extra": {"literal_diverged_at_step": step},
    }


def import_summary(row: Row, roots: Sequence[str], log: Callable[[str], None]) -> dict | None:
    """The record of a row from ROOT/<id>/sweep_summary.json of an earlier sweep (the first root that has it)."""
    for root in roots:
        path = os.path.join(root, row.id, "sweep_summary.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        if os.path.normpath(summary.get("config", "")) != os.path.normpath(row.config or ""):
            log(f"{row.id}: {path} is a sweep of {summary.get('config')}, not {row.config}; not imported")
            return None
        date = datetime.date.fromtimestamp(os.path.getmtime(path)).isoformat()
        rec = record_from_summary(row, summary, source=portable(path), command=summary.get("command", ""), date=date)
        log(f"{row.id}: imported {path} ({rec['n_runs_done']}/{rec['n_runs']} runs): {_rs_brief(row, rec)}")
        return rec
    log(f"{row.id}: no sweep_summary.json under {', '.join(roots)}; not imported")
    return None


# ----------------------------------------------------------------------------- CLI


def parse_only(text: str | None) -> list[Row]:
    """--only ids -> rows (registry order); every row without --only."""
    if text is None:
        return list(ROWS)
    ids = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [i for i in ids if i not in ROW_BY_ID]
    if unknown:
        raise cli.UsageError(f"--only: unknown row id(s) {', '.join(unknown)}; valid ids: {', '.join(ROW_BY_ID)}")
    if not ids:
        raise cli.UsageError(f"--only {text!r} names no row; valid ids: {', '.join(ROW_BY_ID)}")
    return [r for r in ROWS if r.id in ids]


def parse(argv: list[str]):
    from recovery_jax import config as config_lib
    overrides, rest = config_lib.split_argv(argv)
    p = cli.ArgumentParser(prog="python -m recovery_jax.reproduce", description=__doc__)
    p.add_argument("--out", default=None, help="folder of the sweeps' run directories (needed to run or --dry-run)")
    p.add_argument("--only", default=None, help=f"comma-separated row ids (default: all): {', '.join(ROW_BY_ID)}")
    p.add_argument("--tables-only", action="store_true", help="rewrite the doc's tables from the records; run nothing")
    p.add_argument("--dry-run", action="store_true", help="print what would run; run and write nothing")
    p.add_argument("--rerun", action="store_true", help="run rows whose record is complete again")
    p.add_argument("--import-summaries", action="append", default=None, metavar="ROOT",
                   help="make records from ROOT/<id>/sweep_summary.json instead of running (repeatable)")
    p.add_argument("--doc", default=DEFAULT_DOC, help="the doc whose marked tables are rewritten")
    p.add_argument("--records", default=None, help="folder of the records (default: repro/ next to --doc)")
    p.add_argument("--figures", default=None, help="folder of the copied figures (default: figures/ next to --doc)")
    p.add_argument("--seeds", default=None, help="seeds for every sweep, e.g. 0,1 (default: each config's)")
    args = p.parse_args(rest)
    modes = [m for m, on in (("--tables-only", args.tables_only), ("--dry-run", args.dry_run),
                             ("--import-summaries", args.import_summaries)) if on]
    if len(modes) > 1:
        raise cli.UsageError(f"{' and '.join(modes)} exclude each other; give one")
    if not os.path.isfile(args.doc):
        raise cli.UsageError(f"--doc {args.doc}: no such file; give the markdown file with the reproduce markers")
    doc_dir = os.path.dirname(args.doc) or "."
    args.records = args.records or os.path.join(doc_dir, "repro")
    args.figures = args.figures or os.path.join(doc_dir, "figures")
    cli.check_out_dir(args.records, "--records")
    cli.check_out_dir(args.figures, "--figures")
    if args.out is not None:
        cli.check_out_dir(args.out, "--out")
    elif not (args.tables_only or args.import_summaries):
        raise cli.UsageError("--out is needed to run the sweeps (or --dry-run them); give e.g. --out runs/repro, "
                             "or --tables-only to rewrite the tables from the records")
    for root in args.import_summaries or []:
        if not os.path.isdir(root):
            raise cli.UsageError(f"--import-summaries {root}: not a directory")
    if (args.tables_only or args.import_summaries) and (overrides or args.seeds):
        raise cli.UsageError("--config.KEY=VALUE and --seeds only apply when running sweeps")
    if overrides:
        from recovery_jax.config import apply_overrides, base_config
        apply_overrides(base_config(), overrides)  # unknown keys and bad values: one error line before any work
    return args, overrides


def main(argv: list[str]) -> int:
    args, overrides = parse(argv)
    t_start = time.time()
    log = lambda m: print(m, flush=True)  # noqa: E731
    selected = parse_only(args.only)
    if args.tables_only:
        write_tables(args.doc, args.records, args.figures, log)
        return 0
    if args.import_summaries:
        for row in selected:
            if row.record is not None or row.config is None:
                continue
            rec = import_summary(row, args.import_summaries, log)
            if rec is not None:
                write_record(args.records, rec)
        write_tables(args.doc, args.records, args.figures, log)
        log(f"total wall time {time.time() - t_start:.1f} s")
        return 0

    from recovery_jax.sweep import parse_seeds
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    opts = Options(out=args.out, records=args.records, figures=args.figures, overrides=overrides, seeds=seeds,
                   seeds_text=args.seeds, rerun=args.rerun, dry_run=args.dry_run)
    records = load_records(args.records)
    todo: list[Row] = []
    for row in selected:  # a row that reads another row's record runs that row
        target = ROW_BY_ID[row.record_id]
        if target not in todo:
            todo.append(target)
    pretrained: dict = {}
    problems = 0
    for row in todo:
        rec = records.get(row.id)
        unfinished = unfinished_runs(os.path.join(args.out, row.id))
        if unfinished and not args.rerun:
            log(f"{row.id}: {len(unfinished)} unfinished run(s) in {os.path.join(args.out, row.id)} "
                f"(e.g. {unfinished[0]}); resuming the row")
        elif record_complete(rec) and not args.rerun and os.path.exists(os.path.join(args.out, row.id)):
            log(f"{row.id}: record {os.path.join(args.records, row.id + '.json')} is complete "
                f"({rec['n_runs_done']}/{rec['n_runs']} runs, {rec.get('date', '')}) and its runs are in "
                f"{os.path.join(args.out, row.id)}; skipped (--rerun runs it again)")
            continue
        if row.needs and not pretrain_available():
            log(f"{row.id}: needs pretraining: {PRETRAIN_MODULE} not available; skipped")
            continue
        if row.config is not None and not os.path.exists(row.config):
            log(f"{row.id}: {row.config} does not exist yet; skipped")
            continue
        extra: list[str] = []
        skip = ""
        for need in row.needs:
            path, why = ensure_pretrained(need, opts, log, pretrained)
            if path is None:
                skip = why
                break
            if why:
                log(f"{row.id}: {why}")
            extra.append(f"model.hf_path={path}")
        if skip:
            log(f"{row.id}: {skip}; skipped")
            continue
        t0 = time.time()
        rec = run_toy_row(row, opts, log) if row.config is None else run_sweep_row(row, opts, log, extra)
        if opts.dry_run:
            continue
        path = write_record(args.records, rec)
        done = f"{rec['n_runs_done']}/{rec['n_runs']} runs"
        if not record_complete(rec):
            problems += 1
            done += " (INCOMPLETE: see the sweep's reproduce.log)"
        log(f"{row.id}: {done} in {time.time() - t0:.0f} s wall (runs: {rec['cpu_s']:.0f} CPU-s); "
            f"{_rs_brief(row, rec)} -> {path}")
    if not args.dry_run:
        write_tables(args.doc, args.records, args.figures, log)
    log(f"total wall time {time.time() - t_start:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
