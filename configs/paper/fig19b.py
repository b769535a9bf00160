"""Fig 19b (B.9): long context needs more steps.

docs/PROTOCOL.md §3 Fig 19b: C=1024 with M in {10, 20, 40}. Expected: more steps bring recovery back;
v1: C=1024 with M=40 matches the RS of C=256 with M=10 (configs/paper/base.py). Evaluation in
batches of 5 documents.

    python -m recovery_jax.sweep --config configs/paper/fig19b.py --workdir runs/paper/fig19b --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.C = 1024
    c.eval.batch = 5
    return c


def get_sweep():
    return {"grid": {"M": [10, 20, 40]}, "seeds": [0, 1, 2]}
