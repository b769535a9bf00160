"""A tiny image run for end-to-end tests (seconds): Image GPT from scratch on 4x4 crops of scikit-image photos,
colour clusters by k-means. Classifier runs override model.arch/preset and data.source (tests/test_vision.py).

    python -m recovery_jax.train --config tests/tiny_vision_config.py --workdir /tmp/tiny_vision
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.T, c.C, c.M, c.E = 4, 16, 2, 3
    c.data.source = "skimage"
    c.data.crops_per_image = 4
    c.model.arch = "imagegpt"
    c.model.preset = "imagegpt-tiny"
    c.model.init = "normal"
    c.model.hidden_size = 32
    c.model.num_layers = 1
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.checkpoint.every = "episode"
    c.progress = False
    return c
