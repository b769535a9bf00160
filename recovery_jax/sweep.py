"""Sweeps: run every point of a config file's `get_sweep()` × seeds, then aggregate over seeds (§ numbers:
docs/PROTOCOL.md).

    python -m recovery_jax.sweep --config configs/cpu/fig5b.py --workdir runs/fig5b
        [--config.KEY=VALUE ...] [--seeds 0,1,2] [--variants a,b] [--dry-run] [--report] [--overwrite]
        [--reuse ROOT] [--no-group | --max-group N]

Sweep spec. A config file that is a sweep defines, next to `get_config()`, a `get_sweep()` returning

    {"grid":     {"M": [1, 5, 10, 20], "C": [64, 128]},     # cartesian product of the value lists
     "zip":      {"M": [1, 5, 10], "optim.lr": [1e-2, 2e-3, 1e-3]},   # paired values (same lengths)
     "variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}},  # named override sets
     "seeds":    [0, 1, 2]}

Every part is optional. Keys are dotted config keys (see recovery_jax/config.py). The runs are
variants × zip entries × grid product × seeds; overrides are applied in that order onto
`get_config()` after the command line's `--config.KEY=VALUE` (so the sweep's values win, except that
a command-line override of a swept grid or zip key pins that axis to the given value, which is how
to run one slice of a sweep). Without `get_sweep()` the sweep is the config itself × seeds. Seeds
come from `--seeds`, else from the spec, else `[cfg.seed]`.

Run directories: `WORKDIR/[VARIANT/][KEY=VALUE/...]seed=N`, e.g. `runs/fig5b/M=5/seed=1`. A run
whose directory holds summary.json is skipped; one with config.json but no summary.json is resumed
(`runner.run(..., resume=True)`); `--overwrite` starts every run again. A directory holding a run of
a different config (the config file changed) is refused with a message. `--reuse ROOT` copies a
finished run with the exact same config (seed included; runs are deterministic) from anywhere under
ROOT instead of computing it again: sweeps that share their baseline point (e.g. M=10 of the M sweep
and C=64 of the C sweep) compute it once.

Groups. Runs that can share one compiled program (runner.group_signature) run as one group, capped by
memory and `--max-group`; `--no-group` runs one run per program. A run resumes in the group it started in
(its sweep_run.json names the members while it runs), so a stopped sweep continues bit for bit.

Outputs in WORKDIR: `sweep_summary.json` and `sweep_summary.md`, one row per sweep point (runs that
differ only in the seed): the recovery score of the last cycle (the paper's "epoch 4" for E=5) as
mean ± std over seeds (recovery_jax.stats: std with ddof=0, a lone seed without a spread, the same
numbers as recovery_jax.report), n, the per-cycle RS means, the
online loss (epochs >= 2) mean ± std, document 1's relative loss drop before its last revisit
(`revisit_doc0.last_rel_drop`: ~0 means no recovery, the shuffled-baseline check of Fig 1a) and the
number of runs whose last cycle is flagged for positive transfer (RS not meaningful, docs/PROTOCOL.md §2.4).
`--report` also runs `python -m recovery_jax.report` on all runs into WORKDIR/report.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import os
import re
import resource
import shutil
import sys
import time
from typing import Any, Callable, Sequence

from recovery_jax import cli, stats
from recovery_jax import config as config_lib
from recovery_jax.config import ConfigError
from recovery_jax.rundir import RunError, write_json_atomic

SPEC_KEYS = ("grid", "zip", "variants", "seeds")
SWEEP_FILE = "sweep_run.json"  # per run: name, overrides, CPU and wall seconds of the sweep's call


# ----------------------------------------------------------------------------- the spec


@dataclasses.dataclass
class Point:
    """One sweep point (all seeds share it): its name and its dotted-key overrides."""

    name: str  # "" for a sweep without axes
    overrides: dict  # dotted key -> value, in application order
    variant: str = ""


@dataclasses.dataclass
class RunSpec:
    point: Point
    seed: int
    cfg: Any  # validated ml_collections.ConfigDict

    @property
    def name(self) -> str:
        return f"{self.point.name}/seed={self.seed}" if self.point.name else f"seed={self.seed}"


def _valid_keys() -> dict:
    return config_lib.flatten(config_lib.base_config())


def _check_key(key: Any, where: str) -> str:
    flat = _valid_keys()
    if not isinstance(key, str) or key not in flat:
        last = str(key).split(".")[-1]
        close = [k for k in flat if k.split(".")[-1] == last]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"sweep {where} key {key!r} is not a config key{hint}; see recovery_jax/config.py")
    if key == "seed":
        raise ConfigError(f"sweep {where} key 'seed': give seeds as \"seeds\": [...] (or --seeds), not in {where}")
    if key == "progress":
        raise ConfigError(f"sweep {where} key 'progress' cannot be swept")
    return key


def _check_value(key: str, value: Any, where: str) -> Any:
    """A value of the key's type (int for int keys, a number for float keys, ...)."""
    want = type(_valid_keys()[key])
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if want is int and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok:
        raise ConfigError(f"sweep {where}: {key}={value!r} has type {type(value).__name__}; "
                          f"{key} expects {want.__name__}")
    return value


