"""CPU counterpart of Fig 2(a) (model size, pretrained): not possible offline; the size sweep runs from scratch.

Pretrained Pythia weights need the hub, so on CPU the size comparison is the from-scratch sweep of
configs/cpu/fig2b.py (2x64 ... 4x256, Pythia init). What this cannot show: the paper's gap between
pretrained and random-init models and the "emergent" jump from 160M to 410M pretrained.

    python -m recovery_jax.sweep --config configs/cpu/fig2a.py --workdir runs/cpu/fig2a --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "fig2b.py")


def get_sweep():
    return {"zip": {"model.num_layers": [2, 2, 4, 4],
                    "model.hidden_size": [64, 128, 128, 256],
                    "model.intermediate_size": [256, 512, 512, 1024]},
            "seeds": [0, 1, 2]}
