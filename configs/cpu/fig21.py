"""CPU counterpart of Fig 21: a Wikipedia corpus with a random-init model.

The paper uses wikitext-103; offline there is no wikitext-103, so this uses data.source="wiki":
sections of the English-Wikipedia sample shipped with gensim (one section = one document), on the
reduced protocol of configs/cpu/base.py. Read off: RS > 0 on encyclopaedic text.

    python -m recovery_jax.sweep --config configs/cpu/fig21.py --workdir runs/cpu/fig21 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "base.py")
    c.data.source = "wiki"
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
