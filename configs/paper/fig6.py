"""Fig 6(a,b): Adam (state reset at every document) vs plain gradient descent.

docs/PROTOCOL.md §3 Fig 6: (a) random-init and (b) pretrained Pythia-1B. Random init = the hub revision
step0 (Pythia's own initial weights), pretrained = main: a grid over model.revision. Optimizer
variants: "sgd" (lr 1e-3), "adam_reset" (lr 1e-4, the released script
run-train-interleave-cnn-optimizer-reset.sh) and "adam_reset_1e-5" (the lr the paper's A.1 states).
Which Adam lr produced the figure is UNCONFIRMED; both are run. Default betas (0.9, 0.999), eps 1e-8,
no weight decay. v1 (random init): RS 0.689 with Adam vs 0.211 with GD.

    python -m recovery_jax.sweep --config configs/paper/fig6.py --workdir runs/paper/fig6 --report
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "base.py")


def get_sweep():
    return {
        "grid": {"model.revision": ["step0", "main"]},
        "variants": {
            "sgd": {"optim.name": "sgd", "optim.lr": 1e-3},
            "adam_reset": {"optim.name": "adam_reset", "optim.lr": 1e-4},
            "adam_reset_1e-5": {"optim.name": "adam_reset", "optim.lr": 1e-5},
        },
        "seeds": [0, 1, 2],
    }
