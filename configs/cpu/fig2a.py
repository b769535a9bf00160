"""CPU counterpart of Fig 2(a) vs 2(b): the same model pretrained or from scratch.

The model of configs/cpu/base.py (GPT-NeoX 4 x 256) pretrained offline on the Wikipedia sample and the
ABC news articles that no CPU run uses (configs/pretrain/neox_small.py: 600 steps, 1.2M tokens), against
the same model from scratch (Pythia init, the seed's own init), on the reduced CPU protocol (T=12, C=64,
M=10, E=5, Adam reset per document, lr 3e-4, softmax over the documents' tokens). The paper: pretrained
models recover more than random-init ones of the same size (Fig 2a vs 2b). The size axis from scratch is
configs/cpu/fig2b.py; one pretrained size is affordable here. Measured (3 seeds): pretrained 0.444 ± 0.033,
scratch 0.574 ± 0.015 -- the weakly pretrained model recovers less (docs/REPRODUCTION.md, row fig2a).

    python -m recovery_jax.pretrain --config configs/pretrain/neox_small.py --workdir runs/pretrain/neox_small
    python -m recovery_jax.sweep --config configs/cpu/fig2a.py --workdir runs/cpu/fig2a --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.model.init = "pretrained"
    c.model.hf_path = "runs/pretrain/neox_small"  # python -m recovery_jax.pretrain (above)
    return c


def get_sweep():
    return {"variants": {"pretrained": {}, "scratch": {"model.init": "pythia"}}, "seeds": [0, 1, 2]}
