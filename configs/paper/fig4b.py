"""Fig 4(b): random window shift during training.

docs/PROTOCOL.md §3 Fig 4b (train_interleave_randomwindow.py): documents tokenized to a 512-token block;
each gradient step trains on the 256-token window [128+s, 384+s), s uniform in [-W, W]; evaluation
on the fixed window [128, 384). W=0 is the control (still tokens 128..383). The W grid is
UNCONFIRMED ("up to 128"); chosen: 0, 32, 64, 128.
Deviation: data.min_tokens=384 so that every document fills its evaluation window (the authors'
unpadded evaluation gives shorter or empty windows, possibly NaN, for short articles).

    python -m recovery_jax.sweep --config configs/paper/fig4b.py --workdir runs/paper/fig4b --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.data.block = 512
    c.data.min_tokens = 384
    c.variant.window = 0
    c.variant.window_start = 128
    return c


def get_sweep():
    return {"grid": {"variant.window": [0, 32, 64, 128]}, "seeds": [0, 1, 2]}
