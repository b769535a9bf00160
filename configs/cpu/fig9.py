"""CPU counterpart of Fig 9: PCA of the output-embedding weights over the first 3 epochs.

The reduced protocol of configs/cpu/base.py with the embed_out probe over the first 3 epochs
(probes.max_episodes = 3 T = 36). Expected (paper): a converging helix, one turn per epoch.

    python -m recovery_jax.sweep --config configs/cpu/fig9.py --workdir runs/cpu/fig9 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.probes.names = "embed_out"
    c.probes.max_episodes = 36
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
