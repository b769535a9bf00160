"""The one guard of every entry point: bad input to report, toy, sweep and the benchmarks is exactly one
`error: ...` line on stderr, exit 2, no traceback; interrupts and bugs are told apart from user errors."""

import errno
import json
import os
import subprocess
import sys

import pytest

from recovery_jax import cli, report, sweep, toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_BASE = os.path.join(ROOT, "configs", "cpu", "base.py")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """A finished toy run (T=4, 2 epochs), a plain file, a folder that is no run, a sweep config file."""
    base = tmp_path_factory.mktemp("cli")
    run = base / "run"
    toy.save_toy(toy.run_toy(toy.default_config("affine", N=8, dim=8, T=4, epochs=2)), run, plots=False)
    (base / "afile").write_text("not a folder\n")
    (base / "notrun").mkdir()
    cfg = base / "sweep_cfg.py"
    cfg.write_text("from recovery_jax.config import derive\n\n"
                   f"def get_config():\n    return derive(__file__, {CPU_BASE!r})\n")
    return {"run": str(run), "file": str(base / "afile"), "notrun": str(base / "notrun"), "cfg": str(cfg),
            "base": str(base)}


def one_error_line(capsys, main, argv) -> str:
    code = cli.guarded(main, argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _benchmark(name):
    import importlib
    return importlib.import_module(f"benchmarks.{name}").main


# (id, entry point, argv with {run} {file} {notrun} {cfg} {base} filled in, fragment of the message)
CASES = [
    ("report-no-args", report.main, [], "required: runs, --out"),
    ("report-no-out", report.main, ["{run}"], "required: --out"),
    ("report-unknown-option", report.main, ["{run}", "--out", "{base}/r", "--bogus"], "unrecognized arguments"),
    ("report-doc-negative", report.main, ["{run}", "--out", "{base}/r", "--doc", "-1"], "integer >= 0"),
    ("report-doc-not-int", report.main, ["{run}", "--out", "{base}/r", "--doc", "two"], "'two'"),
    ("report-doc-out-of-range", report.main, ["{run}", "--out", "{base}/r", "--doc", "4"],
     "--doc 4 is out of range for {run} (T=4 documents): give 0 <= --doc <= 3"),
    ("report-out-is-file", report.main, ["{run}", "--out", "{file}"], "--out {file}: exists and is not a directory"),
    ("report-out-below-file", report.main, ["{run}", "--out", "{file}/r"], "is a file, so no folder can be created"),
    ("report-not-a-run", report.main, ["{notrun}", "--out", "{base}/r"], "losses.npz"),
    ("report-missing-dir", report.main, ["{base}/nope", "--out", "{base}/r"], "no such directory"),
    ("toy-T-zero", toy.main, ["--T", "0", "--out", "{base}/t"], "--T 0 is not valid"),
    ("toy-T-one", toy.main, ["--T", "1", "--out", "{base}/t"], ">= 2"),
    ("toy-T-not-int", toy.main, ["--T", "x", "--out", "{base}/t"], "invalid int value: 'x'"),
    ("toy-N-negative", toy.main, ["--N", "-5", "--out", "{base}/t"], "--N -5 is not valid"),
    ("toy-dim-zero", toy.main, ["--dim", "0", "--out", "{base}/t"], "--dim 0 is not valid"),
    ("toy-epochs-zero", toy.main, ["--epochs", "0", "--out", "{base}/t"], "--epochs 0 is not valid"),
    ("toy-lr-zero", toy.main, ["--lr", "0", "--out", "{base}/t"], "--lr 0.0 is not valid"),
    ("toy-lr-nan", toy.main, ["--lr", "nan", "--out", "{base}/t"], "finite number > 0"),
    ("toy-seed-negative", toy.main, ["--seed", "-1", "--out", "{base}/t"], "--seed -1 is not valid"),
    ("toy-variant", toy.main, ["--variant", "quadratic", "--out", "{base}/t"], "invalid choice: 'quadratic'"),
    ("toy-reduction", toy.main, ["--reduction", "max", "--out", "{base}/t"], "invalid choice: 'max'"),
    ("toy-no-out", toy.main, ["--T", "3"], "required: --out"),
    ("toy-out-is-file", toy.main, ["--T", "3", "--out", "{file}"], "exists and is not a directory"),
    ("toy-too-big", toy.main, ["--N", "3000000", "--dim", "3000000", "--out", "{base}/t"], "GiB"),
    ("sweep-workdir-is-file", sweep.main, ["--config", "{cfg}", "--workdir", "{file}"],
     "--workdir {file}: exists and is not a directory"),
    ("sweep-reuse-missing", sweep.main, ["--config", "{cfg}", "--workdir", "{base}/w", "--reuse", "{base}/nope"],
     "--reuse {base}/nope: not a directory"),
    ("sweep-override-without-value", sweep.main, ["--config", "{cfg}", "--config.T", "--workdir", "{base}/w"],
     "--config.T needs a value"),
    ("sweep-no-config", sweep.main, ["--workdir", "{base}/w"], "required: --config"),
    ("sweep-bad-seeds", sweep.main, ["--config", "{cfg}", "--workdir", "{base}/w", "--seeds", "a"], "--seeds='a'"),
    ("jax_side-missing-arg", _benchmark("jax_side"), ["bundle"], "required: out_prefix"),
    ("jax_side-peak-sizes", _benchmark("jax_side"), ["b", "o", "--peak-sizes", "1024,x"], "integers >= 1"),
    ("torch_ref-threads", _benchmark("torch_ref"), ["b", "o", "--threads", "0"], "'0' is not an integer >= 1"),
    ("torch_ref-missing-bundle", _benchmark("torch_ref"), ["{base}/nope", "o"], "no such file or directory"),
    ("scaling-episodes", _benchmark("scaling"), ["--episodes", "-1"], "'-1' is not an integer >= 1"),
    ("scaling-only", _benchmark("scaling"), ["--only", "T,height"], "unknown sweep 'height'"),
    ("throughput-repeat", _benchmark("throughput"), ["--repeat", "0"], "'0' is not an integer >= 1"),
    ("profile_step-top", _benchmark("profile_step"), ["--top", "many"], "'many' is not an integer >= 1"),
]


@pytest.mark.parametrize("name,main,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(name, main, argv, fragment, paths, capsys):
    line = one_error_line(capsys, main, [a.format(**paths) for a in argv])
    assert fragment.format(**paths) in line, line
    assert not os.path.exists(os.path.join(paths["base"], "t"))  # nothing written before the refusal
    assert not os.path.exists(os.path.join(paths["base"], "r"))


def test_report_out_read_only(paths, capsys, monkeypatch):
    """Root may write anywhere, so a read-only folder is simulated where the check asks the OS."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    line = one_error_line(capsys, report.main, [paths["run"], "--out", paths["base"]])
    assert f"--out {paths['base']}: folder is not writable" in line
    line = one_error_line(capsys, report.main, [paths["run"], "--out", os.path.join(paths["base"], "new")])
    assert f"cannot create it: {paths['base']} is not writable" in line


def test_help_still_exits_0(capsys):
    for main in (report.main, toy.main, sweep.main):
        with pytest.raises(SystemExit) as e:
            cli.guarded(main, ["--help"])
        assert e.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_good_report_and_toy_still_run(paths, capsys, tmp_path):
    assert cli.guarded(report.main, [paths["run"], "--out", str(tmp_path / "r"), "--doc", "3",
                                     "--no-per-run-figures"]) == 0
    assert "Document 4, relative drop" in (tmp_path / "r" / "report.md").read_text()
    assert cli.guarded(toy.main, ["--N", "8", "--T", "2", "--epochs", "1", "--no-plots",
                                  "--out", str(tmp_path / "t")]) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- the guard's mapping


def _raises(exc):
    def main(argv):
        raise exc
    return main


@pytest.mark.parametrize("exc,fragment", [
    (PermissionError(errno.EACCES, "Permission denied", "/x/y"), "permission denied: /x/y"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/x/d"), "/x/d is a directory; a file was expected"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/f/g"), "/x/f/g: a part of this path is a file"),
    (FileExistsError(errno.EEXIST, "File exists", "/x/e"), "/x/e already exists"),
    (OSError(errno.ENOSPC, "No space left on device", "/x/big.npz"), "disk full while writing /x/big.npz"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/a"), "/ro/a is on a read-only file system"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/n"), "no such file or directory: /x/n"),
    (ModuleNotFoundError("No module named 'tensorflow_datasets'", name="tensorflow_datasets"),
     "pip install -e \".[tfds]\""),
    (cli.UsageError("--x 3 must be <= 2"), "--x 3 must be <= 2"),
], ids=["permission", "is-a-dir", "not-a-dir", "exists", "disk-full", "read-only-fs", "missing", "optional-pkg",
        "usage"])
def test_user_errors_are_one_line(exc, fragment, capsys):
    assert fragment in one_error_line(capsys, _raises(exc), [])


def test_wrapped_import_error_names_the_extra(capsys):
    def main(argv):
        try:
            raise ModuleNotFoundError("No module named 'tensorflow_datasets'", name="tensorflow_datasets")
        except ImportError:
            raise ImportError("source 'cnn_dailymail' needs TensorFlow Datasets") from None
    assert "optional package 'tensorflow_datasets'" in one_error_line(capsys, main, [])


def test_undecodable_file_and_bad_json_name_the_file(tmp_path, capsys):
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\u00e9".encode("latin-1"))
    broken = tmp_path / "config.json"
    broken.write_text('{"T": 5,')

    def read_text(argv):
        with open(latin, encoding="utf-8") as f:
            return len(f.read())

    def read_json(argv):
        with open(broken) as fp:
            return json.load(fp)

    line = one_error_line(capsys, read_text, [])
    assert f"{latin} is not UTF-8 text" in line
    line = one_error_line(capsys, read_json, [])
    assert f"{broken} is not valid JSON" in line and "line 1" in line


def test_a_bug_keeps_its_traceback(capsys):
    with pytest.raises(KeyError):
        cli.guarded(_raises(KeyError("eval_losses")), [])
    with pytest.raises(ModuleNotFoundError):  # a required package is not an optional one
        cli.guarded(_raises(ModuleNotFoundError("No module named 'flax'", name="flax")), [])
    with pytest.raises(OSError):  # an I/O error nobody can fix from the command line
        cli.guarded(_raises(OSError(errno.EIO, "Input/output error", "/x")), [])


def test_debug_shows_the_traceback_of_user_errors(monkeypatch):
    monkeypatch.setenv("RECOVERY_JAX_DEBUG", "1")
    with pytest.raises(PermissionError):
        cli.guarded(_raises(PermissionError(errno.EACCES, "Permission denied", "/x")), [])


def test_interrupts(capsys):
    assert cli.guarded(_raises(cli.Interrupted("stopped after episode 3; resume with --resume", 143)), []) == 143
    assert capsys.readouterr().err == "interrupted: stopped after episode 3; resume with --resume\n"
    assert cli.guarded(_raises(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_check_out_dir_accepts_new_and_existing_folders(tmp_path):
    assert cli.check_out_dir(str(tmp_path)) == str(tmp_path)
    assert cli.check_out_dir(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()  # checked, not created


# ----------------------------------------------------------------------------- as a user runs them


@pytest.mark.parametrize("module,argv,fragment", [
    ("recovery_jax.report", ["{notrun}", "--out", "{base}/r"], "losses.npz"),
    ("recovery_jax.report", ["{run}"], "required: --out"),
    ("recovery_jax.toy", ["--T", "0", "--out", "{base}/t"], "--T 0 is not valid"),
    ("recovery_jax.sweep", ["--config", "{cfg}", "--workdir", "{file}"], "exists and is not a directory"),
], ids=["report-not-a-run", "report-no-out", "toy-T-zero", "sweep-workdir-file"])
def test_subprocess(module, argv, fragment, paths):
    p = subprocess.run([sys.executable, "-m", module, *[a.format(**paths) for a in argv]], cwd=ROOT,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], p.stderr
