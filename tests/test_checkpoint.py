"""Checkpointer: round trip, damaged checkpoints, failed writes, leftovers of a killed save.

Tiny state pytrees shaped like a run's (params, optax state with None leaves and namedtuples, step,
rng); no model is trained."""

from __future__ import annotations

import errno
import glob
import logging
import os
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recovery_jax import checkpoint as checkpoint_lib
from recovery_jax.checkpoint import TMP_MARK, CheckpointError, Checkpointer
from recovery_jax.rundir import RunError


def make_state(scale: float = 1.0, width: int = 4):
    params = {"w": jnp.arange(3 * width, dtype=jnp.float32).reshape(3, width) * scale, "b": jnp.ones(width)}
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    return {"params": params, "opt_state": opt.init(params), "step": jnp.asarray(int(10 * scale), jnp.int32),
            "rng": jax.random.PRNGKey(int(scale))}


def make_losses(k: int, M: int = 2, T: int = 3):
    return {"eval_losses": np.full((k + 1, T), float(k), np.float32),
            "train_losses": np.arange(k * M, dtype=np.float32),
            "step_eval_losses": np.zeros((k * M, T), np.float32)}


def assert_same(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert np.asarray(x).dtype == np.asarray(y).dtype


def saved(tmp_path, episodes=(1, 2), keep=2):
    ck = Checkpointer(str(tmp_path), keep=keep)
    for k in episodes:
        ck.save_run(k, make_state(k), make_losses(k))
    return ck


def no_tmp(ck) -> bool:
    return not glob.glob(os.path.join(ck.directory, f"*{TMP_MARK}*"))


def test_round_trip(tmp_path):
    saved(tmp_path, episodes=(1, 2, 3))
    ck = Checkpointer(str(tmp_path))  # a new process's: orbax's handlers learn nothing from the saves
    assert ck.steps() == [2, 3] and ck.latest() == 3  # keep=2
    lines = []
    episode, state, losses = ck.restore_run(make_state(0.0), log=lines.append)
    assert episode == 3 and lines == []
    assert_same(state, make_state(3))
    assert isinstance(state["params"]["w"], jax.Array)
    assert set(losses) == {"eval_losses", "train_losses", "step_eval_losses"}
    for name, arr in make_losses(3).items():
        np.testing.assert_array_equal(losses[name], arr)
        assert losses[name].dtype == arr.dtype


def test_zero_size_losses_and_none_round_trip(tmp_path):
    """orbax refuses zero-size arrays; they come back from the metadata with their shape and dtype."""
    ck = Checkpointer(str(tmp_path))
    ck.save_run(0, make_state(), {"eval_losses": np.ones((1, 3), np.float32),
                                  "train_losses": np.zeros((0,), np.float32), "step_eval_losses": None})
    episode, _, losses = ck.restore_run(make_state())
    assert episode == 0 and set(losses) == {"eval_losses", "train_losses"}
    assert losses["train_losses"].shape == (0,) and losses["train_losses"].dtype == np.float32


def test_old_call_forms_still_work(tmp_path):
    ck = Checkpointer(str(tmp_path))
    L = make_losses(2)
    ck.save(2, make_state(2), L["eval_losses"], L["train_losses"], L["step_eval_losses"])
    state, got = ck.restore(make_state())
    assert int(got["episode"]) == 2
    np.testing.assert_array_equal(got["train_losses"], L["train_losses"])
    assert_same(state, make_state(2))


def test_save_same_episode_twice_and_later_ones_dropped(tmp_path):
    """The runner saves twice at an epoch end with a pending stop; after a resume from an older checkpoint,
    newer (abandoned) ones are dropped by the next save."""
    ck = saved(tmp_path, episodes=(1, 2, 3), keep=3)
    ck.save_run(3, make_state(5), make_losses(3))
    assert ck.steps() == [1, 2, 3] and no_tmp(ck)
    assert_same(ck.restore_run(make_state())[1], make_state(5))
    ck.save_run(2, make_state(7), make_losses(2))  # as after resuming from 1
    assert ck.steps() == [1, 2] and ck.restore_run(make_state())[0] == 2


def _truncate_all(step_dir):
    for p in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True):
        if os.path.isfile(p):
            with open(p, "r+b") as f:
                f.truncate(os.path.getsize(p) // 2)


def _garbage_metadata(step_dir):
    with open(os.path.join(step_dir, "state", "_METADATA"), "wb") as f:
        f.write(b"\x00garbage\xff" * 20)


def _delete_losses(step_dir):
    shutil.rmtree(os.path.join(step_dir, "losses"))


def _delete_metadata_file(step_dir):
    os.unlink(os.path.join(step_dir, "state", "_METADATA"))


def _empty(step_dir):
    shutil.rmtree(step_dir)
    os.makedirs(step_dir)


@pytest.mark.parametrize("damage", [_truncate_all, _garbage_metadata, _delete_losses, _delete_metadata_file, _empty])
def test_damaged_latest_falls_back_with_one_warning(tmp_path, capfd, stderr_logging, damage):
    damage(os.path.join(saved(tmp_path).directory, "2"))
    ck = Checkpointer(str(tmp_path))
    lines = []
    episode, state, losses = ck.restore_run(make_state(0.0), log=lines.append)
    assert episode == 1
    assert_same(state, make_state(1))
    np.testing.assert_array_equal(losses["eval_losses"], make_losses(1)["eval_losses"])
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith(f"warning: checkpoint 2 in {ck.shown} is damaged (")
    assert lines[0].endswith("resuming from checkpoint 1")
    assert ck.damage(2) is not None and ck.damage(1) is None
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_default_log_is_one_stderr_line(tmp_path, capfd):
    ck = saved(tmp_path)
    _garbage_metadata(os.path.join(ck.directory, "2"))
    capfd.readouterr()
    assert ck.restore_run(make_state())[0] == 1
    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("warning: checkpoint 2 in ")


def test_state_of_another_shape_is_damage(tmp_path):
    ck = saved(tmp_path)
    with pytest.raises(CheckpointError) as e:
        ck.restore_run(make_state(width=5), log=lambda m: None)
    msg = str(e.value)
    assert ck.shown in msg and "--overwrite" in msg and "shape" in msg


def test_all_damaged_raises_one_clear_error(tmp_path, capfd, stderr_logging):
    ck = saved(tmp_path)
    for k in (1, 2):
        _delete_losses(os.path.join(ck.directory, str(k)))
    lines = []
    with pytest.raises(CheckpointError) as e:
        ck.restore_run(make_state(), log=lines.append)
    assert isinstance(e.value, RunError)
    msg = str(e.value)
    assert "\n" not in msg and ck.shown in msg and "--overwrite" in msg and "2: " in msg and "1: " in msg
    assert lines == []
    assert capfd.readouterr() == ("", "")


def test_no_checkpoint_raises(tmp_path):
    with pytest.raises(CheckpointError, match="--overwrite"):
        Checkpointer(str(tmp_path)).restore_run(make_state())
    assert Checkpointer(str(tmp_path)).latest() is None


@pytest.fixture
def stderr_logging():
    """Log records to stderr as in a real run (pytest would otherwise capture them away from capfd)."""
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)


