"""CPU counterpart of Fig 19a: more, smaller steps (M with inverse learning-rate scaling).

The reduced protocol of configs/cpu/base.py with (M, Adam-reset lr) = (1, 3e-3), (5, 6e-4),
(10, 3e-4), (20, 1.5e-4): lr * M constant (a sweep "zip"; equivalently optim.lr=3e-4,
optim.lr_ref_M=10 and a grid over M). With Adam the step size is ~lr per step, so lr*M is the
total movement. Read off: RS rising with M at a fixed total update.

    python -m recovery_jax.sweep --config configs/cpu/fig19a.py --workdir runs/cpu/fig19a --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"zip": {"M": [1, 5, 10, 20], "optim.lr": [3e-3, 6e-4, 3e-4, 1.5e-4]}, "seeds": [0, 1, 2]}
