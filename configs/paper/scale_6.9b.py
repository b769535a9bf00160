"""Pythia-6.9B at the paper's protocol with Adam reset per document, on one node of 8 GPUs.

docs/PROTOCOL.md §3 preamble (T=25, C=256, M=10, E=5, cyclic, CNN/DailyMail) with the optimizer of Fig 6
(Adam, state reset at every document, lr 1e-4 as in the released script) on the largest model the paper's
size sweep points to. One run needs ~102 GB for parameters, Adam's two moments and gradients (fp32) plus
~3 GB of activations, so its state is sharded over 2 GPUs (mesh.model=2, FSDP, docs/SCALING.md) and the
8 GPUs of a node train 4 seeds side by side (mesh.runs=4); on 40 GB GPUs use mesh.runs=2 mesh.model=4 with
2 seeds per group. The plan behind these numbers (no weights needed):

    python -m recovery_jax.plan --config configs/paper/scale_6.9b.py --devices 8 --device-memory 80GB

Run (needs network for the hub weights and the dataset, and 8 GPUs of 80 GB):

    python -m recovery_jax.train --config configs/paper/scale_6.9b.py --workdir runs/paper/scale_6.9b --seeds 0-3

Across SLURM nodes see docs/SCALING.md (one process per node, jax.distributed from SLURM's variables).
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.model.preset = "pythia-6.9b"
    c.model.hf_path = "EleutherAI/pythia-6.9b"
    c.data.tokenizer = "EleutherAI/pythia-6.9b"
    c.optim.name = "adam_reset"
    c.optim.lr = 1e-4
    c.mesh.runs = 4
    c.mesh.model = 2
    return c