def _value_list(key: str, values: Any, where: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ConfigError(f"sweep {where}[{key!r}] must be a list of values, got {values!r}")
    if not values:
        raise ConfigError(f"sweep {where}[{key!r}] is an empty list; give at least one value")
    return [_check_value(key, v, f"{where}[{key!r}]") for v in values]


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) or a mix: '0,2,5-7'."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ConfigError(f"--seeds: bad range {part!r}")
            seeds += list(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise ConfigError(f"--seeds={text!r}: expected non-negative integers like 0,1,2 or 0-4")
    if not seeds:
        raise ConfigError(f"--seeds={text!r} gives no seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds={text!r} repeats a seed")
    return seeds


def _spec_part(spec: dict, part: str, holds: str, if_empty: str) -> dict:
    """spec[part], a dict of `holds` ({} when left out); a ConfigError when it is not a dict, or given but empty
    (`if_empty` says what to do instead)."""
    value = spec.get(part, {})
    if value is None or not isinstance(value, dict):
        raise ConfigError(f"sweep {part} must be a dict of {holds}, got {value!r}")
    if part in spec and not value:
        raise ConfigError(f"sweep {part} is empty; {if_empty}")
    return value


def normalize_spec(spec: Any) -> dict:
    """Check a get_sweep() dict; returns {"grid": {..}, "zip": {..}, "variants": {..}, "seeds": [..] or None}."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ConfigError(f"get_sweep() must return a dict with keys {', '.join(SPEC_KEYS)}; got {type(spec).__name__}")
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise ConfigError(f"get_sweep() has unknown part(s) {unknown}; valid: {', '.join(SPEC_KEYS)}")
    out: dict = {"grid": {}, "zip": {}, "variants": {}, "seeds": None}
    grid = _spec_part(spec, "grid", "key -> list of values", "leave \"grid\" out for a sweep over seeds only")
    for key, values in grid.items():
        _check_key(key, "grid")
        out["grid"][key] = _value_list(key, values, "grid")
    zp = _spec_part(spec, "zip", "key -> list of values", "leave \"zip\" out or give paired lists")
    for key, values in zp.items():
        _check_key(key, "zip")
        if key in out["grid"]:
            raise ConfigError(f"sweep key {key!r} is in both grid and zip")
        out["zip"][key] = _value_list(key, values, "zip")
    lengths = {k: len(v) for k, v in out["zip"].items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"sweep zip lists must have the same length; got {lengths}")
    variants = _spec_part(spec, "variants", "name -> {key: value}", "leave \"variants\" out or name at least one")
    for name, overrides in variants.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or "=" in name:
            raise ConfigError(f"sweep variant name {name!r} must be a non-empty word of letters, digits, _ . + -")
        if not isinstance(overrides, dict):
            raise ConfigError(f"sweep variant {name!r} must be a dict of key -> value, got {overrides!r}")
        checked = {}
        for key, value in overrides.items():
            _check_key(key, f"variant {name!r}")
            if key in out["grid"] or key in out["zip"]:
                raise ConfigError(f"sweep variant {name!r} sets {key!r}, which the grid/zip also sweeps")
            checked[key] = _check_value(key, value, f"variant {name!r}")
        out["variants"][name] = checked
    if "seeds" in spec:
        seeds = spec["seeds"]
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)) or not seeds:
            raise ConfigError(f"sweep seeds must be a non-empty list of integers, got {seeds!r}")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ConfigError(f"sweep seeds must be non-negative integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"sweep seeds repeat a seed: {seeds!r}")
        out["seeds"] = list(seeds)
    return out


def format_value(value: Any) -> str:
    """The value as written in a run directory name: 0.001 -> 0.001, 1e-05 -> 1e-05, True -> true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    text = re.sub(r"[^A-Za-z0-9_.,+-]+", "_", text).strip("_")
    return text or "_"


def expand_points(spec: dict, pinned: dict | None = None) -> list[Point]:
    """The sweep points of a normalized spec (variants × zip × grid), pinned axes reduced to one value."""
    pinned = dict(pinned or {})
    grid = {k: v for k, v in spec["grid"].items()}
    for key in list(grid):
        if key in pinned:
            grid[key] = [pinned[key]]
    zip_keys = list(spec["zip"])
    zip_rows = list(zip(*spec["zip"].values())) if zip_keys else [()]
    for key in zip_keys:
        if key in pinned:
            rows = [r for r in zip_rows if r[zip_keys.index(key)] == pinned[key]]
            if not rows:
                raise ConfigError(f"--config.{key}={pinned[key]!r} is none of the sweep's paired values "
                                  f"{spec['zip'][key]}")
            zip_rows = rows
    variants = list(spec["variants"].items()) or [("", {})]
    points = []
    for (vname, vover), zrow, gvals in itertools.product(variants, zip_rows, itertools.product(*grid.values())):
        overrides: dict = dict(vover)
        parts = [vname] if vname else []
        for key, value in zip(zip_keys, zrow):
            overrides[key] = value
            parts.append(f"{key}={format_value(value)}")
        for key, value in zip(grid, gvals):
            overrides[key] = value
            parts.append(f"{key}={format_value(value)}")
        points.append(Point("/".join(parts), overrides, vname))
    names = [p.name for p in points]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"sweep values give the same run name twice: {dup[:3]}; make the values distinct")
    return points


