"""Fig 18 (B.7): random filler documents inserted.

docs/PROTOCOL.md §3 Fig 18: 20 fixed documents every epoch, then a random number in [20, 100] of other
documents, each used once in the whole run (order.kind="filler"). Epoch lengths vary. Expected:
recovery for documents 2-20. Only the 20 fixed documents are evaluated.

    python -m recovery_jax.sweep --config configs/paper/fig18.py --workdir runs/paper/fig18 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.T = 20
    c.order.kind = "filler"
    c.order.filler_min = 20
    c.order.filler_max = 100
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
