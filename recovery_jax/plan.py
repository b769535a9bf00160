"""Memory plan of a run without any weights: bytes per device for each mesh, and the smallest that fits.

    python -m recovery_jax.plan --config configs/paper/base.py [--config.KEY=VALUE ...] [--devices 8]
        [--device-memory 40GB] [--runs R] [--usable 0.9] [--compile]
    python -m recovery_jax.plan --config configs/paper/base.py --table pythia-160m,pythia-1b \\
        --optimizers sgd,adam_reset --device-memory 40GB,80GB --devices 8     # a markdown table (docs/SCALING.md)

Shapes come from `jax.eval_shape` of the model's init and the optimizer's init (nothing is allocated); each
array's share of a device follows the sharding rules the run uses (recovery_jax/sharding.py: the architecture's
shard_rules, else its largest axis that divides over `model`). Per device and per run:

  params, optimizer state, gradients  fp32, sharded over the model axis
  gathered                            the largest block's parameters, twice (XLA gathers a sharded layer's
                                      weights where it is used, the next one while the current one computes)
  activations                         max(training step, evaluation chunk): a training step of one document
                                      keeps each block's activations for the backward pass (fp32, or bf16
                                      with model.dtype=bfloat16; one block with model.remat) and is not split
                                      over devices; the evaluation of the T documents is, over `model`
                                      (eval.batch=-1 sizes its chunks to what is free: one document counted)

A device holds R / mesh.runs runs (every column counts all of them). These are estimates that err on the large side (measured: see
docs/SCALING.md); --compile lowers and compiles the real episode for the chosen mesh on this machine's CPU
with --devices host devices (no weights) and prints XLA's own memory_analysis of it per device.
Pretrained configs are planned from model.preset's shape. GB means GiB (2^30 bytes), as GPU memory is quoted.
"""

from __future__ import annotations

import math
import os
import re
import sys

from recovery_jax import cli
from recovery_jax import config as config_lib

GiB = 1 << 30


def parse_bytes(text: str) -> int:
    """'40GB', '80GiB', '512MB', '4e10' -> bytes (GB = GiB = 2^30, as GPU memory is quoted)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([KMGT]i?B?|B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise cli.argparse.ArgumentTypeError(f"{text!r} is not a memory size like 40GB, 80GiB or 512MB")
    unit = (m.group(2) or "B").upper().replace("I", "").rstrip("B") or "B"
    value = float(m.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": GiB, "T": 1 << 40}[unit]
    if not math.isfinite(value) or value < 1:
        raise cli.argparse.ArgumentTypeError(f"{text!r} is not a memory size > 0")
    return int(value)


def byte_list(text: str) -> tuple[int, ...]:
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise cli.argparse.ArgumentTypeError(f"{text!r} gives no memory size")
    return tuple(parse_bytes(p) for p in parts)


def fmt(n: float) -> str:
    return f"{n / GiB:.2f} GB" if n >= GiB / 10 else f"{n / (1 << 20):.1f} MB"


# ----------------------------------------------------------------------------- the estimate


def run_shapes(cfg):
    """(model config, params and optimizer-state ShapeDtypeStructs) of the config's model, no allocation."""
    import jax

    from recovery_jax import models
    from recovery_jax.optim import make_optimizer

    mcfg = models.model_config(cfg.model, None)
    params = models.param_shapes(mcfg)
    opt = make_optimizer(cfg, max(cfg.T * cfg.E * cfg.M, 1), None)
    return mcfg, params, jax.eval_shape(opt.direction.init, params)


def sharded_bytes(tree, model: int, arch) -> int:
    """Bytes of one run's tree on one device of a model axis of `model` devices (the runs' sharding rules)."""
    import jax

    from recovery_jax import sharding

    total, rules = 0, sharding.arch_rules(arch)
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        n = math.prod(x.shape) * x.dtype.itemsize
        axis = sharding.model_axis(sharding.leaf_path(path), tuple(x.shape), model, rules)
        total += n // model if axis is not None else n
    return int(total)


