"""The run directory: its one table of file names and array keys, the one atomic writer, reading a run
back, and the lock that keeps one live run per directory.

A run directory (written by the runner, the toy model, a sweep; read by report, sweep and check):

* ``config.json``     the run config (nested dict)
* ``documents.json``  the tasks used (ids, hashes, token counts; optional for toy runs)
* ``model.json``      architecture, HF config, parameter count
* ``losses.npz``      the :class:`Losses` record: ``eval_losses`` (K+1, T) float32 (row 0 before training),
                      ``train_losses`` (K·M,) each before its update, optional ``step_eval_losses`` (K·M, T),
                      ``order`` (k,) int32 (−1 = filler episode), ``planned_order`` (K,), ``episodes_done``
* ``summary.json``    :func:`recovery_jax.metrics.summarize` of the losses plus wall times
* ``probes.npz``      optional probe statistics; ``probes_partial.npz`` while a run with probes is unfinished
* ``checkpoints/``    orbax checkpoints while a run is unfinished; ``run.lock`` while a run is alive

Index conventions of the arrays: docs/PROTOCOL.md §2.1 and :mod:`recovery_jax.metrics`.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_FILE = "config.json"
DOCUMENTS_FILE = "documents.json"
MODEL_FILE = "model.json"
LOSSES_FILE = "losses.npz"
SUMMARY_FILE = "summary.json"
PROBES_FILE = "probes.npz"
PROBES_PARTIAL_FILE = "probes_partial.npz"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = "run.lock"
RESULT_FILES = (DOCUMENTS_FILE, MODEL_FILE, LOSSES_FILE, SUMMARY_FILE, PROBES_FILE, PROBES_PARTIAL_FILE)

__all__ = ["Losses", "Run", "RunDir", "RunError", "RunDirError", "load_run", "is_run_dir",
           "write_json_atomic", "write_npz_atomic"]


class RunError(RuntimeError):
    """A problem with a run or its directory that the user can act on (printed as one line by the CLI)."""


RunDirError = RunError  # the name report and older code use for "not a (readable) run directory"


# ---------------------------------------------------------------------------------------------------------
# The loss record: what the episode loop fills, losses.npz holds and the checkpointer stores
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Losses:
    """All losses of a run with K episodes of M steps over T tasks; entries not yet computed are NaN."""

    eval_losses: np.ndarray  # (K+1, T): row 0 before training, row k after episode k
    train_losses: np.ndarray  # (K*M,): each step's loss before its update
    step_eval_losses: np.ndarray | None = None  # (K*M, T): all tasks after every step (eval.every_step)

    @classmethod
    def empty(cls, K: int, M: int, T: int, every_step: bool = False) -> "Losses":
        nan = lambda *shape: np.full(shape, np.nan, np.float32)  # noqa: E731
        return cls(nan(K + 1, T), nan(K * M), nan(K * M, T) if every_step else None)

    @property
    def M(self) -> int:
        return len(self.train_losses) // max(len(self.eval_losses) - 1, 1)

    def record(self, k: int, train_M, eval_T, step_eval_MT=None) -> None:
        """Store episode k's outputs (k = 1..K)."""
        steps = slice((k - 1) * self.M, k * self.M)
        self.train_losses[steps] = np.asarray(train_M)
        self.eval_losses[k] = np.asarray(eval_T)
        if self.step_eval_losses is not None:
            self.step_eval_losses[steps] = np.asarray(step_eval_MT)

    def finite(self, k: int) -> bool:
        steps = slice((k - 1) * self.M, k * self.M)
        return bool(np.isfinite(self.eval_losses[k]).all() and np.isfinite(self.train_losses[steps]).all())

    def arrays(self, k: int) -> dict[str, np.ndarray]:
        """The losses of episodes 0..k, under the keys losses.npz and checkpoints use."""
        out = {"eval_losses": self.eval_losses[: k + 1], "train_losses": self.train_losses[: k * self.M]}
        if self.step_eval_losses is not None:
            out["step_eval_losses"] = self.step_eval_losses[: k * self.M]
        return out

    def restore(self, saved: dict[str, np.ndarray], k: int) -> None:
        """Fill episodes 0..k from `arrays(k)` as saved earlier (a checkpoint)."""
        self.eval_losses[: k + 1] = saved["eval_losses"][: k + 1]
        self.train_losses[: k * self.M] = saved["train_losses"][: k * self.M]
        if self.step_eval_losses is not None:
            self.step_eval_losses[: k * self.M] = saved["step_eval_losses"][: k * self.M]


