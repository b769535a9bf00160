"""Fig 5(a): number of documents T.

docs/PROTOCOL.md §3 Fig 5a: T in {10, 25, 50, 100, 200}, pretrained Pythia-1B, defaults otherwise (Fig 5
used pretrained models per the v1 text; the project page says scratch — UNCONFIRMED, pretrained
chosen). Expected: recovery at every T, even 200. Evaluation in batches of 25 documents.

    python -m recovery_jax.sweep --config configs/paper/fig5a.py --workdir runs/paper/fig5a --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.eval.batch = 25
    return c


def get_sweep():
    return {"grid": {"T": [10, 25, 50, 100, 200]}, "seeds": [0, 1, 2]}
