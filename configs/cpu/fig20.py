"""CPU counterpart of Fig 20: a GPT-2-architecture model instead of GPT-NeoX, from scratch and pretrained.

The paper fine-tunes pretrained GPT2-large; offline this is a 4 x 256 GPT-2 (learned positions, tied embeddings,
sequential residual, tanh GELU, the GPT-2 tokenizer, dropout off) on the reduced protocol of configs/cpu/base.py,
two variants: "scratch" (GPT-2's N(0, 0.02) init, model.init="gpt2") and "pretrained" (the same shape pretrained
offline on the Wikipedia sample and ABC news that no CPU run uses: configs/pretrain/gpt2_small.py). Read off:
RS > 0 with another architecture, from scratch and pretrained.

    python -m recovery_jax.pretrain --config configs/pretrain/gpt2_small.py --workdir runs/pretrain/gpt2_small
    python -m recovery_jax.sweep --config configs/cpu/fig20.py --workdir runs/cpu/fig20 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.model.arch = "gpt2"
    c.model.preset = "gpt2"
    c.model.init = "gpt2"
    c.model.hidden_size = 256
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.intermediate_size = 1024
    c.model.dropout = "off"
    c.model.hf_path = "runs/pretrain/gpt2_small"  # the "pretrained" variant's model (python -m recovery_jax.pretrain)
    c.data.tokenizer = "gpt2"
    return c


def get_sweep():
    return {"variants": {"scratch": {}, "pretrained": {"model.init": "pretrained"}}, "seeds": [0, 1, 2]}
