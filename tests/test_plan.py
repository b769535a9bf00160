"""python -m recovery_jax.plan: per-device bytes from shapes alone, the smallest mesh that fits, bad input."""

import os
import subprocess
import sys

import pytest

from recovery_jax import cli, plan
from recovery_jax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_config.py")


def test_memory_sizes():
    assert plan.parse_bytes("40GB") == plan.parse_bytes("40GiB") == plan.parse_bytes("40g") == 40 << 30
    assert plan.parse_bytes("512MB") == 512 << 20 and plan.parse_bytes("1e9") == 10**9
    assert plan.byte_list("40GB,80GB") == (40 << 30, 80 << 30)
    for bad in ("", "GB", "-1GB", "40XB", "0"):
        with pytest.raises(cli.argparse.ArgumentTypeError):
            plan.parse_bytes(bad)


def test_parameters_and_optimizer_state_split_over_the_model_axis():
    from recovery_jax import models

    cfg = config_lib.load(TINY, ["model.num_heads=4", "optim.name=adam_reset"])
    n = models.param_count(models.param_shapes(models.model_config(cfg.model, None)))
    one, four = plan.plan_mesh(cfg, 1), plan.plan_mesh(cfg, 4)
    assert one["params"] == 4 * n and one["grads"] == one["params"]
    assert one["opt_state"] >= 2 * one["params"]  # Adam's two moments (and a count)
    assert four["params"] == one["params"] // 4  # every array of this model divides by 4
    assert four["gathered"] > 0 and one["gathered"] == 0
    assert plan.plan_mesh(config_lib.load(TINY, ["optim.name=sgd"]), 1)["opt_state"] < 64
    # the smallest model axis whose share fits
    need = one["total"]
    runs, model, _ = plan.smallest_fit(cfg, 8, int(need / 0.9) + 1, 0.9)
    assert (runs, model) == (1, 1)
    runs, model, est = plan.smallest_fit(cfg, 8, int(four["total"] / 0.9) + 1, 0.9)
    assert model in (2, 4) and est["total"] <= four["total"] * 1.0 + 1
    assert plan.smallest_fit(cfg, 8, 1000, 0.9) is None


def test_the_plan_and_the_table_print(capsys):
    assert plan.main(["--config", TINY, "--devices", "8", "--device-memory", "1GB", "--config.model.num_heads=4"]) == 0
    out = capsys.readouterr().out
    assert "1 x 4" in out and "smallest mesh that fits: --config.mesh.runs=1 --config.mesh.model=1" in out
    assert plan.main(["--config", TINY, "--table", "pythia-160m,pythia-6.9b", "--optimizers", "sgd,adam_reset",
                      "--device-memory", "40GB,80GB", "--devices", "8"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| pythia")]
    assert len(rows) == 4 and rows[-1].startswith("| pythia-6.9b | adam_reset |")


@pytest.mark.parametrize("args, words", [
    (["--device-memory", "lots"], "not a memory size"),
    (["--device-memory", "40GB", "--usable", "2"], "--usable"),
    (["--device-memory", "40GB,80GB"], "only with --table"),
    (["--device-memory", "40GB", "--table", "pythia-7q"], "not a preset"),
    (["--device-memory", "40GB", "--table", "pythia-1b", "--optimizers", "lion"], "--optimizers"),
    (["--devices", "0", "--device-memory", "40GB"], "--devices"),
    ([], "give --device-memory"),
    (["--device-memory", "40GB", "--config.mesh.model=-1"], "mesh.model"),
])
def test_bad_arguments_are_one_error_line(args, words, capsys):
    assert cli.guarded(plan.main, ["--config", TINY, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err


def test_compile_gives_xla_memory_analysis():
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="", RECOVERY_JAX_COMPILATION_CACHE="off")
    p = subprocess.run([sys.executable, "-m", "recovery_jax.plan", "--config", TINY, "--config.model.num_heads=4",
                        "--devices", "4", "--device-memory", "2MB", "--compile"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "XLA memory_analysis of the compiled episode, mesh 1 runs x 4 model" in p.stdout, p.stdout
