"""Parse Hugging Face config.json dicts into validated, frozen model configs, plus presets.

The model code never reads the raw HF dict: everything goes through `parse_config`, which accepts the
spellings used by different transformers versions (``rotary_pct`` / ``partial_rotary_factor`` /
``rope_parameters`` ...) and raises ``ValueError`` for values the JAX port does not implement, so an
unsupported checkpoint fails loudly instead of silently computing something else.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

ARCHS = ("gpt_neox", "gpt2")
# HF activation names -> implementation in layers.activation(); "gelu" is the exact erf GELU.
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters shared by both families (names are ours, not HF's)."""

    arch: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_len: int
    ln_eps: float
    act: str
    # GPT-NeoX only
    rotary_ndims: int = 0
    rotary_base: float = 10000.0
    parallel_residual: bool = True
    attention_bias: bool = True
    # dropout rates (GPT-2: attn_pdrop / resid_pdrop / embd_pdrop; NeoX: attention_dropout / hidden_dropout)
    attn_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    embd_pdrop: float = 0.0
    # GPT-2 only
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    initializer_range: float = 0.02
    # Not from the HF config: query block of the causal attention (layers.causal_attention); 0: full matrix.
    attn_block: int = 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def _bad(field: str, value: Any, valid: str) -> ValueError:
    return ValueError(f"unsupported config value {field}={value!r}; valid: {valid}")


def _get(hf: dict, names: tuple[str, ...], default: Any = _MISSING) -> Any:
    """First present spelling among `names`; error if two spellings disagree or none is given."""
    found = {n: hf[n] for n in names if n in hf and hf[n] is not None}
    values = list(found.values())
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"conflicting config values for the same field: {found}")
    if found:
        return next(iter(found.values()))
    if default is _MISSING:
        raise ValueError(f"config is missing required field {names[0]!r} (accepted spellings: {list(names)})")
    return default


def _check_act(field: str, value: str) -> str:
    if value not in ACTIVATIONS:
        raise _bad(field, value, str(list(ACTIVATIONS)))
    return value


def _check_bool(field: str, value: Any, allowed: tuple[bool, ...]) -> bool:
    if value not in allowed:
        raise _bad(field, value, str(list(allowed)))
    return bool(value)


def _check_heads(d: int, h: int, head_dim: Any) -> None:
    if d % h != 0:
        raise ValueError(f"hidden size {d} is not divisible by the number of heads {h}")
    if head_dim is not None and head_dim != d // h:
        raise _bad("head_dim", head_dim, f"{d // h} (= hidden size / heads); other head sizes are not supported")


