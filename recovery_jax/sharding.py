"""Devices for a group of runs: a mesh of `runs` x `model` devices (config keys mesh.runs, mesh.model).

Why two axes: the runs of a group are independent (engine.Engine.episode_R vmaps one episode over the run
axis R), so spreading R over devices needs no communication at all; a model too large for one device has
its parameters and optimizer state sharded FSDP-style over `model` (each array split along the axis its
architecture's `shard_rules` name, else its largest axis that divides; XLA gathers the weights where a layer
needs them, or splits the activations along them), and the devices of the `model` axis split
the T evaluation documents between them (a data axis: evaluation is a batch, training is one document).

    mesh = group_mesh(cfgs, mcfg)                  # resolve(...) -> build_mesh(...), None for one device
    episode_R, evaluate_R = shard_group(p, mesh, arch)  # places the stacked arrays, jits with their shardings

A mesh of one device is not a mesh here: `group_mesh` returns None and the runner keeps today's program,
so nothing changes for CPU users. A group whose R does not divide over mesh.runs is refused (ConfigError):
padding with dummy runs would cost their compute and checkpoint space for nothing (choose R a multiple of
mesh.runs, or mesh.runs a divisor of R). Everything here works the same for one process or many
(jax.distributed): host data is identical on every process and each process places its own shards.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from recovery_jax.config import ConfigError

RUNS, MODEL = "runs", "model"


@dataclasses.dataclass(frozen=True)
class MeshShape:
    runs: int
    model: int

    @property
    def size(self) -> int:
        return self.runs * self.model

    def __str__(self) -> str:
        return f"{self.runs} runs x {self.model} model"


# ----------------------------------------------------------------------------- the mesh shape


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def resolve(cfg, R: int, n_devices: int, *, heads: int = 0, run_bytes: int = 0,
            device_bytes: int | None = None) -> MeshShape:
    """mesh.runs x mesh.model for a group of R runs on n visible devices (the config gate's device half: each
    problem is one ConfigError line). 0 = auto: the smallest model axis whose share of one run fits
    `device_bytes` (1 when unknown, as on CPU), then every remaining device on `runs`; auto uses fewer devices
    than visible when R does not divide over them (never padding). Explicit values whose product divides n
    use the first runs x model devices (1 x 1: one device, today's program)."""
    runs, model = int(cfg.mesh.runs), int(cfg.mesh.model)
    if n_devices <= 1:
        if runs > 1 or model > 1:
            raise ConfigError(f"mesh.runs={runs} x mesh.model={model} needs more than one device but only one is "
                              f"visible ({jax.default_backend()}); leave mesh.runs=0 mesh.model=0 (auto) or run "
                              f"where more devices are visible")
        return MeshShape(1, 1)
    if runs and model and n_devices % (runs * model):
        raise ConfigError(f"mesh.runs={runs} x mesh.model={model} = {runs * model} devices does not divide the "
                          f"{n_devices} visible devices; choose a product in {_divisors(n_devices)} (set one key "
                          f"to 0 to derive it)")
    for key, v in (("mesh.runs", runs), ("mesh.model", model)):
        if v and n_devices % v:
            raise ConfigError(f"{key}={v} does not divide the {n_devices} visible devices; choose one of "
                              f"{_divisors(n_devices)}")
    if model and heads and heads % model:
        raise ConfigError(f"mesh.model={model} does not divide the model's {heads} attention heads (each device "
                          f"holds whole heads); choose mesh.model in {[d for d in _divisors(heads) if n_devices % d == 0]}")
    if runs and R % runs:
        raise ConfigError(f"the group's {R} runs do not divide over mesh.runs={runs} (each device group holds the "
                          f"same number of runs; runs are not padded): use a multiple of {runs} runs or a divisor "
                          f"of {R} for mesh.runs")
    if not model:
        model = n_devices // runs if runs else _auto_model(n_devices, heads, run_bytes, device_bytes)
        if heads and heads % model:  # derived from mesh.runs
            raise ConfigError(f"mesh.runs={runs} leaves mesh.model={model} devices per run, which does not divide "
                              f"the model's {heads} attention heads; set mesh.model too (a divisor of {heads})")
    if not runs:
        runs = math.gcd(R, n_devices // model)  # all the rest when R divides over them
    return MeshShape(runs, model)


def _auto_model(n_devices: int, heads: int, run_bytes: int, device_bytes: int | None) -> int:
    """The smallest model axis that fits one run in 90% of a device (the largest allowed one if none does)."""
    ok = [m for m in _divisors(n_devices) if not heads or heads % m == 0]
    if not device_bytes or not run_bytes:
        return 1
    for m in ok:
        if run_bytes / m <= 0.9 * device_bytes:
            return m
    return ok[-1]


def build_mesh(shape: MeshShape, devices=None) -> Mesh:
    """A (runs, model) mesh over the first shape.size devices; GSPMD (Auto) axes, so XLA chooses how the
    operations between the placed inputs and outputs are partitioned."""
    devices = list(jax.devices() if devices is None else devices)[: shape.size]
    return jax.make_mesh((shape.runs, shape.model), (RUNS, MODEL),
                         axis_types=(jax.sharding.AxisType.Auto,) * 2, devices=devices)


def device_memory() -> int | None:
    """Bytes one device may hold (None where the backend does not say, as on CPU)."""
    try:
        return (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
    except Exception:  # noqa: BLE001 - memory_stats is optional per backend
        return None


def check(cfgs: list) -> MeshShape:
    """The mesh of a group, from its configs alone (before any run directory is touched); ConfigError."""
    from recovery_jax import models
    from recovery_jax.runner import run_bytes

    cfg = cfgs[0]
    heads = 0
    if cfg.model.init != "pretrained" and not models.registry.get(cfg.model.arch).port:
        heads = heads_of(models.model_config(cfg.model, None))  # (ports and checkpoints: checked in setup)
    n = jax.device_count()  # one device: nothing to size (run_bytes traces the model's init)
    return resolve(cfg, len(cfgs), n, heads=heads, run_bytes=run_bytes(cfg) if n > 1 else 0,
                   device_bytes=device_memory())


def heads_of(mcfg) -> int:
    """Attention heads of a model config (0 for a model without attention)."""
    return int(getattr(mcfg, "num_heads", 0) or getattr(mcfg, "n_heads", 0) or 0)


def host_staging(cfgs: list):
    """Where a group's state is built before it is placed: in host memory (the CPU backend) when the group will
    be spread over accelerators, so a model whose state only fits sharded never lands whole on device 0;
    otherwise where it always was (the default device). Host memory then holds the group's state about twice
    while it is stacked."""
    import contextlib

    if jax.default_backend() == "cpu" or check(cfgs).size == 1:
        return contextlib.nullcontext()
    return jax.default_device(jax.devices("cpu")[0])


def group_mesh(cfgs: list, mcfg, log=print) -> Mesh | None:
    """The mesh a group runs on, or None for one device (today's program)."""
    from recovery_jax.runner import run_bytes

    n = jax.device_count()
    shape = resolve(cfgs[0], len(cfgs), n, heads=heads_of(mcfg), run_bytes=run_bytes(cfgs[0]) if n > 1 else 0,
                    device_bytes=device_memory())
    if shape.size == 1:
        return None
    if shape.size < jax.device_count():
        log(f"mesh: {shape} on {shape.size} of {jax.device_count()} devices (the group's {len(cfgs)} runs do not "
            f"divide over more; set mesh.runs / mesh.model to choose)")
    return build_mesh(shape)


# ----------------------------------------------------------------------------- parameter rules


def leaf_path(path) -> str:
    """A pytree key path as 'a/b/c' (dict keys, attribute names and sequence indices alike)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def arch_rules(arch) -> tuple:
    """The architecture's own rules ((regex over the param path, axis), ...), first match wins; an architecture
    without any gets the generic FSDP rule alone."""
    from recovery_jax.models import registry

    try:
        return tuple(getattr(registry.get(arch), "shard_rules", ()) or ())
    except ValueError:
        return ()


def model_axis(path: str, shape: tuple, model: int, rules: tuple = ()) -> int | None:
    """Which axis of one run's array goes over the `model` axis (None: whole on every device). A rule names an
    axis for a path; the generic FSDP rule takes the largest axis that divides (the last of equal ones)."""
    if model <= 1 or not shape:  # biases and norms too: each device then holds exactly 1/model of a run
        return None
    for pattern, axis in rules:
        if re.search(pattern, path):
            if axis is None:
                return None
            axis = axis % len(shape)
            if shape[axis] % model == 0:
                return axis
            break  # the rule's axis does not divide: fall back to the generic rule
    best = None
    for axis, n in enumerate(shape):
        if n % model == 0 and (best is None or n >= shape[best]):
            best = axis
    return best


def spec_R(path: str, shape_R: tuple, model: int, rules: tuple = ()) -> P:
    """The PartitionSpec of a stacked leaf [R, ...]: the run axis over `runs`, one axis over `model`."""
    axis = model_axis(path, tuple(shape_R[1:]), model, rules)
    inner = [None] * (len(shape_R) - 1)
    if axis is not None:
        inner[axis] = MODEL
    return P(RUNS, *inner)


def state_shardings(mesh: Mesh, state_R: Any, arch) -> Any:
    """NamedShardings of the stacked state {params, opt_state, step, rng}: optimizer moments follow their
    parameter (their key paths end in the parameter's path, so the same rules match)."""
    model, rules = mesh.shape[MODEL], arch_rules(arch)
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(mesh, spec_R(leaf_path(path), tuple(x.shape), model, rules)), state_R)


def runs_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """A leading run axis over `runs`, everything else whole (hp, training documents)."""
    return NamedSharding(mesh, P(RUNS, *([None] * (ndim - 1))))


def eval_sharding(mesh: Mesh, T: int) -> NamedSharding:
    """[R, T, C] evaluation documents: runs over `runs`, the T documents split over `model` (a data axis)
    when they divide, else whole."""
    model = mesh.shape[MODEL]
    return NamedSharding(mesh, P(RUNS, MODEL if model > 1 and T % model == 0 else None, None))


# ----------------------------------------------------------------------------- placing and compiling


def place(x, sharding: NamedSharding) -> jax.Array:
    """A global array from host (or single-device) data that every process holds identically: each process
    puts only its own shards (jax.make_array_from_callback), so this works across hosts too."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def place_tree(tree, shardings):
    return jax.tree_util.tree_map(place, tree, shardings)


@dataclasses.dataclass
class GroupShardings:
    mesh: Mesh
    state: Any
    hp: Any
    task: NamedSharding
    eval: NamedSharding
    replicated: NamedSharding


def _over_runs(engine, name: str) -> Callable:
    """The engine's own run-axis function (the vmapped episode or evaluation), so sharded and unsharded groups
    compute the same per-run program."""
    fn = getattr(engine, f"_{name}_R", None)
    return fn if fn is not None else jax.vmap(getattr(engine, f"_{name}"), spmd_axis_name=RUNS)


def shard_group(p, mesh: Mesh, arch) -> tuple[Callable, Callable]:
    """Place the stacked arrays of a prepared group (runner.Prepared) on the mesh, in place, and return the
    episode and evaluation jitted with those shardings (the lowering follows them). Losses come back whole on
    every device, so every process reads them."""
    rep = NamedSharding(mesh, P())
    T = p.eval_tokens_RTC.shape[1]
    sh = GroupShardings(mesh, state_shardings(mesh, p.state, arch),
                        jax.tree_util.tree_map(lambda x: runs_sharding(mesh, x.ndim), p.hp_R),
                        runs_sharding(mesh, 2), eval_sharding(mesh, T), rep)
    p.state = place_tree(p.state, sh.state)
    p.hp_R = place_tree(p.hp_R, sh.hp)
    p.eval_tokens_RTC, p.eval_mask_RTC = place(p.eval_tokens_RTC, sh.eval), place(p.eval_mask_RTC, sh.eval)
    train_sh = runs_sharding(mesh, 3)
    p.train_tokens_RTB, p.train_mask_RTB = place(p.train_tokens_RTB, train_sh), place(p.train_mask_RTB, train_sh)
    p.shardings = sh
    gather = jax.jit(lambda tok_RTB, msk_RTB, t_R: (tok_RTB[jnp.arange(t_R.shape[0]), t_R],
                                                      msk_RTB[jnp.arange(t_R.shape[0]), t_R]),
                     out_shardings=(sh.task, sh.task))

    def take(tok, msk, t_R=None):
        """This episode's documents of every run (or a filler document, given whole), placed as tasks."""
        if t_R is None:
            return place(tok, sh.task), place(msk, sh.task)
        return gather(tok, msk, place(np.asarray(t_R, np.int32), rep))
    p.take = take
    n_out = 4 if p.engine.spec.every_step_eval else 3
    episode = jax.jit(_over_runs(p.engine, "episode"),
                      in_shardings=(sh.state, sh.task, sh.task, sh.eval, sh.eval, sh.hp),
                      out_shardings=(sh.state,) + (rep,) * (n_out - 1), donate_argnums=(0,))
    evaluate = jax.jit(_over_runs(p.engine, "evaluate"), in_shardings=(sh.state["params"], sh.eval, sh.eval, sh.hp),
                       out_shardings=rep)
    return episode, evaluate


_TAKE: dict = {}


def host_run_state(state_R, r: int, mesh: Mesh) -> Any:
    """One run's state as host numpy arrays, from the sharded stacked state, one leaf at a time (a leaf is
    gathered whole on the devices only for the moment it is copied out, so this works across processes and
    never holds a whole run's state on one device)."""
    rep = NamedSharding(mesh, P())
    take = _TAKE.get(mesh)
    if take is None:
        take = _TAKE[mesh] = jax.jit(lambda x, i: x[i], out_shardings=rep)
    r_ = place(np.asarray(r, np.int32), rep)
    return jax.tree_util.tree_map(lambda x: np.asarray(take(x, r_)), state_R)


# ----------------------------------------------------------------------------- what is where


def device_bytes(tree) -> dict:
    """Bytes of a tree's arrays held by each device ({device id: bytes}), from their addressable shards."""
    out: dict = {}
    for x in jax.tree_util.tree_leaves(tree):
        for s in x.addressable_shards:
            out[s.device.id] = out.get(s.device.id, 0) + s.data.nbytes
    return out


# ----------------------------------------------------------------------------- several processes (hosts)


DISTRIBUTED_ENV = "RECOVERY_JAX_DISTRIBUTED"  # "0": never start jax.distributed from SLURM's variables


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
    """Start JAX's distributed runtime before any device is touched: from explicit flags (all three), or, with
    none, from SLURM's variables when the job step has more than one task (jax reads the node list, task id
    and count itself). Returns whether this is a multi-process run. CPU processes use gloo collectives."""
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        from recovery_jax.cli import UsageError
        raise UsageError("--coordinator, --num-processes and --process-id go together (give all three, or none "
                         "to read SLURM's variables)")
    if not any(given):
        import os
        if os.environ.get(DISTRIBUTED_ENV, "1") == "0" or int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1:
            return False
    if all(given) and not 0 <= process_id < num_processes:
        from recovery_jax.cli import UsageError
        raise UsageError(f"--process-id {process_id} must be in [0, --num-processes={num_processes})")
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception:  # noqa: BLE001 - an older jax without the option: CPU collectives are its default
        pass
    # a process that stops on an error leaves within a minute instead of waiting 5 for the others at shutdown;
    # the others then miss its heartbeats and stop too (bounded failure instead of a hang in a collective)
    timeouts = dict(heartbeat_timeout_seconds=60, shutdown_timeout_seconds=30)
    if all(given):
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, **timeouts)
    else:
        jax.distributed.initialize(**timeouts)
    return jax.process_count() > 1


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_primary() -> bool:
    """The one process that writes run directories (process 0)."""
    return jax.process_index() == 0


class agreed:
    """A block every process runs; if it fails on any process, it fails on all (the others raise a RunError
    naming the process), instead of leaving them waiting forever at the next collective."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if jax.process_count() == 1:
            return False
        from jax.experimental import multihost_utils

        from recovery_jax.rundir import RunError
        failed_P = np.asarray(multihost_utils.process_allgather(np.int32(exc is not None)))
        if exc is None and failed_P.any():
            raise RunError(f"process {int(np.flatnonzero(failed_P)[0])} stopped (its error is in its output)")
        return False


def any_process(flag: bool) -> bool:
    """Whether `flag` is set on any process (itself on one process): decisions every process must share."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils
    return bool(np.asarray(multihost_utils.process_allgather(np.int32(bool(flag)))).any())


class FollowerDir:
    """A run directory as a process other than 0 sees it: reads the real files, writes nothing (process 0
    writes every run directory once)."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def open(cls, path: str, config: dict, *, resume: bool = False, overwrite: bool = False) -> "FollowerDir":
        return cls(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def release(self):
        pass

    def file(self, name: str) -> str:
        import os
        return os.path.join(self.path, name)

    def write_json(self, *a, **k):
        pass

    def write_npz(self, *a, **k):
        pass

    def write_losses(self, *a, **k):
        pass


def follower_checkpointer(run_path: str, keep: int):
    """process > 0: restores from process 0's checkpoints (a shared file system), never saves or deletes."""
    from recovery_jax.checkpoint import Checkpointer

    class FollowerCheckpointer(Checkpointer):
        def save_run(self, *a, **k):
            pass

        def clear(self):
            pass

        def _remove_leftovers(self):
            pass

    return FollowerCheckpointer(run_path, keep=keep)
