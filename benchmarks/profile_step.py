"""Where the time of our training scan and evaluation goes: a profiler trace aggregated per XLA op,
isolated matmuls of the model's own shapes, and the memory bandwidth of the optimizer's update.

    python -m benchmarks.profile_step [--config configs/default.py] [--config.KEY=VALUE ...]
        [--trace-dir DIR] [--out FILE.json] [--top 30]

Prints, for the training scan (M steps, the episode program with its evaluation dropped) and for the
evaluation program: per-op totals from `jax.profiler` (XLA:CPU names its thunks after the fusion /
custom-call they run), then "matmul floor" = the same matmul shapes timed one by one in isolation,
and "optimizer floor" = time to stream the Adam/SGD state once at the measured copy bandwidth.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

from benchmarks import common


def trace_ops(fn, n: int, trace_dir: str) -> dict:
    """Run fn() n times under the profiler; per event name: mean and min duration (ms) and calls per run.
    On a shared CPU the min over the n runs is the better estimate of an op's own cost."""
    import jax

    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(n):
        fn()
    jax.profiler.stop_trace()
    files = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True),
                   key=os.path.getmtime)
    if not files:
        return {}
    with gzip.open(files[-1]) as f:
        ev = json.load(f)
    ev = ev["traceEvents"] if isinstance(ev, dict) else ev
    durs = collections.defaultdict(list)
    for e in ev:
        if e.get("ph") == "X":
            durs[e["name"]].append(e.get("dur", 0) / 1e3)
    return {k: {"mean_ms": float(np.mean(v)), "min_ms": float(np.min(v)), "calls_per_run": len(v) / n}
            for k, v in durs.items()}


