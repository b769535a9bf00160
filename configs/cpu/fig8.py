"""CPU counterpart of Fig 8(a-d): gradient cosines, pairwise recovery, weight-residual and activation cosines.

The reduced protocol of configs/cpu/base.py with the probes grads (attention of the middle block,
probes.grad_layer=-1), pairwise (theta* after 4 epochs), weights (exact Gram matrix of all weight
states; 3.3M parameters x 61 states fit in memory) and activations of x_1. Figures:
python -m recovery_jax.report runs/cpu/fig8/seed=0 --out runs/cpu/fig8/report.

    python -m recovery_jax.sweep --config configs/cpu/fig8.py --workdir runs/cpu/fig8 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.probes.names = "grads,pairwise,weights,activations"
    c.probes.doc = 0
    c.probes.epoch = 4
    c.probes.grad_layer = -1
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
