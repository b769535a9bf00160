"""Run `python -m recovery_jax.train ARGS` with a stop signal sent at one named point of the run.

    python tests/signal_driver.py POINT SIGNAL -- --config ... --workdir ...

POINT: data (while the documents are prepared), compile (while XLA compiles), episode:K (while episode K
runs), epoch_end (at the first epoch end, before the partial results are written), checkpoint (inside the
first checkpoint write). SIGNAL: INT or TERM. The signal is sent by the process to itself at that point, so
the tests hit each point exactly; what the handler then does is the real code path.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import ExitStack
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def patches(point: str, signum: int) -> ExitStack:
    """Context that sends `signum` to this process once, at `point`."""
    from recovery_jax import checkpoint, runner

    sent = []

    def fire():
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signum)

    def before(fn):
        def wrapped(*a, **k):
            fire()
            return fn(*a, **k)
        return wrapped

    stack = ExitStack()
    if point == "data":
        stack.enter_context(mock.patch.object(runner, "prepare_data", before(runner.prepare_data)))
    elif point == "compile":
        import jax.stages
        stack.enter_context(mock.patch.object(jax.stages.Lowered, "compile", before(jax.stages.Lowered.compile)))
    elif point.startswith("episode:"):
        k_at = int(point.split(":")[1])
        real_episodes = runner.episodes

        def episodes(p, hooks):
            real = p.episode
            calls = [p.start_k]

            def episode(*a):
                calls[0] += 1
                if calls[0] == k_at:
                    fire()  # lands while episode k's compiled program runs
                return real(*a)
            p.episode = episode
            return real_episodes(p, hooks)
        stack.enter_context(mock.patch.object(runner, "episodes", episodes))
    elif point == "epoch_end":
        stack.enter_context(mock.patch.object(runner.Hooks, "report_recovery", before(runner.Hooks.report_recovery)))
    elif point == "checkpoint":
        stack.enter_context(mock.patch.object(checkpoint.Checkpointer, "save_run",
                                              before(checkpoint.Checkpointer.save_run)))
    else:
        raise SystemExit(f"unknown point {point!r}")
    return stack


def main(argv: list[str]) -> int:
    point, sig, sep, *rest = argv
    assert sep == "--"
    from recovery_jax import cli, train
    with patches(point, {"INT": signal.SIGINT, "TERM": signal.SIGTERM}[sig]):
        return cli.guarded(train.main, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
