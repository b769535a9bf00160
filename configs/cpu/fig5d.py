"""CPU counterpart of Fig 5(d): frozen blocks on a deeper model.

A 6-block x 256 model (else configs/cpu/base.py) with the embedding and the first B blocks frozen
(optim.freeze_first, the paper's --num-frozen-blocks), B in {0, 2, 4} (the paper: 4..12 of 16).
The paper: RS falls as more blocks are frozen. Measured here (3 seeds): it does not (0.53 / 0.62 / 0.58
for B = 0 / 2 / 4): frozen *random* blocks are not the frozen pretrained features of the paper, and
fewer trainable weights also means less forgetting; see docs/REPRODUCTION.md. With *pretrained* blocks frozen
(configs/cpu/fig5d_pretrained.py) RS falls as in the paper.

    python -m recovery_jax.sweep --config configs/cpu/fig5d.py --workdir runs/cpu/fig5d --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.model.num_layers = 6
    return c


def get_sweep():
    return {"grid": {"optim.freeze_first": [0, 2, 4]}, "seeds": [0, 1, 2]}
