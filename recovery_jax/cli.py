"""Shared plumbing of the `python -m` entry points: user errors become one line and exit 2."""

from __future__ import annotations

import sys
from typing import Callable


def user_errors() -> tuple[type[BaseException], ...]:
    from recovery_jax.config import ConfigError
    from recovery_jax.rundir import RunError
    return (ConfigError, RunError, FileNotFoundError, ValueError, UnicodeDecodeError)


def guarded(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run main; a user error prints `error: ...` on one line (no traceback) and returns 2.
    Set RECOVERY_JAX_DEBUG=1 to see the traceback."""
    import os
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv) or 0
    except BrokenPipeError:  # output piped into e.g. `head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print("interrupted: a resumable checkpoint and the partial results are in the workdir "
              "(continue with --resume)", file=sys.stderr)
        return 130
    except user_errors() as e:
        if os.environ.get("RECOVERY_JAX_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
