"""The run directory on disk: one run per workdir, a lock, atomic writes, clear refusals.

Files: config.json, documents.json, model.json, losses.npz, summary.json, probes.npz,
checkpoints/ (orbax), run.lock while a run is alive.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from typing import Any

from recovery_jax import config as config_lib
from recovery_jax import results

RESULT_FILES = ("documents.json", "model.json", "losses.npz", "summary.json", "probes.npz")


class RunError(RuntimeError):
    """A run-time problem the user can act on (printed as one line by the CLI)."""


def _guard_write(path: str, write) -> None:
    """A failed write (a full disk above all) becomes a RunError; the previous file stays intact,
    because the writers in results.py write a temporary file and rename it."""
    try:
        write()
    except OSError as e:
        directory = os.path.dirname(os.path.abspath(path))
        if e.errno == errno.ENOSPC:
            raise RunError(f"disk full while writing {path}; the earlier files in {directory} are intact") from None
        raise RunError(f"could not write {path}: {e.strerror or e}") from None


def write_json_atomic(path: str, obj: Any) -> None:
    _guard_write(path, lambda: results.write_json_atomic(path, obj))


def write_npz_atomic(path: str, **arrays) -> None:
    _guard_write(path, lambda: results.write_npz_atomic(path, **arrays))


def _strip(cfg: dict) -> dict:
    """What must match between a run and its resumption: everything but config.PERFORMANCE_KEYS."""
    return config_lib.without_performance_keys(cfg)


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


class RunDir:
    def __init__(self, path: str):
        self.path = path
        self._lock = os.path.join(path, "run.lock")
        self._locked = False

    @classmethod
    def open(cls, path: str, config: dict, *, resume: bool = False, overwrite: bool = False) -> "RunDir":
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

    def _acquire(self):
        while True:
            try:
                fd = os.open(self._lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(open(self._lock).read().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _pid_alive(pid) and pid != os.getpid():
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
        cfg_path = os.path.join(self.path, "config.json")
        if os.path.exists(cfg_path) and not overwrite:
            try:
                with open(cfg_path) as f:  # an older run's config compares with its missing keys at default
                    old = config_lib.with_defaults(json.load(f))
            except (OSError, ValueError):
                old = None
            if old is None or _strip(old) != _strip(config):
                diff = _diff_keys(_strip(old or {}), _strip(config))
                raise RunError(f"workdir {self.path!r} holds a run of a different config "
                               f"({'; '.join(diff[:5]) or 'unreadable config.json'}); "
                               f"pass --overwrite to replace it or choose another --workdir")
            finished = os.path.exists(os.path.join(self.path, "summary.json"))
            if not resume:
                what = "a finished run" if finished else "an unfinished run"
                raise RunError(f"workdir {self.path!r} holds {what} of this config; pass --resume to continue it, "
                               f"--overwrite to start again, or choose another --workdir")
        if overwrite:
            for name in RESULT_FILES + ("config.json",):
                p = os.path.join(self.path, name)
                if os.path.exists(p):
                    os.unlink(p)
            shutil.rmtree(os.path.join(self.path, "checkpoints"), ignore_errors=True)
        write_json_atomic(cfg_path, config)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_json(self, name: str, obj: Any) -> None:
        write_json_atomic(self.file(name), obj)

    def write_npz(self, name: str, **arrays) -> None:
        write_npz_atomic(self.file(name), **arrays)
