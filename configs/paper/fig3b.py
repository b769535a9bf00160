"""Fig 3(b): depth (number of transformer blocks), from scratch.

docs/PROTOCOL.md §3 Fig 3: Pythia-1B config from scratch (configs/paper/scratch_1b.py: 2048 wide,
8 heads, MLP 8192), num_layers varied. Expected: noticeable recovery needs >= 8 blocks. The grid
is UNCONFIRMED ("spanning <= 4 to 16"); chosen: 2, 4, 8, 12, 16. The Pythia init's output
projections scale with the actual depth (2/(L sqrt(d))).

    python -m recovery_jax.sweep --config configs/paper/fig3b.py --workdir runs/paper/fig3b --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "scratch_1b.py")


def get_sweep():
    return {"grid": {"model.num_layers": [2, 4, 8, 12, 16]}, "seeds": [0, 1, 2]}
