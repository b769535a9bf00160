"""From a run config to a model: model_config (the one step from the run config's `model` section),
build_model, init_params with the initialisation schemes compared in the paper (B.4), restrict_vocab."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
from flax import traverse_util

from . import registry
from .config import SHAPE_FIELDS, ModelConfig, check_fields, without_dropout
from .config import uses_dropout as _lm_uses_dropout

COMPUTE_DTYPES = (jnp.float32, jnp.bfloat16)
INIT_SCHEMES = ("pythia", "pythia_1b_hardcoded", "normal", "gpt2")
DROPOUT_MODES = ("off", "from_hf")


def model_config(model_cfg: Mapping[str, Any], vocab_size: int | None, image_size: int = 0) -> ModelConfig:
    """The from-scratch model of the run config's `model` section.

    The preset's ModelConfig with each non-zero model.<field> of SHAPE_FIELDS replacing the field of the same
    name; `vocab_size` replaces the preset's when given (None keeps it); dropout rates 0 with
    model.dropout="off". A new width leaves the preset's intermediate_size alone (the paper's scripts), except
    where the preset's FF width is the architecture's default multiple of the width (GPT-2: n_inner=None), which
    follows the new width. Errors are one-line ValueErrors naming the run-config key.

    Ports with their own config class (the vision models) build theirs with their `from_run` hook: there
    `vocab_size` is the output size (colours + start token for Image GPT, classes for classifiers) and
    `image_size` the run's input side (ViT sizes its position embeddings for it).
    """
    arch = registry.get(model_cfg["arch"])
    if arch.port:
        return arch.from_run(model_cfg, vocab_size, int(image_size))
    preset = model_cfg["preset"]
    if preset not in registry.PRESETS:
        raise ValueError(f"model.preset={preset!r} is not a known preset; valid: {sorted(registry.PRESETS)}")
    owner = registry.PRESETS[preset][0]
    if owner != arch.name:
        raise ValueError(f"model.preset={preset!r} is a {owner} model but model.arch={arch.name!r}")
    base = arch.parse_hf(arch.presets[preset])
    changes = {f: int(model_cfg.get(f, 0)) for f in SHAPE_FIELDS if model_cfg.get(f, 0)}
    if (arch.ff_multiple and "hidden_size" in changes and "intermediate_size" not in changes
            and base.intermediate_size == arch.ff_multiple * base.hidden_size):
        changes["intermediate_size"] = arch.ff_multiple * changes["hidden_size"]
    if vocab_size is not None:
        changes["vocab_size"] = int(vocab_size)
    check_fields({**vars(base), **changes}, name=lambda f: f"model.{f}" if f in SHAPE_FIELDS else f)
    cfg = dataclasses.replace(base, **changes)
    dropout = model_cfg.get("dropout", "off")
    if dropout not in DROPOUT_MODES:
        raise ValueError(f"model.dropout={dropout!r} is not valid; valid: {list(DROPOUT_MODES)}")
    return without_dropout(cfg) if dropout == "off" else cfg


def build_model(mcfg: ModelConfig, *, dtype: Any = jnp.float32, remat: bool = False, attn_block: int = 64) -> nn.Module:
    """Flax module of a ModelConfig. `dtype` is the compute dtype (params stay fp32); remat checkpoints blocks;
    attn_block is the causal attention's query block (0: the full C x C matrix; same numbers)."""
    if int(attn_block) < 0:
        raise ValueError(f"attn_block must be >= 0 (0: full attention matrix), got {attn_block!r}")
    if not any(jnp.dtype(dtype) == jnp.dtype(d) for d in COMPUTE_DTYPES):
        raise ValueError(f"unsupported compute dtype {dtype!r}; valid: ['float32', 'bfloat16']")
    arch = registry.get(mcfg)
    if arch.port:
        return arch.build(mcfg, dtype=jnp.dtype(dtype), remat=bool(remat), attn_block=int(attn_block))
    cfg = dataclasses.replace(mcfg, attn_block=int(attn_block))
    return arch.module(cfg=cfg, dtype=jnp.dtype(dtype), remat=bool(remat))


def uses_dropout(mcfg: Any) -> bool:
    """Whether training steps draw dropout (need a dropout key per step)."""
    arch = registry.get(mcfg)
    return arch.dropout(mcfg) if arch.port else _lm_uses_dropout(mcfg)


def param_shapes(mcfg: ModelConfig) -> dict:
    """Parameter pytree of jax.ShapeDtypeStruct, computed without allocating (works for 12B on a laptop)."""
    arch = registry.get(mcfg)
    if arch.port:
        return jax.eval_shape(lambda: arch.init(mcfg, jax.random.PRNGKey(0)))
    if not arch.vocab_params:
        return traverse_util.unflatten_dict(traverse_util.flatten_dict(_traced_param_shapes(mcfg)))  # a copy
    # the vocabulary only sizes the vocabulary params (the registry's vocab_params): trace the model once per
    # shape apart from it, not once per run of a group whose restricted vocabularies differ (~0.4 s each)
    out = traverse_util.flatten_dict(_traced_param_shapes(dataclasses.replace(mcfg, vocab_size=_PROBE_VOCAB)))
    for path, axis in arch.vocab_params:
        sds = out[path]
        out[path] = jax.ShapeDtypeStruct(sds.shape[:axis] + (mcfg.vocab_size,) + sds.shape[axis + 1:], sds.dtype)
    return traverse_util.unflatten_dict(out)


_PROBE_VOCAB = 7  # a vocabulary size no other dimension of a model has by accident (tests/test_models_registry)


