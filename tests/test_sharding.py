"""Groups on a device mesh (recovery_jax/sharding.py) equal the same groups on one device.

Each case runs in a subprocess with 8 host CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=8 set
before jax is imported); this test process keeps its one device. The same file is the subprocesses' worker:

    python tests/test_sharding.py compare RUNS MODEL R HEADS OUT.json   # the group on the mesh and on 1 device
    python tests/test_sharding.py kill K -- TRAIN_ARGS...               # train, SIGKILL itself at episode K
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_config.py")
N_DEVICES = 8


def _env(tmp_path, devices: int = N_DEVICES) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # one compilation cache for the processes of a case: a resumed run loads the program the first one compiled
    env["RECOVERY_JAX_COMPILATION_CACHE"] = str(tmp_path / "xla_cache")
    return env


def _run(args, tmp_path, devices: int = N_DEVICES, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=_env(tmp_path, devices), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _train(tmp_path, *args, devices: int = N_DEVICES, timeout: int = 300) -> subprocess.CompletedProcess:
    return _run(["-m", "recovery_jax.train", "--config", TINY, *args], tmp_path, devices, timeout)


# ----------------------------------------------------------------------------- the worker (subprocesses)


def _tiny(seed: int, runs: int, model: int, heads: int, E: int):
    from tiny_config import get_config

    c = get_config()
    c.seed, c.E = seed, E
    c.mesh.runs, c.mesh.model = runs, model
    c.model.num_heads = heads
    c.checkpoint.every = "none"
    return c


def worker_compare(runs: int, model: int, R: int, heads: int, out: str) -> None:
    """The same group on one device (mesh 1 x 1) and on runs x model devices: max |diff| of the loss record,
    and the bytes of parameters + optimizer state each device holds on the mesh."""
    import jax
    import numpy as np

    from recovery_jax import rundir, runner, sharding

    assert jax.device_count() == N_DEVICES
    placed = {}
    real = sharding.shard_group

    def spy(p, mesh, arch):
        fns = real(p, mesh, arch)
        held = {"params": p.state["params"], "opt_state": p.state["opt_state"]}
        placed["per_device"] = sharding.device_bytes(held)
        placed["total"] = int(sum(x.nbytes for x in jax.tree_util.tree_leaves(held)))
        placed["mesh"] = dict(mesh.shape)
        return fns

    sharding.shard_group = spy
    result = {}
    for name, (r, m) in (("one", (1, 1)), ("mesh", (runs, model))):
        cfgs = [_tiny(s, r, m, heads, E=1) for s in range(R)]
        dirs = [os.path.join(os.path.dirname(out), name, f"seed={s}") for s in range(R)]
        runner.run_group(cfgs, dirs, log=lambda *a: None)
        result[name] = [rundir.load_run(d) for d in dirs]
    one, mesh = result["one"], result["mesh"]
    json.dump({
        "eval_diff": max(float(np.max(np.abs(a.eval_losses - b.eval_losses))) for a, b in zip(one, mesh)),
        "train_diff": max(float(np.max(np.abs(a.train_losses - b.train_losses))) for a, b in zip(one, mesh)),
        "finite": all(bool(np.isfinite(b.eval_losses).all()) for b in mesh),
        "per_device": {str(k): v for k, v in placed["per_device"].items()}, "total": placed["total"],
        "mesh": placed["mesh"]}, open(out, "w"))


def worker_kill(k_at: int, train_args: list[str]) -> None:
    """python -m recovery_jax.train, killed (SIGKILL: no handler, no cleanup) as episode k_at starts."""
    from recovery_jax import runner, train

    real_episodes = runner.episodes

    def episodes(p, hooks):
        real, calls = p.episode, [p.start_k]

        def episode(*a):
            calls[0] += 1
            if calls[0] == k_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a)
        p.episode = episode
        return real_episodes(p, hooks)

    runner.episodes = episodes
    train.main(train_args)


# ----------------------------------------------------------------------------- the tests


def _cfg(runs=0, model=0):
    from recovery_jax import config as config_lib
    c = config_lib.base_config()
    c.mesh.runs, c.mesh.model = runs, model
    return c


def test_mesh_shape_auto_and_explicit():
    from recovery_jax.sharding import MeshShape, resolve

    assert resolve(_cfg(), 8, 1) == MeshShape(1, 1)
    assert resolve(_cfg(), 8, 8) == MeshShape(8, 1)  # one run fits a device: every device on runs
    assert resolve(_cfg(), 16, 8) == MeshShape(8, 1)
    assert resolve(_cfg(), 4, 8) == MeshShape(4, 1)  # fewer runs than devices: only as many devices
    assert resolve(_cfg(), 3, 8) == MeshShape(1, 1)  # no padding: 3 runs do not divide over 8
    # a run too large for one device: the smallest model axis whose share fits (and that divides the heads)
    assert resolve(_cfg(), 2, 8, heads=8, run_bytes=300, device_bytes=100) == MeshShape(2, 4)
    assert resolve(_cfg(), 1, 8, heads=8, run_bytes=150, device_bytes=100) == MeshShape(1, 2)
    assert resolve(_cfg(model=2), 4, 8, heads=8) == MeshShape(4, 2)
    assert resolve(_cfg(runs=2), 4, 8, heads=8) == MeshShape(2, 4)
    assert resolve(_cfg(runs=1, model=1), 4, 8) == MeshShape(1, 1)  # one device of eight, today's program


def test_mesh_shape_errors_name_the_key_and_what_would_do():
    from recovery_jax.config import ConfigError
    from recovery_jax.sharding import resolve

    for cfg, R, n, heads, words in [
            (_cfg(runs=2), 2, 1, 0, "only one is visible"), (_cfg(runs=3), 3, 8, 0, "[1, 2, 4, 8]"),
            (_cfg(runs=2, model=3), 2, 8, 0, "6 devices does not divide"), (_cfg(model=4), 1, 8, 2, "2 attention heads"),
            (_cfg(runs=4), 6, 8, 0, "6 runs do not divide over mesh.runs=4"),
            (_cfg(runs=2), 2, 8, 2, "leaves mesh.model=4 devices per run")]:
        with pytest.raises(ConfigError) as e:
            resolve(cfg, R, n, heads=heads)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_rules_split_whole_heads_and_matching_pairs():
    import jax

    from recovery_jax import models
    from recovery_jax.sharding import arch_rules, leaf_path, model_axis

    for arch, preset in (("gpt_neox", "pythia-160m"), ("gpt2", "gpt2")):
        mcfg = models.model_config({"arch": arch, "preset": preset}, 50304)
        shapes = models.param_shapes(mcfg)
        axes = {leaf_path(p): model_axis(leaf_path(p), tuple(x.shape), 4, arch_rules(arch))
                for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]}
        part = lambda which: "/".join(models.block_param_path(mcfg, 0, which))  # noqa: E731
        assert axes[part("attn_qkv") + "/kernel"] == 1 and axes[part("attn_out") + "/kernel"] == 0
        assert axes[part("mlp_in") + "/kernel"] == 1 and axes[part("mlp_out") + "/kernel"] == 0
        assert all(a is not None for a in axes.values()), axes  # every array of these models divides by 4
    # a rule's axis that does not divide falls back to the largest axis that does; nothing divides: whole
    assert model_axis("embed_out/kernel", (32, 61), 4, arch_rules("gpt_neox")) == 0
    assert model_axis("x/bias", (6,), 4) is None and model_axis("step", (), 4) is None


def _compare(tmp_path, runs, model, R, heads) -> dict:
    out = tmp_path / "out.json"
    p = _run([__file__, "compare", str(runs), str(model), str(R), str(heads), str(out)], tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.load(open(out))


@pytest.mark.slow  # subprocesses with their own compiles (about a minute each on 2 cores)
def test_eight_runs_over_eight_devices_equal_one_device(tmp_path):
    res = _compare(tmp_path, runs=8, model=1, R=8, heads=2)
    print(res)
    assert res["mesh"] == {"runs": 8, "model": 1}
    assert res["finite"]
    assert res["eval_diff"] <= 1e-5 and res["train_diff"] <= 1e-5, res
    # each device holds one run's state: 1/8 of the group's
    assert len(res["per_device"]) == 8
    assert max(res["per_device"].values()) <= res["total"] / 8 * 1.01


def test_model_axis_of_four_equals_one_device_and_holds_a_quarter(tmp_path):
    res = _compare(tmp_path, runs=1, model=4, R=1, heads=4)
    print(res)
    assert res["mesh"] == {"runs": 1, "model": 4}
    assert res["eval_diff"] <= 1e-4 and res["train_diff"] <= 1e-4, res
    assert len(res["per_device"]) == 4
    assert max(res["per_device"].values()) <= res["total"] / 4 * 1.05, res


@pytest.mark.slow  # subprocesses with their own compiles (about a minute each on 2 cores)
def test_runs_two_by_model_four_equals_one_device_and_holds_a_quarter_of_a_run(tmp_path):
    res = _compare(tmp_path, runs=2, model=4, R=2, heads=4)
    print(res)
    assert res["mesh"] == {"runs": 2, "model": 4}
    assert res["eval_diff"] <= 1e-4 and res["train_diff"] <= 1e-4, res
    assert len(res["per_device"]) == 8
    per_run = res["total"] / 2
    assert max(res["per_device"].values()) <= per_run / 4 * 1.05, res


@pytest.mark.slow  # subprocesses with their own compiles (about a minute each on 2 cores)
def test_kill_9_of_a_sharded_group_then_resume_is_bit_for_bit(tmp_path):
    import numpy as np

    args = ["--seeds", "0,1", "--config.E=2", "--config.model.num_heads=4", "--config.mesh.runs=2",
            "--config.mesh.model=4", "--no-progress"]
    full = _train(tmp_path, "--workdir", str(tmp_path / "full"), *args)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run([__file__, "kill", "6", "--", "--config", TINY, "--workdir", str(tmp_path / "cut"), *args], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    for s in (0, 1):  # checkpoints after episodes 4 (epoch end) and 5 (every episode), no results yet
        assert not (tmp_path / "cut" / f"seed={s}" / "summary.json").exists()
        assert os.listdir(tmp_path / "cut" / f"seed={s}" / "checkpoints")
    resumed = _train(tmp_path, "--workdir", str(tmp_path / "cut"), *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from the checkpoint after episode 5" in resumed.stdout
    for s in (0, 1):
        a = np.load(tmp_path / "full" / f"seed={s}" / "losses.npz")
        b = np.load(tmp_path / "cut" / f"seed={s}" / "losses.npz")
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(tmp_path, args: list[str], cwds=None, kill_at: int = 0,
                   timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """The same train command as processes 0 and 1 of a jax.distributed job on localhost (4 CPU devices each);
    in their own working directories `cwds` a relative --workdir shows what each process wrote. kill_at: both
    SIGKILL themselves as that episode starts. Bounded: whatever still runs after `timeout` is killed."""
    port = _free_port()
    procs = []
    for i in (0, 1):
        cwd = cwds[i] if cwds else tmp_path
        os.makedirs(cwd, exist_ok=True)
        head = [__file__, "kill", str(kill_at), "--"] if kill_at else ["-m", "recovery_jax.train"]
        cmd = [sys.executable, *head, "--config", TINY, *args, "--coordinator", f"localhost:{port}",
               "--num-processes", "2", "--process-id", str(i)]
        procs.append(subprocess.Popen(cmd, env=_env(tmp_path, devices=N_DEVICES // 2), cwd=cwd, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    out = []
    try:
        for pr in procs:
            stdout, stderr = pr.communicate(timeout=timeout)
            out.append(subprocess.CompletedProcess(pr.args, pr.returncode, stdout, stderr))
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
                pr.wait()
    return out


MULTI = ["--seeds", "0,1", "--config.E=1", "--config.model.num_heads=4", "--config.mesh.runs=2",
         "--config.mesh.model=4", "--no-progress"]


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory):
    """The same sharded group (2 runs x 4 model devices) in one process with 8 devices and in two processes
    with 4 each, the latter in separate working directories."""
    root = tmp_path_factory.mktemp("multihost")
    one = _train(root, "--workdir", str(root / "one"), *MULTI)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _two_processes(root, ["--workdir", "runs", *MULTI], cwds=[root / "process0", root / "process1"])
    assert all(p.returncode == 0 for p in two), [p.stderr[-3000:] for p in two]
    return root


@pytest.mark.slow  # subprocesses with their own compiles (about a minute each on 2 cores)
def test_two_processes_write_each_run_directory_once_equal_to_one_process(one_and_two_processes):
    import numpy as np

    root = one_and_two_processes
    assert not (root / "process1" / "runs").exists()  # process 1 wrote nothing
    assert sorted(os.listdir(root / "process0" / "runs")) == sorted(os.listdir(root / "one"))
    for s in (0, 1):
        a, b = root / "one" / f"seed={s}", root / "process0" / "runs" / f"seed={s}"
        assert sorted(os.listdir(a)) == sorted(os.listdir(b))
        la, lb = np.load(a / "losses.npz"), np.load(b / "losses.npz")
        assert sorted(la.files) == sorted(lb.files)
        for key in la.files:
            np.testing.assert_allclose(lb[key], la[key], atol=1e-5, rtol=0, err_msg=key)
        sa, sb = (json.load(open(d / "summary.json")) for d in (a, b))
        np.testing.assert_allclose(sb["recovery_scores"], sa["recovery_scores"], atol=1e-5)


@pytest.mark.slow  # subprocesses with their own compiles (about a minute each on 2 cores)
def test_two_processes_killed_then_resumed_are_bit_for_bit(one_and_two_processes, tmp_path):
    import numpy as np

    root = one_and_two_processes
    cut = str(tmp_path / "cut")  # one absolute workdir: process 1 restores from process 0's checkpoints
    # the fixture's folder for the processes' shared compilation cache: the programs are compiled already
    killed = _two_processes(root, ["--workdir", cut, *MULTI], kill_at=3)
    assert [p.returncode for p in killed] == [-signal.SIGKILL] * 2, [p.stderr[-2000:] for p in killed]
    resumed = _two_processes(root, ["--workdir", cut, *MULTI, "--resume"])
    assert all(p.returncode == 0 for p in resumed), [p.stderr[-3000:] for p in resumed]
    assert "resumed from the checkpoint after episode 2" in resumed[0].stdout
    for s in (0, 1):
        a = np.load(root / "process0" / "runs" / f"seed={s}" / "losses.npz")
        b = np.load(os.path.join(cut, f"seed={s}", "losses.npz"))
        for key in a.files:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)


@pytest.mark.slow  # subprocesses with their own compiles (about a minute each on 2 cores)
def test_gpu_mesh_benchmark_runs_on_cpu_devices(tmp_path):
    """benchmarks/gpu_mesh.py (gpu_check.sh's multi-device section) end to end on 4 host CPU devices."""
    out = tmp_path / "mesh.json"
    p = _run(["-m", "benchmarks.gpu_mesh", "--preset", "pythia-14m", "--runs", "2", "--meshes", "1x1,2x2", "--T", "2",
              "--C", "8", "--M", "1", "--episodes", "1", "--out", str(out)], tmp_path, devices=4)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.load(open(out))["results"]
    assert [r["mesh"] for r in res] == [[1, 1], [2, 2]]
    assert res[1]["max_abs_diff_vs_first_mesh"] <= 1e-4 and res[1]["plan_bytes_per_device"] > 0


BAD = [
    # (devices, extra arguments, words the one error line must contain)
    (8, ["--config.mesh.runs=3"], ["mesh.runs=3", "does not divide the 8 visible devices"]),
    (8, ["--config.mesh.runs=3", "--config.mesh.model=2"], ["6 devices", "does not divide the 8 visible devices"]),
    (8, ["--seeds", "0,1,2", "--config.mesh.runs=2", "--config.mesh.model=1"], ["3 runs", "mesh.runs=2", "padded"]),
    (8, ["--config.mesh.model=4"], ["mesh.model=4", "2 attention heads"]),
    (1, ["--config.mesh.runs=2"], ["only one is visible"]),
    (1, ["--config.mesh.model=2"], ["only one is visible"]),
]


def test_bad_meshes_are_one_error_line_exit_2_nothing_written(tmp_path):
    kept = tmp_path / "kept"  # an existing run directory's files stay as they were
    kept.mkdir()
    (kept / "config.json").write_text('{"seed": 0}')
    for i, (devices, extra, words) in enumerate(BAD):
        workdir = kept if i == 0 else tmp_path / f"new{i}"
        p = _train(tmp_path, "--workdir", str(workdir), "--no-progress", *extra, devices=devices, timeout=120)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode == 2, (extra, p.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (extra, p.stderr)
        for w in words:
            assert w in lines[0], (w, lines[0])
        assert workdir == kept or not workdir.exists(), extra
    assert os.listdir(kept) == ["config.json"] and (kept / "config.json").read_text() == '{"seed": 0}'


if __name__ == "__main__":
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={N_DEVICES}")  # before jax
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sys.path.insert(0, ROOT)
    if sys.argv[1] == "compare":
        worker_compare(*map(int, sys.argv[2:6]), sys.argv[6])
    elif sys.argv[1] == "kill":
        worker_kill(int(sys.argv[2]), sys.argv[sys.argv.index("--") + 1:])
