"""Fig 17 (B.6): cosine learning-rate schedule over 10 epochs.

docs/PROTOCOL.md §3 Fig 17: Pythia-1B, E=10, cosine decay to min lr 0 over the whole run. Base lr and the
granularity are UNCONFIRMED; chosen: base lr 1e-3 (the default), decayed per gradient step
(optax.cosine_decay_schedule over E*T*M steps). Expected: recovery persists.

    python -m recovery_jax.sweep --config configs/paper/fig17.py --workdir runs/paper/fig17 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.E = 10
    c.optim.schedule = "cosine"
    c.optim.min_lr = 0.0
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
