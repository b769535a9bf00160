"""CPU counterpart of Fig 3(a): width, from scratch.

The reduced protocol of configs/cpu/base.py (4 layers, 4 heads) with hidden_size in {32, 64, 128,
256}. As in the paper (its MLP stays 8192 at every width, docs/PROTOCOL.md §5.5) the MLP width stays at the
base model's 1024. Width 512 (4x the compute of 256) is left out of the CPU budget:
add it with --config.model.hidden_size=512 (a pinned one-value sweep). Read off: RS rising with
width; the paper's threshold (>= 512 of 2048) has no absolute meaning at this scale.

    python -m recovery_jax.sweep --config configs/cpu/fig3a.py --workdir runs/cpu/fig3a --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"model.hidden_size": [32, 64, 128, 256]}, "seeds": [0, 1, 2]}
