"""CPU counterpart of Fig 6(b): optimizers on a pretrained model.

The offline-pretrained 4 x 256 model (configs/pretrain/neox_small.py) on the CPU protocol, fine-tuned with
Adam reset at every document (lr 3e-4, the base) or plain SGD (lr 0.1, no momentum: the from-scratch
calibration of configs/cpu/fig6.py, kept so that panels (a) and (b) differ only in the initial weights).
The paper: Adam-reset gives clearly more recovery than GD on pretrained models too. Measured (3 seeds): Adam-reset
0.444 ± 0.033, SGD 0.154 ± 0.033.

    python -m recovery_jax.pretrain --config configs/pretrain/neox_small.py --workdir runs/pretrain/neox_small
    python -m recovery_jax.sweep --config configs/cpu/fig6b.py --workdir runs/cpu/fig6b --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "fig2a.py")


def get_sweep():
    return {"variants": {"adam_reset": {}, "sgd": {"optim.name": "sgd", "optim.lr": 0.1}}, "seeds": [0, 1, 2]}
