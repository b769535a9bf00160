"""Fig 20 (B.10): GPT2-large (812M per the paper) on CNN/DailyMail.

docs/PROTOCOL.md §3 Fig 20: hyperparameters not stated (UNCONFIRMED); chosen: the defaults (T=25, C=256,
M=10, E=5, SGD 1e-3), the model's own GPT-2 tokenizer (50257 tokens), and GPT-2's dropouts active
while training (model.dropout="from_hf"), because the authors' loop trains in model.train() mode
(for Pythia dropout is 0 and it makes no difference); --config.model.dropout=off switches them off.
The released script could not run GPT-2 (a from_predtrained typo; docs/PROTOCOL.md §5.15), so this is our reading.
Loss on x_1. Expected: consistent recovery.

    python -m recovery_jax.sweep --config configs/paper/fig20.py --workdir runs/paper/fig20 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.model.arch = "gpt2"
    c.model.preset = "gpt2-large"
    c.model.hf_path = "openai-community/gpt2-large"
    c.model.revision = "main"
    c.model.dropout = "from_hf"
    c.data.tokenizer = "gpt2-large"
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
