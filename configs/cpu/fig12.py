"""CPU counterpart of Fig 12: partial random shuffling.

The reduced protocol of configs/cpu/base.py (T=12); every epoch x_1 stays first, x_2..x_N are
re-shuffled and x_{N+1}..x_12 stay fixed, N in {4, 8, 11} (the paper, T=25: N in {8, 16, 24}).
N=11 keeps only x_12 -> x_1 fixed. The end points are in configs/cpu/fig1.py: cyclic (no shuffle)
and shuffled (N=T). Read off: RS falling with N, some recovery left at N=11.

    python -m recovery_jax.sweep --config configs/cpu/fig12.py --workdir runs/cpu/fig12 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.order.kind = "partial"
    c.order.shuffle_n = 4
    return c


def get_sweep():
    return {"grid": {"order.shuffle_n": [4, 8, 11]}, "seeds": [0, 1, 2]}
