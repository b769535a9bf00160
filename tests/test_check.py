"""python -m recovery_jax.check on run directories built by hand: complete, resumable, in progress, damaged
(which file, why), and bad arguments."""

from __future__ import annotations

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from recovery_jax import check, cli
from recovery_jax.checkpoint import Checkpointer
from recovery_jax.rundir import write_json_atomic, write_npz_atomic

T, M, E = 3, 2, 2
K = E * T
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(kind="cyclic", probes=""):
    return {"seed": 0, "T": T, "C": 8, "M": M, "E": E, "order": {"kind": kind}, "probes": {"names": probes}}


def losses(k, planned=None):
    planned = np.tile(np.arange(T, dtype=np.int32), E) if planned is None else planned
    return {"eval_losses": np.full((k + 1, T), 2.0, np.float32), "train_losses": np.ones(k * M, np.float32),
            "order": planned[:k], "planned_order": planned, "episodes_done": np.asarray(k)}


def make_run(path, k=K, summary=True, kind="cyclic", planned=None, probes=""):
    os.makedirs(path, exist_ok=True)
    write_json_atomic(os.path.join(path, "config.json"), config(kind, probes))
    write_json_atomic(os.path.join(path, "documents.json"), {"ids": list(range(T))})
    arrays = losses(k, planned)
    write_npz_atomic(os.path.join(path, "losses.npz"), **arrays)
    if summary:
        write_json_atomic(os.path.join(path, "summary.json"), {"K": len(arrays["planned_order"]), "T": T,
                                                              "rs_last": 0.5432, "recovery_scores": [0.5432]})
    return str(path)


def tiny_state(k):
    return {"params": {"w": jnp.full((2, 3), float(k))}, "step": jnp.asarray(k * M)}


def make_resumable(path, episodes=(2, 4)):
    make_run(path, k=episodes[-1], summary=False)
    ck = Checkpointer(str(path))
    for k in episodes:
        arrays = losses(k)
        ck.save_run(k, tiny_state(k), {"eval_losses": arrays["eval_losses"], "train_losses": arrays["train_losses"]})
    return str(path), ck


def run_check(capsys, *paths):
    code = cli.guarded(check.main, [str(p) for p in paths])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_complete(tmp_path, capsys):
    p = make_run(tmp_path / "demo")
    code, out, err = run_check(capsys, p)
    assert (code, err) == (0, [])
    assert out == [f"{p}: complete ({K}/{K} episodes, RS last cycle 0.543)"]


