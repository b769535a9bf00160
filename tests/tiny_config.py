"""A tiny run config for end-to-end tests (seconds, not minutes).

    python -m recovery_jax.train --config tests/tiny_config.py --workdir /tmp/tiny
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.T, c.C, c.M, c.E = 4, 16, 2, 3
    c.data.source = "news"
    c.data.tokenizer = "neox"
    c.data.restrict_vocab = True
    c.model.preset = "pythia-70m"
    c.model.hidden_size = 32
    c.model.num_layers = 2
    c.model.num_heads = 2
    c.model.intermediate_size = 64
    c.optim.name = "adam_reset"
    c.optim.lr = 1e-3
    c.checkpoint.every = "episode"
    c.progress = False
    return c
