"""Fig 8(a-d): gradient cosines, pairwise recovery, weight-residual cosines, activation cosines.

docs/PROTOCOL.md §2.6-2.9 and §3 "Section 4 visualizations": pretrained Pythia-410M (the Section 4
default), T=25, defaults otherwise. Probes (recovery_jax/probes.py):
- grads (Fig 8a): per-document gradients of the attention weights of block probes.grad_layer after
  probes.epoch=4 epochs. "Block 12" and which tensor are UNCONFIRMED; chosen: grad_layer=12
  (0-indexed, i.e. the 13th of 24 blocks, the middle) and all of that block's attention parameters.
- pairwise (Fig 8b): R[i,j] = L_j(theta*) - L_j(theta* after M steps on x_i), theta* after 4 epochs.
- weights (Fig 8c): Gram matrix of all weight states (CountSketch to 2^20 dimensions: 101 exact
  410M-parameter states would need 165 GB of host memory).
- activations (Fig 8d, and Fig 22a): final hidden states of x_1 (probes.doc=0) after every episode.

    python -m recovery_jax.sweep --config configs/paper/fig8.py --workdir runs/paper/fig8 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.model.preset = "pythia-410m"
    c.model.hf_path = "EleutherAI/pythia-410m"
    c.data.tokenizer = "EleutherAI/pythia-410m"
    c.probes.names = "grads,pairwise,weights,activations"
    c.probes.doc = 0
    c.probes.epoch = 4
    c.probes.grad_layer = 12
    c.probes.sketch_dim = 2 ** 20
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
