"""Fig 7(b), ViT: ImageNet classification in 25 fixed batches of 32, cyclic vs shuffled.

The protocol of configs/paper/fig7b_vgg.py (docs/PROTOCOL.md §3 Fig 7(b): 800 ImageNet training images in T=25
fixed batches of 32, resize 256 / centre crop 224, M=10, a new Adam 1e-4 per batch, train mode for updates, eval
mode for the losses, E=5) with a ViT. The paper does not say which ViT (docs/PROTOCOL.md §8); the authors' script
has torchvision's vit_b_32 commented out. Here: google/vit-base-patch16-224 from the hub (ImageNet-21k
pretraining, ImageNet-1k fine-tuning at 224: it has the 1000-class head the protocol trains; the B/32 google
checkpoint on the hub is 21k-only, without that head), with that checkpoint's own input scale (mean = std = 0.5,
data.normalize="half"; the torchvision ViT used ImageNet's mean/std: --config.data.normalize=imagenet). Its dropout
rates are 0, so train and eval mode compute the same function.

Needs the ImageNet training images (one folder per class) and an accelerator:

    python -m recovery_jax.sweep --config configs/paper/fig7b_vit.py --workdir runs/paper/fig7b_vit \\
        --config.data.path=/path/to/ILSVRC2012/train --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "fig7b_vgg.py")
    c.data.normalize = "half"
    c.model.arch = "vit"
    c.model.preset = "vit-base-patch16-224"
    c.model.hf_path = "google/vit-base-patch16-224"
    return c


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": [0, 1, 2]}
