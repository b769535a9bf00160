"""The pretraining step (recovery_jax.pretrain: the loss by engine.chunked_lm_loss, logits never materialised)
against the same step through the model's full [B, L, V] logits (engine.masked_doc_losses, what the step did
before), at the real config's shapes and trained vocabulary, timed interleaved in one process.

    python -m benchmarks.pretrain_step [--config configs/pretrain/neox_small.py] [--config.KEY=VALUE ...]
        [--reps 8] [--out FILE.json]

Prints each step's best and median seconds, the ratio full / chunked per round (its range), and the loss of
both (equal to fp32 rounding: the same function).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks import common


def run(config: str, reps: int, overrides=()) -> dict:
    import jax

    from recovery_jax import data as data_lib
    from recovery_jax import pretrain as P

    cfg = P.load_config(config, list(overrides))
    tok = data_lib.get_tokenizer(cfg.data.tokenizer)
    split = P.make_split(cfg)
    built = P.build(cfg, tok.vocab_size, split.vocab_map)
    optimizer, _ = P.make_optimizer(cfg)
    B, L = int(cfg.train.batch), int(cfg.data.seq_len)
    ids_BL = P.Stream(split.train_ids, L, int(cfg.seed)).batch(0, B)
    steps = {"chunked": P.step_fns(built.module, optimizer, built.train_cfg)[0],
             "full logits": P.step_fns(built.module, optimizer, built.train_cfg, full_logits=True)[0]}
    state = {"params": built.params, "opt_state": optimizer.init(built.params), "step": np.int32(0)}
    fresh = lambda: jax.tree_util.tree_map(lambda x: jax.numpy.array(x, copy=True), state)  # noqa: E731 (donated)
    losses, times = {}, {k: [] for k in steps}
    for name, fn in steps.items():  # compile, and the loss of the first step
        losses[name] = float(jax.block_until_ready(fn(fresh(), ids_BL))[1])
    for _ in range(reps):
        for name, fn in steps.items():
            s = fresh()
            jax.block_until_ready(s)
            t0 = time.perf_counter()
            jax.block_until_ready(fn(s, ids_BL))
            times[name].append(time.perf_counter() - t0)
    ratio = np.asarray(times["full logits"]) / np.asarray(times["chunked"])
    out = {"config": config, "batch": B, "seq_len": L, "trained_vocab": built.train_cfg.vocab_size,
           "arch": built.train_cfg.arch, "reps": reps, "loss": losses,
           "step_s": {k: {"best": min(v), "median": float(np.median(v)), "all": v} for k, v in times.items()},
           "ratio_full_over_chunked": {"best_over_best": min(times["full logits"]) / min(times["chunked"]),
                                       "min": float(ratio.min()), "median": float(np.median(ratio)),
                                       "max": float(ratio.max())},
           "machine": common.machine_info()}
    return out


def summary_lines(out: dict) -> list[str]:
    lines = [f"{k:12s} step best {v['best']:.3f} s, median {v['median']:.3f} s  (loss {out['loss'][k]:.6f})"
             for k, v in out["step_s"].items()]
    r = out["ratio_full_over_chunked"]
    lines.append(f"full logits / chunked: {r['best_over_best']:.2f} (best over best); per round {r['min']:.2f}-"
                 f"{r['max']:.2f}, median {r['median']:.2f}  [{out['arch']}, B x L = {out['batch']} x {out['seq_len']}, "
                 f"V = {out['trained_vocab']}]")
    return lines


def main(argv=None) -> int:
    from recovery_jax import cli, config as config_lib

    def inner(argv):
        overrides, rest = config_lib.split_argv(argv)
        p = cli.ArgumentParser(prog="python -m benchmarks.pretrain_step", description=__doc__)
        p.add_argument("--config", default="configs/pretrain/neox_small.py", help="a pretraining config")
        p.add_argument("--reps", type=cli.positive_int, default=8, help="interleaved rounds of both steps")
        p.add_argument("--out", default=None, help="write the report JSON here")
        a = p.parse_args(rest)
        out = run(a.config, a.reps, overrides)
        common.print_report(summary_lines(out), out, a.out)
        return 0

    return cli.guarded(inner, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
