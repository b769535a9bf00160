"""Throughput of groups of runs on one device: R random-init runs of a preset at the paper's protocol as one
compiled program (runner's group engine), timed over a few episodes.

Tasks are random token documents (the throughput does not depend on the text; no tokenizer or corpus is
needed on the device machine). Per group size R: compile time, seconds per episode (M updates + evaluation of
all T documents, for all R runs), runs per hour at the full protocol (E·T episodes), tokens per second
(training + evaluation tokens of all runs) and model-FLOP utilisation against the device's measured matmul
peak at the same precision.

    python -m benchmarks.gpu_groups --preset pythia-160m --groups 1,8,32 --episodes 3 --out results.json
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks import common
from recovery_jax import cli


def measure(preset: str, R: int, *, T: int, C: int, M: int, E: int, episodes: int, optimizer: str,
            precision: str, log=print) -> dict:
    import jax
    import jax.numpy as jnp

    from recovery_jax import config as config_lib, models, runner
    from recovery_jax.engine import default_hp

    cfg = config_lib.base_config()
    cfg.T, cfg.C, cfg.M, cfg.E = T, C, M, E
    cfg.model.preset, cfg.model.init, cfg.model.matmul_precision = preset, "pythia", precision
    cfg.optim.name = optimizer
    cfg.eval.batch = -1
    with jax.default_matmul_precision(precision):
        mcfg = models.model_config(cfg.model, None)
        params = [models.init_params(mcfg, jax.random.PRNGKey(r)) for r in range(R)]
        engine = runner.make_engine(cfg, mcfg, E * T * M, params[0], pad_id=0)
        states = [engine.init_state(p, jax.random.PRNGKey(1000 + r)) for r, p in enumerate(params)]
        del params
        stack = lambda xs: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *xs)  # noqa: E731
        state = stack(states)
        del states
        hp = stack([default_hp(engine.spec, cfg.optim.lr, mcfg.vocab_size)] * R)
        rng = np.random.default_rng(0)
        tok_RTC = jnp.asarray(rng.integers(0, mcfg.vocab_size, (R, T, C)), jnp.int32)
        msk_RTC = jnp.ones((R, T, C), bool)
        t0 = time.perf_counter()
        episode = engine.episode_R.lower(state, tok_RTC[:, 0], msk_RTC[:, 0], tok_RTC, msk_RTC, hp).compile()
        compile_s = time.perf_counter() - t0
        times = []
        for k in range(episodes + 1):  # the first call is a warm-up
            t = k % T
            t0 = time.perf_counter()
            state, train_RM, eval_RT = episode(state, tok_RTC[:, t], msk_RTC[:, t], tok_RTC, msk_RTC, hp)
            jax.block_until_ready(eval_RT)
            times.append(time.perf_counter() - t0)
    ep_s = float(np.median(times[1:]))
    fm = common.flop_model(mcfg.arch, models.to_hf_config(mcfg), C)
    flops = R * (M * fm["train_step_flops"] + T * fm["forward_flops_per_seq"])
    tokens = R * (M + T) * C
    res = {"preset": preset, "R": R, "n_params": int(models.param_count(models.param_shapes(mcfg))),
           "compile_s": compile_s, "episode_s": ep_s, "episode_s_all": times[1:],
           "runs_per_hour_full_protocol": 3600 * R / (ep_s * E * T), "tokens_per_s": tokens / ep_s,
           "flops_per_episode": flops, "achieved_flops": flops / ep_s,
           "train_loss_first": float(np.asarray(train_RM)[0, 0]), "eval_loss_mean": float(np.asarray(eval_RT).mean())}
    log(f"  {preset} R={R}: compile {compile_s:.1f}s, {ep_s * 1e3:.1f} ms/episode, "
        f"{res['runs_per_hour_full_protocol']:.1f} runs/h, {res['tokens_per_s']:.0f} tokens/s")
    return res


def main(argv=None) -> int:
    def inner(argv):
        p = cli.ArgumentParser(prog="python -m benchmarks.gpu_groups", description=__doc__)
        p.add_argument("--preset", default="pythia-160m")
        p.add_argument("--groups", type=cli.int_list, default="1,8,32", help="group sizes R")
        p.add_argument("--T", type=cli.positive_int, default=25)
        p.add_argument("--C", type=cli.positive_int, default=256)
        p.add_argument("--M", type=cli.positive_int, default=10)
        p.add_argument("--E", type=cli.positive_int, default=5)
        p.add_argument("--episodes", type=cli.positive_int, default=3, help="timed episodes per group size")
        p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam", "adam_reset"))
        p.add_argument("--precision", default="highest", choices=("highest", "high", "default"),
                       help="matmul precision (highest: true fp32 like the authors; default: TF32 on GPUs)")
        p.add_argument("--out", default=None)
        a = p.parse_args(argv)
        import jax

        from recovery_jax import runner
        runner.enable_compilation_cache()
        dtype = "float32"
        with jax.default_matmul_precision(a.precision):
            peak = common.matmul_peak(dtype, sizes=(4096, 8192) if jax.default_backend() != "cpu" else (512,))
        report = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
                  "matmul_peak": peak, "precision": a.precision, "runs": []}
        print(f"{report['device']}: measured {dtype} matmul peak {peak['peak_flops_per_s'] / 1e12:.1f} TFLOP/s "
              f"(precision {a.precision})")
        for R in a.groups:
            res = measure(a.preset, R, T=a.T, C=a.C, M=a.M, E=a.E, episodes=a.episodes, optimizer=a.optimizer,
                          precision=a.precision)
            res["mfu"] = res["achieved_flops"] / peak["peak_flops_per_s"]
            print(f"    MFU {100 * res['mfu']:.1f} % of the measured peak")
            report["runs"].append(res)
        base = report["runs"][0]
        for res in report["runs"][1:]:
            res["runs_per_hour_vs_first"] = res["runs_per_hour_full_protocol"] / base["runs_per_hour_full_protocol"]
        if a.out:
            common.write_json(a.out, report)
        return 0

    return cli.guarded(inner, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