def _set(cfg, key: str, value: Any) -> None:
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def build_runs(path: str, overrides: Sequence[str] = (), seeds: Sequence[int] | None = None,
               variants: Sequence[str] | None = None) -> tuple[list[RunSpec], dict]:
    """Expand a config file into validated runs. Returns (runs, normalized spec)."""
    base, raw = config_lib.load_file(path)  # (get_config(), get_sweep() or None)
    spec = normalize_spec(raw)
    base = config_lib.apply_overrides(base, overrides)
    override_keys = [o.split("=", 1)[0] for o in overrides]
    flat = config_lib.flatten(base)
    pinned = {k: flat[k] for k in override_keys if k in spec["grid"] or k in spec["zip"]}
    if variants:
        unknown = [v for v in variants if v not in spec["variants"]]
        if unknown:
            raise ConfigError(f"--variants: unknown variant(s) {unknown}; this sweep has: "
                              f"{', '.join(spec['variants']) or 'no variants'}")
        spec = dict(spec, variants={k: v for k, v in spec["variants"].items() if k in variants})
    if seeds is None:
        seeds = spec["seeds"] or [int(base.seed)]
    points = expand_points(spec, pinned)
    runs = []
    for point in points:
        cfg = copy.deepcopy(base)
        for key, value in point.overrides.items():
            if key in override_keys and key not in spec["grid"] and key not in spec["zip"]:
                continue  # the command line wins over a variant's value
            _set(cfg, key, value)
        cfg.seed = int(seeds[0])
        cfg.progress = False
        try:
            cfg = config_lib.validate(cfg)
        except ConfigError as e:
            name = RunSpec(point, int(seeds[0]), cfg).name
            raise ConfigError(f"sweep run {name!r}: {e}") from None
        for seed in seeds:  # the seed is a non-negative int: nothing else to validate
            one = copy.deepcopy(cfg)
            one.seed = int(seed)
            runs.append(RunSpec(point, int(seed), one))
    return runs, spec