_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(\S+)\s+([\w\-]+)\(")


def hlo_kinds(hlo_text: str) -> dict:
    """HLO instruction name -> category: matmul (dot / YNN-XNN-oneDNN fusions holding a dot), layout
    (copy / transpose), elementwise-or-reduce fusion, other."""
    kinds = {}
    for line in hlo_text.splitlines():
        m = _INSTR.match(line)
        if not m:
            continue
        name, shape, op = m.groups()
        if op in ("dot", "convolution") or (op in ("fusion", "custom-call") and
                                            re.search(r"__(ynn|xnn|onednn)|dot|matmul", line, re.I)):
            kinds[name] = "matmul"
        elif op in ("copy", "transpose"):
            kinds[name] = "copy/transpose"
        elif op == "fusion":
            kinds[name] = "elementwise/reduce fusion"
        elif op in ("while", "conditional", "call"):
            kinds[name] = "control"
        else:
            kinds[name] = f"other ({op})"
    return kinds


def summarize_ops(ops: dict, kinds: dict, top: int) -> tuple[list, dict]:
    """Top ops by (min duration x calls per run) and, per category, the sum of min and of mean durations
    per run; only events that are HLO ops. Sum of min ~ the ops' own cost; mean - min ~ what contention
    from other processes added; wall - sum of mean ~ time with no op running (dispatch, synchronisation)
    where ops do not overlap."""
    rows = []
    by_kind = collections.defaultdict(lambda: [0.0, 0.0])
    for name, v in ops.items():
        kind = kinds.get(name)
        if kind is None or kind == "control":
            continue
        ms = v["min_ms"] * v["calls_per_run"]
        rows.append((ms, v["calls_per_run"], kind, name))
        by_kind[kind][0] += ms
        by_kind[kind][1] += v["mean_ms"] * v["calls_per_run"]
    rows.sort(reverse=True)
    return rows[:top], {k: {"min_ms": a, "mean_ms": b} for k, (a, b) in by_kind.items()}


def step_matmul_shapes(dims: dict, C: int, B: int = 1) -> list[tuple]:
    """(pass, count, batch, m, k, n) of every matmul of one training step on a [B, C] batch (forward, grad
    wrt input, grad wrt weight); the attention products are batched over (sequence, head), as in the model."""
    d, L, F, V, H = dims["d"], dims["layers"], dims["ff"], dims["vocab"], dims["heads"]
    hd = d // H
    R = B * C
    fwd = [(L, 1, R, d, 3 * d), (L, 1, R, d, d), (L, 1, R, d, F), (L, 1, R, F, d), (1, 1, R, d, V),
           (L, H * B, C, hd, C), (L, H * B, C, C, hd)]
    out = []
    for cnt, bat, m, k, n in fwd:
        out.append(("fwd", cnt, bat, m, k, n))
        out.append(("bwd dX", cnt, bat, m, n, k))  # dY [m, n] x W^T [n, k]
        out.append(("bwd dW", cnt, bat, k, m, n))  # X^T [k, m] x dY [m, n]: contraction over the C tokens
    return out


def time_matmuls(shapes, reps: int = 20) -> list[dict]:
    import jax
    import jax.numpy as jnp

    res = []
    for tag, cnt, bat, m, k, n in shapes:
        a = jnp.ones((bat, m, k), jnp.float32)
        b = jnp.ones((bat, k, n), jnp.float32)
        f = jax.jit(lambda x, y: jnp.einsum("bmk,bkn->bmn", x, y)).lower(a, b).compile()
        best = min(common.call_times(lambda: f(a, b).block_until_ready(), reps))
        res.append({"pass": tag, "count": cnt, "batch": bat, "m": m, "k": k, "n": n, "best_s": best,
                    "gflops_per_s": 2 * bat * m * k * n / best / 1e9, "total_s": cnt * best})
    return res


def time_matmuls_torch(shapes, reps: int = 20) -> list[float] | None:
    """Best-of-reps seconds of the same [b,m,k]x[b,k,n] products in PyTorch (its oneDNN/MKL kernels, all cores):
    what another library achieves on exactly these shapes on this machine. None without torch. Call it after
    all JAX timings: torch's OpenMP threads spin for a while after each parallel region."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    out = []
    with torch.no_grad():
        for _tag, _cnt, bat, m, k, n in shapes:
            a = torch.ones((bat, m, k), dtype=torch.float32)
            b = torch.ones((bat, k, n), dtype=torch.float32)
            f = (lambda x, y: torch.matmul(x[0], y[0])) if bat == 1 else torch.bmm
            out.append(min(common.call_times(lambda: f(a, b), reps)))
    return out


def bandwidth(n_floats: int, reps: int = 10) -> float:
    """GB/s of a jitted a*0.9 + b over n float32 (3 streams: 2 reads, 1 write)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n_floats,), jnp.float32)
    b = jnp.ones((n_floats,), jnp.float32)
    f = jax.jit(lambda x, y: x * 0.9 + y).lower(a, b).compile()
    return 3 * 4 * n_floats / min(common.call_times(lambda: f(a, b).block_until_ready(), reps)) / 1e9