def test_complete_as_a_command(tmp_path):
    p = make_run(tmp_path / "demo")
    proc = subprocess.run([sys.executable, "-m", "recovery_jax.check", p], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == f"{p}: complete ({K}/{K} episodes, RS last cycle 0.543)\n"


def test_filler_order_counts_planned_episodes(tmp_path, capsys):
    planned = np.asarray([0, 1, 2, -1, -1, 0, 1, 2, -1], np.int32)  # E*T = 6, but 9 episodes with fillers
    p = make_run(tmp_path / "filler", k=len(planned), kind="filler", planned=planned)
    code, out, _ = run_check(capsys, p)
    assert code == 0 and out == [f"{p}: complete (9/9 episodes, RS last cycle 0.543)"]


def test_resumable(tmp_path, capsys):
    p, _ = make_resumable(tmp_path / "x")
    code, out, err = run_check(capsys, p)
    assert (code, err) == (0, [])
    assert out == [f"{p}: resumable from episode 4/{K} (checkpoint 4; older: 2)"]


def test_resumable_past_a_damaged_checkpoint(tmp_path, capsys):
    p, ck = make_resumable(tmp_path / "x")
    with open(os.path.join(ck.directory, "4", "state", "_METADATA"), "wb") as f:
        f.write(b"garbage")
    code, out, _ = run_check(capsys, p)
    assert code == 0
    assert out[0].startswith(f"{p}: resumable from episode 2/{K} (checkpoint 2; checkpoint 4 is damaged: ")


def test_every_checkpoint_damaged(tmp_path, capsys):
    p, ck = make_resumable(tmp_path / "x")
    for k in (2, 4):
        os.unlink(os.path.join(ck.directory, str(k), "state", "_METADATA"))
    code, out, _ = run_check(capsys, p)
    assert code == 1
    assert out[0].startswith(f"{p}: damaged: no readable checkpoint in checkpoints/ (4: ")
    assert out[0].endswith("start over with --overwrite")


def test_not_started_is_resumable_from_zero(tmp_path, capsys):
    p = tmp_path / "fresh"
    p.mkdir()
    write_json_atomic(p / "config.json", config())
    code, out, _ = run_check(capsys, p)
    assert code == 0 and out == [f"{p}: resumable from episode 0/{K} (no checkpoint yet; --resume starts it over)"]


@pytest.mark.parametrize("damage, why", [("garbage", "(not a zip archive)"), ("truncated", "(BadZipFile: ")])
def test_damaged_losses_npz(tmp_path, capsys, damage, why):
    p = make_run(tmp_path / "y")
    f = os.path.join(p, "losses.npz")
    if damage == "garbage":
        with open(f, "wb") as fh:
            fh.write(b"not a zip file at all")
    else:
        os.truncate(f, os.path.getsize(f) // 2)
    code, out, err = run_check(capsys, p)
    assert (code, err) == (1, [])
    assert out[0].startswith(f"{p}: damaged: losses.npz is not a valid .npz file {why}")


def test_damaged_losses_of_an_unfinished_run_say_resume_rewrites_them(tmp_path, capsys):
    p, _ = make_resumable(tmp_path / "x")
    os.truncate(os.path.join(p, "losses.npz"), 0)
    code, out, _ = run_check(capsys, p)
    assert code == 1 and out == [f"{p}: damaged: losses.npz is not a valid .npz file (empty); "
                                 f"--resume rewrites it from checkpoint 4"]


def test_losses_of_wrong_shape(tmp_path, capsys):
    p = make_run(tmp_path / "y")
    arrays = losses(K)
    arrays["train_losses"] = arrays["train_losses"][:-1]
    write_npz_atomic(os.path.join(p, "losses.npz"), **arrays)
    code, out, _ = run_check(capsys, p)
    assert code == 1
    assert out == [f"{p}: damaged: losses.npz: train_losses has shape ({K * M - 1},), expected ({K * M},) "
                   f"for {K} episodes of M={M} steps"]


def test_summary_with_incomplete_losses(tmp_path, capsys):
    p = make_run(tmp_path / "y", k=4)
    code, out, _ = run_check(capsys, p)
    assert code == 1 and out == [f"{p}: damaged: summary.json is present but losses.npz holds only 4/{K} episodes"]


def test_config_not_utf8(tmp_path, capsys):
    p = make_run(tmp_path / "y")
    with open(os.path.join(p, "config.json"), "wb") as f:
        f.write(b'{"T": 3, "name": "\xff\xfe"}')
    code, out, _ = run_check(capsys, p)
    assert code == 1 and out == [f"{p}: damaged: config.json is not UTF-8 text (byte 0xff at offset 18)"]


def test_invalid_json_summary(tmp_path, capsys):
    p = make_run(tmp_path / "y")
    with open(os.path.join(p, "summary.json"), "w") as f:
        f.write('{"K": 6,')
    code, out, _ = run_check(capsys, p)
    assert code == 1 and out[0].startswith(f"{p}: damaged: summary.json is not valid JSON (")


def test_probes_partial_missing(tmp_path, capsys):
    p = make_run(tmp_path / "probes", k=2, summary=False, probes="weights")
    Checkpointer(p).save_run(2, tiny_state(2), {"eval_losses": losses(2)["eval_losses"]})
    code, out, _ = run_check(capsys, p)
    assert code == 1 and out == [f"{p}: damaged: probes_partial.npz is missing, so the probes cannot resume; "
                                 f"start over with --overwrite"]


def test_in_progress(tmp_path, capsys):
    p = make_run(tmp_path / "live", k=2, summary=False)
    with open(os.path.join(p, "run.lock"), "w") as f:
        f.write(str(os.getpid()))
    code, out, _ = run_check(capsys, p)
    assert code == 0 and out == [f"{p}: in progress (pid {os.getpid()}; 2/{K} episodes saved so far)"]


def test_stale_lock_is_not_in_progress(tmp_path, capsys):
    p = make_run(tmp_path / "dead")
    with open(os.path.join(p, "run.lock"), "w") as f:
        f.write("999999999")
    code, out, _ = run_check(capsys, p)
    assert code == 0 and out[0].startswith(f"{p}: complete")


def test_several_dirs_one_line_each_worst_status(tmp_path, capsys):
    good = make_run(tmp_path / "good")
    bad = make_run(tmp_path / "bad")
    os.unlink(os.path.join(bad, "config.json"))
    code, out, _ = run_check(capsys, good, bad)
    assert code == 1 and len(out) == 2
    assert out[0].startswith(f"{good}: complete") and out[1] == f"{bad}: damaged: config.json is missing"


@pytest.mark.parametrize("what", ["missing", "file", "plain dir"])
def test_bad_arguments(tmp_path, capsys, what):
    good = make_run(tmp_path / "good")
    p = tmp_path / "arg"
    if what == "file":
        p.write_text("hello")
    elif what == "plain dir":
        p.mkdir()
    code, out, err = run_check(capsys, good, p)
    assert code == 2 and out == [] and len(err) == 1
    why = {"missing": "no such directory", "file": "not a directory", "plain dir": "not a run directory"}[what]
    assert err[0].startswith(f"error: {p}: {why}")
