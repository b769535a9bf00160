"""CPU counterpart of Fig 1(c) / Table 1: online (prequential) loss, cyclic vs shuffled, two sizes.

The reduced protocol of configs/cpu/base.py; sizes 4x128 and 4x256 from scratch (for the paper's
410M..2.8B pretrained), variants cyclic and shuffled (x_1 first, the rest re-shuffled every epoch).
Metric: mean first-step training loss of epochs 2-5 ("online loss" in sweep_summary.md). The 4x256
runs are the ones of configs/cpu/fig1.py and the 4x128 cyclic ones those of fig3a.py (--reuse).

    python -m recovery_jax.sweep --config configs/cpu/table1.py --workdir runs/cpu/table1 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"model.hidden_size": [128, 256]},
            "variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}},
            "seeds": [0, 1, 2]}
