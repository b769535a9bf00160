"""The run directory: the loss record, the one atomic writer, the lock and config check, reading back."""

import errno
import json
import os

import numpy as np
import pytest

from recovery_jax import rundir
from recovery_jax.rundir import Losses, RunDir, RunError


def test_losses_record_arrays_restore():
    L = Losses.empty(K=4, M=3, T=2, every_step=True)
    assert L.M == 3 and np.isnan(L.eval_losses).all()
    for k in (1, 2):
        L.record(k, np.full(3, k, np.float32), np.full(2, 10 * k, np.float32), np.full((3, 2), -k, np.float32))
    assert L.finite(1) and L.finite(2)
    a = L.arrays(2)
    assert a["eval_losses"].shape == (3, 2) and a["train_losses"].tolist() == [1, 1, 1, 2, 2, 2]
    assert a["step_eval_losses"].shape == (6, 2)
    R = Losses.empty(K=4, M=3, T=2, every_step=True)
    R.restore(a, 2)
    np.testing.assert_array_equal(R.arrays(2)["train_losses"], a["train_losses"])
    assert np.isnan(R.eval_losses[3:]).all()
    L.record(3, np.asarray([1, np.nan, 1], np.float32), np.zeros(2, np.float32), np.zeros((3, 2), np.float32))
    assert not L.finite(3)


def test_write_losses_then_load_run(tmp_path):
    rd = RunDir.open(str(tmp_path), {"T": 2, "M": 3})
    L = Losses.empty(K=4, M=3, T=2)
    L.eval_losses[0] = 5.0
    L.record(1, np.ones(3, np.float32), np.full(2, 4.0, np.float32))
    rd.write_losses(L, 1, np.asarray([0, 1, 0, 1], np.int32))
    rd.release()
    run = rundir.load_run(str(tmp_path))
    assert run.K == 1 and run.T == 2 and run.M == 3 and run.order.tolist() == [0]
    z = np.load(tmp_path / "losses.npz")
    assert int(z["episodes_done"]) == 1 and z["planned_order"].tolist() == [0, 1, 0, 1]


def test_disk_full_is_one_run_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    rundir.write_json_atomic(path, {"x": 1})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(rundir.os, "replace", full)
    with pytest.raises(RunError, match="disk full while writing .*summary.json"):
        rundir.write_json_atomic(path, {"x": 2})
    assert json.load(open(path)) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left


def test_writer_refuses_a_non_regular_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(RunError, match="not a regular file"):
        rundir.write_json_atomic(tmp_path / "d", {})


@pytest.mark.parametrize("content,message", [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"{broken", "not valid JSON"),
    (b"[1, 2]", "does not hold a config"),
])
def test_damaged_config_json_is_named(tmp_path, content, message):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(RunError, match=message) as e:
        RunDir.open(str(tmp_path), {"T": 1}, resume=True)
    assert "config.json" in str(e.value) and "--overwrite" in str(e.value)
    assert not (tmp_path / "run.lock").exists()


def test_resume_needs_a_run(tmp_path):
    with pytest.raises(RunError, match="nothing to resume.*does not exist"):
        RunDir.open(str(tmp_path / "nope"), {}, resume=True)
    with pytest.raises(RunError, match="nothing to resume.*holds no run"):
        RunDir.open(str(tmp_path), {}, resume=True)


def test_lock_of_a_live_process_refuses_and_stale_lock_is_taken(tmp_path):
    (tmp_path / "run.lock").write_text(str(os.getppid()))
    with pytest.raises(RunError, match="in use by another run"):
        RunDir.open(str(tmp_path), {"T": 1})
    (tmp_path / "run.lock").write_text("999999999")  # no such pid
    with RunDir.open(str(tmp_path), {"T": 1}) as rd:
        assert rundir.read_lock(rd.path) == os.getpid()
    assert not (tmp_path / "run.lock").exists()
