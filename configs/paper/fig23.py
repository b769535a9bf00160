"""Fig 23 (C.2): pairwise recovery matrices for long cycles, T in {50, 100, 200}.

docs/PROTOCOL.md §2.6 / §3 Fig 23 (dipping_matrix.py): pretrained Pythia-1B, checkpoint after 4 epochs,
R[i,j] = L_j(theta*) - L_j(theta* after M SGD steps on x_i) for all ordered pairs (T extra
episodes). Expected: the bright centre splits into two blobs as T grows, with a 10-15-document
border of no recovery. Evaluation in batches of 25 documents.

    python -m recovery_jax.sweep --config configs/paper/fig23.py --workdir runs/paper/fig23 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.T = 50
    c.eval.batch = 25
    c.probes.names = "pairwise"
    c.probes.epoch = 4
    return c


def get_sweep():
    return {"grid": {"T": [50, 100, 200]}, "seeds": [0, 1, 2]}
