"""The run directory: atomic writes and reading a run back.

Layout of a run directory (written by the engine):

* ``config.json``     the run config (nested dict)
* ``documents.json``  the documents used (ids, hashes, token counts) — optional for toy runs
* ``losses.npz``      ``eval_losses`` (K+1, T) float32, ``train_losses`` (K·M,) float32, ``order`` (K,) int32
                      (−1 = filler episode), optional ``step_eval_losses`` (K·M, T)
* ``summary.json``    :func:`recovery_jax.metrics.summarize` of the losses (optional when reading)
* ``probes.npz``      optional probe statistics (Gram matrices, pairwise matrix, update norms)

Index conventions of the arrays: PAPER.md §2.1 and :mod:`recovery_jax.metrics`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Run", "RunDirError", "load_run", "is_run_dir", "write_json_atomic", "write_npz_atomic"]

LOSSES_FILE = "losses.npz"
CONFIG_FILE = "config.json"
DOCUMENTS_FILE = "documents.json"
SUMMARY_FILE = "summary.json"
PROBES_FILE = "probes.npz"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class RunDirError(FileNotFoundError):
    """The path is not a (complete, readable) run directory."""


# ---------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------


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


def _write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    if os.path.lexists(path) and not os.path.isfile(path):
        # os.replace would swap a directory entry like /dev/null for a regular file
        raise ValueError(f"{path} exists and is not a regular file; not replacing it")
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
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temp file in the same directory, fsync, ``os.replace``).

    numpy scalars/arrays are converted; NaN/inf become ``null`` so the file is strict JSON.
    """
    from recovery_jax.metrics import jsonable

    text = json.dumps(jsonable(obj), indent=indent, sort_keys=False, allow_nan=False)
    return _write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def write_npz_atomic(path: str | os.PathLike, compressed: bool = False, **arrays: Any) -> Path:
    """Write ``arrays`` to an ``.npz`` file atomically (temp file in the same directory, fsync, ``os.replace``)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return _write_bytes_atomic(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------------------
# Reading
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


def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: {what} is not valid JSON ({e})") from e


def load_run(run_dir: str | os.PathLike, require_config: bool = True) -> Run:
    """Read a run directory. Raises :class:`RunDirError` with a clear message when it is not one.

    Required: ``losses.npz`` with ``eval_losses`` (and ``config.json`` unless ``require_config=False``).
    ``order`` defaults to the cyclic order and ``train_losses`` to an empty array when absent; the shapes are
    checked against each other (``order`` has K entries, ``train_losses`` a multiple of K).
    """
    p = Path(run_dir)
    if not p.exists():
        raise RunDirError(f"{p}: no such directory")
    if not p.is_dir():
        raise RunDirError(f"{p}: not a directory (expected a run directory containing {LOSSES_FILE})")
    lf = p / LOSSES_FILE
    if not lf.is_file():
        raise RunDirError(
            f"{p} is not a run directory: it has no {LOSSES_FILE} "
            f"(a run directory holds {CONFIG_FILE}, {LOSSES_FILE} and usually {SUMMARY_FILE})"
        )
    cf = p / CONFIG_FILE
    if cf.is_file():
        config = _read_json(cf, CONFIG_FILE)
    elif require_config:
        raise RunDirError(f"{p} is not a complete run directory: it has {LOSSES_FILE} but no {CONFIG_FILE}")
    else:
        config = {}
    documents = _read_json(p / DOCUMENTS_FILE, DOCUMENTS_FILE) if (p / DOCUMENTS_FILE).is_file() else {}
    summary = _read_json(p / SUMMARY_FILE, SUMMARY_FILE) if (p / SUMMARY_FILE).is_file() else None

    try:
        with np.load(lf, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError
        raise RunDirError(f"{lf}: cannot read ({type(e).__name__}: {e})") from e
    if "eval_losses" not in arrays:
        raise RunDirError(f"{lf} has no 'eval_losses' array (found: {sorted(arrays)})")
    L = np.asarray(arrays["eval_losses"])
    if L.ndim != 2:
        raise RunDirError(f"{lf}: eval_losses must have shape (K+1, T), got {L.shape}")
    K, T = L.shape[0] - 1, L.shape[1]
    order = arrays.get("order")
    order = (np.arange(K) % T).astype(np.int32) if order is None else np.asarray(order).reshape(-1)
    if order.shape[0] != K:
        raise RunDirError(f"{lf}: order has {order.shape[0]} entries but eval_losses has K={K} episodes")
    train = np.asarray(arrays.get("train_losses", np.zeros(0, np.float32))).reshape(-1)
    if K > 0 and train.size and train.size % K:
        raise RunDirError(f"{lf}: train_losses has {train.size} entries, not a multiple of K={K}")
    step_eval = arrays.get("step_eval_losses")

    probes = None
    pf = p / PROBES_FILE
    if pf.is_file():
        try:
            with np.load(pf, allow_pickle=False) as z:
                probes = {k: z[k] for k in z.files}
        except Exception as e:
            raise RunDirError(f"{pf}: cannot read ({type(e).__name__}: {e})") from e

    return Run(
        path=p.resolve(),
        config=config,
        documents=documents,
        eval_losses=L,
        train_losses=train,
        order=order,
        step_eval_losses=None if step_eval is None else np.asarray(step_eval),
        summary=summary,
        probes=probes,
    )
