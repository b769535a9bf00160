"""The same set of runs four ways, in one invocation on one machine:

  (a)  one compiled program per run, persistent compilation cache off (one process, run after run: the
       behaviour before groups)
  (a') the same with the persistent compilation cache warm (every run loads its program)
  (b)  grouped: the runs that can share one program run as one (python -m recovery_jax.sweep's default)
  (c)  the PyTorch reference of benchmarks/torch_ref.py (the authors' loop), one run after another

Each way runs in its own subprocess (its peak RSS is that process's). Reported: wall time, compile time (sum
of the runs' compile_s; a group compiles once), runs per hour, the ratios, peak RSS and the group sizes
chosen. Optionally (--group8) the peak RSS of 8 default-size runs in one group.

    python -m benchmarks.sweep_throughput --config configs/cpu/fig1.py --out benchmarks/results/sweep_fig1.json
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from recovery_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(argv: list[str], env: dict, log) -> dict:
    """Run `python -m ARGV` and return its wall time, peak RSS (MB) and exit status."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python -m {' '.join(argv)} failed ({proc.returncode}):\n{out[-3000:]}")
    log(f"  {' '.join(argv[:3])} ...: {wall:.1f}s wall, peak RSS {usage.ru_maxrss / 1024:.0f} MB")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


def _summaries(workdir: str) -> list[dict]:
    out = []
    for path in sorted(glob.glob(os.path.join(workdir, "**", "summary.json"), recursive=True)):
        with open(path) as f:
            out.append(json.load(f))
    return out


def _sweep(config: str, workdir: str, overrides: list[str], extra: list[str], cache: str, log) -> dict:
    env = dict(os.environ, RECOVERY_JAX_COMPILATION_CACHE=cache, PYTHONPATH=ROOT)
    res = _child(["recovery_jax.sweep", "--config", config, "--workdir", workdir, *overrides,
                  "--config.progress=false", *extra], env, log)
    sums = _summaries(workdir)
    # a group's compile and train time appear in each of its runs' summaries: count them once per group
    share = [1.0 / max(int(s.get("group_size", 1)), 1) for s in sums]
    res.update(n_runs=len(sums), compile_s=sum(s["compile_s"] * w for s, w in zip(sums, share)),
               train_s=sum(s["train_wall_s"] * w for s, w in zip(sums, share)),
               # everything the runs do but compiling (and starting Python): documents, init, training, results
               work_s=sum((s["total_wall_s"] - s["compile_s"]) * w for s, w in zip(sums, share)),
               group_sizes=sorted({s.get("group_size", 1) for s in sums}),
               rs_last=[s["recovery_scores"][-1] for s in sums])
    res["runs_per_hour"] = 3600 * res["n_runs"] / res["wall_s"]
    return res


def _torch(config: str, overrides: list[str], workdir: str, log, max_runs: int | None = None,
           threads: int | None = None) -> dict:
    """The runs of the sweep through the PyTorch reference, one after another (bundles written first, outside
    the timing). With max_runs, only the first max_runs runs are timed and the total is extrapolated (said so)."""
    from recovery_jax.sweep import build_runs

    runs, _ = build_runs(config, [o[len("--config."):] for o in overrides])
    n_all = len(runs)
    runs = runs[:max_runs] if max_runs else runs
    bundles = []
    for r in runs:
        why = common.torch_supported(r.cfg)
        if why:
            return {"skipped": f"{r.name}: the PyTorch reference does not implement {why}"}
        path = os.path.join(workdir, r.name.replace("/", "_"))
        common.write_bundle(r.cfg, path, log=lambda *a: None)
        bundles.append(path)
    env = dict(os.environ, PYTHONPATH=ROOT)
    walls, rss, cpu = [], [], 0.0
    for path in bundles:
        extra = ["--threads", str(threads)] if threads else []
        res = _child(["benchmarks.torch_ref", path, path + "/out", *extra], env, log)
        walls.append(res["wall_s"])
        rss.append(res["peak_rss_mb"])
        cpu += res["cpu_s"]
    scale = n_all / len(bundles)
    return {"wall_s": scale * sum(walls), "n_runs": n_all, "timed_runs": len(bundles), "extrapolated": scale != 1,
            "wall_s_timed": walls, "peak_rss_mb": max(rss), "cpu_s": scale * cpu, "threads": threads or os.cpu_count(),
            "runs_per_hour": 3600 * len(bundles) / sum(walls)}


def _partial(out: str | None, report: dict) -> None:
    """What is measured so far, in case the invocation is stopped before the end."""
    if out:
        common.write_json(out + ".partial.json", report)


