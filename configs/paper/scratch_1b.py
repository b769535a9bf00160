"""The from-scratch Pythia-1B setting of Figs 3, 14, 15, 21 (a base for them, runnable by itself).

docs/PROTOCOL.md §1.4: GPTNeoX with the Pythia-1B config (2048 wide, 16 blocks, 8 heads, MLP 8192) built
from scratch with the Pythia init recipe at its own width and depth (train_interleave_scratch.py:
small_init sqrt(2/(5d)), wang_init 2/(L sqrt(d))). intermediate_size stays 8192 for every width
and depth, as in the authors' scripts (their --hidden_size overrides leave it alone; docs/PROTOCOL.md §5.5).
Otherwise the paper defaults (CNN/DM, T=25, C=256, M=10, E=5, SGD 1e-3, full 50277 vocabulary).

    python -m recovery_jax.train --config configs/paper/scratch_1b.py --workdir runs/paper/scratch_1b
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.model.init = "pythia"
    c.model.hf_path = ""
    c.model.revision = ""
    c.model.preset = "pythia-1b"
    c.model.intermediate_size = 8192
    return c
