"""CPU counterpart of Fig 7(a): causal image modelling, cyclic vs shuffled.

docs/PROTOCOL.md §3 Fig 7(a) fine-tunes ImageNet-pretrained Image GPT on CIFAR images (configs/paper/fig7a.py).
Offline and on 2 cores this is a tiny Image GPT from scratch (2 layers x 64, 16 colour clusters, 16 x 16 images =
C=256 colour tokens; imagegpt-tiny) on square crops of the RGB photographs shipped in the scikit-image wheel
(9 photos x 16 seeded crops = 144 candidates, T=25 of them per seed). The colour clusters are k-means of the T
images' pixels (the pretrained model's 512 clusters are not available offline). The authors' training loop
otherwise: labels = input_ids (no start token), one image per task, M=10 steps, E=5 epochs, one Adam (lr 1e-3)
created once and never reset, dropout off. Read off: the RS of the last cycle, cyclic vs shuffled.

    python -m recovery_jax.sweep --config configs/cpu/fig7a.py --workdir runs/cpu/fig7a
"""

from recovery_jax.config import base_config


def get_config():
    c = base_config()
    c.seed = 0
    c.T, c.C, c.M, c.E = 25, 256, 10, 5
    c.data.source = "skimage"
    c.data.crops_per_image = 16
    c.model.arch = "imagegpt"
    c.model.preset = "imagegpt-tiny"
    c.model.init = "normal"
    c.model.dropout = "off"
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.checkpoint.every = "epoch"
    return c


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": [0, 1, 2]}
