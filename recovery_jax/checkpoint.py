"""orbax checkpoints of the whole run state at episode boundaries.

A checkpoint holds the state pytree (params, optimizer state, global step, rng) and the losses so
far; the order is a pure function of the seed, so it is recomputed, not stored. Layout:
``RUNDIR/checkpoints/<episode>/{state,losses,meta}``.

Why the care below: a run lasts hours, so a checkpoint must survive the ways a run ends badly.

* orbax writes ``<episode>.orbax-checkpoint-tmp`` and renames it when complete, so a process killed
  mid-save leaves only a temporary directory: it never counts as a checkpoint and the next save or
  restore deletes it.
* A failed write (disk full, permission) removes its temporary directory, keeps the earlier
  checkpoints, and raises one :class:`CheckpointError`; orbax's worker threads log a traceback per
  thread for such a failure, which is kept off stderr (the exception says it once).
* A damaged newest checkpoint (truncated or missing files, garbage, a state of another shape) is
  skipped for the previous one with one warning line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from typing import Callable

import numpy as np

from recovery_jax.rundir import RunError

TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's suffix of a directory being written (orbax/_src/path/atomicity_types.py)
_ASIDE = TMP_MARK + "-replaced"  # an episode's older checkpoint while the same episode is saved again
FORMAT = 1


class CheckpointError(RunError):
    """A checkpoint that cannot be written or read (printed as one `error:` line by the CLI)."""


# ----------------------------------------------------------------------------- quiet orbax


class _DropOrbaxRecords(logging.Filter):
    """orbax logs through absl's logger; its records carry orbax's source file as pathname."""

    def __init__(self):
        super().__init__()
        import orbax.checkpoint
        self.prefix = os.path.dirname(os.path.dirname(os.path.abspath(orbax.checkpoint.__file__))) + os.sep
        self.dropped: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if os.path.abspath(record.pathname).startswith(self.prefix):
            self.dropped.append(record)
            return False
        return True


@contextlib.contextmanager
def _quiet_orbax():
    """Keep orbax's thread tracebacks off stderr for the length of one synchronous save or restore,
    including the worker threads still running when it raised.

    A write that fails in orbax's worker threads is logged by each thread (`_SignalingThread.run()
    raised an exception`, with a full traceback, via absl logging) before the same error reaches the
    caller; an exception escaping a thread would go to threading.excepthook. Both are collected here
    so the caller can name the cause once. Yields the list of exceptions seen in threads."""
    _drop_closed_loop_noise()
    flt = _DropOrbaxRecords()
    loggers = [logging.getLogger("absl"), logging.getLogger()]
    for lg in loggers:
        lg.addFilter(flt)
    seen: list[BaseException] = []
    old_hook = threading.excepthook

    def hook(args):
        if args.thread is not None and not type(args.thread).__module__.startswith("orbax."):
            old_hook(args)  # not ours to silence
        elif args.exc_value is not None:
            seen.append(args.exc_value)

    threading.excepthook = hook
    before = set(threading.enumerate())
    try:
        yield seen
    finally:
        # A failed save raises as soon as one worker fails; the others are still running (and would log,
        # and find their temporary directory gone). Wait for them before anything is cleaned up.
        deadline = time.monotonic() + 60.0
        for t in set(threading.enumerate()) - before:
            if type(t).__module__.startswith("orbax."):
                t.join(max(0.0, deadline - time.monotonic()))
        threading.excepthook = old_hook
        for lg in loggers:
            lg.removeFilter(flt)
        for rec in flt.dropped:
            if rec.exc_info and rec.exc_info[1] is not None:
                seen.append(rec.exc_info[1])


# ----------------------------------------------------------------------------- causes


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


_ERRNO_TEXT = {errno.ENOSPC: ("No space left on device", "28"), errno.EACCES: ("Permission denied", "13"),
               errno.EROFS: ("Read-only file system", "30"), errno.EDQUOT: ("Disk quota exceeded", "122")}


def _errno_of(excs: list[BaseException]) -> int | None:
    """The errno behind a failure: OSError's own, or the one tensorstore writes into its message."""
    for e in excs:
        for c in _chain(e):
            if isinstance(c, OSError) and c.errno in _ERRNO_TEXT:
                return c.errno
    for e in excs:
        for c in _chain(e):
            text = str(c)
            for no, (words, code) in _ERRNO_TEXT.items():
                if words in text or f"os_error_code='{code}'" in text:
                    return no
    return None


def _reason(exc: BaseException, path: str, limit: int = 200) -> str:
    """One short line for a damaged checkpoint, with paths relative to its directory."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.replace(path + os.sep, "").replace(path, ".")
    text = re.sub(r"\s*\[tensorstore_spec=.*", "", text)
    missing = re.match(r'(?:Item "(\w+)" was not found|Unknown key: (\w+)\.)', text)
    status = re.match(r"([A-Z][A-Z_]+): ", text)  # tensorstore: CODE: Error ... local file "...": detail
    if isinstance(exc, json.JSONDecodeError):
        text = f"invalid JSON metadata ({text})"
    elif missing:
        text = f"{missing.group(1) or missing.group(2)}/ is missing"
    elif status:
        files = re.findall(r'local file "([^"]+)"', text)
        detail = text.rsplit(": ", 1)[-1]
        text = f"{status.group(1)} reading {files[-1] if files else 'the data'}" + (f" ({detail})" if detail else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _drop_closed_loop_noise() -> None:
    """After a failed read or write, tensorstore may complete operations still in flight on an asyncio loop
    orbax has closed; each then prints an unraisable `RuntimeError: Event loop is closed` traceback,
    at any later moment. Only those are dropped; every other unraisable goes to the previous hook."""
    if getattr(sys.unraisablehook, "drops_closed_loop_noise", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook.drops_closed_loop_noise = True
    sys.unraisablehook = hook


def _first_line(exc: BaseException, limit: int = 240) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- the checkpointer


class Checkpointer:
    """Checkpoints of one run directory, newest `keep` kept.

    New API (what the runner calls): :meth:`save_run`, :meth:`restore_run`, :meth:`latest`,
    :meth:`steps`, :meth:`clear`; :meth:`save` / :meth:`restore` are the older call forms."""

    def __init__(self, run_path: str, keep: int = 2):
        if int(keep) < 1:
            raise ValueError(f"keep={keep}: a run keeps at least one checkpoint")
        self.shown = os.path.join(str(run_path), "checkpoints")  # as the user wrote it, for messages
        self.directory = os.path.abspath(self.shown)  # orbax wants absolute paths
        self.keep = int(keep)
        self._ckptr = None

    # -- listing

    def steps(self) -> list[int]:
        """Episodes with a finished checkpoint, oldest first (temporary directories are not checkpoints)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(int(n) for n in names
                      if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def leftovers(self) -> list[str]:
        """Temporary directories of an interrupted save or delete."""
        try:
            return sorted(n for n in os.listdir(self.directory) if TMP_MARK in n)
        except OSError:
            return []

    def _remove_leftovers(self) -> None:
        for name in self.leftovers():
            path = os.path.join(self.directory, name)
            final = os.path.join(self.directory, name.split(".", 1)[0])
            if name.endswith(_ASIDE) and not os.path.exists(final):  # killed while re-saving that episode
                try:
                    os.rename(path, final)
                    continue
                except OSError:
                    pass
            shutil.rmtree(path, ignore_errors=True)

    def _delete_step(self, step: int) -> None:
        """Rename first, so a delete cut short leaves a temporary directory, never a half checkpoint."""
        path = os.path.join(self.directory, str(step))
        doomed = f"{path}{TMP_MARK}-deleted"
        try:
            os.rename(path, doomed)
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    @property
    def _orbax(self):
        if self._ckptr is None:
            import jax
            import orbax.checkpoint as ocp
            if jax.process_count() == 1:  # synchronous: no save outlives save_run
                self._ckptr = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
            else:  # several processes (sharding.py): each one saves / restores its host copies alone, no barriers
                me = jax.process_index()
                alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
                handler = ocp.CompositeCheckpointHandler(
                    composite_options=ocp.CompositeOptions(multiprocessing_options=alone),
                    state=ocp.StandardCheckpointHandler(multiprocessing_options=alone),
                    losses=ocp.StandardCheckpointHandler(multiprocessing_options=alone),
                    meta=ocp.JsonCheckpointHandler(multiprocessing_options=alone))
                self._ckptr = ocp.Checkpointer(handler, multiprocessing_options=alone)
        return self._ckptr

    # -- saving

    def save_run(self, episode: int, state, losses: dict[str, np.ndarray]) -> None:
        """Checkpoint `state` and the named loss arrays after `episode`; on success, drop the
        checkpoints beyond `keep` and any of later episodes (left from before a resume)."""
        import jax
        import orbax.checkpoint as ocp

        episode = int(episode)
        arrays = {str(k): np.asarray(v) for k, v in losses.items() if v is not None}
        if "episode" in arrays:
            raise ValueError("'episode' is reserved in the losses of a checkpoint")
        meta = {"format": FORMAT, "episode": episode,
                "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
        stored = {"episode": np.asarray(episode, np.int64)}
        stored.update({k: v for k, v in arrays.items() if v.size})  # orbax refuses zero-size arrays; meta has them
        host_state = jax.device_get(state)

        self._remove_leftovers()
        previous = [s for s in self.steps() if s != episode]
        final = os.path.join(self.directory, str(episode))
        aside = f"{final}{_ASIDE}"
        try:
            os.makedirs(self.directory, exist_ok=True)
            if os.path.isdir(final):  # saving the same episode again: keep the old one until the new one is whole
                os.rename(final, aside)
            with _quiet_orbax() as thread_errors:
                try:
                    self._orbax.save(final, args=ocp.args.Composite(
                        state=ocp.args.StandardSave(host_state), losses=ocp.args.StandardSave(stored),
                        meta=ocp.args.JsonSave(meta)))
                except Exception as e:
                    e.thread_errors = thread_errors  # completed when the context exits
                    raise
        except BaseException as e:  # KeyboardInterrupt too: no temporary directory stays behind
            shutil.rmtree(f"{final}{TMP_MARK}", ignore_errors=True)
            if os.path.isdir(aside):
                shutil.rmtree(final, ignore_errors=True)
                try:
                    os.rename(aside, final)
                    previous = sorted(set(previous) | {episode})
                except OSError:
                    pass
            self._remove_leftovers()
            if not isinstance(e, Exception):
                raise
            raise CheckpointError(self._save_message(episode, previous, e)) from e
        shutil.rmtree(aside, ignore_errors=True)
        steps = self.steps()
        for s in steps:
            if s > episode:
                self._delete_step(s)
        kept = [s for s in steps if s <= episode]
        for s in kept[: max(0, len(kept) - self.keep)]:
            self._delete_step(s)

    def _save_message(self, episode: int, previous: list[int], e: BaseException) -> str:
        causes = [e] + list(getattr(e, "thread_errors", []))
        no = _errno_of(causes)
        where = f"checkpoint {episode} in {self.shown}"
        if no in (errno.ENOSPC, errno.EDQUOT):
            head = f"disk full while writing {where}"
            hint = "; free some space, then continue with --resume"
        elif no in (errno.EACCES, errno.EROFS):
            head = f"{_ERRNO_TEXT[no][0].lower()} while writing {where}"
            hint = ""
        else:
            head = f"could not write {where} ({_first_line(e)})"
            hint = ""
        intact = [s for s in previous if s <= episode]  # later ones are left from before a resume
        if intact:
            tail = f"; the previous checkpoint (episode {intact[-1]}) is intact"
        else:
            tail = "; there is no earlier checkpoint"
        return head + tail + hint

    # -- reading

    def _read(self, step: int, state_like=None):
        """Read checkpoint `step` (into the structure of `state_like` when given) and check it is whole.
        Returns (state, losses); raises _Damaged(reason)."""
        import jax
        import orbax.checkpoint as ocp

        path = os.path.join(self.directory, str(step))
        target = None
        if state_like is not None:
            target = jax.tree_util.tree_map(
                lambda x: np.zeros(np.shape(x), np.asarray(x).dtype) if hasattr(x, "shape") else x,
                jax.device_get(state_like))
        dropped = None
        with _quiet_orbax():
            try:
                stored = self._stored_leaf_count(path)
                if target is not None and stored != len(jax.tree_util.tree_leaves(target)):
                    target, dropped = self._with_stored_moments(path, target)
                if target is not None and stored != len(jax.tree_util.tree_leaves(target)):
                    raise _Damaged(f"it holds {stored} state arrays, this run's state has "
                                   f"{len(jax.tree_util.tree_leaves(target))}")
                restored = self._orbax.restore(path, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), losses=ocp.args.StandardRestore(),
                    meta=ocp.args.JsonRestore()))
            except _Damaged:
                raise
            except Exception as e:  # orbax/tensorstore report damage as many exception types
                raise _Damaged(_reason(e, path)) from e
        meta = restored["meta"]
        if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), dict):
            raise _Damaged("meta/metadata is not what this version writes")
        state = restored["state"]
        if dropped is not None:
            state, target = dict(state, **dropped), dict(target, **dropped)
        losses = {k: np.asarray(v) for k, v in dict(restored["losses"]).items()}
        recorded = {int(losses.pop("episode", -1)), meta.get("episode")}
        if recorded != {step}:
            raise _Damaged(f"it records episode {sorted(recorded, key=str)} in directory {step}")
        for name, info in meta["arrays"].items():
            shape = tuple(info["shape"])
            if name not in losses:
                if int(np.prod(shape)) != 0:
                    raise _Damaged(f"the losses array {name!r} is missing")
                losses[name] = np.zeros(shape, np.dtype(info["dtype"]))
            elif losses[name].shape != shape:
                raise _Damaged(f"the losses array {name!r} has shape {losses[name].shape}, expected {shape}")
        extra = sorted(set(losses) - set(meta["arrays"]))
        if extra:
            raise _Damaged(f"unexpected losses arrays {extra}")
        if target is not None:
            for i, (a, b) in enumerate(zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(target))):
                if np.shape(a) != np.shape(b):
                    raise _Damaged(f"state array {i} has shape {np.shape(a)}, this run's state has {np.shape(b)}")
            state = jax.tree_util.tree_map(jax.numpy.asarray, state)
        return state, losses

    def _with_stored_moments(self, path: str, target):
        """A checkpoint written before reset optimizers stopped storing their moments (state["opt_state"] is
        None now, docs in engine.init_state) still resumes: its moments are read into a target of their own
        stored shapes and dropped. Returns (target to read into, {key: None} to put back) or (target, None)."""
        import jax
        import orbax.checkpoint as ocp
        from etils import epath

        if not isinstance(target, dict) or "opt_state" not in target or target["opt_state"] is not None:
            return target, None
        tree = ocp.StandardCheckpointHandler().metadata(epath.Path(path) / "state")
        tree = getattr(tree, "tree", tree)
        moments = tree.get("opt_state") if isinstance(tree, dict) else None
        if not moments:
            return target, None
        zeros = jax.tree_util.tree_map(lambda m: np.zeros(tuple(m.shape), np.dtype(m.dtype)), moments)
        return dict(target, opt_state=zeros), {"opt_state": None}

    def _stored_leaf_count(self, path: str) -> int:
        """How many arrays the state item holds, from its own metadata file (orbax restores into a target even
        without that file, and misreads a target with more leaves). Read with a handler of its own: a fresh
        composite handler knows its items' handlers only after a restore."""
        import jax
        import orbax.checkpoint as ocp
        from etils import epath

        try:
            tree = ocp.StandardCheckpointHandler().metadata(epath.Path(path) / "state")
        except Exception as e:  # noqa: BLE001
            raise _Damaged(_reason(e, path)) from e
        if tree is None:
            raise _Damaged("state/_METADATA is unreadable")
        return len(jax.tree_util.tree_leaves(tree))

    def damage(self, step: int) -> str | None:
        """Why checkpoint `step` cannot be used (None: it reads back whole). Reads every array, so it
        finds truncated data too; touches nothing on disk (safe while a run is writing)."""
        try:
            self._read(step)
        except _Damaged as d:
            return d.reason
        return None

    def restore_run(self, state_like, log: Callable[[str], None] | None = None):
        """Restore the newest readable checkpoint into the structure of `state_like`.
        Returns (episode, state, losses dict). A damaged newest one is passed over for the previous one
        with one warning line through `log` (default: stderr); none readable raises CheckpointError."""
        if log is None:
            def log(msg):
                print(msg, file=sys.stderr, flush=True)
        self._remove_leftovers()
        steps = self.steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.shown} to resume from; start over with --overwrite")
        bad: list[tuple[int, str]] = []
        for step in reversed(steps):
            try:
                state, losses = self._read(step, state_like)
            except _Damaged as d:
                bad.append((step, d.reason))
                continue
            if bad:
                if len(bad) == 1:
                    what = f"checkpoint {bad[0][0]} in {self.shown} is damaged ({bad[0][1]})"
                else:
                    what = (f"checkpoints {', '.join(str(s) for s, _ in bad)} in {self.shown} are damaged ("
                            + "; ".join(f"{s}: {r}" for s, r in bad) + ")")
                log(f"warning: {what}; resuming from checkpoint {step}")
            return step, state, losses
        reasons = "; ".join(f"{s}: {r}" for s, r in bad)
        raise CheckpointError(f"no readable checkpoint in {self.shown} ({reasons}); "
                              f"start the run over with --overwrite")

    def clear(self) -> None:
        """A finished run keeps its results, not its training state."""
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- the older call forms (runner before the switch to save_run / restore_run)

    def save(self, episode: int, state, eval_losses, train_losses, step_eval=None) -> None:
        losses = {"eval_losses": eval_losses, "train_losses": train_losses}
        if step_eval is not None:
            losses["step_eval_losses"] = step_eval
        self.save_run(episode, state, losses)

    def restore(self, state_like):
        """Returns (state, losses dict with 'episode')."""
        episode, state, losses = self.restore_run(state_like)
        return state, dict(losses, episode=np.asarray(episode))


class _Damaged(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