@functools.lru_cache(maxsize=16)
def _traced_param_shapes(mcfg: ModelConfig) -> dict:
    model = build_model(mcfg)
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), ids))["params"]


def _std(cfg: ModelConfig, roles: Mapping[str, str], path: tuple[str, ...], scheme: str) -> float:
    """Std of the normal init for a weight matrix / embedding at `path` under `scheme`."""
    role = roles.get(path[-2])
    if role is None:
        raise AssertionError(f"no init role for parameter {'/'.join(path)}")  # table out of sync with the model
    if scheme in ("pythia", "pythia_1b_hardcoded"):
        d, n = (cfg.hidden_size, cfg.num_layers) if scheme == "pythia" else (2048, 16)
        return math.sqrt(2.0 / (5.0 * d)) if role == "in" else 2.0 / (n * math.sqrt(d))
    if scheme == "normal":
        return cfg.initializer_range
    # "gpt2": N(0, initializer_range) with residual projections scaled by 1/sqrt(2 * n_layer) (HF GPT-2).
    return cfg.initializer_range / (math.sqrt(2.0 * cfg.num_layers) if role == "out" else 1.0)


def init_params(mcfg: ModelConfig, rng: jax.Array, scheme: str = "pythia") -> dict:
    """Fresh fp32 params. Biases 0, LayerNorm scale 1 / bias 0, matrices N(0, std(scheme)), where each
    architecture says which matrices are inputs ("in") and which residual outputs ("out"):

    - "pythia": small_init std sqrt(2/(5d)) for "in" (NeoX: qkv, h->4h, embed_in, embed_out); wang_init
      2/(L sqrt d) for "out" (attention.dense, 4h->h), with the model's own width d and depth L.
    - "pythia_1b_hardcoded": the same with d=2048, L=16 whatever the model (the authors' scripts).
    - "normal": N(0, initializer_range=0.02) everywhere (HF default init).
    - "gpt2": HF GPT-2 init: N(0, 0.02), residual output projections / sqrt(2 * n_layer).
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {list(INIT_SCHEMES)}")
    if registry.get(mcfg).port:  # the port's own (Hugging Face / torchvision) init; `scheme` is for the LMs
        return registry.get(mcfg).init(mcfg, rng)
    roles = registry.get(mcfg).init_roles
    flat = traverse_util.flatten_dict(param_shapes(mcfg))
    out = {}
    for i, (path, sds) in enumerate(sorted(flat.items())):
        leaf = path[-1]
        if leaf == "bias":
            out[path] = jnp.zeros(sds.shape, jnp.float32)
        elif leaf == "scale":  # LayerNorm gain
            out[path] = jnp.ones(sds.shape, jnp.float32)
        else:
            out[path] = _std(mcfg, roles, path, scheme) * _standard_normal(jax.random.fold_in(rng, i), sds.shape)
    return traverse_util.unflatten_dict(out)


@functools.partial(jax.jit, static_argnums=1)
def _standard_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """One compilation per distinct shape (a handful per model), generated directly on the default device."""
    return jax.random.normal(key, shape, jnp.float32)


def _map_vocab_params(mcfg: ModelConfig, params: dict, fn) -> dict:
    """params with fn(x, token_axis) applied to every vocabulary param; dicts along the paths are copied, so
    the caller's tree is not modified."""
    out = dict(params)
    for path, axis in registry.get(mcfg).vocab_params:
        node = out
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node[path[-1]] = fn(node[path[-1]], axis)
    return out


def restrict_vocab(mcfg: ModelConfig, params: dict, vocab_map_V: Any) -> tuple[ModelConfig, dict]:
    """Keep only the vocabulary entries of the token ids vocab_map_V (embedding rows, output columns, tied rows):
    the restricted softmax, or the authors' resize to the tokenizer's length with vocab_map_V = arange(n)."""
    ids_V = np.asarray(vocab_map_V)
    out = _map_vocab_params(mcfg, params, lambda x, axis: x[(slice(None),) * axis + (ids_V,)])
    return dataclasses.replace(mcfg, vocab_size=int(len(ids_V))), out


def scatter_vocab(mcfg: ModelConfig, params: dict, trained: dict, vocab_map_V: Any) -> dict:
    """The inverse of restrict_vocab: `trained` (a model of the restricted vocabulary vocab_map_V) as a tree of
    the full vocabulary of `mcfg`; the vocabulary entries of the other token ids are taken from `params` (e.g.
    the full model's init, whose rows restrict_vocab cut out before training)."""
    ids_V = np.asarray(vocab_map_V)
    out = _map_vocab_params(mcfg, trained, lambda x, axis: x)  # copies the dicts along the vocabulary paths
    for path, axis in registry.get(mcfg).vocab_params:
        node, full = out, params
        for key in path[:-1]:
            node, full = node[key], full[key]
        node[path[-1]] = jnp.asarray(full[path[-1]]).at[(slice(None),) * axis + (ids_V,)].set(node[path[-1]])
    return out


def pad_vocab(mcfg: ModelConfig, params: dict, vocab_size: int) -> dict:
    """Zero vocabulary entries appended up to `vocab_size`: the runs of a group with restricted vocabularies of
    different sizes share the largest's shapes; the engine masks each run's logits beyond its own size, so the
    padded entries get no gradient and the run computes what it computes alone."""
    extra = int(vocab_size) - mcfg.vocab_size
    if extra < 0:
        raise ValueError(f"cannot pad a vocabulary of {mcfg.vocab_size} down to {vocab_size}")
    if extra == 0:
        return params

    def pad(x, axis):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, extra)
        return jnp.pad(x, widths)

    return _map_vocab_params(mcfg, params, pad)
