"""Fig 7(a): causal image modelling with Image GPT, cyclic vs shuffled.

docs/PROTOCOL.md §3 Fig 7(a), as the authors' igpt-experiments/train_interleave_igpt.py runs it: Image GPT-small
pretrained on ImageNet at 32 x 32 (hub openai/imagegpt-small), CIFAR-100 train images through TensorFlow Datasets
(the paper's text says CIFAR-10; the released code implements CIFAR-100 only, docs/PROTOCOL.md §5.2), T=25 random
images (one per task, batch size 1), each quantised to the checkpoint's own 512 colour clusters (its
preprocessor_config.json) = C=1024 colour tokens; labels = input_ids with no start token prepended (so the loss is
the mean over the 1023 next-pixel predictions), M=10 steps per image, E=5 epochs, one Adam (lr 1e-3) created once
and never reset (optim.name="adam"), dropout off (the model was never put in train mode), all T images evaluated
after every task. Expected: recovery is present (the paper's Fig 7a). For Image GPT-medium:
--config.model.preset=imagegpt-medium --config.model.hf_path=openai/imagegpt-medium.

Needs network the first time (hub weights and clusters, tfds download of CIFAR-100) and an accelerator:

    python -m recovery_jax.sweep --config configs/paper/fig7a.py --workdir runs/paper/fig7a --report
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.T, c.C, c.M, c.E = 25, 1024, 10, 5
    c.data.source = "cifar100"
    c.data.split = "train"
    c.data.clusters = ""  # the checkpoint's preprocessor_config.json
    c.model.arch = "imagegpt"
    c.model.preset = "imagegpt-small"
    c.model.init = "pretrained"
    c.model.hf_path = "openai/imagegpt-small"
    c.model.revision = "main"
    c.model.dropout = "off"
    c.model.dtype = "float32"
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.order.kind = "cyclic"
    c.checkpoint.every = "epoch"
    return c


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": [0, 1, 2]}
