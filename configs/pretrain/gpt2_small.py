"""Pretrain the GPT-2 counterpart of the CPU protocol's model (configs/cpu/fig20.py: GPT-2 4 blocks x 256, 4 heads,
MLP 1024, GPT-2 init, the GPT-2 tokenizer's 50257 tokens) on the offline Wikipedia sample and ABC news, the same
held-out documents as configs/pretrain/neox_small.py (recovery_jax/pretrain.py), for a pretrained Fig 20.

    python -m recovery_jax.pretrain --config configs/pretrain/gpt2_small.py --workdir runs/pretrain/gpt2_small
"""

from recovery_jax.config import derive
from recovery_jax.pretrain import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.model = derive(__file__, "../cpu/fig20.py").model  # the GPT-2 the Fig 20 runs train, one definition
    c.data.sources = "wiki,news"
    c.data.tokenizer = "gpt2"
    c.data.seq_len = 128
    c.train.steps = 600
    c.train.batch = 16
    c.train.lr = 2e-3
    c.train.warmup = 30
    c.save.steps = "0,30,100,300"
    return c