def activation_bytes(cfg, mcfg, model: int) -> dict:
    """Training-step and evaluation activations on one device (see the module docstring)."""
    from recovery_jax.engine import eval_doc_bytes

    C, d, ff, V, H, L = cfg.C, mcfg.hidden_size, mcfg.intermediate_size, mcfg.vocab_size, mcfg.num_heads, mcfg.num_layers
    width = 2 if cfg.model.dtype == "bfloat16" else 4
    # per block kept for the backward pass: LayerNorm in/out x2, qkv, attention output and its projection,
    # residual sums (~12 d), the MLP's inner activations before/after the nonlinearity (2 ff), attention
    # logits and probabilities (2 H C); the head: logits, their softmax and its gradient (fp32)
    block = width * C * (12 * d + 2 * ff + 2 * H * C)
    kept = (1 if cfg.model.remat else L) * block + (width * C * d * L if cfg.model.remat else 0)
    train = kept + 3 * 4 * C * V
    # eval.batch=-1 (auto) sizes its chunks to a quarter of what is free on the device: at least one document
    docs = {0: cfg.T, -1: 1}.get(int(cfg.eval.batch), min(int(cfg.eval.batch), cfg.T))
    per_device_docs = math.ceil(docs / model) if cfg.T % model == 0 else docs
    evaluation = per_device_docs * eval_doc_bytes(C, d, ff, V, H, int(cfg.model.attention_block))
    return {"train": int(train), "eval": int(evaluation)}


def plan_mesh(cfg, model: int, runs_per_group: int = 1) -> dict:
    """Per-device bytes of every part for a model axis of `model` devices holding `runs_per_group` runs."""
    from recovery_jax import models

    mcfg, params, opt_state = run_shapes(cfg)
    p = runs_per_group * sharded_bytes(params, model, mcfg.arch)
    o = runs_per_group * sharded_bytes(opt_state, model, mcfg.arch)
    blocks = [params[models.block_param_path(mcfg, i)[0]] for i in range(mcfg.num_layers)]
    gathered = 2 * sharded_bytes(blocks[0], 1, mcfg.arch) if model > 1 and blocks else 0
    act = activation_bytes(cfg, mcfg, model)
    # gradients: as the parameters; the runs of a device compute side by side (vmap), so their activations add
    total = p + o + p + gathered + runs_per_group * max(act["train"], act["eval"])
    return {"model": model, "params": p, "opt_state": o, "grads": p, "gathered": gathered,
            "activations": runs_per_group * max(act["train"], act["eval"]), "act_train": act["train"],
            "act_eval": act["eval"],
            "runs_per_device": runs_per_group, "total": int(total), "n_params": int(models.param_count(params)),
            "heads": mcfg.num_heads}


