"""Pretrain the CPU protocol's model (configs/cpu/base.py: GPT-NeoX 4 blocks x 256, 4 heads, MLP 1024, Pythia
init, the NeoX tokenizer's 50277 tokens) on the offline Wikipedia sample and ABC news, documents that CPU runs
may use held out (recovery_jax/pretrain.py). Revisions step0 ... final, like Pythia's, for the pretrained
CPU configs (configs/cpu/fig2a.py, fig5d_pretrained.py, fig6b.py, fig16.py).

    python -m recovery_jax.pretrain --config configs/pretrain/neox_small.py --workdir runs/pretrain/neox_small
"""

from recovery_jax.config import derive
from recovery_jax.pretrain import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.model = derive(__file__, "../cpu/base.py").model  # the model the CPU runs train, one definition
    c.data.sources = "wiki,news"
    c.data.tokenizer = "neox"
    c.data.seq_len = 128
    c.train.steps = 600  # 16 x 128 tokens a step: 1.2M tokens, ~2.7 passes over the 0.46M training tokens
    c.train.batch = 16
    c.train.lr = 2e-3
    c.train.warmup = 30
    c.save.steps = "0,30,100,300"  # and 600: the revisions of Fig 16
    return c
