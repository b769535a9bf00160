"""Throughput of recovery_jax vs a PyTorch transcription of the authors' loop, on the same work.

    python -m benchmarks.throughput [--config configs/default.py] [--config.KEY=VALUE ...]
        [--out benchmarks/results/NAME.json] [--skip-torch] [--episodes-only N] [--repeat R]
        [--torch-threads N[,N2]] [--no-utilisation] [--util-reps N] [--peak-sizes 1024,2048]
        [--in-process] [--keep-bundle DIR]

One invocation: the same config, documents, order, T, C, M, E and initial weights for both sides
(written once to a bundle, see benchmarks/common.py). The PyTorch reference runs first, then ours,
each in its own subprocess so each peak-RSS figure is its own (--in-process: both in this process,
memory figures then overlap). Reports wall time of the whole protocol (row-0 evaluation + episodes),
episodes/s, tokens/s, the speed ratio, our compile time separately, peak memory, the utilisation of
our training scan and evaluation against a matmul peak measured in the same run, and the max abs
difference of the two loss tensors (equal work: they must agree to 1e-3 — over a long Adam run fp32
rounding grows beyond that, so the report also gives the first epoch and, with two torch thread
counts, PyTorch's own run-to-run difference as the noise floor).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import common

DEFAULT_CONFIG = "configs/default.py"
TOL = 1e-3
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(module: str, bundle: str, prefix: str, args: list[str], log) -> tuple[dict, dict]:
    cmd = [sys.executable, "-m", module, bundle, prefix, *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = _REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(cmd, cwd=_REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if line.startswith("  "):
            log(line)
    if proc.wait() != 0:
        raise RuntimeError(f"{module} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    with open(prefix + ".json") as f:
        rep = json.load(f)
    z = np.load(prefix + ".npz")
    return rep, {"eval_losses": z["eval_losses"], "train_losses": z["train_losses"]}


def _thread_list(torch_threads) -> list[int]:
    if torch_threads is None or torch_threads == "":
        return [os.cpu_count()]
    if isinstance(torch_threads, int):
        return [torch_threads]
    return [int(x) for x in str(torch_threads).split(",") if x.strip()]


def _parity(a: dict, b: dict, T: int | None = None, M: int | None = None) -> dict:
    """Max / mean abs differences of two runs' loss tensors; also how far into the run they stay within
    TOL (fp32 rounding differences grow along the run: the protocol amplifies them)."""
    de = np.abs(a["eval_losses"] - b["eval_losses"])
    dt = np.abs(a["train_losses"] - b["train_losses"])
    row = de.max(axis=1)
    bad = np.flatnonzero(row > TOL)
    out = {"max_abs_diff_eval": float(de.max()), "max_abs_diff_train": float(dt.max()),
           "mean_abs_diff_eval": float(de.mean()), "mean_abs_diff_train": float(dt.mean()),
           "first_row_max_abs_diff_eval": float(de[0].max()),
           "eval_rows_within_tolerance": int(bad[0]) if len(bad) else int(len(row)),
           "eval_max_abs_diff_by_row": [float(x) for x in row],
           "tolerance": TOL, "ok": bool(de.max() <= TOL and dt.max() <= TOL),
           "shapes": {"eval": list(de.shape), "train": list(dt.shape)}}
    if T and M:  # the first epoch: rows 0..T, train steps 0..T*M-1
        out["first_epoch_max_abs_diff_eval"] = float(de[: T + 1].max())
        out["first_epoch_max_abs_diff_train"] = float(dt[: T * M].max())
        out["first_epoch_ok"] = bool(out["first_epoch_max_abs_diff_eval"] <= TOL
                                     and out["first_epoch_max_abs_diff_train"] <= TOL)
    return out


def _rates(wall_s: float, K: int, T: int, C: int, M: int) -> dict:
    train_tokens = K * M * C
    eval_tokens = (K + 1) * T * C  # row 0 + one row per episode, all timed
    return {"episodes_per_s": K / wall_s, "train_tokens": train_tokens, "eval_tokens": eval_tokens,
            "train_tokens_per_s": train_tokens / wall_s, "eval_tokens_per_s": eval_tokens / wall_s,
            "tokens_per_s": (train_tokens + eval_tokens) / wall_s}


def run_benchmark(cfg, *, episodes: int | None = None, repeat: int = 1, skip_torch: bool = False,
                  isolate: bool = True, with_utilisation: bool = True, util_reps: int = 10,
                  peak_sizes=(1024, 2048), torch_threads: int | str | None = None, isolated_scan: bool = True,
                  torch_device: str = "cpu",
                  bundle_dir: str | None = None,
                  log=print) -> dict:
    """Run both sides on one bundle and return the report dict (see README for the fields)."""
    from benchmarks import jax_side, torch_ref

    cleanup = None
    if bundle_dir is None:
        cleanup = tempfile.TemporaryDirectory(prefix="rj_bench_")
        bundle_dir = cleanup.name
    try:
        why_not = common.torch_supported(cfg)
        if why_not and not skip_torch:
            log(f"the PyTorch reference does not implement this config ({why_not}); --skip-torch implied")
            skip_torch = True
        t0 = time.perf_counter()
        b = common.write_bundle(cfg, os.path.join(bundle_dir, "bundle"))
        log(f"bundle written in {time.perf_counter() - t0:.1f}s: {b.meta['arch']} {b.meta['n_params'] / 1e6:.2f}M "
            f"params, vocab {b.meta['vocab_size']}, T={b.meta['T']} C={b.meta['C']} M={b.meta['M']} "
            f"E={b.meta['E']}, {b.meta['episodes']} episodes")
        K = b.meta["episodes"] if episodes is None else min(int(episodes), b.meta["episodes"])
        T, C, M = b.meta["T"], b.meta["C"], b.meta["M"]
        fm = common.flop_model(b.meta["arch"], b.meta["hf_config"], C)
        report = {
            "argv": sys.argv[1:], "machine": common.machine_info(),
            "protocol": {"T": T, "C": C, "M": M, "E": b.meta["E"], "episodes_total": b.meta["episodes"],
                         "episodes_timed": K, "full_protocol": K == b.meta["episodes"],
                         "optimizer": b.meta["optimizer"], "dtype": b.meta["dtype"],
                         "restrict_vocab": b.meta["restrict_vocab"], "vocab_size": b.meta["vocab_size"]},
            "model": {"arch": b.meta["arch"], "hf_config": b.meta["hf_config"], "n_params": b.meta["n_params"],
                      **{k: v for k, v in fm.items()}},
            "flops": common.protocol_flops(fm, T, M, K),
            "isolated_processes": bool(isolate),
        }
        ep_args = [] if episodes is None else ["--episodes", str(K)]
        losses = {}
        thread_list = _thread_list(torch_threads)
        torch_runs = []
        if not skip_torch:
            for i, nth in enumerate(thread_list):
                log(f"PyTorch reference ({K} episodes, {nth} threads) ...  [{common.uptime_line()}]")
                prefix = os.path.join(bundle_dir, f"torch_{i}")
                if isolate:
                    targs = ep_args + ["--repeat", str(repeat), "--threads", str(nth), "--device", torch_device]
                    rep, tl = _worker("benchmarks.torch_ref", b.path, prefix, targs, log)
                else:
                    out = torch_ref.benchmark(b, K, repeat, log=log, threads=nth, device=torch_device)
                    rep, tl = out["report"], out
                rep.update(_rates(rep["wall_s"], K, T, C, M))
                rep["uptime_after"] = common.uptime_line()
                torch_runs.append((rep, tl))
                log(f"  torch ({nth} threads): {rep['wall_s']:.2f}s  ({rep['episodes_per_s']:.2f} episodes/s)")
            report["torch"], losses["torch"] = torch_runs[0]
        log(f"ours ({K} episodes) ...  [{common.uptime_line()}]")
        args = ep_args + ["--repeat", str(repeat), "--util-reps", str(util_reps),
                          "--peak-sizes", ",".join(map(str, peak_sizes))]
        if not with_utilisation:
            args.append("--no-utilisation")
        if not isolated_scan:
            args.append("--scan-by-subtraction")
        if isolate:
            rep, losses["ours"] = _worker("benchmarks.jax_side", b.path, os.path.join(bundle_dir, "ours"), args, log)
        else:
            out = jax_side.benchmark(b, K, repeat, with_utilisation, util_reps, peak_sizes, isolated_scan, log=log)
            rep, losses["ours"] = out["report"], out
        rep.update(_rates(rep["wall_s"], K, T, C, M))
        rep["wall_incl_compile_s"] = rep["wall_s"] + rep["compile_s"]
        rep["uptime_after"] = common.uptime_line()
        report["ours"] = rep
        log(f"  ours: {rep['wall_s']:.2f}s + compile {rep['compile_s']:.2f}s  ({rep['episodes_per_s']:.2f} episodes/s)")
        report["losses"] = {"eval_rows": K + 1, "ours_eval_mean_last_row": float(np.mean(losses["ours"]["eval_losses"][-1])),
                            "ours_train_first": float(losses["ours"]["train_losses"][0])}
        if torch_runs:
            o = report["ours"]
            for i, (t, tl) in enumerate(torch_runs):
                cmp = {"ours_vs_torch": t["wall_s"] / o["wall_s"],
                       "ours_incl_compile_vs_torch": t["wall_s"] / o["wall_incl_compile_s"]}
                par = _parity(losses["ours"], tl, T, M)
                if b.meta["dtype"] != "float32":
                    par["note"] = f"our compute dtype is {b.meta['dtype']}; the reference runs in float32"
                if i == 0:
                    report["speedup"], report["parity"] = cmp, par
                else:
                    t["speedup"], t["parity"] = cmp, par
                    report.setdefault("torch_other_threads", []).append(t)
            if len(torch_runs) > 1:
                # the same PyTorch code with another thread count: its differences are pure fp32 rounding,
                # the floor against which ours-vs-torch differences are to be judged
                self_diff = _parity(torch_runs[0][1], torch_runs[1][1], T, M)
                report["parity"]["torch_vs_torch_other_threads"] = {
                    k: self_diff[k] for k in ("max_abs_diff_eval", "max_abs_diff_train", "eval_rows_within_tolerance",
                                              "first_epoch_max_abs_diff_eval", "eval_max_abs_diff_by_row")}
                report["parity"]["ok_within_fp32_noise"] = bool(
                    report["parity"]["max_abs_diff_eval"] <= 2 * max(self_diff["max_abs_diff_eval"], TOL / 2)
                    and report["parity"]["max_abs_diff_train"] <= 2 * max(self_diff["max_abs_diff_train"], TOL / 2))
        bounds = speed_bounds(report)
        if bounds:
            report["bounds"] = bounds
        report["machine"]["uptime_end"] = common.uptime_line()
        return report
    finally:
        if cleanup is not None:
            cleanup.cleanup()


def speed_bounds(r: dict, target: float = 3.0) -> dict | None:
    """What the measured matmul peak allows: the protocol's analytic FLOPs at 100 % of the peak is a lower bound
    on any implementation's wall time on this machine, hence an upper bound on any speed ratio against the
    reference; and the fraction of the peak a `target`x ratio would need over the whole protocol."""
    u = r.get("ours", {}).get("utilisation")
    if not u:
        return None
    peak = u["peaks"][u["peak_reference_dtype"]]["peak_flops_per_s"]
    flops = r["flops"]["total_flops"]
    out = {"peak_flops_per_s": peak, "protocol_flops": flops, "wall_at_peak_s": flops / peak,
           "ours_pct_of_peak_whole_protocol": 100 * flops / r["ours"]["wall_s"] / peak}
    if "torch" in r:
        tw = r["torch"]["wall_s"]
        out.update({"torch_pct_of_peak_whole_protocol": 100 * flops / tw / peak,
                    "max_ratio_vs_torch_at_peak": tw / (flops / peak), "target_ratio": target,
                    "pct_of_peak_needed_for_target": 100 * target * flops / tw / peak})
    return out


def summary_lines(r: dict) -> list[str]:
    p, o = r["protocol"], r["ours"]
    lines = [f"machine: {r['machine']['cpu_model']} x{r['machine']['cpu_count']} | {r['machine'].get('uptime', '')}",
             f"protocol: T={p['T']} C={p['C']} M={p['M']} E={p['E']}, {p['episodes_timed']}/{p['episodes_total']} "
             f"episodes timed, optimizer {p['optimizer']['name']} lr {p['optimizer']['lr']:g}, {p['dtype']}",
             f"ours : {o['wall_s']:8.2f} s  {o['episodes_per_s']:7.2f} ep/s  {o['tokens_per_s']:9.0f} tok/s "
             f"(train {o['train_tokens_per_s']:.0f}, eval {o['eval_tokens_per_s']:.0f})  compile {o['compile_s']:.2f} s  "
             f"peak RSS +{o['memory']['rss_peak_delta_mb']:.0f} MiB"]
    if "torch" in r:
        t = r["torch"]
        lines.append(f"torch: {t['wall_s']:8.2f} s  {t['episodes_per_s']:7.2f} ep/s  {t['tokens_per_s']:9.0f} tok/s "
                     f"(train {t['train_tokens_per_s']:.0f}, eval {t['eval_tokens_per_s']:.0f})  "
                     f"(train part {t['train_s']:.2f} s, eval part {t['eval_s']:.2f} s)  "
                     f"peak RSS +{t['memory']['rss_peak_delta_mb']:.0f} MiB"
                     + (f"  on {t['device']}" if t.get("device", "cpu") != "cpu" else ""))
        s, q = r["speedup"], r["parity"]
        lines.append(f"speed ratio ours/torch: {s['ours_vs_torch']:.2f}x  (incl. our compile: "
                     f"{s['ours_incl_compile_vs_torch']:.2f}x)")
        lines.append(f"parity: max|d eval| = {q['max_abs_diff_eval']:.2e}, max|d train| = {q['max_abs_diff_train']:.2e} "
                     f"(tolerance {q['tolerance']:g}: {'OK' if q['ok'] else 'FAIL'})  [torch {t['threads']} threads]; "
                     f"within {q['tolerance']:g} for the first {q['eval_rows_within_tolerance']} of "
                     f"{q['shapes']['eval'][0]} eval rows")
        if "first_epoch_max_abs_diff_eval" in q:
            lines.append(f"  first epoch: max|d eval| = {q['first_epoch_max_abs_diff_eval']:.2e}, "
                         f"max|d train| = {q['first_epoch_max_abs_diff_train']:.2e} "
                         f"({'OK' if q['first_epoch_ok'] else 'FAIL'})")
        if "torch_vs_torch_other_threads" in q:
            s2 = q["torch_vs_torch_other_threads"]
            lines.append(f"  fp32 noise floor, torch vs torch with another thread count: max|d eval| = "
                         f"{s2['max_abs_diff_eval']:.2e}, max|d train| = {s2['max_abs_diff_train']:.2e} -> ours vs torch "
                         f"{'within' if q['ok_within_fp32_noise'] else 'OUTSIDE'} 2x that floor")
        for t2 in r.get("torch_other_threads", []):
            lines.append(f"torch with {t2['threads']} threads: {t2['wall_s']:.2f} s -> ratio ours/torch "
                         f"{t2['speedup']['ours_vs_torch']:.2f}x (incl. compile {t2['speedup']['ours_incl_compile_vs_torch']:.2f}x), "
                         f"parity {'OK' if t2['parity']['ok'] else 'FAIL'} ({t2['parity']['max_abs_diff_eval']:.1e})")
    u = o.get("utilisation")
    if u:
        pk = u["peaks"][u["peak_reference_dtype"]]["peak_flops_per_s"]
        lines.append(f"utilisation vs measured {u['peak_reference_dtype']} matmul peak {pk / 1e9:.1f} GFLOP/s: "
                     f"training scan {u['scan_flops_per_s'] / 1e9:.1f} GFLOP/s = {u['scan_pct_of_peak']:.1f}%, "
                     f"evaluation {u['eval_flops_per_s'] / 1e9:.1f} GFLOP/s = {u['eval_pct_of_peak']:.1f}%")
    bd = r.get("bounds")
    if bd:
        lines.append(f"whole protocol: {bd['protocol_flops'] / 1e12:.2f} TFLOP = {bd['wall_at_peak_s']:.1f} s at 100% of the "
                     f"peak; ours runs at {bd['ours_pct_of_peak_whole_protocol']:.0f}% of it"
                     + (f", PyTorch at {bd['torch_pct_of_peak_whole_protocol']:.0f}%: no implementation can be more than "
                        f"{bd['max_ratio_vs_torch_at_peak']:.2f}x faster than this reference here; "
                        f"{bd['target_ratio']:g}x needs {bd['pct_of_peak_needed_for_target']:.0f}% of the peak"
                        if "max_ratio_vs_torch_at_peak" in bd else ""))
    return lines


def main(argv=None) -> int:
    from recovery_jax import cli, config as config_lib

    argv = sys.argv[1:] if argv is None else argv

    def inner(argv):
        overrides, rest = config_lib.split_argv(argv)
        p = cli.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__)
        p.add_argument("--config", default=DEFAULT_CONFIG)
        p.add_argument("--out", default=None, help="write the report JSON here")
        p.add_argument("--skip-torch", action="store_true")
        p.add_argument("--episodes-only", type=cli.positive_int, default=None, metavar="N",
                       help="time only the first N episodes of both (quick run)")
        p.add_argument("--repeat", type=cli.positive_int, default=1, help="run the protocol R times; best wall time is reported")
        p.add_argument("--no-utilisation", action="store_true")
        p.add_argument("--util-reps", type=cli.positive_int, default=10)
        p.add_argument("--peak-sizes", type=cli.int_list, default="1024,2048", help="matmul sizes of the peak measurement")
        p.add_argument("--torch-threads", default=None,
                       help="torch intra-op threads, default os.cpu_count(); a list like 2,1 runs the reference "
                            "once per value (the first is the headline, the others go to torch_other_threads)")
        p.add_argument("--torch-device", default="cpu",
                       help="where the PyTorch reference runs: cpu (default) or cuda[:N] on a GPU machine")
        p.add_argument("--in-process", action="store_true", help="no worker subprocesses (memory figures overlap)")
        p.add_argument("--keep-bundle", default=None, metavar="DIR", help="keep the bundle and worker outputs here")
        a = p.parse_args(rest)
        cfg = config_lib.load(a.config, overrides)
        cfg.progress = False
        if not a.skip_torch:
            from benchmarks import torch_ref

            torch_ref.check_device(a.torch_device)  # before any work: a ValueError is one `error:` line
        report = run_benchmark(cfg, episodes=a.episodes_only, repeat=a.repeat, skip_torch=a.skip_torch,
                               isolate=not a.in_process, with_utilisation=not a.no_utilisation,
                               util_reps=a.util_reps, peak_sizes=a.peak_sizes,
                               torch_threads=a.torch_threads, bundle_dir=a.keep_bundle,
                               torch_device=a.torch_device)
        report["config_file"] = a.config
        report["overrides"] = overrides
        common.print_report(summary_lines(report), report, a.out)
        return 0

    return cli.guarded(inner, argv)


if __name__ == "__main__":
    sys.exit(main())
