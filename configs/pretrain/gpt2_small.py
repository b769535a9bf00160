"""Pretrain the GPT-2 counterpart of the CPU protocol's model (configs/cpu/fig20.py: GPT-2 4 blocks x 256, 4 heads,
MLP 1024, GPT-2 init, the GPT-2 tokenizer's 50257 tokens) on the offline Wikipedia sample and ABC news, the same
held-out documents as configs/pretrain/neox_small.py (recovery_jax/pretrain.py), for the "pretrained" variant of
Fig 20. 300 steps (0.6M tokens), half of neox_small's 600: the whole reproduction (both pretrainings included)
has a 2-hour budget on 2 cores, and Fig 20 asks only whether a pretrained GPT-2 recovers, not how recovery
depends on pretraining (that is Fig 16, with the NeoX revisions).

    python -m recovery_jax.pretrain --config configs/pretrain/gpt2_small.py --workdir runs/pretrain/gpt2_small
"""

from recovery_jax.config import derive
from recovery_jax.pretrain import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.model = derive(__file__, "../cpu/fig20.py").model  # the GPT-2 the Fig 20 runs train, one definition
    c.model.hf_path = ""  # fig20.py's pretrained variant loads what this writes; pretraining starts from scratch
    c.data.sources = "wiki,news"
    c.data.tokenizer = "gpt2"
    c.data.seq_len = 128
    c.train.steps = 300  # 16 x 128 tokens a step: 0.6M tokens, ~1.3 passes over the training tokens
    c.train.batch = 16
    c.train.lr = 2e-3
    c.train.warmup = 30
    c.save.steps = "0,30,100"  # and 300
    return c
