"""CPU counterpart of Fig 3(b): depth, from scratch.

The reduced protocol of configs/cpu/base.py (width 256, 4 heads, MLP 1024) with num_layers in
{1, 2, 4, 6}; the Pythia init scales the output projections with the actual depth. Read off: RS
rising with depth (the paper: >= 8 of 16 blocks needed). Measured (3 seeds): 0.07 / 0.50 / 0.57 / 0.53:
one block has almost none, two or more recover, no gain beyond 4 (docs/REPRODUCTION.md).

    python -m recovery_jax.sweep --config configs/cpu/fig3b.py --workdir runs/cpu/fig3b --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"model.num_layers": [1, 2, 4, 6]}, "seeds": [0, 1, 2]}
