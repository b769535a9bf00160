"""Fig 16 (B.5): number of pre-training steps.

docs/PROTOCOL.md §3 Fig 16: Pythia checkpoints after 6K, 12K, 24K, 48K, 96K steps and the full 143K
(revision main). The model size is UNCONFIRMED; chosen: 1B (the default model).
Expected: more pre-training, more recovery.

    python -m recovery_jax.sweep --config configs/paper/fig16.py --workdir runs/paper/fig16 --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {"grid": {"model.revision": ["step6000", "step12000", "step24000", "step48000", "step96000", "main"]},
            "seeds": [0, 1, 2]}
