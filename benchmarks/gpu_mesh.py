"""Groups on several devices: R random-init runs of a preset at the paper's protocol on each given mesh
(runs x model, docs/SCALING.md), timed over a few episodes, with each device's peak memory next to the plan's
estimate (recovery_jax.plan) and the first episode's losses (equal across meshes up to rounding).

Random token documents, as benchmarks.gpu_groups (no corpus, no tokenizer needed).

    python -m benchmarks.gpu_mesh --preset pythia-160m --runs 8 --meshes 1x1,8x1,2x4 --episodes 3 --out r.json
    python -m benchmarks.gpu_mesh --preset pythia-6.9b --optimizer adam_reset --runs 4 --meshes 4x2 --out r.json
"""

from __future__ import annotations

import sys
import time
import types

import numpy as np

from benchmarks import common
from recovery_jax import cli


def mesh_list(text: str) -> tuple[tuple[int, int], ...]:
    """argparse type: '1x1,8x1,2x4' -> ((1, 1), (8, 1), (2, 4))."""
    out = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        try:
            runs, model = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise cli.argparse.ArgumentTypeError(f"{part!r} is not a mesh like 8x1 or 2x4") from None
        if runs < 1 or model < 1:
            raise cli.argparse.ArgumentTypeError(f"{part!r}: both sizes must be >= 1")
        out.append((runs, model))
    if not out:
        raise cli.argparse.ArgumentTypeError(f"{text!r} gives no mesh")
    return tuple(out)


