"""CPU counterpart of Fig 4(b): random window shift.

The paper's layout at half scale: documents kept to a 128-token block (paper 512), C=64 (256),
evaluation window [32, 96) (paper [128, 384)), every training step on [32+s, 96+s) with s uniform in
[-W, W], W in {0, 16, 32} (paper up to 128 = C/2). W=0 is the control on the same tokens.
data.min_tokens=96 so every document fills its evaluation window. Read off: RS lower with larger W
but clearly > 0.

    python -m recovery_jax.sweep --config configs/cpu/fig4b.py --workdir runs/cpu/fig4b --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.data.block = 128
    c.data.min_tokens = 96
    c.variant.window = 0
    c.variant.window_start = 32
    return c


def get_sweep():
    return {"grid": {"variant.window": [0, 16, 32]}, "seeds": [0, 1, 2]}
