"""CPU counterpart of Fig 6: Adam with the state reset at every document vs Adam vs plain SGD.

The reduced protocol of configs/cpu/base.py (random init: the paper's panel (a); there is no
pretrained model offline for panel (b)). Variants: "adam_reset" (the base: Adam, new state per
document, lr 3e-4), "adam" (one Adam state over the whole run, lr 3e-4; the authors' unreported
train_interleave_optimizer.py) and "sgd" (no momentum, lr 0.1: from scratch, the paper's 1e-3 hardly
moves a random model in 10 steps; calibrated on seed 0: lr 0.03 gives RS(4) 0.35 and online loss
1.61, lr 0.1 gives 0.43 and 1.50; the larger, better-fitting lr is used). Read off: RS(adam_reset) > RS(sgd) (the paper, v1: 0.689 vs 0.211).

    python -m recovery_jax.sweep --config configs/cpu/fig6.py --workdir runs/cpu/fig6 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"variants": {"adam_reset": {},
                         "adam": {"optim.name": "adam"},
                         "sgd": {"optim.name": "sgd", "optim.lr": 0.1}},
            "seeds": [0, 1, 2]}
