"""Fig 9: PCA of the last-layer weights (embed_out) over the first 3 epochs.

docs/PROTOCOL.md §2.10: pretrained Pythia-1B, T=25, embed_out (50277 x 2048) after each episode of the
first 3 epochs (75 states; probes.max_episodes=75), 3-component PCA from the Gram matrix
(recovery_jax.metrics.pca_from_gram). The states are CountSketch-projected to 2^22 dimensions
(exact: 76 x 103M floats = 31 GB of host memory; sketching is linear, so centred PCA is kept up to
a relative error ~ 2^-11). Expected: a converging helix, one turn per epoch.

    python -m recovery_jax.sweep --config configs/paper/fig9.py --workdir runs/paper/fig9 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.probes.names = "embed_out"
    c.probes.max_episodes = 75
    c.probes.sketch_dim = 2 ** 22
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