def run(config: str, overrides: list[str], *, skip_torch: bool, group8: bool, torch_runs: int | None = None,
        torch_threads: list[int] | None = None, out: str | None = None, log=print) -> dict:
    tmp = tempfile.mkdtemp(prefix="sweep_throughput_")
    report = {"config": config, "overrides": overrides, "machine": common.machine_info(),
              "load_average_start": common.load_average()}
    try:
        log("(a) one program per run, compilation cache off")
        report["a_one_per_run"] = _sweep(config, f"{tmp}/a", overrides, ["--no-group"], "off", log)
        _partial(out, report)
        warm = f"{tmp}/cache"
        log("(a') one program per run, compilation cache warm (filled by a first pass, not timed)")
        _sweep(config, f"{tmp}/warmup", overrides, ["--no-group"], warm, lambda *a: None)
        report["a_warm_cache"] = _sweep(config, f"{tmp}/a_warm", overrides, ["--no-group"], warm, log)
        _partial(out, report)
        log("(b) grouped")
        report["b_grouped"] = _sweep(config, f"{tmp}/b", overrides, [], "off", log)
        _partial(out, report)
        if not skip_torch:
            log("(c) the PyTorch reference, run after run")
            tried = [_torch(config, overrides, f"{tmp}/torch{n or ''}", log, torch_runs, n)
                     for n in (torch_threads or [None])]
            timed = [t for t in tried if "wall_s" in t]
            report["c_torch"] = min(timed, key=lambda t: t["wall_s"]) if timed else tried[0]
            if len(tried) > 1:  # the fastest thread count is the reference; all are kept
                report["c_torch_by_threads"] = {str(t.get("threads")): t for t in tried}
        if group8:
            log("peak RSS of 8 default-size runs in one group (configs/default.py, one epoch)")
            env = dict(os.environ, RECOVERY_JAX_COMPILATION_CACHE="off", PYTHONPATH=ROOT)
            report["group8_default"] = _child(["recovery_jax.train", "--config", "configs/default.py", "--workdir",
                                               f"{tmp}/g8", "--seeds", "0-7", "--config.E=1", "--no-progress"], env, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["ratios"] = ratios(report)
    report["load_average_end"] = common.load_average()
    return report


def ratios(report: dict) -> dict:
    """The issue's targets from the measured ways: (b) against (a), (a') and (c), and (b)'s wall against the
    runs' summed compute plus one compile per group, compute read two ways: the training loops alone
    (train_s, strict) and everything but compiling (work_s: also documents, init and result files); and the
    same with (b)'s own time in the runner (its work and compile, not its Python start-up, which (a)'s summed
    work leaves out too) in place of its wall."""
    a, aw, b = report["a_one_per_run"], report["a_warm_cache"], report["b_grouped"]
    out = {"b_vs_a": a["wall_s"] / b["wall_s"], "b_vs_a_warm": aw["wall_s"] / b["wall_s"],
           "a_warm_vs_a": a["wall_s"] / aw["wall_s"],
           "b_wall_over_compute_plus_group_compiles": b["wall_s"] / (a["train_s"] + b["compile_s"])}
    if "work_s" in a:
        out["b_wall_over_work_plus_group_compiles"] = b["wall_s"] / (a["work_s"] + b["compile_s"])
    if "work_s" in a and "work_s" in b:  # both sides without their Python start-up: (b)'s time in the runner
        out["b_runner_over_work_plus_group_compiles"] = (b["work_s"] + b["compile_s"]) / (a["work_s"] + b["compile_s"])
    if "wall_s" in report.get("c_torch", {}):
        out["b_vs_torch"] = report["c_torch"]["wall_s"] / b["wall_s"]
        out["a_vs_torch"] = report["c_torch"]["wall_s"] / a["wall_s"]
    return out


def summary_lines(r: dict) -> list[str]:
    lines = []
    for key, name in (("a_one_per_run", "(a)  one program per run, cache off"),
                      ("a_warm_cache", "(a') one program per run, cache warm"), ("b_grouped", "(b)  grouped"),
                      ("c_torch", "(c)  PyTorch reference")):
        x = r.get(key)
        if not x:
            continue
        if "skipped" in x:
            lines.append(f"{name}: skipped ({x['skipped']})")
            continue
        extra = f", compile {x['compile_s']:.1f}s, groups of {x['group_sizes']}" if "compile_s" in x else ""
        if x.get("extrapolated"):
            name += f" (timed {x['timed_runs']} of {x['n_runs']} runs, extrapolated)"
        lines.append(f"{name}: {x['wall_s']:.1f}s wall for {x['n_runs']} runs ({x['runs_per_hour']:.0f} runs/h), "
                     f"peak RSS {x['peak_rss_mb']:.0f} MB{extra}")
    for n, t in r.get("c_torch_by_threads", {}).items():
        if "wall_s" in t:
            lines.append(f"     PyTorch with {n} thread(s): {t['wall_s']:.1f}s wall")
    for k, v in r["ratios"].items():
        lines.append(f"  {k}: {v:.2f}")
    if "group8_default" in r:
        lines.append(f"8 default-size runs in one group: peak RSS {r['group8_default']['peak_rss_mb']:.0f} MB")
    return lines


def _thread_counts(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise cli.argparse.ArgumentTypeError(f"{text!r} is not a list of positive thread counts, e.g. 1 or 1,2")
    return out


def main(argv=None) -> int:
    from recovery_jax import config as config_lib

    def inner(argv):
        overrides, rest = config_lib.split_argv(argv)
        p = cli.ArgumentParser(prog="python -m benchmarks.sweep_throughput", description=__doc__)
        p.add_argument("--config", default="configs/cpu/fig1.py", help="a sweep config (get_sweep())")
        p.add_argument("--out", default=None, help="write the report JSON here")
        p.add_argument("--skip-torch", action="store_true")
        p.add_argument("--group8", action="store_true", help="also the peak RSS of 8 default-size runs in a group")
        p.add_argument("--torch-runs", type=cli.positive_int, default=None, metavar="N",
                       help="time only the first N runs of the PyTorch reference and extrapolate to all")
        p.add_argument("--torch-threads", type=_thread_counts, default=None, metavar="N[,N...]",
                       help="torch intra-op threads; several (e.g. 1,2): each is timed, the fastest is (c)")
        a = p.parse_args(rest)
        config_lib.load(a.config, overrides)  # a bad config or override is one error line before any work
        if a.out:
            cli.check_out_dir(os.path.dirname(os.path.abspath(a.out)), "--out")
        report = run(a.config, [f"--config.{o}" for o in overrides], skip_torch=a.skip_torch, group8=a.group8,
                     torch_runs=a.torch_runs, torch_threads=a.torch_threads, out=a.out)
        common.print_report(summary_lines(report), report, a.out)
        return 0

    return cli.guarded(inner, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
