"""CPU counterpart of Fig 5(a): number of documents T.

The reduced protocol of configs/cpu/base.py with T in {6, 12, 24} (the paper: 10..200). Read off:
recovery at every T (RS > 0); the paper finds it even at T=200.

    python -m recovery_jax.sweep --config configs/cpu/fig5a.py --workdir runs/cpu/fig5a --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"T": [6, 12, 24]}, "seeds": [0, 1, 2]}
