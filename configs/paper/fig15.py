"""Fig 15 (B.4): initialization scheme of a random-init Pythia-1B.

docs/PROTOCOL.md §3 Fig 15: the Pythia recipe (small_init / wang_init; model.init="pythia") vs an isotropic
Gaussian sigma=0.02 (HF's default without the rescale; model.init="normal"). Also
"pythia_1b_hardcoded", the authors' train_interleave.py rescale with d=2048, L=16 hard-coded,
identical to "pythia" for the 1B shape. Loss on x_1. Expected: Pythia init gives much lower loss and
stronger recovery.

    python -m recovery_jax.sweep --config configs/paper/fig15.py --workdir runs/paper/fig15 --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "scratch_1b.py")


def get_sweep():
    return {"grid": {"model.init": ["pythia", "normal"]}, "seeds": [0, 1, 2]}
