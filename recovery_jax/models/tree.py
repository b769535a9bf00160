"""Parameter-tree helpers: counting, freezing masks for optax, named paths to one block's weights and to the
unembedding; the paths come from each architecture's registry entry."""

from __future__ import annotations

import math
import re
from typing import Any

import jax
from flax import traverse_util

from . import registry
from .config import ModelConfig


def param_count(params: Any) -> int:
    """Number of scalars in a pytree of arrays (or of jax.ShapeDtypeStruct, e.g. from param_shapes)."""
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params))


def num_blocks(arch: str | ModelConfig, params: dict) -> int:
    prefix = registry.get(arch).block_prefix
    return sum(1 for k in params if re.fullmatch(re.escape(prefix) + r"\d+", k))


def block_param_path(arch: str | ModelConfig, layer_idx: int, which: str = "block") -> tuple[str, ...]:
    """Key path of one block's sub-tree, e.g. ("layers_12", "attention") for arch "gpt_neox", which="attn".

    which: "block" (whole block), "attn", "mlp", "ln1", "ln2", "attn_qkv", "attn_out", "mlp_in", "mlp_out".
    Read it with get_by_path(params, path).
    """
    a = registry.get(arch)
    if which not in a.block_parts:
        raise ValueError(f"unknown block part {which!r}; valid: {list(a.block_parts)}")
    if layer_idx < 0:
        raise ValueError(f"layer_idx must be >= 0, got {layer_idx}")
    return (f"{a.block_prefix}{layer_idx}",) + tuple(a.block_parts[which])


def get_by_path(params: dict, path: tuple[str, ...]) -> Any:
    node = params
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"no parameter at {'/'.join(path[: i + 1])}")
        node = node[key]
    return node


def unembedding(arch: str | ModelConfig, params: dict) -> jax.Array:
    """The output-embedding matrix as stored (GPT-NeoX embed_out [D, V], GPT-2's tied wte [V, D])."""
    return get_by_path(params, registry.get(arch).unembedding)


def output_projection(arch: str | ModelConfig, params: dict) -> jax.Array:
    """The unembedding as a [V, D] matrix, one row per token: logits = final hidden state @ its transpose
    (GPT-NeoX's embed_out kernel transposed, GPT-2's tied wte as stored), for losses that compute the logits
    themselves (engine.chunked_lm_loss)."""
    a = registry.get(arch)
    token_axis = dict(a.vocab_params)[a.unembedding]
    W = get_by_path(params, a.unembedding)
    return W if token_axis == 0 else W.T


def trainable_mask(arch: str | ModelConfig, params: dict, *, freeze_first: int = 0, freeze_last: int = 0) -> dict:
    """Bool pytree (True = trainable) for optax.masked / multi_transform.

    freeze_first=B freezes the input embeddings (embed_in; GPT-2 wte + wpe, where wte is also the tied head)
    and blocks 0..B-1; freeze_last=B freezes the last B blocks. Final LayerNorm and embed_out stay trainable.
    """
    a = registry.get(arch)
    n = num_blocks(a.name, params)
    if freeze_first and freeze_last:
        raise ValueError("give at most one of freeze_first and freeze_last")
    for name, b in (("freeze_first", freeze_first), ("freeze_last", freeze_last)):
        if not 0 <= b <= n:
            raise ValueError(f"{name}={b} is out of range: the model has {n} blocks")
    frozen = set()
    if freeze_first:
        frozen |= set(a.input_embeddings) | {f"{a.block_prefix}{i}" for i in range(freeze_first)}
    if freeze_last:
        frozen |= {f"{a.block_prefix}{i}" for i in range(n - freeze_last, n)}
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: k[0] not in frozen for k in flat})
