"""CPU counterpart of Fig 15: initialization scheme.

The reduced protocol of configs/cpu/base.py with model.init in {pythia (small_init / wang_init at
the model's own width and depth), normal (isotropic N(0, 0.02))}. Read off: the paper finds lower
loss and more recovery with the Pythia init.

    python -m recovery_jax.sweep --config configs/cpu/fig15.py --workdir runs/cpu/fig15 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"model.init": ["pythia", "normal"]}, "seeds": [0, 1, 2]}
