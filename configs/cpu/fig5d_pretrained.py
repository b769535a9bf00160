"""CPU counterpart of Fig 5(d) with pretrained blocks: freeze the embedding and the first B of 4 blocks of
the offline-pretrained model (configs/pretrain/neox_small.py), B = 0 / 1 / 2 / 3.

configs/cpu/fig5d.py freezes *random* blocks of a from-scratch model and finds RS rising with B; the paper
freezes pretrained blocks and finds RS falling (about 8 trainable blocks needed). This is the paper's test
at CPU scale: the frozen blocks hold pretrained features. Measured (3 seeds): RS 0.444 / 0.226 / 0.140 / 0.083 for
B = 0 / 1 / 2 / 3 -- falls, as in the paper.

    python -m recovery_jax.pretrain --config configs/pretrain/neox_small.py --workdir runs/pretrain/neox_small
    python -m recovery_jax.sweep --config configs/cpu/fig5d_pretrained.py --workdir runs/cpu/fig5d_pretrained
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "fig2a.py")  # the pretrained 4 x 256 model on the CPU protocol


def get_sweep():
    return {"grid": {"optim.freeze_first": [0, 1, 2, 3]}, "seeds": [0, 1, 2]}
