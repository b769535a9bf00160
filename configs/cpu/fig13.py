"""CPU counterpart of Fig 13: one step per document with a larger learning rate.

The reduced protocol of configs/cpu/base.py with M=1 and Adam-reset lr in {3e-4 (base), 3e-3}
(the paper: SGD 1e-3 vs 1e-2). Read off: a little anticipation with the larger lr.

    python -m recovery_jax.sweep --config configs/cpu/fig13.py --workdir runs/cpu/fig13 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.M = 1
    return c


def get_sweep():
    return {"grid": {"optim.lr": [3e-4, 3e-3]}, "seeds": [0, 1, 2]}
