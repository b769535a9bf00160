"""Say whether run directories are complete, resumable, in progress or damaged (and which file, and why).

    python -m recovery_jax.check RUNDIR [RUNDIR ...]

One line per directory, e.g.

    runs/demo: complete (125/125 episodes, RS last cycle 0.543)
    runs/x: resumable from episode 50/125 (checkpoint 50; older: 25)
    runs/y: damaged: losses.npz is not a valid .npz file (BadZipFile: File is not a zip file)

Exit status: 0 when every directory is complete, resumable or in progress; 1 when any is damaged;
2 for a path that is not a run directory. Nothing on disk is changed (safe next to a live run).
Checkpoints are read back in full, so checking a big model's run takes as long as loading it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import zipfile

import numpy as np

from recovery_jax import cli
from recovery_jax import rundir as rundir_lib
from recovery_jax.rundir import RunError

CONFIG, DOCUMENTS, MODEL = rundir_lib.CONFIG_FILE, rundir_lib.DOCUMENTS_FILE, rundir_lib.MODEL_FILE
LOSSES, SUMMARY = rundir_lib.LOSSES_FILE, rundir_lib.SUMMARY_FILE
PROBES, PROBES_PARTIAL = rundir_lib.PROBES_FILE, rundir_lib.PROBES_PARTIAL_FILE
CHECKPOINTS, LOCK = rundir_lib.CHECKPOINT_DIR, rundir_lib.LOCK_FILE
MARKERS = (CONFIG, LOSSES, SUMMARY, CHECKPOINTS, LOCK)  # any of these makes a directory a run directory

COMPLETE, RESUMABLE, IN_PROGRESS, DAMAGED = "complete", "resumable", "in progress", "damaged"


@dataclasses.dataclass
class Status:
    kind: str  # COMPLETE | RESUMABLE | IN_PROGRESS | DAMAGED
    text: str  # the line after "PATH: "
    checkpoint: int | None = None  # RESUMABLE: the checkpoint --resume continues from (None: none yet)

    @property
    def ok(self) -> bool:
        return self.kind != DAMAGED


class _Damaged(Exception):
    """One damaged file: the message names it and says why."""


# ----------------------------------------------------------------------------- reading the files


def _json(path: str, name: str):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise _Damaged(f"{name} cannot be read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Damaged(f"{name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        what = "is empty" if not text.strip() else f"is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        raise _Damaged(f"{name} {what}") from None


def _npz(path: str, name: str) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":  # np.load would try anything else as a pickle and complain about that
            what = "empty" if not magic else "a .npy array" if magic.startswith(b"\x93NUM") else "not a zip archive"
            raise _Damaged(f"{name} is not a valid .npz file ({what})")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except _Damaged:
        raise
    except OSError as e:
        raise _Damaged(f"{name} cannot be read ({e.strerror or e})") from None
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError) as e:
        raise _Damaged(f"{name} is not a valid .npz file ({type(e).__name__}: {e})") from None


def _config(p: str) -> dict:
    path = os.path.join(p, CONFIG)
    if not os.path.isfile(path):
        raise _Damaged(f"{CONFIG} is missing")
    cfg = _json(path, CONFIG)
    if not isinstance(cfg, dict):
        raise _Damaged(f"{CONFIG} does not hold a config (a JSON object)")
    for key in ("T", "M", "E"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise _Damaged(f"{CONFIG} has no valid {key} (got {cfg.get(key)!r})")
    return cfg


def _planned_K(cfg: dict) -> int | None:
    """K = E·T, except for filler orders (a random number of extra episodes per epoch): unknown here."""
    order = cfg.get("order")
    kind = order.get("kind", "cyclic") if isinstance(order, dict) else "cyclic"
    return None if kind == "filler" else cfg["E"] * cfg["T"]


def _probes_wanted(cfg: dict) -> bool:
    probes = cfg.get("probes")
    return isinstance(probes, dict) and bool(str(probes.get("names") or "").strip())


def _losses(p: str, cfg: dict) -> tuple[int, int | None]:
    """(episodes done k, planned episodes K or None) from losses.npz, checked against the config."""
    arrays = _npz(os.path.join(p, LOSSES), LOSSES)
    T, M = cfg["T"], cfg["M"]
    if "eval_losses" not in arrays:
        raise _Damaged(f"{LOSSES} has no eval_losses array (found: {', '.join(sorted(arrays)) or 'none'})")
    L = arrays["eval_losses"]
    if L.ndim != 2 or L.shape[0] < 1 or L.shape[1] != T:
        raise _Damaged(f"{LOSSES}: eval_losses has shape {L.shape}, expected (k+1, T={T})")
    k = L.shape[0] - 1
    K = _planned_K(cfg)
    if "planned_order" in arrays:
        K = int(np.asarray(arrays["planned_order"]).reshape(-1).shape[0])
    if K is not None and k > K:
        raise _Damaged(f"{LOSSES} holds {k} episodes, more than the {K} planned")
    done = np.asarray(arrays.get("episodes_done", k)).reshape(-1)
    if done.size != 1 or done[0] != k:
        raise _Damaged(f"{LOSSES}: episodes_done={done.tolist()} but eval_losses has {k} episodes")
    expected = {"train_losses": (k * M,), "order": (k,), "step_eval_losses": (k * M, T)}
    for name, shape in expected.items():
        if name in arrays and arrays[name].shape != shape:
            raise _Damaged(f"{LOSSES}: {name} has shape {arrays[name].shape}, expected {shape} "
                           f"for {k} episodes of M={M} steps")
    if "train_losses" not in arrays and k:
        raise _Damaged(f"{LOSSES} has no train_losses array")
    try:  # the reader report and sweep use: it must accept what check accepts
        rundir_lib.load_run(p)
    except (RunError, OSError, ValueError) as e:
        raise _Damaged(_relative(str(e), p)) from None
    return k, K


def _relative(msg: str, p: str) -> str:
    for prefix in (os.path.abspath(p), os.path.realpath(p), p):
        msg = msg.replace(prefix.rstrip(os.sep) + os.sep, "")
    return msg.splitlines()[0] if msg else msg


def _of(k: int, K: int | None) -> str:
    return f"{k}/{K if K is not None else '?'}"


# ----------------------------------------------------------------------------- one directory


def inspect(p: str) -> Status:
    """The status of run directory `p` (that it is one is checked by the caller)."""
    pid = rundir_lib.read_lock(p)
    if pid is not None:
        return _in_progress(p, pid)
    try:
        return _inspect(p)
    except _Damaged as e:
        return Status(DAMAGED, f"damaged: {e}")


def _in_progress(p: str, pid: int) -> Status:
    """A live run rewrites its files as it goes; only say how far it got, best effort."""
    done = ""
    try:
        cfg = _config(p)
        k, K = _losses(p, cfg) if os.path.isfile(os.path.join(p, LOSSES)) else (0, _planned_K(cfg))
        done = f"; {_of(k, K)} episodes saved so far"
    except _Damaged:
        pass
    return Status(IN_PROGRESS, f"in progress (pid {pid}{done})")


def _inspect(p: str) -> Status:
    cfg = _config(p)
    found = {name: _json(os.path.join(p, name), name)
             for name in (DOCUMENTS, MODEL, SUMMARY) if os.path.isfile(os.path.join(p, name))}
    has_losses = os.path.isfile(os.path.join(p, LOSSES))
    try:
        k, K = _losses(p, cfg) if has_losses else (0, _planned_K(cfg))
    except _Damaged as e:
        if SUMMARY in found:
            raise
        try:  # an unfinished run rewrites losses.npz from its checkpoint: say so
            st = _resumable(p, cfg, _planned_K(cfg))
        except _Damaged:
            raise e from None
        how = f"rewrites it from checkpoint {st.checkpoint}" if st.checkpoint is not None else "starts the run over"
        raise _Damaged(f"{e}; --resume {how}") from None
    if SUMMARY in found:
        return _complete(p, cfg, found[SUMMARY], k, K, has_losses)
    return _resumable(p, cfg, K)


def _complete(p: str, cfg: dict, summary, k: int, K: int | None, has_losses: bool) -> Status:
    if not isinstance(summary, dict):
        raise _Damaged(f"{SUMMARY} does not hold a summary (a JSON object)")
    if not has_losses:
        raise _Damaged(f"{SUMMARY} is present but {LOSSES} is missing")
    if K is not None and k != K:
        raise _Damaged(f"{SUMMARY} is present but {LOSSES} holds only {_of(k, K)} episodes")
    if isinstance(summary.get("K"), int) and summary["K"] != k:
        raise _Damaged(f"{SUMMARY} is of a run with K={summary['K']} episodes, {LOSSES} holds {k}")
    if _probes_wanted(cfg):
        if not os.path.isfile(os.path.join(p, PROBES)):
            raise _Damaged(f"{PROBES} is missing (the config asks for probes {cfg['probes']['names']!r})")
        _npz(os.path.join(p, PROBES), PROBES)
    rs = summary.get("rs_last")
    rs_text = f"{rs:.3f}" if isinstance(rs, (int, float)) and math.isfinite(rs) else "n/a"
    extra = "; leftover checkpoints/ can be deleted" if os.path.isdir(os.path.join(p, CHECKPOINTS)) else ""
    return Status(COMPLETE, f"complete ({_of(k, K)} episodes, RS last cycle {rs_text}{extra})")


def _resumable(p: str, cfg: dict, K: int | None) -> Status:
    ck = None
    if os.path.isdir(os.path.join(p, CHECKPOINTS)):
        from recovery_jax.checkpoint import Checkpointer  # orbax is heavy: only when there are checkpoints
        ck = Checkpointer(p)
    steps = ck.steps() if ck is not None else []
    if not steps:
        return Status(RESUMABLE, f"resumable from episode {_of(0, K)} (no checkpoint yet; --resume starts it over)")
    damaged: list[tuple[int, str]] = []
    for step in reversed(steps):
        reason = ck.damage(step)
        if reason is None:
            break
        damaged.append((step, reason))
    else:
        reasons = "; ".join(f"{s}: {r}" for s, r in damaged)
        raise _Damaged(f"no readable checkpoint in {CHECKPOINTS}/ ({reasons}); start over with --overwrite")
    if _probes_wanted(cfg) and step > 0:
        snap = os.path.join(p, PROBES_PARTIAL)
        if not os.path.isfile(snap):
            raise _Damaged(f"{PROBES_PARTIAL} is missing, so the probes cannot resume; start over with --overwrite")
        _npz(snap, PROBES_PARTIAL)
    older = [s for s in steps if s < step]
    notes = [f"checkpoint {step}"]
    if older:
        notes.append("older: " + ", ".join(str(s) for s in reversed(older)))
    for s, reason in damaged:
        notes.append(f"checkpoint {s} is damaged: {reason}")
    return Status(RESUMABLE, f"resumable from episode {_of(step, K)} ({'; '.join(notes)})", step)


# ----------------------------------------------------------------------------- command line


def _not_a_run_dir(p: str) -> str | None:
    if not os.path.exists(p):
        return "no such directory"
    if not os.path.isdir(p):
        return "not a directory"
    if not any(os.path.exists(os.path.join(p, m)) for m in MARKERS):
        return f"not a run directory (no {CONFIG}, {LOSSES} or {CHECKPOINTS}/)"
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m recovery_jax.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rundirs", nargs="+", metavar="RUNDIR", help="run directories (a train/sweep --workdir)")
    args = parser.parse_args(argv)
    bad = [(p, why) for p in args.rundirs if (why := _not_a_run_dir(p))]
    if bad:
        raise RunError("; ".join(f"{p}: {why}" for p, why in bad))
    worst = 0
    for p in args.rundirs:
        status = inspect(p)
        print(f"{p}: {status.text}", flush=True)
        worst = max(worst, 0 if status.ok else 1)
    return worst


if __name__ == "__main__":
    sys.exit(cli.guarded(main))
