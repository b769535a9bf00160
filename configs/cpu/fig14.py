"""CPU counterpart of Fig 14: number of attention heads.

The reduced protocol of configs/cpu/base.py (4 x 256) with heads in {1, 2, 4, 8} (head sizes 256..32;
the rotary 25% stays even). Read off: little effect (the paper: small effect).

    python -m recovery_jax.sweep --config configs/cpu/fig14.py --workdir runs/cpu/fig14 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"model.num_heads": [1, 2, 4, 8]}, "seeds": [0, 1, 2]}
