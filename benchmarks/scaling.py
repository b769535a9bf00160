"""Cost per episode against T, C, model width and depth: ours and (where affordable) the PyTorch reference.

    python -m benchmarks.scaling [--config configs/default.py] [--config.KEY=VALUE ...]
        [--out benchmarks/results/scaling.json] [--png benchmarks/scaling.png] [--md benchmarks/results/scaling.md]
        [--episodes 4] [--torch-episodes 2] [--no-torch] [--only T,C,width,depth] [--torch-max-s 120]
        [--torch-threads N]

Each point changes one thing of the base config (default: configs/default.py with data.source=wiki, which
has enough long documents for C up to 1024) and measures, in this process:
  ours   compile time; the fastest of `--episodes` episodes (after a first, warm-up one) of the episode
         program (M steps + evaluation of all T documents); the evaluation program alone (fastest of >= 3),
         so train = episode - evaluation
  torch  the authors' loop (benchmarks/torch_ref.py) for `--torch-episodes` episodes: fastest train part
         (M steps) and evaluation part (T documents one at a time); skipped where the previous point's
         torch episode took longer than --torch-max-s.
Minima rather than medians because on a shared CPU the least contended sample is the best estimate.
Per episode, training costs M steps (constant in T) and evaluation costs T forward passes, so over a
whole run of E*T episodes evaluation grows as E*T^2.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from benchmarks import common

SWEEPS = {
    "T": [("T", v) for v in (5, 10, 25, 50, 100)],
    "C": [("C", v) for v in (32, 64, 128, 256, 512)],
    "width": [("width", v) for v in (128, 256, 512, 768)],
    "depth": [("depth", v) for v in (1, 2, 4, 8)],
}


def overrides_for(kind: str, value: int) -> list[str]:
    if kind == "T":
        return [f"T={value}"]
    if kind == "C":
        return [f"C={value}"]
    if kind == "width":
        return [f"model.hidden_size={value}", f"model.num_heads={max(1, value // 64)}",
                f"model.intermediate_size={4 * value}"]
    if kind == "depth":
        return [f"model.num_layers={value}"]
    raise ValueError(kind)


def measure_point(cfg, workdir: str, episodes: int, torch_episodes: int, torch_threads=None, log=print) -> dict:
    from benchmarks import jax_side, torch_ref

    b = common.write_bundle(cfg, workdir)
    s = jax_side.Setup(b)
    progs = jax_side.compile_programs(s)
    out = jax_side.run_protocol(s, progs, episodes)
    ep = out["episode_s"][1:] if len(out["episode_s"]) > 1 else out["episode_s"]  # first call: warm-up
    # minima, not medians: on a shared CPU the least contended sample is the best estimate of the cost
    params = s.fresh_state()["params"]
    t_eval = common.call_times(lambda: progs["evaluate"](params, s.eval_tok, s.eval_msk).block_until_ready(),
                               max(3, episodes))
    fm = common.flop_model(b.meta["arch"], b.meta["hf_config"], s.C)
    ours_ep = float(np.min(ep))
    ours_eval = float(np.min(t_eval))
    res = {"T": s.T, "C": s.C, "M": s.M, **fm["dims"], "n_params": b.meta["n_params"],
           "episode_flops": s.M * fm["train_step_flops"] + s.T * fm["forward_flops_per_seq"],
           "ours": {"compile_s": progs["compile_s"], "episode_s": ours_ep, "eval_s": ours_eval,
                    "train_s": max(ours_ep - ours_eval, 0.0), "episodes": len(ep)}}
    res["ours"]["flops_per_s"] = res["episode_flops"] / ours_ep
    if torch_episodes:
        r = torch_ref.run_protocol(b, torch_episodes, threads=torch_threads)
        tr, te = float(np.min(r["episode_train_s"])), float(np.min(r["episode_eval_s"]))
        res["torch"] = {"episode_s": tr + te, "train_s": tr, "eval_s": te, "episodes": torch_episodes,
                        "threads": r["threads"],
                        "flops_per_s": res["episode_flops"] / (tr + te)}
        res["ratio"] = res["torch"]["episode_s"] / ours_ep
        res["parity_max_abs_diff_eval"] = float(np.abs(r["eval_losses"] - out["eval_losses"][: torch_episodes + 1]).max())
    res["load_average"] = common.load_average()
    return res


def run(base_cfg_path: str, base_overrides: list[str], only, episodes: int, torch_episodes: int,
        torch_max_s: float, torch_threads=None, log=print) -> dict:
    from recovery_jax import config as config_lib

    results = {"base_config": base_cfg_path, "base_overrides": base_overrides, "machine": common.machine_info(),
               "episodes": episodes, "torch_episodes": torch_episodes, "torch_threads": torch_threads or os.cpu_count(),
               "sweeps": {}}
    with tempfile.TemporaryDirectory(prefix="rj_scaling_") as tmp:
        for kind in only:
            rows = []
            torch_on = torch_episodes > 0
            for i, (_, value) in enumerate(SWEEPS[kind]):
                ov = list(base_overrides) + overrides_for(kind, value) + ["progress=false"]
                cfg = config_lib.load(base_cfg_path, ov)
                t0 = time.perf_counter()
                try:
                    row = measure_point(cfg, os.path.join(tmp, f"{kind}_{value}"), episodes,
                                        torch_episodes if torch_on else 0, torch_threads, log)
                except config_lib.ConfigError as e:
                    log(f"  {kind}={value}: skipped ({e})")
                    continue
                row["sweep"], row["value"] = kind, value
                rows.append(row)
                msg = (f"  {kind}={value:5d}: ours {row['ours']['episode_s'] * 1e3:8.1f} ms/episode "
                       f"(eval {row['ours']['eval_s'] * 1e3:.1f}, compile {row['ours']['compile_s']:.1f}s)")
                if "torch" in row:
                    msg += f" | torch {row['torch']['episode_s'] * 1e3:9.1f} ms/episode | x{row['ratio']:.2f}"
                    if row["torch"]["episode_s"] > torch_max_s:
                        torch_on = False
                log(msg + f"   [{time.perf_counter() - t0:.0f}s, load {common.load_average()[:1]}]")
            results["sweeps"][kind] = rows
    results["machine"]["uptime_end"] = common.uptime_line()
    return results


def markdown(results: dict) -> str:
    lines = ["| sweep | value | T | C | width | depth | params | ours ms/episode (train + eval) | ours compile s "
             "| torch ms/episode (train + eval) | torch/ours | ours GFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, rows in results["sweeps"].items():
        for r in rows:
            o = r["ours"]
            t = r.get("torch")
            ts = f"{t['episode_s'] * 1e3:.0f} ({t['train_s'] * 1e3:.0f} + {t['eval_s'] * 1e3:.0f})" if t else "—"
            ratio = f"{r['ratio']:.1f}×" if t else "—"
            lines.append(f"| {kind} | {r['value']} | {r['T']} | {r['C']} | {r['d']} | {r['layers']} | "
                         f"{r['n_params'] / 1e6:.1f}M | {o['episode_s'] * 1e3:.0f} ({o['train_s'] * 1e3:.0f} + "
                         f"{o['eval_s'] * 1e3:.0f}) | {o['compile_s']:.1f} | {ts} | {ratio} | "
                         f"{o['flops_per_s'] / 1e9:.1f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in ("T", "C", "width", "depth") if results["sweeps"].get(k)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.8), squeeze=False)
    labels = {"T": "T (documents; eval per episode ∝ T)", "C": "C (context length)", "width": "model width d",
              "depth": "model depth (layers)"}
    for ax, kind in zip(axes[0], kinds):
        rows = results["sweeps"][kind]
        x = [r["value"] for r in rows]
        ax.plot(x, [r["ours"]["episode_s"] for r in rows], "o-", color="C0", label="ours: episode")
        ax.plot(x, [r["ours"]["eval_s"] for r in rows], "o--", color="C0", alpha=0.5, label="ours: eval part")
        tr = [r for r in rows if "torch" in r]
        if tr:
            ax.plot([r["value"] for r in tr], [r["torch"]["episode_s"] for r in tr], "s-", color="C3",
                    label="PyTorch ref: episode")
            ax.plot([r["value"] for r in tr], [r["torch"]["eval_s"] for r in tr], "s--", color="C3", alpha=0.5,
                    label="PyTorch ref: eval part")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([str(v) for v in x])
        ax.set_xlabel(labels[kind])
        ax.set_ylabel("seconds per episode")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"cost per episode (M steps + evaluation of T documents) — {m['cpu_model']} ×{m['cpu_count']} CPU",
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    from recovery_jax import cli, config as config_lib

    def inner(argv):
        overrides, rest = config_lib.split_argv(argv)
        p = cli.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
        p.add_argument("--config", default="configs/default.py")
        p.add_argument("--out", default="benchmarks/results/scaling.json")
        p.add_argument("--png", default="benchmarks/scaling.png")
        p.add_argument("--md", default="benchmarks/results/scaling.md")
        p.add_argument("--episodes", type=cli.positive_int, default=4)
        p.add_argument("--torch-episodes", type=cli.positive_int, default=2)
        p.add_argument("--no-torch", action="store_true")
        p.add_argument("--torch-max-s", type=cli.positive_float, default=120.0)
        p.add_argument("--torch-threads", type=cli.positive_int, default=None, help="default: os.cpu_count()")
        p.add_argument("--only", default="T,C,width,depth")
        a = p.parse_args(rest)
        only = [k.strip() for k in a.only.split(",") if k.strip()]
        for k in only:
            if k not in SWEEPS:
                raise config_lib.ConfigError(f"--only: unknown sweep {k!r}; valid: {', '.join(SWEEPS)}")
        base = ["data.source=wiki"] + overrides
        config_lib.load(a.config, base)  # fail early on a bad override
        res = run(a.config, base, only, a.episodes, 0 if a.no_torch else a.torch_episodes, a.torch_max_s,
                  a.torch_threads)
        common.write_json(a.out, res)
        md = markdown(res)
        os.makedirs(os.path.dirname(os.path.abspath(a.md)), exist_ok=True)
        with open(a.md, "w") as f:
            f.write(md)
        plot(res, a.png)
        print(md)
        print(f"wrote {a.out}, {a.md}, {a.png}")
        return 0

    return cli.guarded(inner, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
