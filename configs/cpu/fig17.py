"""CPU counterpart of Fig 17: cosine learning-rate schedule over 10 epochs.

The reduced protocol of configs/cpu/base.py with E=10 and the Adam-reset lr 3e-4 decayed to 0 by a
per-step cosine over the whole run (the Adam state is still reset per document). Read off: RS of
the later cycles stays > 0 while the lr decays.

    python -m recovery_jax.sweep --config configs/cpu/fig17.py --workdir runs/cpu/fig17 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.E = 10
    c.optim.schedule = "cosine"
    c.optim.min_lr = 0.0
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
