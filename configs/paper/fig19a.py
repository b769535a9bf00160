"""Fig 19a (B.8): more, smaller steps — M with inverse learning-rate scaling.

docs/PROTOCOL.md §3 Fig 19a: (M, lr) = (1, 0.01), (5, 0.002), (10, 0.001), (20, 0.0005), the same total
update split into more steps (a sweep "zip"; equivalently optim.lr=1e-3 with optim.lr_ref_M=10 and a
grid over M). Expected: more, smaller steps give more anticipation.

    python -m recovery_jax.sweep --config configs/paper/fig19a.py --workdir runs/paper/fig19a --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"zip": {"M": [1, 5, 10, 20], "optim.lr": [1e-2, 2e-3, 1e-3, 5e-4]}, "seeds": [0, 1, 2]}
