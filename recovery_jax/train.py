"""Cyclic fine-tuning run.

    python -m recovery_jax.train --config configs/default.py --workdir runs/demo [--config.T=10 ...]
        [--resume] [--overwrite] [--no-progress] [--seeds 0,1,2 [--no-group]]
        [--coordinator HOST:PORT --num-processes N --process-id I]

With --seeds, the seeds run as one compiled program (a group: compiled once, the runs' state side by side),
each into WORKDIR/seed=N/ with exactly the files of a single run, and the recovery score per cycle and the
online loss are printed as mean ± std over the seeds (also in WORKDIR/seeds_summary.json). --no-group runs
the seeds one after another instead.

Several devices and hosts (docs/SCALING.md): the config's mesh.runs x mesh.model devices; several processes
start JAX's distributed runtime from the three flags (every process gets the same command but its own
--process-id) or, under SLURM with more than one task, from its variables. Process 0 writes the run
directories; the others read them (checkpoints on --resume) and write nothing.
"""

from __future__ import annotations

import os
import sys

from recovery_jax import cli
from recovery_jax import config as config_lib


def parse(argv: list[str]):
    p, overrides, rest = cli.config_command("python -m recovery_jax.train", __doc__, argv,
                                            config_help="a config file with get_config() (see configs/)",
                                            workdir_help="run directory for results and checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run in --workdir from its last checkpoint")
    p.add_argument("--seeds", default=None, help="several seeds, e.g. 0,1,2 or 0-4: one run directory each")
    p.add_argument("--no-group", action="store_true", help="with --seeds: one compiled program per seed")
    hosts = p.add_argument_group("several processes (docs/SCALING.md); under SLURM with more than one task "
                                 "they are read from its variables")
    hosts.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (jax.distributed)")
    hosts.add_argument("--num-processes", type=cli.positive_int, default=None, help="processes in the job")
    hosts.add_argument("--process-id", type=cli.nonneg_int, default=None, help="this process, 0..N-1")
    args = p.parse_args(rest)
    multi = False
    if any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)) or \
            int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:  # jax.distributed, before anything touches a device
        from recovery_jax import sharding
        multi = sharding.init_distributed(args.coordinator, args.num_processes, args.process_id)
        args.no_progress = args.no_progress or not sharding.is_primary()  # one progress bar, process 0's
    cfg = config_lib.load(args.config, overrides)
    if args.no_progress:
        cfg.progress = False
    if multi and config_lib.probe_names(cfg):
        raise config_lib.ConfigError("probes keep per-run state on one host; run them in a single process")
    if args.no_group and args.seeds is None:
        raise cli.UsageError("--no-group only applies with --seeds")
    if args.seeds is not None:
        from recovery_jax.sweep import parse_seeds
        args.seeds = parse_seeds(args.seeds)
        if config_lib.probe_names(cfg) and not args.no_group:
            raise config_lib.ConfigError(f"probes ({cfg.probes.names}) keep per-run state on the host and are not "
                                         f"grouped; add --no-group to run the seeds one after another")
    return args, cfg


def main(argv: list[str]) -> int:
    from recovery_jax.interrupts import StopSignals

    with StopSignals():  # before any JAX work: a stop signal is a flag the run reads at safe points
        args, cfg = parse(argv)
        from recovery_jax import runner  # heavy imports after the arguments are known to be good
        if args.seeds is None:
            runner.run(cfg, args.workdir, resume=args.resume, overwrite=args.overwrite)
            print(f"results in {args.workdir}: summary.json, losses.npz "
                  f"(report: python -m recovery_jax.report {args.workdir})")
            return 0
        return run_seeds(cfg, args)


def run_seeds(cfg, args) -> int:
    """The seeds as one group (or one by one with --no-group), then their mean ± std."""
    import copy
    import os

    from recovery_jax import runner, stats
    from recovery_jax.rundir import RunError, write_json_atomic

    cfgs, dirs = [], []
    for seed in args.seeds:
        c = copy.deepcopy(cfg)
        c.seed = seed
        cfgs.append(c)
        dirs.append(os.path.join(args.workdir, f"seed={seed}"))
    if args.no_group:
        outs = []
        for c, d in zip(cfgs, dirs):
            try:
                outs.append(runner.run(c, d, resume=args.resume, overwrite=args.overwrite))
            except RunError as e:
                outs.append(e)
    else:
        outs = runner.run_group(cfgs, dirs, resume=args.resume, overwrite=args.overwrite)
    done = [o for o in outs if isinstance(o, dict)]
    agg = stats.seed_stats(done)
    per_cycle = agg["rs_per_cycle"]
    print(f"\n{len(done)}/{len(outs)} seeds finished ({', '.join(map(str, args.seeds))}): mean ± std over seeds")
    for n in range(len(per_cycle["mean"])):
        print(f"  cycle {n + 1}: recovery score {stats.pm(stats.cycle_stat(agg, n))}")
    print(f"  online loss: {stats.pm(agg['online_loss'])}")
    from recovery_jax.sharding import is_primary
    if is_primary():  # several processes: process 0 writes
        write_json_atomic(os.path.join(args.workdir, "seeds_summary.json"),
                          {"seeds": list(args.seeds), "run_dirs": dirs, "grouped": not args.no_group, "stats": agg,
                           "failed": {d: str(o) for d, o in zip(dirs, outs) if not isinstance(o, dict)}})
    print(f"results in {args.workdir}/seed=N and {args.workdir}/seeds_summary.json "
          f"(report: python -m recovery_jax.report {' '.join(dirs)})")
    failed = [o for o in outs if not isinstance(o, dict)]
    if failed:
        raise RunError(f"{len(failed)} of {len(outs)} seeds stopped early: {failed[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