def _fail_in_worker_threads(monkeypatch, code=errno.ENOSPC):
    """The array writes run in orbax's worker threads (NumpyHandler._open_and_write): raising there is what a
    full disk does, including orbax's per-thread traceback logging."""
    from orbax.checkpoint._src.serialization import type_handlers

    async def fail(self, value, tspec, ts_context):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(type_handlers.NumpyHandler, "_open_and_write", fail)


def test_disk_full_is_one_error_no_tmp_previous_intact(tmp_path, capfd, monkeypatch, stderr_logging):
    ck = saved(tmp_path)
    capfd.readouterr()
    with monkeypatch.context() as m:
        _fail_in_worker_threads(m)
        with pytest.raises(CheckpointError) as e:
            ck.save_run(3, make_state(3), make_losses(3))
    msg = str(e.value)
    assert isinstance(e.value, RunError) and "\n" not in msg
    assert msg.startswith(f"disk full while writing checkpoint 3 in {ck.shown}; "
                          f"the previous checkpoint (episode 2) is intact")
    assert no_tmp(ck) and ck.steps() == [1, 2]
    assert capfd.readouterr() == ("", "")  # orbax's thread tracebacks kept off stderr
    episode, state, _ = ck.restore_run(make_state(), log=pytest.fail)
    assert episode == 2
    assert_same(state, make_state(2))
    ck.save_run(3, make_state(3), make_losses(3))  # works again once there is space
    assert ck.steps() == [2, 3]


