"""Fig 5(c): context length C.

docs/PROTOCOL.md §3 Fig 5c: C in {128, 256, 512, 1024}; shorter documents are right-padded
(data.min_tokens=2 from base.py, as the authors). Expected: longer C gives lower RS at fixed M
(cf. fig19b.py). Evaluation in batches of 5 documents (1024-token fp32 logits of 25 documents
would be 5 GB at once).

    python -m recovery_jax.sweep --config configs/paper/fig5c.py --workdir runs/paper/fig5c --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.eval.batch = 5
    return c


def get_sweep():
    return {"grid": {"C": [128, 256, 512, 1024]}, "seeds": [0, 1, 2]}
