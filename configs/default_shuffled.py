"""The default run with a shuffled order: x_1 first, the other documents re-shuffled every epoch.

The control of docs/PROTOCOL.md §3 Fig 1(a,b): without a fixed order there is nothing to anticipate, so document
1's loss should keep rising until its revisit.

    python -m recovery_jax.train --config configs/default_shuffled.py --workdir runs/demo_shuffled
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "default.py")
    c.order.kind = "shuffled"
    return c
