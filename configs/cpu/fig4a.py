"""CPU counterpart of Fig 4(a): random token masking.

The reduced protocol of configs/cpu/base.py; every training step replaces each input token by the
pad token with probability p (fresh mask per step, labels unchanged, evaluation unmasked), p in
{0, 0.1, 0.3} (the paper: "up to 0.3"). With the restricted vocabulary the pad id is 0 = the
<|endoftext|> token, as in the paper. Read off: RS lower with masking but clearly > 0.

    python -m recovery_jax.sweep --config configs/cpu/fig4a.py --workdir runs/cpu/fig4a --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"variant.mask_prob": [0.0, 0.1, 0.3]}, "seeds": [0, 1, 2]}
