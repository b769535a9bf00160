"""ModelConfig, the one description of a model every model-facing function takes, and the helpers the
per-architecture modules use to read Hugging Face config.json dicts into it.

Field names are the run config's keys (model.hidden_size, model.num_layers, ...), so a width has one name
from the command line to the Flax module. The model code never reads a raw HF dict: each architecture's
`parse_hf` accepts the spellings of different transformers versions and raises ``ValueError`` for values the
JAX port does not implement, so an unsupported checkpoint fails loudly instead of computing something else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

# HF activation names -> implementation in layers.activation(); "gelu" is the exact erf GELU.
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
# The model shape as the run config names it (model.<field>; 0 there keeps the preset's value).
SHAPE_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions")
DROPOUT_FIELDS = ("attn_pdrop", "resid_pdrop", "embd_pdrop")

_MISSING = object()


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPT2Settings:
    """The GPT-2 settings, under HF GPT2Config's names and defaults, that gpt2.GPT2Attention and the blocks read:
    declared once for the two configs that have them, ModelConfig (GPT-2, GPT-NeoX) and imagegpt.ImageGPTConfig.
    Keyword arguments."""

    # dropout rates (GPT-2: attn_pdrop / resid_pdrop / embd_pdrop; NeoX: attention_dropout / hidden_dropout)
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    # GPT-2 attention scaling
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    initializer_range: float = 0.02
    # Not from the HF config: query block of the causal attention (layers.causal_attention); 0: full matrix.
    attn_block: int = 0


@dataclasses.dataclass(frozen=True)
class ModelConfig(GPT2Settings):
    """Hyper-parameters of one model; `arch` names its architecture in models.registry.

    Fields an architecture does not have keep their defaults (e.g. rotary_pct=0 for GPT-2); the GPT2Settings
    fields are keyword arguments. Checked on construction and on every dataclasses.replace, so a changed width
    cannot leave the heads or the rotary dims inconsistent.
    """

    arch: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    ln_eps: float
    act: str
    # GPT-NeoX: fraction of each head's channels that are rotated, and the RoPE base
    rotary_pct: float = 0.0
    rotary_base: float = 10000.0
    parallel_residual: bool = True
    attention_bias: bool = True

    def __post_init__(self) -> None:
        check_fields(vars(self))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rotary_ndims(self) -> int:
        """Rotated channels per head, truncated as HF does (int(head_dim * rotary_pct))."""
        return rotary_ndims(self.hidden_size, self.num_heads, self.rotary_pct)


def rotary_ndims(hidden_size: int, num_heads: int, rotary_pct: float) -> int:
    return int((hidden_size // num_heads) * rotary_pct)


def bad_value(field: str, value: Any, valid: str) -> ValueError:
    return ValueError(f"unsupported config value {field}={value!r}; valid: {valid}")


def check_fields(values: Mapping[str, Any], name: Callable[[str], str] = str) -> None:
    """The consistency rules of a ModelConfig, on a field -> value mapping; `name` renders a field in the
    message (model_config passes the run-config key, e.g. "model.hidden_size")."""
    for field in ("vocab_size",) + SHAPE_FIELDS:
        if not isinstance(values[field], int) or values[field] <= 0:
            raise bad_value(name(field), values[field], "a positive integer")
    d, h = values["hidden_size"], values["num_heads"]
    if d % h:
        raise ValueError(f"{name('hidden_size')}={d} is not divisible by {name('num_heads')}={h}")
    pct = values["rotary_pct"]
    if not 0.0 <= pct <= 1.0:
        raise bad_value(name("rotary_pct"), pct, "a fraction in [0, 1]")
    if rotary_ndims(d, h, pct) % 2:
        raise ValueError(f"{name('hidden_size')}={d} with {name('num_heads')}={h} gives a head size of {d // h}, "
                         f"{rotary_ndims(d, h, pct)} rotary dims at rotary_pct={pct}: the rotary dims must be even")
    check_choice(name("act"), values["act"], ACTIVATIONS)
    for field in DROPOUT_FIELDS:
        if not 0.0 <= values[field] < 1.0:
            raise bad_value(name(field), values[field], "a dropout rate in [0, 1)")
    if values["attn_block"] < 0:
        raise bad_value(name("attn_block"), values["attn_block"], "an integer >= 0 (0: full attention matrix)")


def check_choice(field: str, value: Any, allowed: tuple) -> Any:
    if value not in allowed:
        raise bad_value(field, value, str(list(allowed)))
    return value


def check_bool(field: str, value: Any) -> bool:
    return bool(check_choice(field, value, (True, False)))


def hf_get(hf: Mapping[str, Any], names: tuple[str, ...], default: Any = _MISSING) -> Any:
    """First present spelling among `names`; error if two spellings disagree or none is given."""
    found = {n: hf[n] for n in names if n in hf and hf[n] is not None}
    values = list(found.values())
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"conflicting config values for the same field: {found}")
    if found:
        return values[0]
    if default is _MISSING:
        raise ValueError(f"config is missing required field {names[0]!r} (accepted spellings: {list(names)})")
    return default


def without_dropout(cfg: ModelConfig) -> ModelConfig:
    """The same model with every dropout rate 0 (model.dropout="off")."""
    return dataclasses.replace(cfg, **{f: 0.0 for f in DROPOUT_FIELDS})


def uses_dropout(cfg: ModelConfig) -> bool:
    """Whether training steps need a dropout key (any rate > 0)."""
    return any(getattr(cfg, f) > 0.0 for f in DROPOUT_FIELDS)
