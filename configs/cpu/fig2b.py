"""CPU counterpart of Fig 2(b) (model size, random init) — and of Fig 2(a) (see fig2a.py).

A size sweep of small from-scratch GPT-NeoX models with the Pythia init recipe at their own width
and depth (the offline stand-in for the Pythia suite's step0 weights), on the reduced protocol of
configs/cpu/base.py. Sizes (layers x width, heads 4, MLP 4x width): 2x64, 2x128, 4x128, 4x256
(~0.1M to 3.2M non-embedding parameters). Read off: RS of the last cycle rising with size.

    python -m recovery_jax.sweep --config configs/cpu/fig2b.py --workdir runs/cpu/fig2b --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"zip": {"model.num_layers": [2, 2, 4, 4],
                    "model.hidden_size": [64, 128, 128, 256],
                    "model.intermediate_size": [256, 512, 512, 1024]},
            "seeds": [0, 1, 2]}
