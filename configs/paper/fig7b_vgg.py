"""Fig 7(b), VGG-19: ImageNet classification in 25 fixed batches of 32, cyclic vs shuffled.

docs/PROTOCOL.md §3 Fig 7(b), as the authors' imagenet-experiments/exp_imagenet.py runs it: torchvision's
pretrained VGG-19 (VGG19_Weights.DEFAULT; here the same weights from the hub as timm/vgg19.tv_in1k, read by
recovery_jax.models.vgg), an ImageFolder over the ImageNet training directory (every image converted to RGB, as
torchvision's loader does: data.gray_to_rgb), 800 random images in T=25 fixed batches of 32 (one batch per task),
the weights' transforms (shorter side resized to 256, centre crop 224, ImageNet mean/std), cross-entropy on the
true labels, M=10 steps per batch with a new Adam (lr 1e-4) for every batch (adam_reset), train mode for the
updates (VGG's two dropouts at 0.5: model.dropout="from_hf") and eval mode for the 25 batch losses, E=5.
Expected: recovery (weaker than for LLMs).

Needs the ImageNet training images (one folder per class, torchvision's layout) and an accelerator:

    python -m recovery_jax.sweep --config configs/paper/fig7b_vgg.py --workdir runs/paper/fig7b_vgg \\
        --config.data.path=/path/to/ILSVRC2012/train --report
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.T, c.M, c.E = 25, 10, 5
    c.data.source = "imagefolder"
    c.data.path = "imagenet/train"  # the ImageNet training folder: set with --config.data.path
    c.data.split = "train"
    c.data.batch_size = 32
    c.data.resize = 256
    c.data.image_size = 224
    c.data.normalize = "imagenet"
    c.data.gray_to_rgb = True
    c.model.arch = "vgg"
    c.model.preset = "vgg19"
    c.model.init = "pretrained"
    c.model.hf_path = "timm/vgg19.tv_in1k"
    c.model.revision = "main"
    c.model.dropout = "from_hf"
    c.model.dtype = "float32"
    c.optim.name = "adam_reset"
    c.optim.lr = 1e-4
    c.order.kind = "cyclic"
    c.checkpoint.every = "epoch"
    return c


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": [0, 1, 2]}
