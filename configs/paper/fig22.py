"""Fig 22 (C.1): magnitude of activation and weight updates between consecutive episodes.

docs/PROTOCOL.md §2.11: pretrained Pythia-410M, 4 epochs (E=4), T=25: (a) ||a_1(k) - a_1(k-1)|| of the
final hidden states of x_1 (probe "activations"), (b) ||w(k) - w(k-1)|| (probe "weights"; the report
uses the probe's direct difference norms when present, else the sketched Gram matrix). Expected:
activation changes stepwise, weight changes monotonically decreasing.

    python -m recovery_jax.sweep --config configs/paper/fig22.py --workdir runs/paper/fig22 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.E = 4
    c.model.preset = "pythia-410m"
    c.model.hf_path = "EleutherAI/pythia-410m"
    c.data.tokenizer = "EleutherAI/pythia-410m"
    c.probes.names = "activations,weights"
    c.probes.doc = 0
    c.probes.epoch = 4
    c.probes.sketch_dim = 2 ** 20
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