# ---------------------------------------------------------------------------------------------------------
# The one atomic writer
# ---------------------------------------------------------------------------------------------------------


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    if os.path.lexists(path) and not os.path.isfile(path):
        # os.replace would swap a directory entry like /dev/null for a regular file
        raise RunError(f"{path} exists and is not a regular file; not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Temp file in the same directory, fsync, os.replace: a reader sees the old file or the new one, never
    half of one. A failed write (a full disk above all) is a RunError and leaves the previous file intact."""
    path = Path(path)
    try:
        _write_bytes_atomic(path, data)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise RunError(f"disk full while writing {path}; the earlier files in "
                           f"{path.parent.resolve()} are intact") from None
        raise RunError(f"could not write {path}: {e.strerror or e}") from None
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """`obj` as strict JSON (numpy values converted, NaN/inf as null), written atomically."""
    from recovery_jax.metrics import jsonable

    text = json.dumps(jsonable(obj), indent=indent, sort_keys=False, allow_nan=False)
    return write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def write_npz_atomic(path: str | os.PathLike, compressed: bool = False, **arrays: Any) -> Path:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return write_bytes_atomic(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------------------
# A live run's directory: lock, config check, writes
# ---------------------------------------------------------------------------------------------------------


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} -> {vb!r})")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: str | os.PathLike) -> int | None:
    """The pid of the live run holding `path`'s lock, or None."""
    try:
        pid = int(Path(path, LOCK_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and _pid_alive(pid) else None


class RunDir:
    """The directory of one run while it is alive: locked, config-checked, written atomically."""

    def __init__(self, path: str):
        self.path = path
        self._lock = os.path.join(path, LOCK_FILE)
        self._locked = False

    @classmethod
    def open(cls, path: str, config: dict, *, resume: bool = False, overwrite: bool = False) -> "RunDir":
        if resume and overwrite:
            raise RunError("--resume and --overwrite contradict each other; give one of them")
        if resume and not os.path.isfile(os.path.join(path, CONFIG_FILE)):
            where = "does not exist" if not os.path.exists(path) else "holds no run (no config.json)"
            raise RunError(f"nothing to resume: workdir {path!r} {where}; "
                           f"to start a fresh run, drop --resume")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create workdir {path!r}: {e.strerror}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunError(f"workdir {path!r} is not writable; choose another --workdir")
        rd = cls(path)
        rd._acquire()
        try:
            rd._check_config(config, resume=resume, overwrite=overwrite)
        except BaseException:
            rd.release()
            raise
        return rd

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _acquire(self):
        while True:
            try:
                fd = os.open(self._lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid = read_lock(self.path)
                if pid and pid != os.getpid():
                    raise RunError(f"workdir {self.path!r} is in use by another run (pid {pid}); "
                                   f"wait for it or choose another --workdir") from None
                os.unlink(self._lock)  # stale lock of a dead run
                continue
            except OSError as e:
                raise RunError(f"workdir {self.path!r} is not writable: {e.strerror}") from None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self._locked = True
            return

    def release(self):
        if self._locked:
            try:
                os.unlink(self._lock)
            except OSError:
                pass
            self._locked = False

    def _check_config(self, config: dict, *, resume: bool, overwrite: bool):
        from recovery_jax import config as config_lib

        cfg_path = self.file(CONFIG_FILE)
        if os.path.exists(cfg_path) and not overwrite:
            try:
                old = _read_json(Path(cfg_path), CONFIG_FILE)
            except RunError as e:
                raise RunError(f"{e}; pass --overwrite to start a new run in {self.path!r} or choose another "
                               f"--workdir") from None
            if not isinstance(old, dict):
                raise RunError(f"{cfg_path} does not hold a config (a JSON object); pass --overwrite to start "
                               f"a new run or choose another --workdir")
            old = config_lib.without_performance_keys(config_lib.with_defaults(old))
            new = config_lib.without_performance_keys(config)
            if old != new:  # an older run's config compares with its missing keys at their defaults
                diff = _diff_keys(old, new)
                raise RunError(f"workdir {self.path!r} holds a run of a different config "
                               f"({'; '.join(diff[:5])}); pass --overwrite to replace it or choose another --workdir")
            if not resume:
                finished = os.path.exists(self.file(SUMMARY_FILE))
                what = "a finished run" if finished else "an unfinished run"
                raise RunError(f"workdir {self.path!r} holds {what} of this config; pass --resume to continue it, "
                               f"--overwrite to start again, or choose another --workdir")
        if overwrite:
            for name in RESULT_FILES + (CONFIG_FILE,):
                if os.path.exists(self.file(name)):
                    os.unlink(self.file(name))
            shutil.rmtree(self.file(CHECKPOINT_DIR), ignore_errors=True)
        write_json_atomic(cfg_path, config)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_json(self, name: str, obj: Any) -> None:
        write_json_atomic(self.file(name), obj)

    def write_npz(self, name: str, **arrays) -> None:
        write_npz_atomic(self.file(name), **arrays)

    def write_losses(self, losses: Losses, k: int, planned_order_K: np.ndarray) -> None:
        """losses.npz with exactly the episodes done so far (rows 0..k), atomically replaced."""
        self.write_npz(LOSSES_FILE, **losses.arrays(k), order=planned_order_K[:k], planned_order=planned_order_K,
                       episodes_done=np.asarray(k))


# ---------------------------------------------------------------------------------------------------------
# Reading a run back
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One run directory read back into memory."""

    path: Path
    config: dict
    documents: dict
    eval_losses: np.ndarray
    train_losses: np.ndarray
    order: np.ndarray
    step_eval_losses: np.ndarray | None = None
    summary: dict | None = None
    probes: dict | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def K(self) -> int:
        return int(self.eval_losses.shape[0] - 1)

    @property
    def T(self) -> int:
        return int(self.eval_losses.shape[1])

    @property
    def M(self) -> int:
        """Gradient steps per episode, inferred from ``len(train_losses) / K`` (falls back to config M)."""
        if self.K > 0 and self.train_losses.size and self.train_losses.size % self.K == 0:
            return int(self.train_losses.size // self.K)
        m = self.config.get("M")
        return int(m) if m is not None else 1


def is_run_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / LOSSES_FILE).is_file()


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError:
        raise RunError(f"{path}: {what} is not UTF-8 text (damaged or not written by recovery_jax)") from None
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: {what} is not valid JSON ({e})") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read {what} ({e.strerror or e})") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError
        raise RunError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def load_run(run_dir: str | os.PathLike, require_config: bool = True) -> Run:
    """Read a run directory. Raises :class:`RunError` with a clear message when it is not one.

    Required: ``losses.npz`` with ``eval_losses`` (and ``config.json`` unless ``require_config=False``).
    ``order`` defaults to the cyclic order and ``train_losses`` to an empty array when absent; the shapes are
    checked against each other (``order`` has K entries, ``train_losses`` a multiple of K).
    """
    p = Path(run_dir)
    if not p.exists():
        raise RunError(f"{p}: no such directory")
    if not p.is_dir():
        raise RunError(f"{p}: not a directory (expected a run directory containing {LOSSES_FILE})")
    lf = p / LOSSES_FILE
    if not lf.is_file():
        raise RunError(
            f"{p} is not a run directory: it has no {LOSSES_FILE} "
            f"(a run directory holds {CONFIG_FILE}, {LOSSES_FILE} and usually {SUMMARY_FILE})"
        )
    cf = p / CONFIG_FILE
    if cf.is_file():
        config = _read_json(cf, CONFIG_FILE)
    elif require_config:
        raise RunError(f"{p} is not a complete run directory: it has {LOSSES_FILE} but no {CONFIG_FILE}")
    else:
        config = {}
    documents = _read_json(p / DOCUMENTS_FILE, DOCUMENTS_FILE) if (p / DOCUMENTS_FILE).is_file() else {}
    summary = _read_json(p / SUMMARY_FILE, SUMMARY_FILE) if (p / SUMMARY_FILE).is_file() else None

    arrays = _read_npz(lf)
    if "eval_losses" not in arrays:
        raise RunError(f"{lf} has no 'eval_losses' array (found: {sorted(arrays)})")
    L = np.asarray(arrays["eval_losses"])
    if L.ndim != 2:
        raise RunError(f"{lf}: eval_losses must have shape (K+1, T), got {L.shape}")
    K = L.shape[0] - 1
    order = arrays.get("order")
    order = (np.arange(K) % L.shape[1]).astype(np.int32) if order is None else np.asarray(order).reshape(-1)
    if order.shape[0] != K:
        raise RunError(f"{lf}: order has {order.shape[0]} entries but eval_losses has K={K} episodes")
    train = np.asarray(arrays.get("train_losses", np.zeros(0, np.float32))).reshape(-1)
    if K > 0 and train.size and train.size % K:
        raise RunError(f"{lf}: train_losses has {train.size} entries, not a multiple of K={K}")
    step_eval = arrays.get("step_eval_losses")
    probes = _read_npz(p / PROBES_FILE) if (p / PROBES_FILE).is_file() else None
    return Run(path=p.resolve(), config=config, documents=documents, eval_losses=L, train_losses=train,
               order=order, step_eval_losses=None if step_eval is None else np.asarray(step_eval),
               summary=summary, probes=probes)
