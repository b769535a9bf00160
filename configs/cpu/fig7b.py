"""CPU counterpart of Fig 7(b): image classification in fixed batches, ViT and VGG, cyclic vs shuffled.

docs/PROTOCOL.md §3 Fig 7(b) fine-tunes pretrained ViT and VGG-19 on 25 fixed batches of 32 ImageNet images
(configs/paper/fig7b_vit.py, fig7b_vgg.py). Offline and on 2 cores: scikit-learn's digits (1797 8 x 8 grayscale
images, 10 classes; the gray channel repeated to RGB, ImageNet normalisation), T=25 fixed batches of 32 (800
images per seed), into a tiny ViT (2 layers x 64, 2 x 2 patches; vit-tiny) and a tiny VGG (two conv stages of 8
and 16 channels, a 64-wide classifier with dropout 0.5; vgg-tiny), both from scratch. The authors' loop
otherwise: M=10 steps per batch, a new Adam for every batch (adam_reset), train mode (dropout on) for the
updates and eval mode for the 25 batch losses, E=5. The Adam rate is 1e-3 instead of the paper's 1e-4 (a
from-scratch model at 1e-4 barely moves in 10 steps). Read off: the RS of the last cycle, cyclic vs shuffled,
for each architecture.

    python -m recovery_jax.sweep --config configs/cpu/fig7b.py --workdir runs/cpu/fig7b
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.T, c.M, c.E = 25, 10, 5
    c.data.source = "digits"
    c.data.gray_to_rgb = True
    c.data.batch_size = 32
    c.data.image_size = 8
    c.data.normalize = "imagenet"
    c.model.arch = "vit"
    c.model.preset = "vit-tiny"
    c.model.init = "normal"
    c.model.dropout = "from_hf"
    c.optim.name = "adam_reset"
    c.optim.lr = 1e-3
    c.checkpoint.every = "epoch"
    return c


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}},
            "zip": {"model.arch": ["vit", "vgg"], "model.preset": ["vit-tiny", "vgg-tiny"]},
            "seeds": [0, 1, 2]}