def profile(cfg, trace_dir: str, top: int = 30, reps: int = 5, log=print) -> dict:
    import jax
    from benchmarks import jax_side

    b = common.write_bundle(cfg, os.path.join(trace_dir, "bundle"))
    s = jax_side.Setup(b)
    tok, msk = s.doc(1)
    t0 = time.perf_counter()
    scan = jax_side.compile_train_scan(s)
    evaluate = s.engine.evaluate.lower(s.fresh_state()["params"], s.eval_tok, s.eval_msk).compile()
    log(f"compiled in {time.perf_counter() - t0:.1f}s")
    box = {"state": s.fresh_state()}

    def run_scan():
        box["state"], tl = scan(box["state"], tok, msk, s.eval_tok, s.eval_msk)
        jax.block_until_ready(tl)

    def run_eval():
        evaluate(box["state"]["params"], s.eval_tok, s.eval_msk).block_until_ready()

    run_scan()
    run_eval()
    walls = {name: min(common.call_times(fn, reps, warmup=0)) for name, fn in (("scan", run_scan), ("eval", run_eval))}
    ops_scan = trace_ops(run_scan, reps, os.path.join(trace_dir, "scan"))
    ops_eval = trace_ops(run_eval, reps, os.path.join(trace_dir, "eval"))
    kinds_scan, kinds_eval = hlo_kinds(scan.as_text()), hlo_kinds(evaluate.as_text())

    fm = common.flop_model(b.meta["arch"], b.meta["hf_config"], s.C)
    dims = fm["dims"]
    shapes = step_matmul_shapes(dims, s.C)
    mm = time_matmuls(shapes)
    step_mm_s = sum(r["total_s"] for r in mm)
    fwd_mm_s = sum(r["total_s"] for r in mm if r["pass"] == "fwd")
    eval_shapes = [x for x in step_matmul_shapes(dims, s.C, B=s.T) if x[0] == "fwd"]
    mm_eval = time_matmuls(eval_shapes)
    eval_mm_s = sum(r["total_s"] for r in mm_eval)
    n_params = b.meta["n_params"]
    gbps = bandwidth(max(n_params, 1 << 20))
    opt = b.meta["optimizer"]["name"]
    streams = {"sgd": 3, "momentum": 5, "adam": 7, "adam_reset": 7}.get(opt, 7)  # params+grad(+m,v) read/write
    opt_floor_s = streams * 4 * n_params / (gbps * 1e9)
    peak = common.matmul_peak("float32")["peak_flops_per_s"]
    torch_mm = time_matmuls_torch(shapes)  # last: after every JAX timing
    torch_mm_eval = time_matmuls_torch(eval_shapes)
    if torch_mm is not None:
        for r, t in zip(mm, torch_mm):
            r["torch_best_s"], r["torch_gflops_per_s"] = t, 2 * r["batch"] * r["m"] * r["k"] * r["n"] / t / 1e9
        for r, t in zip(mm_eval, torch_mm_eval):
            r["torch_best_s"], r["torch_gflops_per_s"] = t, 2 * r["batch"] * r["m"] * r["k"] * r["n"] / t / 1e9

    res = {"config": {"T": s.T, "C": s.C, "M": s.M, **dims, "optimizer": opt, "n_params": n_params},
           "wall_scan_s": walls["scan"], "wall_step_s": walls["scan"] / s.M, "wall_eval_s": walls["eval"],
           "analytic_step_flops": fm["train_step_flops"], "analytic_eval_flops": s.T * fm["forward_flops_per_seq"],
           "matmul_peak_flops_per_s": peak,
           "step_matmul_floor_s": step_mm_s, "step_forward_matmul_floor_s": fwd_mm_s,
           "eval_matmul_floor_s": eval_mm_s, "matmuls_step": mm, "matmuls_eval": mm_eval,
           "copy_bandwidth_GBps": gbps, "optimizer_streams": streams, "optimizer_floor_s": opt_floor_s}
    if torch_mm is not None:
        res["step_matmul_floor_torch_kernels_s"] = sum(r["count"] * r["torch_best_s"] for r in mm)
        res["eval_matmul_floor_torch_kernels_s"] = sum(r["count"] * r["torch_best_s"] for r in mm_eval)
    res["scan_top_ops"], res["scan_by_kind_ms"] = summarize_ops(ops_scan, kinds_scan, top)
    res["eval_top_ops"], res["eval_by_kind_ms"] = summarize_ops(ops_eval, kinds_eval, top)
    return res


