"""Fig 21 (B.11): a Wikipedia corpus, random-init models only (Wikipedia is in the Pile).

docs/PROTOCOL.md §3 Fig 21 uses wikitext-103; model sizes and what a "document" is are UNCONFIRMED.
recovery_jax has no wikitext-103 loader, so this file uses data.source="wiki": sections of the
offline English-Wikipedia sample that ships with gensim (one section = one document). To run on
wikitext-103 itself, export its articles to a .jsonl ({"text": ...} per line) and pass
--config.data.source=files --config.data.path=wikitext103_train.jsonl. Model: Pythia-1B from
scratch with the Pythia init (configs/paper/scratch_1b.py). data.min_tokens=C: Wikipedia sections
are short, and padded sections would make C meaningless. Loss on x_1. Expected: recovery present.

    python -m recovery_jax.sweep --config configs/paper/fig21.py --workdir runs/paper/fig21 --report
"""

from recovery_jax.config import derive


def get_config():
    c = derive(__file__, "scratch_1b.py")
    c.data.source = "wiki"
    c.data.min_tokens = 0
    return c


def get_sweep():
    return {"seeds": [0, 1, 2]}
