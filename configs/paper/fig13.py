"""Fig 13 (B.2): one gradient step per document with a larger learning rate.

docs/PROTOCOL.md §3 Fig 13: M=1 with SGD lr 0.01 (vs 0.001 in Fig 5b, where M=1 shows no anticipation).
Expected: slight anticipation. Variants: lr 0.01 (the figure) and lr 0.001 (the Fig 5b control).

    python -m recovery_jax.sweep --config configs/paper/fig13.py --workdir runs/paper/fig13 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.M = 1
    c.optim.lr = 1e-2
    return c


def get_sweep():
    return {"grid": {"optim.lr": [1e-2, 1e-3]}, "seeds": [0, 1, 2]}
