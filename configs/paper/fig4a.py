"""Fig 4(a): random token masking during training.

docs/PROTOCOL.md §3 Fig 4a (train_interleave_randommask.py): at every gradient step each input token is
replaced by id 0 (<|endoftext|>, the pad id; variant.mask_id=-1 means the pad id) with probability
p, a fresh mask per step, labels unchanged, evaluation unmasked. The p grid is UNCONFIRMED ("up to
0.3"; the example script uses 0.3); chosen: 0, 0.1, 0.2, 0.3. Expected: weaker but clear recovery.

    python -m recovery_jax.sweep --config configs/paper/fig4a.py --workdir runs/paper/fig4a --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.variant.mask_id = -1
    return c


def get_sweep():
    return {"grid": {"variant.mask_prob": [0.0, 0.1, 0.2, 0.3]}, "seeds": [0, 1, 2]}
