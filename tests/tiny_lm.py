"""A tiny causal LM for engine tests: independent of the GPT ports, so engine tests test the engine."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class TinyLM(nn.Module):
    vocab: int = 17
    width: int = 8

    @nn.compact
    def __call__(self, ids_BL, deterministic=True):
        x = nn.Embed(self.vocab, self.width)(ids_BL)
        # causal mixing: running mean over the prefix, then a nonlinearity
        csum = jnp.cumsum(x, axis=1) / jnp.arange(1, x.shape[1] + 1)[None, :, None]
        h = jnp.tanh(nn.Dense(self.width)(jnp.concatenate([x, csum], -1)))
        if not deterministic:
            h = nn.Dropout(0.1, deterministic=False)(h)
        return nn.Dense(self.vocab)(h)


def make(vocab=17, width=8, L=12, seed=0):
    model = TinyLM(vocab, width)
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, L), jnp.int32))["params"]

    def apply_fn(p, ids, deterministic, rngs):
        return model.apply({"params": p}, ids, deterministic=deterministic, rngs=rngs)

    return apply_fn, params
