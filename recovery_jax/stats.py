"""Statistics over the seeds of one condition, shared by the report and the sweep summary.

One implementation so that report.md and sweep_summary.md print the same numbers for the same runs:
mean and population std (ddof 0) over the finite values, a lone seed printed without a spread.
Depends on nothing else in the package, so both modules can import it without a cycle.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Sequence

import numpy as np

__all__ = ["get", "mean_std", "fmt", "pm", "group_indices", "cycle_stat", "seed_stats"]


def get(d: Any, *path: str, default: Any = None) -> Any:
    """d[path[0]][path[1]]...; `default` where a level is missing (summaries of older runs lack keys)."""
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _finite(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def mean_std(values: Iterable[Any]) -> dict:
    """{"mean", "std" (ddof 0), "n", "values"} over the finite values; mean/std None when none is finite.

    Non-finite and missing values (None) are skipped, not counted: a run without a complete cycle has no RS."""
    vals = [_finite(v) for v in values]
    fin = [v for v in vals if v is not None]
    if not fin:
        return {"mean": None, "std": None, "n": 0, "values": vals}
    m = sum(fin) / len(fin)
    sd = math.sqrt(sum((v - m) ** 2 for v in fin) / len(fin))
    return {"mean": m, "std": sd, "n": len(fin), "values": vals}


def fmt(v: Any, nd: int = 3) -> str:
    """One table cell: "—" for a missing or non-finite number, yes/no for a flag, integers as such."""
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{nd}f}" if math.isfinite(float(v)) else "—"
    return str(v)


def pm(stat: dict, nd: int = 3) -> str:
    """"mean ± std" of a mean_std dict; a single finite value has no spread and is printed alone."""
    if stat.get("mean") is None:
        return "—"
    if stat.get("n", 2) == 1:
        return f"{stat['mean']:.{nd}f}"
    return f"{stat['mean']:.{nd}f} ± {stat['std']:.{nd}f}"


def group_indices(keys: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """{key: indices holding it}, keys in first-appearance order: the runs of one condition, one per seed."""
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def cycle_stat(stats: dict, n: int) -> dict:
    """The mean_std-like dict of cycle n (0-based) from seed_stats(...)["rs_per_cycle"]."""
    per = stats["rs_per_cycle"]
    if n >= len(per["mean"]):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": per["mean"][n], "std": per["std"][n], "n": per["n"][n]}


def seed_stats(summaries: Sequence[dict]) -> dict:
    """Statistics over the seeds of one condition from their summaries (summary.json /
    metrics.summarize dicts): RS of the last cycle and of every cycle, online loss, document 1's
    relative drop before its last revisit, the count of last cycles flagged for positive transfer."""
    per_run_rs = [get(s, "recovery_scores", default=[]) or [] for s in summaries]
    n_cyc = max((len(r) for r in per_run_rs), default=0)
    per_cycle = [mean_std([r[n] if n < len(r) else None for r in per_run_rs]) for n in range(n_cyc)]
    return {
        "n": len(summaries),
        "rs_last": mean_std([get(s, "rs_last") for s in summaries]),
        "rs_per_cycle": {"mean": [c["mean"] for c in per_cycle], "std": [c["std"] for c in per_cycle],
                         "n": [c["n"] for c in per_cycle]},
        "online_loss": mean_std([get(s, "online_loss", "mean") for s in summaries]),
        "doc1_revisit_drop": mean_std([get(s, "revisit_doc0", "last_rel_drop") for s in summaries]),
        "positive_transfer_last": sum(bool(get(s, "positive_transfer", "last", default=False)) for s in summaries),
        "mean_loss_final": mean_std([get(s, "mean_loss_final") for s in summaries]),
    }