def print_report(r: dict, log=print) -> None:
    c = r["config"]
    log(f"model d={c['d']} L={c['layers']} ff={c['ff']} V={c['vocab']} | T={c['T']} C={c['C']} M={c['M']} | "
        f"{c['optimizer']} | {c['n_params'] / 1e6:.2f}M params")
    pk = r["matmul_peak_flops_per_s"]
    log(f"fp32 matmul peak (2048^2 / 1024^2, best): {pk / 1e9:.1f} GFLOP/s; copy bandwidth {r['copy_bandwidth_GBps']:.1f} GB/s")
    st = r["wall_step_s"]
    log(f"training step: {st * 1e3:.1f} ms = {r['analytic_step_flops'] / st / 1e9:.1f} GFLOP/s "
        f"({100 * r['analytic_step_flops'] / st / pk:.0f}% of peak)")
    log(f"  matmuls of one step timed alone, summed: {r['step_matmul_floor_s'] * 1e3:.1f} ms "
        f"({100 * r['step_matmul_floor_s'] / st:.0f}% of the step; forward only {r['step_forward_matmul_floor_s'] * 1e3:.1f} ms)")
    log(f"  optimizer floor ({r['optimizer_streams']} fp32 streams over the params at copy bandwidth): "
        f"{r['optimizer_floor_s'] * 1e3:.1f} ms ({100 * r['optimizer_floor_s'] / st:.0f}% of the step)")
    if "step_matmul_floor_torch_kernels_s" in r:
        log(f"  the same matmuls in PyTorch (oneDNN/MKL kernels), summed: {r['step_matmul_floor_torch_kernels_s'] * 1e3:.1f} ms "
            f"per step, {r['eval_matmul_floor_torch_kernels_s'] * 1e3:.1f} ms per evaluation")
    log("  matmul shapes (pass, count x batch x [m,k]x[k,n], GFLOP/s alone: XLA [PyTorch], ms per step):")
    for m in r["matmuls_step"]:
        tq = f" [{m['torch_gflops_per_s']:6.1f}]" if "torch_gflops_per_s" in m else ""
        log(f"    {m['pass']:7s} {m['count']:3d} x {m['batch']:3d} x [{m['m']},{m['k']}]x[{m['k']},{m['n']}]  "
            f"{m['gflops_per_s']:6.1f}{tq}  {m['total_s'] * 1e3:6.2f} ms")
    ev = r["wall_eval_s"]
    log(f"evaluation (T={c['T']} x C={c['C']}): {ev * 1e3:.1f} ms = {r['analytic_eval_flops'] / ev / 1e9:.1f} GFLOP/s "
        f"({100 * r['analytic_eval_flops'] / ev / pk:.0f}% of peak); matmuls alone {r['eval_matmul_floor_s'] * 1e3:.1f} ms")
    for name, wall in (("scan", r["wall_scan_s"]), ("eval", r["wall_eval_s"])):
        kinds = r[f"{name}_by_kind_ms"]
        smin = sum(v["min_ms"] for v in kinds.values())
        smean = sum(v["mean_ms"] for v in kinds.values())
        log(f"profile of the {name} program: wall {wall * 1e3:.1f} ms; ops' sum of min durations {smin:.1f} ms, "
            f"of mean durations {smean:.1f} ms; no op running ~ {wall * 1e3 - smean:.1f} ms")
        for k, v in sorted(kinds.items(), key=lambda x: -x[1]["min_ms"]):
            log(f"    {k:26s} min {v['min_ms']:8.1f} ms   mean {v['mean_ms']:8.1f} ms")
        for ms, cnt, kind, op in r[f"{name}_top_ops"][:8]:
            log(f"      {ms:8.2f} ms  {cnt:4.0f}x  {kind:26s} {op[:60]}")


def main(argv=None) -> int:
    from recovery_jax import cli, config as config_lib

    def inner(argv):
        overrides, rest = config_lib.split_argv(argv)
        p = cli.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__)
        p.add_argument("--config", default="configs/default.py")
        p.add_argument("--trace-dir", default=None)
        p.add_argument("--out", default=None)
        p.add_argument("--top", type=cli.positive_int, default=30)
        a = p.parse_args(rest)
        cfg = config_lib.load(a.config, overrides)
        d = a.trace_dir or tempfile.mkdtemp(prefix="rj_profile_")
        r = profile(cfg, d, a.top)
        r["machine"] = common.machine_info()
        print_report(r)
        if a.out:
            common.write_json(a.out, r)
        return 0

    return cli.guarded(inner, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
