"""Fig 2(b): model size, random initialization (Pythia recipe).

docs/PROTOCOL.md §3 Fig 2b / §1.4: the authors load Pythia's own initial weights, the hub revision
`step0` (run-train-interleave-cnn-scratch.sh), which is what this file does. The size list is
UNCONFIRMED; chosen: the five sizes of Fig 2a. Offline alternative (reading (b) of docs/PROTOCOL.md §1.4, per-size
rescaling of N(0, 0.02)): --config.model.init=pythia (or pythia_1b_hardcoded for the authors'
hard-coded d=2048, L=16 scaling). Expected: recovery present (410M, 1B), weaker than pretrained,
growing with size.

    python -m recovery_jax.sweep --config configs/paper/fig2b.py --workdir runs/paper/fig2b --report
"""

from recovery_jax.config import derive

SIZES = ["160m", "410m", "1b", "1.4b", "2.8b"]


def get_config():
    c = derive(__file__, "base.py")
    c.model.revision = "step0"
    return c


def get_sweep():
    return {
        "zip": {"model.preset": [f"pythia-{s}" for s in SIZES],
                "model.hf_path": [f"EleutherAI/pythia-{s}" for s in SIZES],
                "data.tokenizer": [f"EleutherAI/pythia-{s}" for s in SIZES]},
        "seeds": [0, 1, 2],
    }
