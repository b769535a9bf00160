"""CPU counterpart of Fig 18: random filler documents inserted.

T=8 fixed documents per epoch, then 8..16 one-off filler documents (each used once in the run;
the paper: 20 fixed + 20..100 random). Filler documents bring tokens outside the T documents, so
the softmax is over the full 50277-token vocabulary (data.restrict_vocab=False), which makes the
output layer the dominant cost: the model is 4 x 128 and C=32 to stay within minutes. Read off: RS
of the fixed documents > 0 although the epochs vary in length and content.

    python -m recovery_jax.sweep --config configs/cpu/fig18.py --workdir runs/cpu/fig18 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.T, c.C = 8, 32
    c.data.restrict_vocab = False
    c.model.hidden_size = 128
    c.model.intermediate_size = 512
    c.order.kind = "filler"
    c.order.filler_min = 8
    c.order.filler_max = 16
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
