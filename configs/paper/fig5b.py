"""Fig 5(b): gradient steps per document M.

docs/PROTOCOL.md §3 Fig 5b: M in {1, 5, 10, 20}, pretrained Pythia-1B, SGD 1e-3 (pretrained chosen, see
fig5a.py). Expected: RS rises with M; no anticipation at M=1 with lr 1e-3 (cf. fig13.py, fig19a.py).

    python -m recovery_jax.sweep --config configs/paper/fig5b.py --workdir runs/paper/fig5b --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"M": [1, 5, 10, 20]}, "seeds": [0, 1, 2]}
