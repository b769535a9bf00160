"""Fig 1(a,b): the phenomenon — loss of x_1 and the shift-averaged loss, cyclic vs shuffled.

docs/PROTOCOL.md §3 Fig 1: pretrained Pythia-1B, T=100 (v2; v1 used T=25), C=256, M=10, E=5, SGD 1e-3,
20 seeds. The shuffled baseline keeps x_1 first and re-shuffles the other 99 documents every epoch
(order.kind="shuffled" = the authors' train_interleave_rev.py with N=T). Expected: inverted U per
epoch for cyclic (epoch-2 peak near x_60, > half of the forgetting recovered), none for shuffled.
Evaluation in batches of 25 documents (100 x 256 x 50277 fp32 logits would be 5 GB at once).

    python -m recovery_jax.sweep --config configs/paper/fig1.py --workdir runs/paper/fig1 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.T = 100
    c.eval.batch = 25
    return c


def get_sweep():
    return {"variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}}, "seeds": list(range(20))}
