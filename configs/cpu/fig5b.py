"""CPU counterpart of Fig 5(b): gradient steps per document M.

The reduced protocol of configs/cpu/base.py (Adam-reset 3e-4) with M in {1, 5, 10, 20}, the paper's
grid. Read off: RS rising with M; none or little at M=1.

    python -m recovery_jax.sweep --config configs/cpu/fig5b.py --workdir runs/cpu/fig5b --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"M": [1, 5, 10, 20]}, "seeds": [0, 1, 2]}
