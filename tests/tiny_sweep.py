"""A tiny sweep (cyclic vs shuffled x 2 seeds) for tests of grouping and of the sweep benchmark.

    python -m recovery_jax.sweep --config tests/tiny_sweep.py --workdir /tmp/tiny_sweep
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "tiny_config.py")
    c.T, c.E = 3, 2
    c.checkpoint.every = "epoch"
    return c


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": [0, 1]}
