"""Shared plumbing of the `python -m` entry points: one guard, one argument parser, one line per user error.

Every entry point (train, sweep, report, toy, the benchmarks) runs its main through `guarded`, so a
problem the user can fix reads the same everywhere: exactly one line `error: ...` naming the file or
value and what would be valid, exit status 2, no traceback. Anything else is a bug and keeps its
traceback. RECOVERY_JAX_DEBUG=1 shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import math
import os
import sys
from typing import Callable

from recovery_jax.interrupts import Interrupted  # re-exported: the stop the guard reports with its message

__all__ = ["ArgumentParser", "Interrupted", "UsageError", "guarded", "check_out_dir", "positive_int", "nonneg_int",
           "positive_float", "int_list", "user_error_line"]

# Optional dependencies -> the extra of pyproject.toml that installs them.
OPTIONAL_PACKAGES = {"tensorflow_datasets": "tfds", "tensorflow": "tfds", "torch": "test"}

# OSError numbers a user can act on (free space, pick another folder, fix permissions).
_OS_USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
                   errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG}


class UsageError(ValueError):
    """A bad command-line argument: printed as one `error:` line, exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are user errors for `guarded` (one line, exit 2) instead of usage + error
    printed by argparse itself; --help still prints the help and exits 0. Descriptions are printed as
    written (our module docstrings are laid out by hand)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def user_errors() -> tuple[type[BaseException], ...]:
    from recovery_jax.config import ConfigError
    from recovery_jax.rundir import RunError
    return (ConfigError, RunError, FileNotFoundError, ValueError, UnicodeDecodeError)


# ----------------------------------------------------------------------------- argument types and checks


def _number(text: str, kind: type, lo: float, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value) or value < lo:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 1, "an integer >= 1")


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text, float, 0.0, "a finite number > 0")
    if value == 0.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers >= 1, e.g. 1024,2048."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r} gives no number; expected integers >= 1 like 1024,2048")
    try:
        return tuple(positive_int(p) for p in parts)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers >= 1 like 1024,2048") from None


def check_out_dir(path: str, flag: str = "--out") -> str:
    """Refuse, before any work, an output folder that is a file or cannot be created or written; returns path.

    The folder itself is not created: a run that stops early on another error leaves nothing behind."""
    if not str(path).strip():
        raise UsageError(f"{flag} is empty; give a folder to write into")
    p = os.path.abspath(path)
    if os.path.lexists(p) and not os.path.isdir(p):
        raise UsageError(f"{flag} {path}: exists and is not a directory; give a new or existing folder")
    probe = p
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{flag} {path}: {probe} is a file, so no folder can be created below it")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "folder is not writable" if probe == p else f"cannot create it: {probe} is not writable"
        raise UsageError(f"{flag} {path}: {what}; choose a folder you can write to")
    return path


# ----------------------------------------------------------------------------- the guard


def config_command(prog: str, doc: str | None, argv: list[str], *, config_help: str, workdir_help: str
                   ) -> tuple[ArgumentParser, list[str], list[str]]:
    """The parser of a config-driven command (train, pretrain): --config FILE, --workdir DIR, --overwrite,
    --no-progress; `--config.KEY=VALUE` overrides are split off first. Returns (parser, overrides, the rest
    of argv); the command adds its own options and parses the rest."""
    from recovery_jax.config import split_argv

    overrides, rest = split_argv(argv)
    p = ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument("--workdir", required=True, help=workdir_help)
    p.add_argument("--overwrite", action="store_true", help="replace a run of another config in --workdir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p, overrides, rest


def _open_file_in_traceback(e: BaseException) -> str | None:
    """Name of the innermost file object a frame of e's traceback holds (the file being decoded)."""
    tb, names = e.__traceback__, []
    while tb is not None:
        for v in tb.tb_frame.f_locals.values():
            if isinstance(v, io.IOBase) and isinstance(getattr(v, "name", None), str):
                names.append(v.name)
        tb = tb.tb_next
    return names[-1] if names else None


def _missing_optional(e: BaseException) -> str | None:
    """The optional package behind an ImportError (also one re-raised with a friendlier message)."""
    seen, depth = e, 0
    while seen is not None and depth < 8:
        if isinstance(seen, ImportError) and (seen.name or "").split(".")[0] in OPTIONAL_PACKAGES:
            return seen.name.split(".")[0]
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return None


def os_error_line(e: OSError) -> str | None:
    """One line for an OSError a user can fix, None for any other."""
    if e.errno not in _OS_USER_ERRNOS:
        return None
    name = e.filename if e.filename is not None else "a file"
    return {
        errno.ENOENT: f"no such file or directory: {name}",
        errno.EACCES: f"permission denied: {name}; choose a path you can write to or fix its permissions",
        errno.EPERM: f"operation not permitted on {name}; choose a path you can write to",
        errno.EROFS: f"{name} is on a read-only file system; choose a writable folder",
        errno.ENOSPC: f"disk full while writing {name}; free some space and run again",
        errno.EDQUOT: f"disk quota exceeded while writing {name}; free some space and run again",
        errno.EISDIR: f"{name} is a directory; a file was expected there",
        errno.ENOTDIR: f"{name}: a part of this path is a file, not a directory",
        errno.EEXIST: f"{name} already exists and is in the way; remove it or choose another path",
        errno.ENAMETOOLONG: f"file name too long: {name}",
    }[e.errno]


def user_error_line(e: BaseException) -> str | None:
    """The one `error:` line for a user error, None for a bug (which keeps its traceback)."""
    pkg = _missing_optional(e) if isinstance(e, ImportError) else None
    if pkg is not None:
        extra = OPTIONAL_PACKAGES[pkg]
        return f"the optional package {pkg!r} is not installed; install it with: pip install -e \".[{extra}]\""
    if isinstance(e, UnicodeDecodeError):
        where = _open_file_in_traceback(e) or "a file"
        return f"{where} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
    if isinstance(e, json.JSONDecodeError):
        where = _open_file_in_traceback(e) or "a JSON document"
        return f"{where} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, OSError):
        line = os_error_line(e)
        if line is not None:
            return line
    if isinstance(e, user_errors()):
        text = str(e).strip()
        return text.splitlines()[0] if text else type(e).__name__
    return None


def guarded(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run main; a user error prints `error: ...` on one line (no traceback) and returns 2; an interrupt
    prints `interrupted[: what is on disk]` and returns 130 (SIGINT) or 143 (SIGTERM).
    Set RECOVERY_JAX_DEBUG=1 to see the traceback of user errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv) or 0
    except BrokenPipeError:  # output piped into e.g. `head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Interrupted as e:  # the runner's stop: its message says what is on disk
        print(f"interrupted: {e.message}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:  # a bare Ctrl-C (report, toy, a sweep between runs) knows nothing more
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        line = user_error_line(e)
        if line is None or os.environ.get("RECOVERY_JAX_DEBUG"):
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
