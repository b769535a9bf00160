"""Parameter-tree helpers: counting, freezing masks for optax, and named paths to one block's weights."""

from __future__ import annotations

import math
import re
from typing import Any

import jax
from flax import traverse_util

from .config import check_arch

# block_param_path(...) `which` -> sub-path inside a block, per architecture.
_BLOCK_PARTS = {
    "gpt_neox": {
        "block": (), "attn": ("attention",), "mlp": ("mlp",),
        "ln1": ("input_layernorm",), "ln2": ("post_attention_layernorm",),
        "attn_qkv": ("attention", "query_key_value"), "attn_out": ("attention", "dense"),
        "mlp_in": ("mlp", "dense_h_to_4h"), "mlp_out": ("mlp", "dense_4h_to_h"),
    },
    "gpt2": {
        "block": (), "attn": ("attn",), "mlp": ("mlp",), "ln1": ("ln_1",), "ln2": ("ln_2",),
        "attn_qkv": ("attn", "c_attn"), "attn_out": ("attn", "c_proj"),
        "mlp_in": ("mlp", "c_fc"), "mlp_out": ("mlp", "c_proj"),
    },
}
_BLOCK_PREFIX = {"gpt_neox": "layers_", "gpt2": "h_"}
_EMBEDDINGS = {"gpt_neox": ("embed_in",), "gpt2": ("wte", "wpe")}


def param_count(params: Any) -> int:
    """Number of scalars in a pytree of arrays (or of jax.ShapeDtypeStruct, e.g. from param_shapes)."""
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params))


def num_blocks(arch: str, params: dict) -> int:
    prefix = _BLOCK_PREFIX[check_arch(arch)]
    return sum(1 for k in params if re.fullmatch(re.escape(prefix) + r"\d+", k))


def block_param_path(arch: str, layer_idx: int, which: str = "block") -> tuple[str, ...]:
    """Key path of one block's sub-tree, e.g. ("layers_12", "attention") for arch "gpt_neox", which="attn".

    which: "block" (whole block), "attn", "mlp", "ln1", "ln2", "attn_qkv", "attn_out", "mlp_in", "mlp_out".
    Read it with get_by_path(params, path).
    """
    parts = _BLOCK_PARTS[check_arch(arch)]
    if which not in parts:
        raise ValueError(f"unknown block part {which!r}; valid: {list(parts)}")
    if layer_idx < 0:
        raise ValueError(f"layer_idx must be >= 0, got {layer_idx}")
    return (f"{_BLOCK_PREFIX[arch]}{layer_idx}",) + parts[which]


def get_by_path(params: dict, path: tuple[str, ...]) -> Any:
    node = params
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"no parameter at {'/'.join(path[: i + 1])}")
        node = node[key]
    return node


def trainable_mask(arch: str, params: dict, *, freeze_first: int = 0, freeze_last: int = 0) -> dict:
    """Bool pytree (True = trainable) for optax.masked / multi_transform.

    freeze_first=B freezes the input embeddings (embed_in; GPT-2 wte + wpe, where wte is also the tied head)
    and blocks 0..B-1; freeze_last=B freezes the last B blocks. Final LayerNorm and embed_out stay trainable.
    """
    n = num_blocks(arch, params)
    if freeze_first and freeze_last:
        raise ValueError("give at most one of freeze_first and freeze_last")
    for name, b in (("freeze_first", freeze_first), ("freeze_last", freeze_last)):
        if not 0 <= b <= n:
            raise ValueError(f"{name}={b} is out of range: the model has {n} blocks")
    prefix = _BLOCK_PREFIX[arch]
    frozen = set()
    if freeze_first:
        frozen |= set(_EMBEDDINGS[arch]) | {f"{prefix}{i}" for i in range(freeze_first)}
    if freeze_last:
        frozen |= {f"{prefix}{i}" for i in range(n - freeze_last, n)}
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: k[0] not in frozen for k in flat})