def _parse_neox(hf: dict) -> ModelConfig:
    rope = hf.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise _bad("rope_parameters", rope, "a dict or null")
    if hf.get("rope_scaling") is not None:
        raise _bad("rope_scaling", hf["rope_scaling"], "null (RoPE scaling is not implemented)")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise _bad("rope_parameters.rope_type", rope_type, "['default']")
    extra = {k: rope[k] for k in ("partial_rotary_factor", "rope_theta") if k in rope}
    merged = {**hf, **{f"rope_parameters.{k}": v for k, v in extra.items()}}
    pct = float(_get(merged, ("rotary_pct", "partial_rotary_factor", "rope_parameters.partial_rotary_factor"), 0.25))
    base = float(_get(merged, ("rotary_emb_base", "rope_theta", "rope_parameters.rope_theta"), 10000.0))
    d = int(_get(hf, ("hidden_size",)))
    h = int(_get(hf, ("num_attention_heads",)))
    _check_heads(d, h, hf.get("head_dim"))
    if not 0.0 <= pct <= 1.0:
        raise _bad("rotary_pct", pct, "a fraction in [0, 1]")
    rotary_ndims = int((d // h) * pct)  # same truncation as HF
    if rotary_ndims % 2:
        raise _bad("rotary_pct", pct, f"a fraction giving an even number of rotary dims (head size {d // h})")
    if hf.get("tie_word_embeddings", False):
        raise _bad("tie_word_embeddings", hf["tie_word_embeddings"], "[False] (GPT-NeoX embed_in/embed_out are untied)")
    return ModelConfig(
        arch="gpt_neox",
        vocab_size=int(_get(hf, ("vocab_size",))),
        d_model=d,
        n_layers=int(_get(hf, ("num_hidden_layers",))),
        n_heads=h,
        d_ff=int(_get(hf, ("intermediate_size",))),
        max_len=int(_get(hf, ("max_position_embeddings",), 2048)),
        ln_eps=float(_get(hf, ("layer_norm_eps",), 1e-5)),
        act=_check_act("hidden_act", _get(hf, ("hidden_act",), "gelu")),
        rotary_ndims=rotary_ndims,
        rotary_base=base,
        parallel_residual=_check_bool("use_parallel_residual", _get(hf, ("use_parallel_residual",), True), (True, False)),
        attention_bias=_check_bool("attention_bias", _get(hf, ("attention_bias",), True), (True, False)),
        attn_pdrop=float(_get(hf, ("attention_dropout",), 0.0)),
        resid_pdrop=float(_get(hf, ("hidden_dropout",), 0.0)),
        embd_pdrop=float(_get(hf, ("hidden_dropout",), 0.0)),
        initializer_range=float(_get(hf, ("initializer_range",), 0.02)),
    )


def _parse_gpt2(hf: dict) -> ModelConfig:
    d = int(_get(hf, ("n_embd", "hidden_size")))
    h = int(_get(hf, ("n_head", "num_attention_heads")))
    _check_heads(d, h, None)
    if hf.get("add_cross_attention", False):
        raise _bad("add_cross_attention", hf["add_cross_attention"], "[False]")
    if not hf.get("tie_word_embeddings", True):
        raise _bad("tie_word_embeddings", hf["tie_word_embeddings"], "[True] (GPT-2 lm_head is tied to wte)")
    # reorder_and_upcast_attn only changes bf16/fp16 numerics; we always take the softmax in fp32.
    _check_bool("reorder_and_upcast_attn", hf.get("reorder_and_upcast_attn", False), (True, False))
    n_inner = hf.get("n_inner")
    return ModelConfig(
        arch="gpt2",
        vocab_size=int(_get(hf, ("vocab_size",), 50257)),
        d_model=d,
        n_layers=int(_get(hf, ("n_layer", "num_hidden_layers"))),
        n_heads=h,
        d_ff=int(n_inner) if n_inner is not None else 4 * d,
        max_len=int(_get(hf, ("n_positions", "max_position_embeddings"), 1024)),
        ln_eps=float(_get(hf, ("layer_norm_epsilon",), 1e-5)),
        act=_check_act("activation_function", _get(hf, ("activation_function",), "gelu_new")),
        attn_pdrop=float(_get(hf, ("attn_pdrop",), 0.1)),
        resid_pdrop=float(_get(hf, ("resid_pdrop",), 0.1)),
        embd_pdrop=float(_get(hf, ("embd_pdrop",), 0.1)),
        scale_attn_weights=_check_bool("scale_attn_weights", hf.get("scale_attn_weights", True), (True, False)),
        scale_attn_by_inverse_layer_idx=_check_bool(
            "scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx", False), (True, False)
        ),
        initializer_range=float(_get(hf, ("initializer_range",), 0.02)),
    )


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {list(ARCHS)}")
    return arch


def parse_config(arch: str, hf_config: dict) -> ModelConfig:
    """Validate an HF config.json dict for `arch` ("gpt_neox" or "gpt2") and normalise it."""
    check_arch(arch)
    if not isinstance(hf_config, dict):
        raise TypeError(f"hf_config must be a dict, got {type(hf_config).__name__}")
    cfg = _parse_neox(hf_config) if arch == "gpt_neox" else _parse_gpt2(hf_config)
    for name, rate in (("attn_pdrop", cfg.attn_pdrop), ("resid_pdrop", cfg.resid_pdrop), ("embd_pdrop", cfg.embd_pdrop)):
        if not 0.0 <= rate < 1.0:
            raise _bad(name, rate, "a dropout rate in [0, 1)")
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
        if getattr(cfg, name) <= 0:
            raise _bad(name, getattr(cfg, name), "a positive integer")
    return cfg


# --------------------------------------------------------------------------------------------------------------------
# Presets: the fields of the Hub config.json files (EleutherAI/pythia-*, openai-community/gpt2*), revision main.
# Pythia-6.9b / -12b have a larger padded vocab (50432 / 50688); all others 50304. All have 2048 positions.
# --------------------------------------------------------------------------------------------------------------------


def _pythia(d: int, n_layers: int, n_heads: int, d_ff: int, vocab: int = 50304) -> tuple[str, dict]:
    return "gpt_neox", {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": vocab,
        "hidden_size": d,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "intermediate_size": d_ff,
        "hidden_act": "gelu",
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-5,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "use_cache": True,
    }


def _gpt2(d: int, n_layers: int, n_heads: int) -> tuple[str, dict]:
    return "gpt2", {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_embd": d,
        "n_layer": n_layers,
        "n_head": n_heads,
        "n_inner": None,
        "n_positions": 1024,
        "n_ctx": 1024,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "attn_pdrop": 0.1,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
    }


PRESETS: dict[str, tuple[str, dict]] = {
    "pythia-14m": _pythia(128, 6, 4, 512),
    "pythia-31m": _pythia(256, 6, 8, 1024),
    "pythia-70m": _pythia(512, 6, 8, 2048),
    "pythia-160m": _pythia(768, 12, 12, 3072),
    "pythia-410m": _pythia(1024, 24, 16, 4096),
    "pythia-1b": _pythia(2048, 16, 8, 8192),
    "pythia-1.4b": _pythia(2048, 24, 16, 8192),
    "pythia-2.8b": _pythia(2560, 32, 32, 10240),
    "pythia-6.9b": _pythia(4096, 32, 32, 16384, vocab=50432),
    "pythia-12b": _pythia(5120, 36, 40, 20480, vocab=50688),
    "gpt2": _gpt2(768, 12, 12),
    "gpt2-medium": _gpt2(1024, 24, 16),
    "gpt2-large": _gpt2(1280, 36, 20),
    "gpt2-xl": _gpt2(1600, 48, 25),
}

# Keys an override may set besides those already in the preset (all read by parse_config).
_OPTIONAL_KEYS = {
    "gpt_neox": {
        "partial_rotary_factor", "rope_theta", "rope_parameters", "rope_scaling", "attention_bias",
        "attention_dropout", "hidden_dropout", "head_dim",
    },
    "gpt2": {"add_cross_attention", "tie_word_embeddings"},
}


def preset_config(name: str, **overrides: Any) -> tuple[str, dict]:
    """(arch, hf_config) of a preset, with HF-named fields overridden (e.g. hidden_size=512 for width sweeps).

    Note that overriding hidden_size does NOT touch intermediate_size (faithful to the paper's scripts).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    arch, base = PRESETS[name]
    hf = copy.deepcopy(base)
    unknown = sorted(set(overrides) - set(hf) - _OPTIONAL_KEYS[arch])
    if unknown:
        valid = sorted((set(hf) | _OPTIONAL_KEYS[arch]) - {"architectures", "model_type"})
        raise ValueError(f"unknown override key(s) {unknown} for preset {name!r} ({arch}); valid: {valid}")
    hf.update(copy.deepcopy(overrides))
    parse_config(arch, hf)  # fail early on inconsistent overrides
    return arch, hf