def mesh_options(cfg, devices: int, R: int) -> list[tuple[int, int]]:
    """(runs, model) meshes of `devices` devices a group of R runs can use (sharding.resolve's rules)."""
    from recovery_jax import models, sharding

    heads = sharding.heads_of(models.model_config(cfg.model, None))
    out = []
    for model in (m for m in range(1, devices + 1) if devices % m == 0 and (not heads or heads % m == 0)):
        runs = math.gcd(R, devices // model)
        out.append((runs, model))
    return out


def smallest_fit(cfg, devices: int, memory: int, usable: float, R: int = 1) -> tuple[int, int, dict] | None:
    for runs, model in mesh_options(cfg, devices, R):
        est = plan_mesh(cfg, model, R // runs)
        if est["total"] <= usable * memory:
            return runs, model, est
    return None


# ----------------------------------------------------------------------------- XLA's own number


def compiled_memory(cfg, runs: int, model: int) -> dict | None:
    """Lower and compile the group episode for a (runs, model) mesh of host CPU devices on abstract arrays
    (no weights) and return XLA's memory_analysis per device (None where the backend gives none)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from recovery_jax import models, runner, sharding
    from recovery_jax.engine import default_hp

    if jax.device_count() < runs * model:
        raise cli.UsageError(f"--compile needs {runs * model} devices and this process has {jax.device_count()}")
    mcfg, params, _ = run_shapes(cfg)
    R = runs
    engine = runner.make_engine(cfg, mcfg, cfg.T * cfg.E * cfg.M, params, 0)
    state = jax.eval_shape(engine.init_state, params, jax.random.PRNGKey(0))
    stack = lambda t: jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct((R,) + tuple(x.shape), x.dtype), t)  # noqa: E731
    state_R = stack(state)
    hp_R = stack(jax.eval_shape(lambda: default_hp(engine.spec, 1e-3, mcfg.vocab_size)))
    mesh = sharding.build_mesh(sharding.MeshShape(runs, model))
    sh_state = sharding.state_shardings(mesh, state_R, mcfg.arch)
    sh_hp = jax.tree_util.tree_map(lambda x: sharding.runs_sharding(mesh, len(x.shape)), hp_R)
    block = cfg.data.block or cfg.C
    task = jax.ShapeDtypeStruct((R, block), np.int32)
    mask = jax.ShapeDtypeStruct((R, block), np.bool_)
    ev_tok = jax.ShapeDtypeStruct((R, cfg.T, cfg.C), np.int32)
    ev_msk = jax.ShapeDtypeStruct((R, cfg.T, cfg.C), np.bool_)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sh_eval = sharding.eval_sharding(mesh, cfg.T)
    fn = getattr(engine, "_episode_R", None) or jax.vmap(engine._episode)
    n_out = 4 if engine.spec.every_step_eval else 3
    jitted = jax.jit(fn, in_shardings=(sh_state, sharding.runs_sharding(mesh, 2), sharding.runs_sharding(mesh, 2),
                                       sh_eval, sh_eval, sh_hp),
                     out_shardings=(sh_state,) + (rep,) * (n_out - 1), donate_argnums=(0,))
    with jax.default_matmul_precision(cfg.model.matmul_precision):
        compiled = jitted.lower(state_R, task, mask, ev_tok, ev_msk, hp_R).compile()
    ma = compiled.memory_analysis()
    if ma is None:
        return None
    del jnp
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
              "generated_code_size_in_bytes")
    out = {f: int(getattr(ma, f, 0) or 0) for f in fields}
    out["peak"] = out["argument_size_in_bytes"] + out["output_size_in_bytes"] - out["alias_size_in_bytes"] \
        + out["temp_size_in_bytes"]
    return out


# ----------------------------------------------------------------------------- the command


def parse(argv: list[str]):
    overrides, rest = config_lib.split_argv(argv)
    p = cli.ArgumentParser(prog="python -m recovery_jax.plan", description=__doc__)
    p.add_argument("--config", required=True, help="a config file with get_config() (see configs/)")
    p.add_argument("--devices", type=cli.positive_int, default=None,
                   help="devices to plan for (default: the visible ones)")
    p.add_argument("--device-memory", type=byte_list, default=None,
                   help="memory of one device, e.g. 40GB (default: what the visible device reports); "
                        "with --table a list, e.g. 40GB,80GB")
    p.add_argument("--usable", type=cli.positive_float, default=0.9,
                   help="share of a device's memory a plan may fill (default 0.9)")
    p.add_argument("--runs", type=cli.positive_int, default=1, help="runs in the group (seeds), default 1")
    p.add_argument("--compile", action="store_true",
                   help="also compile the episode for the smallest fitting mesh on host CPU devices and print "
                        "XLA's memory_analysis (minutes for billion-parameter models)")
    p.add_argument("--table", default=None, help="presets, e.g. pythia-160m,pythia-1b: one markdown row each")
    p.add_argument("--optimizers", default="sgd,adam_reset", help="with --table: optimizers (default sgd,adam_reset)")
    args = p.parse_args(rest)
    if args.usable > 1:
        raise cli.UsageError(f"--usable {args.usable} must be in (0, 1]")
    if args.device_memory is not None and len(args.device_memory) > 1 and args.table is None:
        raise cli.UsageError("several --device-memory sizes only with --table")
    cfg = config_lib.load(args.config, overrides)
    if args.table is not None:
        from recovery_jax import models
        args.table = [t.strip() for t in args.table.split(",") if t.strip()]
        bad = [t for t in args.table if t not in models.PRESETS]
        if bad or not args.table:
            raise cli.UsageError(f"--table {','.join(bad) or '(empty)'}: not a preset; valid: {sorted(models.PRESETS)}")
        args.optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
        bad = [o for o in args.optimizers if o not in config_lib.OPTIMIZERS]
        if bad or not args.optimizers:
            raise cli.UsageError(f"--optimizers {','.join(bad) or '(empty)'}: valid: {', '.join(config_lib.OPTIMIZERS)}")
    return args, cfg


def main(argv: list[str]) -> int:
    args, cfg = parse(argv)
    if args.compile and args.devices:  # host CPU devices for the compile, before jax starts
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.devices}").strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from recovery_jax import sharding

    devices = args.devices or jax.device_count()
    memory = args.device_memory
    if memory is None:
        limit = None if args.compile else sharding.device_memory()
        if not limit:
            raise cli.UsageError(f"give --device-memory (the {jax.default_backend()} backend does not report one)")
        memory = (int(limit),)
    if args.table is not None:
        print_table(cfg, args.table, args.optimizers, memory, devices, args.usable, args.runs)
        return 0
    print_plan(cfg, devices, memory[0], args.usable, args.runs)
    if args.compile:
        fit = smallest_fit(cfg, devices, memory[0], args.usable, args.runs)
        runs, model = (fit[0], fit[1]) if fit else mesh_options(cfg, devices, args.runs)[-1]
        ma = compiled_memory(cfg, runs, model)
        if ma is None:
            print("XLA gives no memory analysis on this backend")
        else:
            print(f"\nXLA memory_analysis of the compiled episode, mesh {runs} runs x {model} model, per device: "
                  + ", ".join(f"{k.replace('_size_in_bytes', '')} {fmt(v)}" for k, v in ma.items()))
    return 0


def print_plan(cfg, devices: int, memory: int, usable: float, R: int) -> None:
    from recovery_jax import models

    mcfg = models.model_config(cfg.model, None)
    rows = []
    for runs, model in mesh_options(cfg, devices, R):
        est = plan_mesh(cfg, model, R // runs)
        rows.append((runs, model, est))
    n = rows[0][2]["n_params"]
    print(f"{cfg.model.preset} ({n / 1e9:.2f}B parameters, {mcfg.num_heads} heads), optimizer {cfg.optim.name}, "
          f"T={cfg.T} C={cfg.C} M={cfg.M}, {R} run{'s' if R > 1 else ''}, {devices} devices of {fmt(memory)} "
          f"({usable:.0%} usable)")
    print(f"{'mesh (runs x model)':>20} | {'params':>9} | {'opt state':>9} | {'grads':>9} | {'gathered':>9} | "
          f"{'activations':>11} | {'per device':>10} | fits")
    for runs, model, e in rows:
        print(f"{f'{runs} x {model}':>20} | {fmt(e['params']):>9} | {fmt(e['opt_state']):>9} | {fmt(e['grads']):>9} | "
              f"{fmt(e['gathered']):>9} | {fmt(e['activations']):>11} | {fmt(e['total']):>10} | "
              f"{'yes' if e['total'] <= usable * memory else 'no'}")
    fit = next(((r, m) for r, m, e in rows if e["total"] <= usable * memory), None)
    if fit is None:
        print(f"no mesh of {devices} devices fits {fmt(memory)} per device; use more devices, model.dtype=bfloat16 "
              f"activations, model.remat=true or an optimizer with less state")
    else:
        print(f"smallest mesh that fits: --config.mesh.runs={fit[0]} --config.mesh.model={fit[1]}")


def print_table(cfg, presets, optimizers, memories, devices: int, usable: float, R: int) -> None:
    """One markdown row per preset x optimizer: per-run bytes and the smallest model axis on each memory."""
    import copy

    head = "| model | optimizer | params + opt + grads (1 device) | activations (1 device) | " + " | ".join(
        f"{fmt(m)}: mesh.model (per device)" for m in memories) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for preset in presets:
        for opt in optimizers:
            c = copy.deepcopy(cfg)
            c.model.preset, c.optim.name = preset, opt
            c.model.hidden_size = c.model.num_layers = c.model.num_heads = c.model.intermediate_size = 0
            one = plan_mesh(c, 1, R)
            cells = []
            for m in memories:
                fit = smallest_fit(c, devices, m, usable, R)
                cells.append(f"{fit[1]} ({fmt(fit[2]['total'])})" if fit else f"> {devices} devices")
            print(f"| {preset} | {opt} | {fmt(one['params'] + one['opt_state'] + one['grads'])} | "
                  f"{fmt(one['activations'])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
