"""Fig 3(a): width (token-embedding size), from scratch.

docs/PROTOCOL.md §3 Fig 3: Pythia-1B config from scratch (configs/paper/scratch_1b.py: 16 blocks,
8 heads, MLP 8192 at every width), hidden_size varied. Expected: noticeable recovery needs width
>= 512. The grid is UNCONFIRMED ("spanning <= 256 to 2048"); chosen: 128..2048 in powers of two.
Heads stay 8 (head dims 16..256; rotary 25% stays even).

    python -m recovery_jax.sweep --config configs/paper/fig3a.py --workdir runs/paper/fig3a --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "scratch_1b.py")


def get_sweep():
    return {"grid": {"model.hidden_size": [128, 256, 512, 1024, 2048]}, "seeds": [0, 1, 2]}
