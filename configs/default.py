"""The default run: anticipatory recovery on CPU, offline, in a few minutes.

A from-scratch Pythia-style GPT-NeoX (Pythia-recipe init for its own width and depth) trained
cyclically on T=25 ABC news articles (shipped with gensim), C=128 tokens each, M=10 Adam steps
per document with the Adam state reset at every document (docs/PROTOCOL.md §3 Fig 6; lr 3e-4), E=5 epochs.

Differences from the paper's default (pretrained Pythia-1B, C=256, SGD lr 1e-3), and why: no
pretrained weights exist offline, and plain SGD at lr 1e-3 from scratch learns almost nothing in
10 steps; Adam-reset is the paper's strongest-recovery optimizer. The softmax is restricted to the
tokens present in the 25 documents (data.restrict_vocab), which the run announces when it starts.

    python -m recovery_jax.train --config configs/default.py --workdir runs/demo
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.T, c.C, c.M, c.E = 25, 128, 10, 5
    c.data.source = "news"
    c.data.tokenizer = "neox"
    c.data.restrict_vocab = True
    c.model.arch = "gpt_neox"
    c.model.preset = "pythia-70m"
    c.model.hidden_size = 256
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.intermediate_size = 1024
    c.model.init = "pythia"
    c.optim.name = "adam_reset"
    c.optim.lr = 3e-4
    c.order.kind = "cyclic"
    c.eval.batch = -1  # auto: chunks of 5 documents on CPU (cache-sized, 1.4x faster than all 25), all at once on GPU
    c.checkpoint.every = "epoch"
    return c
