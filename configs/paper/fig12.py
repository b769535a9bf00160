"""Fig 12 (B.1): partial random shuffling.

docs/PROTOCOL.md §3 Fig 12 (train_interleave_rev.py --start-shuffle-data-samples N): T=25; every epoch
x_1 stays first, x_2..x_N are re-shuffled, x_{N+1}..x_T stay fixed; N in {8, 16, 24}. Loss on x_1.
Expected: some recovery even at N=24 (only the fixed x_25 -> x_1 transition remains).

    python -m recovery_jax.sweep --config configs/paper/fig12.py --workdir runs/paper/fig12 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.order.kind = "partial"
    c.order.shuffle_n = 8
    return c


def get_sweep():
    return {"grid": {"order.shuffle_n": [8, 16, 24]}, "seeds": [0, 1, 2]}
