"""Fig 14 (B.3): number of attention heads, from scratch.

docs/PROTOCOL.md §3 Fig 14: width 2048, 16 blocks, from scratch (configs/paper/scratch_1b.py), heads in
{2, 4, 8, 16} (run-train-interleave-cnn-scratch-ablation.sh shows h=2). Loss on x_1. Expected:
little effect.

    python -m recovery_jax.sweep --config configs/paper/fig14.py --workdir runs/paper/fig14 --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "scratch_1b.py")


def get_sweep():
    return {"grid": {"model.num_heads": [2, 4, 8, 16]}, "seeds": [0, 1, 2]}
