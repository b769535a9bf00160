"""Stop signals (SIGINT, SIGTERM) at every point of a run, with every checkpoint policy: exit 130/143, one
message true to what is on disk, and --resume then gives the uninterrupted run's losses bit for bit."""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from recovery_jax import cli, interrupts, runner, train
from recovery_jax.checkpoint import Checkpointer

from . import signal_driver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "tiny_config.py")
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("reference"))
    assert cli.guarded(train.main, ["--config", TINY, "--workdir", d]) == 0
    return dict(np.load(os.path.join(d, "losses.npz")))


def _on_disk(workdir):
    """(episodes in losses.npz or None, newest checkpoint or None)."""
    f = os.path.join(workdir, "losses.npz")
    done = int(np.load(f)["episodes_done"]) if os.path.exists(f) else None
    return done, Checkpointer(workdir).latest()


def _assert_message_true(line, workdir):
    done, ckpt = _on_disk(workdir)
    m = re.search(r"stopped after episode (\d+)/(\d+)", line)
    if m:
        k = int(m.group(1))
        assert done == k and ckpt == k, (line, done, ckpt)
        assert "continue with --resume" in line
    else:
        assert "stopped before training started" in line and "nothing was saved" in line, line
        assert done is None and ckpt is None


CASES = [(point, policy) for point in ("data", "compile", "episode:3", "epoch_end", "checkpoint")
         for policy in ("none", "epoch", "episode")
         if not (point == "checkpoint" and policy == "none")]  # with "none" the first write is the stop's own


@pytest.mark.parametrize("point,policy", CASES)
def test_stop_signal_then_resume_in_process(point, policy, reference, tmp_path, capsys):
    sig = signal.SIGTERM if CASES.index((point, policy)) % 2 else signal.SIGINT
    work = str(tmp_path / "run")
    argv = ["--config", TINY, "--workdir", work, f"--config.checkpoint.every={policy}"]
    with signal_driver.patches(point, sig):
        code = cli.guarded(train.main, argv)
    err = capsys.readouterr().err
    assert code == CODES[sig], err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1 and "Traceback" not in err, err
    _assert_message_true(lines[0], work)
    assert cli.guarded(train.main, argv + ["--resume"]) == 0
    got = np.load(os.path.join(work, "losses.npz"))
    np.testing.assert_array_equal(got["eval_losses"], reference["eval_losses"])
    np.testing.assert_array_equal(got["train_losses"], reference["train_losses"])
    assert not os.path.exists(os.path.join(work, "checkpoints"))


@pytest.mark.slow
@pytest.mark.parametrize("point,sig", [("data", "TERM"), ("compile", "INT"), ("episode:5", "TERM")])
def test_stop_signal_in_a_real_process_never_crashes(point, sig, tmp_path):
    work = str(tmp_path / "run")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "signal_driver.py"), point, sig, "--",
                        "--config", TINY, "--workdir", work, "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == {"INT": 130, "TERM": 143}[sig], (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1, p.stderr
    _assert_message_true(lines[0], work)


def test_stop_signals_flag_nesting_and_codes():
    before = signal.getsignal(signal.SIGINT)  # pytest-xdist workers ignore SIGINT; plain pytest has the default
    with interrupts.StopSignals() as outer:
        with interrupts.StopSignals() as inner:
            assert inner is outer  # an entry point's handler is shared, not replaced
            os.kill(os.getpid(), signal.SIGTERM)
        assert outer.hit and outer.code == 143
        with pytest.raises(interrupts.Interrupted) as e:
            outer.check("what is on disk")
        assert e.value.code == 143 and e.value.message == "what is on disk"
    assert signal.getsignal(signal.SIGINT) is before  # restored, whatever it was


def test_resume_of_nothing_is_an_error(tmp_path, capsys):
    code = cli.guarded(train.main, ["--config", TINY, "--workdir", str(tmp_path / "typo"), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: nothing to resume") and "drop --resume" in err[0]
    assert not os.path.exists(tmp_path / "typo")  # a mistyped workdir is not created


def test_resume_and_overwrite_together_is_an_error(tmp_path):
    with pytest.raises(runner.RunError, match="contradict"):
        runner.run(train.config_lib.load(TINY), str(tmp_path), resume=True, overwrite=True, log=lambda *a: None)
