"""CPU counterpart of Fig 5(c): context length C.

The reduced protocol of configs/cpu/base.py with C in {32, 64, 128} (the paper: 128..1024).
Documents need >= C tokens (data.min_tokens=0 means C): 91% of the news articles have >= 128, so
the document sets of the three values overlap heavily but are not identical. The paper: RS falls with C
at fixed M. Measured here (3 seeds): C=64 > C=128 holds in cycles 2-4, C=32 > C=64 holds up to
cycle 3 but C=32 levels off in cycle 4 (0.49 vs 0.57); see docs/REPRODUCTION.md.

    python -m recovery_jax.sweep --config configs/cpu/fig5c.py --workdir runs/cpu/fig5c --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"C": [32, 64, 128]}, "seeds": [0, 1, 2]}
