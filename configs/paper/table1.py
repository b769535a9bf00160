"""Fig 1(c) + Table 1: prequential (online) loss, cyclic vs shuffled, four model sizes.

docs/PROTOCOL.md §2.5 / §3: pretrained Pythia 410M, 1B, 1.4B, 2.8B; T=100, C=512, M=10, E=5, SGD 1e-3,
10 seeds. Metric: mean first-step training loss of epochs 2-5 (summary.json online_loss.mean;
sweep_summary.md "online loss"). Paper: cyclic 1.09/1.03/1.14/1.34 vs shuffle 1.34/1.51/1.51/1.79.
The model's preset, hub path and tokenizer move together (a sweep "zip"). Evaluation in batches of
10 documents (100 x 512 x 50277 fp32 logits would be 10 GB at once).

    python -m recovery_jax.sweep --config configs/paper/table1.py --workdir runs/paper/table1
"""

from recovery_jax.config import derive

SIZES = ["410m", "1b", "1.4b", "2.8b"]


def get_config():
    c = derive(__file__, "base.py")
    c.T, c.C = 100, 512
    c.eval.batch = 10
    return c


def get_sweep():
    return {
        "zip": {"model.preset": [f"pythia-{s}" for s in SIZES],
                "model.hf_path": [f"EleutherAI/pythia-{s}" for s in SIZES],
                "data.tokenizer": [f"EleutherAI/pythia-{s}" for s in SIZES]},
        "variants": {"cyclic": {}, "shuffled": {"order.kind": "shuffled"}},
        "seeds": list(range(10)),
    }
