"""The paper's default setting (docs/PROTOCOL.md §3 preamble); every configs/paper/ file starts here.

Pretrained Pythia-1B (hub EleutherAI/pythia-1b, revision main = step143000), CNN/DailyMail 3.0.0
train split through TensorFlow Datasets (`article` field), the model's own GPT-NeoX-20B tokenizer
(offline the same as "neox"), embeddings truncated to its 50277 tokens, fp32, cyclic order,
T=25 documents, first C=256 tokens, M=10 plain-SGD steps (lr 1e-3, no momentum) per document,
E=5 epochs, evaluation of all T documents after every episode.

Choices the paper leaves open (docs/PROTOCOL.md §8), made here:
- data.min_tokens=2: the authors sample documents with no length filter and right-pad them (only
  documents with at least one target token are kept); our default would require >= C tokens.
- 3 seeds (the paper: "3-5 trials"); a seed fixes document sample, order and shuffles.

Needs network (hub weights, tfds download) and an accelerator:

    python -m recovery_jax.train --config configs/paper/base.py --workdir runs/paper/base
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.T, c.C, c.M, c.E = 25, 256, 10, 5
    c.data.source = "cnn_dailymail"
    c.data.split = "train"
    c.data.tokenizer = "EleutherAI/pythia-1b"
    c.data.min_tokens = 2
    c.data.restrict_vocab = False
    c.model.arch = "gpt_neox"
    c.model.preset = "pythia-1b"
    c.model.init = "pretrained"
    c.model.hf_path = "EleutherAI/pythia-1b"
    c.model.revision = "main"
    c.model.truncate_vocab = True
    c.model.dtype = "float32"
    c.optim.name = "sgd"
    c.optim.lr = 1e-3
    c.optim.schedule = "constant"
    c.order.kind = "cyclic"
    c.checkpoint.every = "epoch"
    return c
