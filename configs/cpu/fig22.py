"""CPU counterpart of Fig 22: magnitude of activation and weight updates between episodes.

The reduced protocol of configs/cpu/base.py with E=4 (the paper: 4 epochs) and the probes
activations (x_1's final hidden states) and weights. Expected (paper): activation changes
stepwise per epoch, weight changes decreasing monotonically.

    python -m recovery_jax.sweep --config configs/cpu/fig22.py --workdir runs/cpu/fig22 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.E = 4
    c.probes.names = "activations,weights"
    c.probes.doc = 0
    c.probes.epoch = 4
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
