"""CPU counterpart of Fig 19b: a long context needs more steps.

The reduced protocol of configs/cpu/base.py at C=128 (2x the base; the paper 1024 = 4x its
default) with M in {10, 20, 40}. Read off: RS at C=128 rising with M towards the base's RS at
C=64, M=10 (configs/cpu/fig1.py).

    python -m recovery_jax.sweep --config configs/cpu/fig19b.py --workdir runs/cpu/fig19b --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.C = 128
    return c


def get_sweep():
    return {"grid": {"M": [10, 20, 40]}, "seeds": [0, 1, 2]}
