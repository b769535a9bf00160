"""build_model / init_params: model construction and the initialisation schemes compared in the paper (B.4)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import flax.linen as nn
from flax import traverse_util

from .config import ModelConfig, parse_config
from .gpt2 import GPT2LM
from .gpt_neox import GPTNeoXLM

COMPUTE_DTYPES = (jnp.float32, jnp.bfloat16)
INIT_SCHEMES = ("pythia", "pythia_1b_hardcoded", "normal", "gpt2")

# Matrix roles per architecture: "in" = small_init in the Pythia recipe, "out" = wang_init (residual outputs).
_ROLES = {
    "gpt_neox": {"query_key_value": "in", "dense_h_to_4h": "in", "embed_in": "in", "embed_out": "in",
                 "dense": "out", "dense_4h_to_h": "out"},
    "gpt2": {"c_attn": "in", "c_fc": "in", "wte": "in", "wpe": "in", "c_proj": "out"},
}


def build_model(arch: str, hf_config: dict, *, dtype: Any = jnp.float32, remat: bool = False,
                attn_block: int = 64) -> nn.Module:
    """Flax module for an HF config dict. `dtype` is the compute dtype (params stay fp32); remat checkpoints
    blocks; attn_block is the causal attention's query block (0: the full C x C matrix; same numbers)."""
    cfg = parse_config(arch, hf_config)
    if int(attn_block) < 0:
        raise ValueError(f"attn_block must be >= 0 (0: full attention matrix), got {attn_block!r}")
    cfg = dataclasses.replace(cfg, attn_block=int(attn_block))
    if not any(jnp.dtype(dtype) == jnp.dtype(d) for d in COMPUTE_DTYPES):
        raise ValueError(f"unsupported compute dtype {dtype!r}; valid: ['float32', 'bfloat16']")
    cls = GPTNeoXLM if arch == "gpt_neox" else GPT2LM
    return cls(cfg=cfg, dtype=jnp.dtype(dtype), remat=bool(remat))


def param_shapes(arch: str, hf_config: dict) -> dict:
    """Parameter pytree of jax.ShapeDtypeStruct, computed without allocating (works for 12B on a laptop)."""
    model = build_model(arch, hf_config)
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), ids))["params"]


def _std(cfg: ModelConfig, path: tuple[str, ...], scheme: str) -> float:
    """Std of the normal init for a weight matrix / embedding at `path` under `scheme`."""
    module = path[-2]
    role = _ROLES[cfg.arch].get(module)
    if role is None:
        raise AssertionError(f"no init role for parameter {'/'.join(path)}")  # table out of sync with the model
    if scheme in ("pythia", "pythia_1b_hardcoded"):
        d, n = (cfg.d_model, cfg.n_layers) if scheme == "pythia" else (2048, 16)
        return math.sqrt(2.0 / (5.0 * d)) if role == "in" else 2.0 / (n * math.sqrt(d))
    if scheme == "normal":
        return cfg.initializer_range
    # "gpt2": N(0, initializer_range) with residual projections scaled by 1/sqrt(2 * n_layer) (HF GPT-2).
    return cfg.initializer_range / (math.sqrt(2.0 * cfg.n_layers) if role == "out" else 1.0)


def init_params(arch: str, hf_config: dict, rng: jax.Array, scheme: str = "pythia") -> dict:
    """Fresh fp32 params. Biases 0, LayerNorm scale 1 / bias 0, matrices N(0, std(scheme)):

    - "pythia": small_init std sqrt(2/(5d)) for qkv, h->4h, embed_in, embed_out; wang_init 2/(L sqrt d) for
      attention.dense and 4h->h, with the model's own width d and depth L (GPT-2 by analogy: c_attn, c_fc,
      wte, wpe small; both c_proj wang).
    - "pythia_1b_hardcoded": the same with d=2048, L=16 whatever the model (the authors' scripts).
    - "normal": N(0, initializer_range=0.02) everywhere (HF default init).
    - "gpt2": HF GPT-2 init: N(0, 0.02), residual output projections / sqrt(2 * n_layer).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {list(INIT_SCHEMES)}")
    cfg = parse_config(arch, hf_config)
    flat = traverse_util.flatten_dict(param_shapes(arch, hf_config))
    out = {}
    for i, (path, sds) in enumerate(sorted(flat.items())):
        leaf = path[-1]
        if leaf == "bias":
            out[path] = jnp.zeros(sds.shape, jnp.float32)
        elif leaf == "scale":  # LayerNorm gain
            out[path] = jnp.ones(sds.shape, jnp.float32)
        else:
            out[path] = _std(cfg, path, scheme) * _standard_normal(jax.random.fold_in(rng, i), sds.shape)
    return traverse_util.unflatten_dict(out)


@functools.partial(jax.jit, static_argnums=1)
def _standard_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """One compilation per distinct shape (a handful per model), generated directly on the default device."""
    return jax.random.normal(key, shape, jnp.float32)