# ----------------------------------------------------------------------------- aggregation


def summary_markdown(summary: dict) -> str:
    lines = [f"# Sweep `{summary['config']}`", "",
             f"Workdir `{summary['workdir']}`; seeds {summary['seeds']}; "
             f"{summary['n_runs_done']}/{summary['n_runs']} runs done; "
             f"CPU time of the runs {summary['cpu_s_total'] / 60:.1f} min "
             f"(wall {summary['wall_s_total'] / 60:.1f} min).", "",
             "RS = recovery score of the last cycle (docs/PROTOCOL.md §2.4), mean ± std (ddof 0) over seeds (one seed: its "
             "value); online = mean "
             "first-step training loss of epochs ≥ 2 (§2.5); doc-1 drop = (peak − before)/peak of document 1 before "
             "its last revisit (≈ 0: no recovery; the shuffled-baseline check); PT = runs whose last cycle is "
             "flagged for positive transfer (RS not meaningful, §2.4 footnote).", ""]
    n_cyc = max((len(g["stats"]["rs_per_cycle"]["mean"]) for g in summary["groups"]), default=0)
    header = ["point", "n", "RS (last cycle)"] + [f"RS({n})" for n in range(1, n_cyc + 1)] + [
        "online loss", "doc-1 drop", "PT"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in summary["groups"]:
        st = g["stats"]
        cyc = st["rs_per_cycle"]["mean"] + [None] * (n_cyc - len(st["rs_per_cycle"]["mean"]))
        row = [g["name"] or "(config)", str(st["n"]), stats.pm(st["rs_last"])] + [stats.fmt(v) for v in cyc] + [
            stats.pm(st["online_loss"]), stats.pm(st["doc1_revisit_drop"]), str(st["positive_transfer_last"])]
        lines.append("| " + " | ".join(row) + " |")
    failed = [r for r in summary["runs"] if r["status"] == "failed"]
    if failed:
        lines += ["", "Failed runs:", ""] + [f"- `{r['name']}`: {r.get('error', '')}" for r in failed]
    lines += ["", "Command:", "", f"    {summary['command']}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- running


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def normalized_config(d: dict) -> dict:
    """Flat {key: value} of a stored config.json in today's schema, for matching finished runs: missing keys at
    their default (config.with_defaults), keys the schema no longer knows dropped, numbers typed like the
    schema, and config.PERFORMANCE_KEYS ignored (they do not change what a run computes), as are model.hf_path and
    model.revision of a run from scratch (fig2a's scratch variant is fig1's cyclic run); a local revision that is the
    directory's top-level checkpoint (the same files) is the empty revision."""
    base = config_lib.flatten(config_lib.base_config())
    out = {}
    for key, value in config_lib.flatten(config_lib.without_performance_keys(config_lib.with_defaults(d))).items():
        if key not in base:
            continue
        if type(base[key]) is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        out[key] = value
    if out.get("model.init") != "pretrained":  # where a pretrained model would come from: unused from scratch
        out.pop("model.hf_path", None), out.pop("model.revision", None)
    elif out.get("model.revision") and isinstance(out.get("model.hf_path"), str) and out["model.hf_path"]:
        from recovery_jax.models import hub  # only for pretrained runs, which import the models to run anyway
        if hub.is_top_revision(out["model.hf_path"], out["model.revision"]):
            out["model.revision"] = ""  # fig16's step600 is the pretraining's final model, which fig2a loads
    return out


def run_status(run_dir: str, cfg) -> str:
    """'done' (summary.json), 'partial' (config.json only), 'new', or 'changed' (another config's run)."""
    stored = _read_json(os.path.join(run_dir, "config.json"))
    if not isinstance(stored, dict):
        return "new"
    if normalized_config(stored) != normalized_config(config_lib.to_dict(cfg)):
        return "changed"
    return "done" if os.path.exists(os.path.join(run_dir, "summary.json")) else "partial"


def _config_key(cfg_dict: dict) -> str:
    return json.dumps(normalized_config(cfg_dict), sort_keys=True)


def index_finished_runs(root: str) -> dict[str, str]:
    """{config key: run dir} of every finished run (config.json + summary.json) under root."""
    found: dict[str, str] = {}
    if not root or not os.path.isdir(root):
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if "summary.json" in filenames and "config.json" in filenames:
            stored = _read_json(os.path.join(dirpath, "config.json"))
            if isinstance(stored, dict):
                found.setdefault(_config_key(stored), dirpath)
    return found


def copy_run(src: str, dst: str, config: dict | None = None) -> None:
    """Copy a finished run's result files (not its checkpoints or lock) into dst. With `config`, dst's
    config.json is that dict (the same config in today's schema, see normalized_config) instead of a copy."""
    os.makedirs(dst, exist_ok=True)
    names = [n for n in os.listdir(src) if os.path.isfile(os.path.join(src, n))
             and n not in ("run.lock", SWEEP_FILE) and not n.startswith(".")]
    for n in sorted(names, key=lambda n: n == "summary.json"):  # summary.json last: it marks the run done
        if n == "config.json" and config is not None:
            write_json_atomic(os.path.join(dst, n), config)
        else:
            shutil.copy2(os.path.join(src, n), os.path.join(dst, n))


def default_run_fn(cfg, run_dir: str, *, resume: bool, overwrite: bool) -> dict:
    out = default_group_fn([cfg], [run_dir], resume=resume, overwrite=overwrite)[0]
    if isinstance(out, Exception):
        raise out
    return out


def default_group_fn(cfgs, run_dirs: list[str], *, resume: bool, overwrite: bool) -> list:
    """runner.run_group with its output in every member's sweep.log; per run a summary or its RunError."""
    from recovery_jax import runner  # heavy (JAX) import only when something runs
    for d in run_dirs:
        os.makedirs(d, exist_ok=True)
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(open(os.path.join(d, "sweep.log"), "a")) for d in run_dirs]

        def log(*a):
            for f in logs:
                print(*a, file=f, flush=True)
        stack.enter_context(contextlib.redirect_stdout(logs[0]))
        return runner.run_group(list(cfgs), list(run_dirs), resume=resume, overwrite=overwrite, log=log)


def _stored_group(run_dir: str) -> tuple:
    """The members of the group a partial run was started in (its sweep_run.json), so that it resumes in the
    same group: a group's numbers are its members' to fp32 rounding, bit for bit only with the same members."""
    side = _read_json(os.path.join(run_dir, SWEEP_FILE)) or {}
    return tuple(side.get("group") or ()) if side.get("status") == "running" else ()


def plan_groups(pending: Sequence[tuple], max_group: int | None) -> list[list[tuple]]:
    """Pending runs (index, RunSpec, run_dir, status) -> batches that share one compiled program: the same
    static signature (runner.group_signature), the same start (new, or resumed from the same checkpoint, in the
    group it started in), at most max_group and what runner.max_group_size allows in memory."""
    from recovery_jax import runner
    from recovery_jax.checkpoint import Checkpointer
    parts: dict[tuple, list[tuple]] = {}
    for item in pending:
        _, r, run_dir, status = item
        start = Checkpointer(run_dir).latest() if status == "partial" else None
        member_of = _stored_group(run_dir) if status == "partial" else ()
        parts.setdefault((runner.group_signature(r.cfg), status, start, member_of), []).append(item)
    batches = []
    for items in parts.values():
        cap = runner.max_group_size(items[0][1].cfg)
        if max_group:
            cap = min(cap, max_group)
        batches += [items[i:i + cap] for i in range(0, len(items), max(cap, 1))]
    return sorted(batches, key=lambda b: b[0][0])


def execute(runs: Sequence[RunSpec], workdir: str, *, overwrite: bool = False,
            run_fn: Callable[..., dict] | None = None, group_fn: Callable[..., list] = default_group_fn,
            max_group: int | None = None, log=print, reuse_root: str | None = None) -> list[dict]:
    """Run (or skip / resume) every run; returns one record per run, in the order of `runs`. Runs that can share
    one compiled program run as groups (plan_groups); with run_fn, or max_group=1, one run per program.
    Failures (RunError) are recorded and the sweep goes on; ConfigError and KeyboardInterrupt stop it. With
    reuse_root, a new run whose exact config (seed included) already finished somewhere under reuse_root is
    copied from there instead of rerun."""
    changed = [r.name for r in runs if not overwrite and run_status(os.path.join(workdir, r.name), r.cfg) == "changed"]
    if changed:
        raise ConfigError(f"{len(changed)} run dir(s) hold runs of a different config (did the config file change?), "
                          f"e.g. {os.path.join(workdir, changed[0])}; pass --overwrite to rerun them from scratch "
                          f"or choose another --workdir")
    records: list[dict | None] = [None] * len(runs)
    width = max((len(r.name) for r in runs), default=0)
    reusable = index_finished_runs(reuse_root) if reuse_root else {}
    pending = []
    for i, r in enumerate(runs):
        run_dir = os.path.join(workdir, r.name)
        status = "new" if overwrite else run_status(run_dir, r.cfg)
        rec = {"name": r.name, "point": r.point.name, "seed": r.seed, "overrides": r.point.overrides}
        if status == "done":
            side = _read_json(os.path.join(run_dir, SWEEP_FILE)) or {}
            rec.update(status="skipped", summary=_read_json(os.path.join(run_dir, "summary.json")),
                       cpu_s=side.get("cpu_s"), wall_s=side.get("wall_s"))
            log(f"[{i + 1}/{len(runs)}] {r.name:<{width}}  done already (skipped)  RS {_rs_text(rec['summary'])}")
            records[i] = rec
            continue
        src = reusable.get(_config_key(config_lib.to_dict(r.cfg))) if status == "new" else None
        if src and os.path.abspath(src) != os.path.abspath(run_dir):
            copy_run(src, run_dir, config_lib.to_dict(r.cfg))
            write_json_atomic(os.path.join(run_dir, SWEEP_FILE),
                              {"name": r.name, "overrides": r.point.overrides, "seed": r.seed, "cpu_s": 0.0,
                               "wall_s": 0.0, "status": "reused", "reused_from": src})
            rec.update(status="reused", reused_from=src, summary=_read_json(os.path.join(run_dir, "summary.json")),
                       cpu_s=0.0, wall_s=0.0)
            log(f"[{i + 1}/{len(runs)}] {r.name:<{width}}  same config as {src} (copied)  RS {_rs_text(rec['summary'])}")
            records[i] = rec
            continue
        if status == "partial":
            # same config (run_status said so), maybe written by an older schema: store it in today's schema,
            # or the run directory's check would refuse to resume it (it fills missing keys, but not retired
            # keys or numbers typed differently)
            stored = _read_json(os.path.join(run_dir, "config.json"))
            want = config_lib.to_dict(r.cfg)
            if {k: v for k, v in stored.items() if k != "progress"} != {k: v for k, v in want.items() if k != "progress"}:
                write_json_atomic(os.path.join(run_dir, "config.json"), dict(want, progress=stored.get("progress", False)))
        pending.append((i, r, run_dir, status))

    if run_fn is not None or max_group == 1:
        batches = [[item] for item in pending]
        one = run_fn or default_run_fn

        def call(cfgs, dirs, resume, overwrite):
            try:
                return [one(cfgs[0], dirs[0], resume=resume, overwrite=overwrite)]
            except RunError as e:
                return [e]
    else:
        batches = plan_groups(pending, max_group)

        def call(cfgs, dirs, resume, overwrite):
            try:
                return group_fn(cfgs, dirs, resume=resume, overwrite=overwrite)
            except RunError as e:  # the group as a whole failed (e.g. a damaged checkpoint)
                return [e] * len(cfgs)
    for batch in batches:
        for item, rec in zip(batch, run_batch(batch, call, len(runs), width, overwrite, log)):
            records[item[0]] = rec
    return [rec for rec in records if rec is not None]


def run_batch(batch: Sequence[tuple], call, n_runs: int, width: int, overwrite: bool, log) -> list[dict]:
    """Run one batch (one compiled program): its runs' records in batch order, sweep_run.json files and log lines."""
    names = [item[1].name for item in batch]
    if len(batch) > 1:
        log(f"group of {len(batch)} runs in one program: {', '.join(names)}")
    for _, r, run_dir, status in batch:  # which group a run started in, so that it resumes in that group
        os.makedirs(run_dir, exist_ok=True)
        side = _read_json(os.path.join(run_dir, SWEEP_FILE)) if status == "partial" else None
        if not (side and side.get("status") == "running"):
            write_json_atomic(os.path.join(run_dir, SWEEP_FILE),
                              {"name": r.name, "seed": r.seed, "status": "running", "group": names})
    cpu0, t0 = _cpu_seconds(), time.time()
    outs = call([item[1].cfg for item in batch], [item[2] for item in batch], batch[0][3] == "partial", overwrite)
    share_cpu, share_wall = (_cpu_seconds() - cpu0) / len(batch), (time.time() - t0) / len(batch)
    records = []
    for (i, r, run_dir, status), out in zip(batch, outs):
        rec = {"name": r.name, "point": r.point.name, "seed": r.seed, "overrides": r.point.overrides,
               "cpu_s": share_cpu, "wall_s": share_wall, "group_size": len(batch)}
        if isinstance(out, Exception):
            rec.update(status="failed", error=str(out).splitlines()[0] if str(out) else type(out).__name__)
            log(f"[{i + 1}/{n_runs}] {r.name:<{width}}  FAILED: {rec['error']}")
            records.append(rec)
            continue
        rec.update(status="resumed" if status == "partial" else "ran", summary=out)
        try:
            write_json_atomic(os.path.join(run_dir, SWEEP_FILE),
                              {"name": r.name, "overrides": r.point.overrides, "seed": r.seed,
                               "cpu_s": rec["cpu_s"], "wall_s": rec["wall_s"], "status": rec["status"],
                               "group_size": len(batch)})
        except RunError:
            pass
        online = stats.get(out, "online_loss", "mean")
        log(f"[{i + 1}/{n_runs}] {r.name:<{width}}  RS {_rs_text(out)}  online {stats.fmt(online)}  "
            f"({rec['wall_s']:.0f}s wall, {rec['cpu_s']:.0f}s CPU"
            + (f"; a share of a group of {len(batch)})" if len(batch) > 1 else ")"))
        records.append(rec)
    return records


def _rs_text(summary: Any) -> str:
    rs = stats.get(summary, "recovery_scores", default=None)
    if not rs:
        return "—"
    return f"{stats.fmt(rs[-1])} (per cycle: {', '.join(stats.fmt(v, 2) for v in rs)})"


def summarize_sweep(records: Sequence[dict], runs: Sequence[RunSpec], *, config_path: str, workdir: str,
                    seeds: Sequence[int], command: str) -> dict:
    groups: dict[str, dict] = {}
    for r in runs:
        groups.setdefault(r.point.name, {"name": r.point.name, "variant": r.point.variant,
                                         "overrides": r.point.overrides, "seeds": [], "runs": []})
    for rec in records:
        g = groups[rec["point"]]
        if rec.get("summary"):
            g["seeds"].append(rec["seed"])
            g["runs"].append(rec["summary"])
    out_groups = []
    for g in groups.values():
        out_groups.append({"name": g["name"], "variant": g["variant"], "overrides": g["overrides"],
                           "seeds": g["seeds"], "stats": stats.seed_stats(g["runs"])})
    done = [r for r in records if r.get("summary")]
    cpu = sum(r.get("cpu_s") or 0.0 for r in records)
    wall = sum(r.get("wall_s") or 0.0 for r in records)
    slim = [{k: v for k, v in r.items() if k != "summary"} | {"rs": stats.get(r.get("summary"), "recovery_scores")}
            for r in records]
    return {"config": config_path, "workdir": workdir, "seeds": list(seeds), "command": command,
            "n_runs": len(runs), "n_runs_done": len(done), "cpu_s_total": cpu, "wall_s_total": wall,
            "groups": out_groups, "runs": slim}


# ----------------------------------------------------------------------------- CLI


def parse(argv: list[str]):
    overrides, rest = config_lib.split_argv(argv)
    p = cli.ArgumentParser(prog="python -m recovery_jax.sweep", description=__doc__)
    p.add_argument("--config", required=True, help="a config file with get_config() and optionally get_sweep()")
    p.add_argument("--workdir", required=True, help="folder for the run directories and the sweep summary")
    p.add_argument("--seeds", default=None, help="seeds, e.g. 0,1,2 or 0-4 (default: the sweep's seeds)")
    p.add_argument("--variants", default=None, help="run only these named variants (comma-separated)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status; run nothing")
    p.add_argument("--report", action="store_true", help="also write the report of all runs to WORKDIR/report")
    p.add_argument("--overwrite", action="store_true", help="rerun every run from scratch")
    p.add_argument("--no-group", action="store_true",
                   help="one run per compiled program (default: runs that can share one run as a group)")
    p.add_argument("--max-group", type=cli.positive_int, default=None, metavar="N",
                   help="at most N runs in one group (default: what fits in memory)")
    p.add_argument("--reuse", default=None, metavar="ROOT",
                   help="copy instead of rerunning a run whose exact config (seed included) finished under ROOT")
    args = p.parse_args(rest)
    cli.check_out_dir(args.workdir, "--workdir")
    if args.reuse is not None and not os.path.isdir(args.reuse):
        raise cli.UsageError(f"--reuse {args.reuse}: not a directory; give the folder holding finished runs")
    return args, overrides


def main(argv: list[str]) -> int:
    args, overrides = parse(argv)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    runs, _ = build_runs(args.config, overrides, seeds=seeds, variants=variants)
    seeds_used = sorted({r.seed for r in runs})
    if args.dry_run:
        print(f"{len(runs)} run(s) of {args.config} under {args.workdir}:")
        reusable = index_finished_runs(args.reuse) if args.reuse else {}
        for r in runs:
            status = "new" if args.overwrite else run_status(os.path.join(args.workdir, r.name), r.cfg)
            if status == "new" and _config_key(config_lib.to_dict(r.cfg)) in reusable:
                status = "copy"
            ov = ", ".join(f"{k}={v!r}" for k, v in r.point.overrides.items()) or "(config as is)"
            print(f"  {r.name:<40} {status:<8} {ov}")
        return 0
    os.makedirs(args.workdir, exist_ok=True)
    print(f"sweep {args.config}: {len(runs)} run(s) ({len({r.point.name for r in runs})} point(s) × "
          f"seeds {seeds_used}) under {args.workdir}", flush=True)
    records = execute(runs, args.workdir, overwrite=args.overwrite, log=lambda m: print(m, flush=True),
                      reuse_root=args.reuse, max_group=1 if args.no_group else args.max_group)
    command = " ".join(["python -m recovery_jax.sweep"] + list(argv))
    summary = summarize_sweep(records, runs, config_path=args.config, workdir=args.workdir, seeds=seeds_used,
                              command=command)
    write_json_atomic(os.path.join(args.workdir, "sweep_summary.json"), summary)
    md = summary_markdown(summary)
    with open(os.path.join(args.workdir, "sweep_summary.md"), "w") as f:
        f.write(md)
    print(md)
    if args.report:
        done_dirs = [os.path.join(args.workdir, r["name"]) for r in records if r.get("summary")]
        if done_dirs:
            try:
                from recovery_jax import report
                path = report.build_report(done_dirs, os.path.join(args.workdir, "report"),
                                           title=f"Sweep {args.config}")
                print(f"report: {path}")
            except Exception as e:  # the sweep's own results are written; a report problem must not hide them
                print(f"warning: the report failed ({type(e).__name__}: {e}); run "
                      f"python -m recovery_jax.report on the run dirs by hand", file=sys.stderr)
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(r['name'] for r in failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
