"""Fig 2(a): model size, pretrained — RS of epoch 4 against size.

docs/PROTOCOL.md §3 Fig 2a: pretrained Pythia 160M, 410M, 1B, 1.4B, 2.8B; defaults otherwise (T=25,
C=256, M=10, E=5, SGD 1e-3). Expected: RS rises with size, with a sharp jump 160M -> 410M.

    python -m recovery_jax.sweep --config configs/paper/fig2a.py --workdir runs/paper/fig2a --report
"""

from recovery_jax.config import derive

SIZES = ["160m", "410m", "1b", "1.4b", "2.8b"]


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {
        "zip": {"model.preset": [f"pythia-{s}" for s in SIZES],
                "model.hf_path": [f"EleutherAI/pythia-{s}" for s in SIZES],
                "data.tokenizer": [f"EleutherAI/pythia-{s}" for s in SIZES]},
        "seeds": [0, 1, 2],
    }
