"""Stop signals as a flag read at safe points, never as an exception inside JAX work.

An exception raised by a signal handler while XLA compiles or a JAX callback runs can crash the process
(SIGSEGV at teardown with compiler threads alive) or be swallowed by the callback. So the first SIGINT or
SIGTERM only sets a flag; the run reads it where its state is consistent (between phases, after an episode)
and stops there with a message true to what is on disk. A second signal stops at once (os._exit): the run
directory's files are written atomically, so it still holds the last checkpoint and partial results.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(KeyboardInterrupt):
    """A stop on a signal; `message` says what is on disk, `code` is the exit status (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.message = message
        self.code = code


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM set `signum` instead of raising. Nested use is a no-op."""

    _active: "StopSignals | None" = None

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}
        self._outer: StopSignals | None = None

    def __enter__(self) -> "StopSignals":
        if StopSignals._active is not None:  # an entry point installed it already: share its flag
            self._outer = StopSignals._active
            return self._outer
        try:
            for s in EXIT_CODES:
                self._old[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread: leave signals to the caller
            self._old.clear()
            return self
        StopSignals._active = self
        return self

    def __exit__(self, *exc) -> None:
        if self._outer is not None:
            return
        for s, old in self._old.items():
            signal.signal(s, old)
        if StopSignals._active is self:
            StopSignals._active = None

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:
            print(f"interrupted again: stopping at once; files already written in the run directory are "
                  f"intact (continue with --resume where a checkpoint exists)", file=sys.stderr, flush=True)
            os._exit(EXIT_CODES.get(signum, 130))
        self.signum = signum

    @property
    def hit(self) -> bool:
        return self.signum is not None

    @property
    def code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)

    def check(self, message: str) -> None:
        """Raise Interrupted(message) if a stop signal has arrived."""
        if self.hit:
            raise Interrupted(message, self.code)
