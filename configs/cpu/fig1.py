"""CPU counterpart of Fig 1(a,b) and Fig 1(c)/Table 1: cyclic vs shuffled order.

The reduced protocol of configs/cpu/base.py (4x256 from scratch, T=12, C=64, M=10, E=5, Adam-reset
3e-4, news). Variants: "cyclic" (fixed order x_1..x_T) and "shuffled" (x_1 first, the other T-1
re-shuffled every epoch, docs/PROTOCOL.md §3 Fig 1(a,b)). Read off: RS of the last cycle (cyclic > 0, shuffled
~0), document 1's drop before its last revisit (shuffled ~0: no recovery) and the online loss of
epochs 2-5 (Table 1: cyclic lower than shuffled).

    python -m recovery_jax.sweep --config configs/cpu/fig1.py --workdir runs/cpu/fig1 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": [0, 1, 2]}
