"""CPU counterpart of Fig 23: pairwise recovery matrices for longer cycles.

The reduced protocol of configs/cpu/base.py with the pairwise probe after 4 epochs and T in
{12, 24} (the paper: 50, 100, 200 with the 1B model). Expected (paper): as T grows the bright
centre splits into two blobs with a border of documents without recovery.

    python -m recovery_jax.sweep --config configs/cpu/fig23.py --workdir runs/cpu/fig23 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.probes.names = "pairwise"
    c.probes.epoch = 4
    return c


def get_sweep():
    return {"grid": {"T": [12, 24]}, "seeds": [0, 1, 2]}
