"""Fig 5(d): frozen blocks — freeze the first B of the 16 blocks of Pythia-1B.

docs/PROTOCOL.md §3 Fig 5d (train_interleave_frozen_blocks.py --num-frozen-blocks B): embed_in and blocks
0..B-1 frozen; final LayerNorm and embed_out trainable (optim.freeze_first). B in {4, 6, 8, 10,
12}, plus B=0 as the reference. The authors' example script uses --num-frozen-blocks-rev 8 (the
LAST 8 blocks): --config.optim.freeze_first=0 --config.optim.freeze_last=8 reproduces that.
Expected: more frozen blocks, lower RS; about 8 trainable blocks needed.

    python -m recovery_jax.sweep --config configs/paper/fig5d.py --workdir runs/paper/fig5d --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"optim.freeze_first": [0, 4, 6, 8, 10, 12]}, "seeds": [0, 1, 2]}
