"""Cyclic fine-tuning run.

    python -m recovery_jax.train --config configs/default.py --workdir runs/demo [--config.T=10 ...]
        [--resume] [--overwrite] [--no-progress]
"""

from __future__ import annotations

import argparse
import sys

from recovery_jax import cli
from recovery_jax import config as config_lib


def parse(argv: list[str]):
    overrides, rest = config_lib.split_argv(argv)
    p = cli.ArgumentParser(prog="python -m recovery_jax.train", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a config file with get_config() (see configs/)")
    p.add_argument("--workdir", required=True, help="run directory for results and checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run in --workdir from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a run of another config in --workdir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(rest)
    cfg = config_lib.load(args.config, overrides)
    if args.no_progress:
        cfg.progress = False
    return args, cfg


def main(argv: list[str]) -> int:
    from recovery_jax.interrupts import StopSignals

    with StopSignals():  # before any JAX work: a stop signal is a flag the run reads at safe points
        args, cfg = parse(argv)
        from recovery_jax import runner  # heavy imports after the arguments are known to be good
        runner.run(cfg, args.workdir, resume=args.resume, overwrite=args.overwrite)
    print(f"results in {args.workdir}: summary.json, losses.npz (report: python -m recovery_jax.report {args.workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