def test_failed_resave_of_same_episode_keeps_the_old_one(tmp_path, capfd, monkeypatch, stderr_logging):
    ck = saved(tmp_path, episodes=(2,))
    with monkeypatch.context() as m:
        _fail_in_worker_threads(m)
        with pytest.raises(CheckpointError, match=r"previous checkpoint \(episode 2\) is intact"):
            ck.save_run(2, make_state(9), make_losses(2))
    assert ck.steps() == [2] and no_tmp(ck)
    assert_same(ck.restore_run(make_state())[1], make_state(2))
    assert capfd.readouterr().err == ""


def test_permission_denied_and_first_save(tmp_path, capfd, monkeypatch, stderr_logging):
    ck = Checkpointer(str(tmp_path))
    with monkeypatch.context() as m:
        _fail_in_worker_threads(m, errno.EACCES)
        with pytest.raises(CheckpointError) as e:
            ck.save_run(1, make_state(), make_losses(1))
    assert str(e.value) == (f"permission denied while writing checkpoint 1 in {ck.shown}; "
                            f"there is no earlier checkpoint")
    assert no_tmp(ck) and ck.latest() is None
    assert capfd.readouterr().err == ""


def test_leftover_of_killed_save_is_ignored_then_removed(tmp_path):
    ck = saved(tmp_path)
    leftover = os.path.join(ck.directory, f"3{TMP_MARK}")  # what kill -9 during orbax's write leaves
    os.makedirs(os.path.join(leftover, f"state{TMP_MARK}"))
    with open(os.path.join(leftover, "_CHECKPOINT_METADATA"), "w") as f:
        f.write("{")
    assert ck.latest() == 2 and ck.steps() == [1, 2]
    assert ck.restore_run(make_state(), log=pytest.fail)[0] == 2
    assert no_tmp(ck)
    os.makedirs(leftover)
    ck.save_run(3, make_state(3), make_losses(3))
    assert no_tmp(ck) and ck.steps() == [2, 3]


def test_killed_resave_recovers_the_set_aside_checkpoint(tmp_path):
    """kill -9 while saving an episode again: its older copy was renamed aside and comes back."""
    ck = saved(tmp_path)
    os.rename(os.path.join(ck.directory, "2"), os.path.join(ck.directory, f"2{TMP_MARK}-replaced"))
    os.makedirs(os.path.join(ck.directory, f"2{TMP_MARK}"))
    assert ck.latest() == 1
    episode, state, _ = ck.restore_run(make_state(), log=pytest.fail)
    assert episode == 2 and no_tmp(ck)
    assert_same(state, make_state(2))


def test_clear(tmp_path):
    ck = saved(tmp_path)
    ck.clear()
    assert not os.path.exists(ck.directory) and ck.latest() is None and ck.steps() == []


def test_closed_event_loop_noise_is_dropped_other_unraisables_kept(monkeypatch):
    """tensorstore completing a read or write after orbax closed its loop: unraisable noise, nothing else."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    checkpoint_lib._drop_closed_loop_noise()
    installed = sys.unraisablehook
    checkpoint_lib._drop_closed_loop_noise()
    assert sys.unraisablehook is installed  # not stacked on every save
    noise = types.SimpleNamespace(exc_type=RuntimeError, exc_value=RuntimeError("Event loop is closed"))
    other = types.SimpleNamespace(exc_type=RuntimeError, exc_value=RuntimeError("something else"))
    sys.unraisablehook(noise)
    sys.unraisablehook(other)
    assert seen == [other]


def test_checkpoint_with_moments_resumes_a_state_without_them(tmp_path):
    """Checkpoints written when reset optimizers still stored their moments resume into today's state, whose
    opt_state is None (engine.init_state); the parameters, step and rng come back unchanged."""
    ck = saved(tmp_path, episodes=(3,))
    now = dict(make_state(0.5), opt_state=None)
    k, state, losses = ck.restore_run(now)
    want = dict(make_state(3), opt_state=None)
    assert k == 3 and state["opt_state"] is None
    assert_same(state, want)
    np.testing.assert_array_equal(losses["eval_losses"], make_losses(3)["eval_losses"])
    # the other way round is still damage: a stored state without moments cannot fill a state that needs them
    ck2 = Checkpointer(str(tmp_path / "b"))
    ck2.save_run(1, dict(make_state(1), opt_state=None), make_losses(1))
    with pytest.raises(CheckpointError, match="state arrays"):
        ck2.restore_run(make_state(1))