def measure(preset: str, R: int, runs: int, model: int, *, T: int, C: int, M: int, episodes: int,
            optimizer: str, precision: str, log=print) -> dict:
    import contextlib

    import jax
    import jax.numpy as jnp

    from recovery_jax import config as config_lib, models, plan, runner, sharding
    from recovery_jax.engine import default_hp

    if R % runs or runs * model > jax.device_count():
        raise cli.UsageError(f"mesh {runs}x{model} with {R} runs on {jax.device_count()} devices: R must divide "
                             f"over runs and runs x model must not exceed the devices")
    cfg = config_lib.base_config()
    cfg.T, cfg.C, cfg.M = T, C, M
    cfg.model.preset, cfg.model.init, cfg.model.matmul_precision = preset, "pythia", precision
    cfg.optim.name = optimizer
    cfg.mesh.runs, cfg.mesh.model = runs, model
    mcfg = models.model_config(cfg.model, None)
    # a sharded group is built in host memory first (as the runner does), one device's group on the device
    staged = runs * model > 1 and jax.default_backend() != "cpu"
    where = jax.default_device(jax.devices("cpu")[0]) if staged else contextlib.nullcontext()
    with jax.default_matmul_precision(precision), where:
        params0 = models.init_params(mcfg, jax.random.PRNGKey(0))
        engine = runner.make_engine(cfg, mcfg, T * M * 5, params0, pad_id=0)
        states = [engine.init_state(params0 if r == 0 else models.init_params(mcfg, jax.random.PRNGKey(r)),
                                    jax.random.PRNGKey(1000 + r)) for r in range(R)]
        del params0
        stack = lambda xs: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *xs)  # noqa: E731
        rng = np.random.default_rng(0)
        p = types.SimpleNamespace(
            engine=engine, state=stack(states), hp_R=stack([default_hp(engine.spec, cfg.optim.lr, mcfg.vocab_size)] * R),
            eval_tokens_RTC=jnp.asarray(rng.integers(0, mcfg.vocab_size, (R, T, C)), jnp.int32),
            eval_mask_RTC=jnp.ones((R, T, C), bool))
        del states
        p.train_tokens_RTB, p.train_mask_RTB = p.eval_tokens_RTC, p.eval_mask_RTC
    t0 = time.perf_counter()
    with jax.default_matmul_precision(precision):
        if runs * model > 1:
            mesh = sharding.build_mesh(sharding.MeshShape(runs, model))
            episode, _ = sharding.shard_group(p, mesh, mcfg.arch)
            task = lambda t: p.take(p.train_tokens_RTB, p.train_mask_RTB, np.full(R, t))  # noqa: E731
        else:
            episode = engine.episode_R
            task = lambda t: (p.train_tokens_RTB[:, t], p.train_mask_RTB[:, t])  # noqa: E731
        compiled = episode.lower(p.state, *task(0), p.eval_tokens_RTC, p.eval_mask_RTC, p.hp_R).compile()
        compile_s = time.perf_counter() - t0
        times, first = [], None
        for k in range(episodes + 1):  # the first call is a warm-up
            t0 = time.perf_counter()
            p.state, train_RM, eval_RT = compiled(p.state, *task(k % T), p.eval_tokens_RTC, p.eval_mask_RTC, p.hp_R)
            jax.block_until_ready(eval_RT)
            times.append(time.perf_counter() - t0)
            if first is None:
                first = {"train_RM": np.asarray(train_RM).tolist(), "eval_RT": np.asarray(eval_RT).tolist()}
    peaks = {}
    for d in jax.devices()[: runs * model]:
        stats = d.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            peaks[str(d.id)] = int(stats["peak_bytes_in_use"])
    est = plan.plan_mesh(cfg, model, R // runs)
    ep_s = float(np.median(times[1:])) if episodes else float(times[0])
    out = {"preset": preset, "optimizer": optimizer, "R": R, "mesh": [runs, model], "compile_s": compile_s,
           "episode_s": ep_s, "runs_per_hour": R * 3600.0 / (ep_s * 5 * T), "peak_bytes_per_device": peaks,
           "plan_bytes_per_device": est["total"], "first_episode": first,
           "compiled_memory": _memory(compiled)}
    log(f"{preset} {optimizer} R={R} mesh {runs}x{model}: compile {compile_s:.1f}s, {ep_s:.3f}s/episode, "
        f"peak {max(peaks.values()) / 2**30 if peaks else float('nan'):.2f} GB/device "
        f"(plan {est['total'] / 2**30:.2f} GB)")
    return out


def _memory(compiled) -> dict | None:
    ma = compiled.memory_analysis()
    if ma is None:
        return None
    return {f: int(getattr(ma, f, 0) or 0) for f in ("argument_size_in_bytes", "output_size_in_bytes",
                                                     "alias_size_in_bytes", "temp_size_in_bytes")}


def main(argv=None) -> int:
    def inner(argv):
        p = cli.ArgumentParser(prog="python -m benchmarks.gpu_mesh", description=__doc__)
        p.add_argument("--preset", default="pythia-160m")
        p.add_argument("--optimizer", default="sgd")
        p.add_argument("--runs", type=cli.positive_int, default=8, help="runs in the group (R)")
        p.add_argument("--meshes", type=mesh_list, default=((1, 1),), help="e.g. 1x1,8x1,2x4")
        p.add_argument("--episodes", type=cli.nonneg_int, default=3)
        p.add_argument("--T", type=cli.positive_int, default=25)
        p.add_argument("--C", type=cli.positive_int, default=256)
        p.add_argument("--M", type=cli.positive_int, default=10)
        p.add_argument("--precision", default="highest", choices=["highest", "high", "default"])
        p.add_argument("--out", default=None, help="JSON report")
        args = p.parse_args(argv)
        if args.out:
            cli.check_out_dir(__import__("os").path.dirname(__import__("os").path.abspath(args.out)), "--out")
        import jax
        results = [measure(args.preset, args.runs, r, m, T=args.T, C=args.C, M=args.M, episodes=args.episodes,
                           optimizer=args.optimizer, precision=args.precision) for r, m in args.meshes]
        base = results[0]["first_episode"]
        for res in results[1:]:
            res["max_abs_diff_vs_first_mesh"] = float(max(
                np.max(np.abs(np.asarray(res["first_episode"][k]) - np.asarray(base[k]))) for k in base))
            print(f"mesh {res['mesh'][0]}x{res['mesh'][1]} vs {results[0]['mesh'][0]}x{results[0]['mesh'][1]}: "
                  f"max |diff| of the first episode's losses {res['max_abs_diff_vs_first_mesh']:.2e}")
        report = {"machine": common.machine_info(), "devices": [str(d) for d in jax.devices()], "results": results}
        if args.out:
            common.write_json(args.out, report)
        return 0
    return cli.guarded(inner, argv)


if __name__ == "__main__":
    sys.exit(main())
