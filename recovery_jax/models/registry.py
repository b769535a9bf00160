"""The architectures, by name: each one's knowledge lives in its own module, which ends with one
`ARCH = Architecture(...)`; generic code (HF I/O, init, parameter-tree helpers) asks this registry instead of
branching on names. Adding an architecture = one module + one entry in ARCHITECTURES.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn

from .config import ModelConfig


@dataclasses.dataclass(frozen=True)
class HFParam:
    """One parameter in an HF checkpoint: accepted key spellings (the first is written on export), our path,
    the HF shape, whether a torch Linear is transposed, and whether its rows are token ids."""

    keys: tuple[str, ...]
    path: tuple[str, ...]
    shape: tuple[int, ...]
    transpose: bool = False
    vocab_rows: bool = False  # truncated by load_hf(vocab_size=...)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What generic code needs to know about one architecture."""

    name: str  # ModelConfig.arch and the run config's model.arch
    module: type[nn.Module]  # constructed as module(cfg=ModelConfig, dtype=..., remat=...)
    presets: Mapping[str, dict]  # preset name -> HF config.json dict
    # Hugging Face side
    parse_hf: Callable[[dict], ModelConfig]  # config.json dict -> ModelConfig (raises on what we do not implement)
    to_hf: Callable[[ModelConfig], dict]  # the inverse: parse_hf(to_hf(cfg)) == cfg (attn_block aside); to_hf_config
    # puts "architectures" and "model_type" first
    hf_model_type: str  # config.json "model_type"
    hf_class: str  # config.json "architectures" entry
    hf_params: Callable[[ModelConfig], list[HFParam]]  # the checkpoint <-> params table
    hf_ignored: tuple[str, ...] = ()  # regexes of checkpoint buffers that hold no trainable state
    hf_optional_keys: frozenset[str] = frozenset()  # keys preset_config may add besides the preset's
    # parameter tree
    init_roles: Mapping[str, str] = dataclasses.field(default_factory=dict)  # module name -> "in" | "out"
    block_prefix: str = ""  # blocks are params[f"{block_prefix}{i}"]
    block_parts: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # `which` -> sub-path
    input_embeddings: tuple[str, ...] = ()  # frozen with the first blocks (trainable_mask)
    unembedding: tuple[str, ...] = ()  # path of the output-embedding matrix the probes read
    vocab_params: tuple[tuple[tuple[str, ...], int], ...] = ()  # (path, token axis) of every vocabulary param
    # (regex over a parameter's 'a/b/c' path, axis or None) pairs, first match wins: the axis sharded over the
    # mesh's `model` devices (recovery_jax/sharding.py; optimizer moments follow their parameter). Unmatched
    # arrays, and matches whose axis does not divide, take the largest axis that divides (FSDP).
    shard_rules: tuple[tuple[str, int | None], ...] = ()
    # FF width that follows the width when a preset leaves it to the default (GPT-2 n_inner=None: 4); 0: fixed
    ff_multiple: int = 0
    # What a task is for this architecture (engine.TASKS): "lm" = a token sequence, input_ids [B, L] -> logits
    # [B, L, V] with the causal next-token loss; "classify" = a batch of labelled images, pixels [B, H, W, C] ->
    # logits [B, K] with the batch-mean cross-entropy. `data`: what the run feeds it ("text" or "images").
    task: str = "lm"
    data: str = "text"
    # Ports with their own config class (the vision models): the generic run path (factory.model_config,
    # init_params, build_model, uses_dropout, load_pretrained) calls these instead of the ModelConfig route.
    from_run: Callable[..., Any] | None = None  # (model section, output size | None, image size) -> config
    init: Callable[[Any, Any], dict] | None = None  # (config, rng) -> params
    load: Callable[..., tuple[Any, dict]] | None = None  # (path or hub id, revision) -> (config, params)
    build: Callable[..., nn.Module] | None = None  # (config, dtype, remat, attn_block) -> module
    dropout: Callable[[Any], bool] | None = None  # whether training steps draw dropout
    no_dropout: Callable[[Any], Any] | None = None  # the same config with every dropout rate 0
    # the input contract of a run: {"size": exact side | 0, "min_size": smallest side, "channels": C,
    # "outputs": classes or colours}
    image_spec: Callable[[Any], dict] | None = None

    @property
    def port(self) -> bool:
        """Whether this architecture has its own config class and run hooks (see from_run ...)."""
        return self.from_run is not None


def get(arch: str | ModelConfig) -> Architecture:
    """The architecture of a name (or of a ModelConfig); ValueError listing the valid names."""
    name = arch if isinstance(arch, str) else getattr(arch, "arch", arch)  # a ModelConfig or a port's config
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; valid: {list(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def detect(hf_config: dict) -> Architecture:
    """The architecture of an HF config.json dict, from its model_type / architectures."""
    names = [hf_config.get("model_type")] + list(hf_config.get("architectures") or [])
    found = {a.name for a in ARCHITECTURES.values() for n in names if n in (a.hf_model_type, a.hf_class)}
    if len(found) != 1:
        supported = ", ".join(f"{a.hf_class} ({a.name})" for a in ARCHITECTURES.values())
        raise ValueError(
            f"unknown or ambiguous architecture: model_type={hf_config.get('model_type')!r}, "
            f"architectures={hf_config.get('architectures')!r}; supported: {supported}"
        )
    return ARCHITECTURES[found.pop()]


def parse_config(arch: str, hf_config: dict) -> ModelConfig:
    """Validate an HF config.json dict for `arch` and normalise it."""
    a = get(arch)
    if not isinstance(hf_config, dict):
        raise TypeError(f"hf_config must be a dict, got {type(hf_config).__name__}")
    return a.parse_hf(hf_config)


def to_hf_config(cfg: ModelConfig) -> dict:
    """The HF config.json dict of a ModelConfig (what model.json records and export_hf writes): "architectures"
    and "model_type" from the registry entry, then the architecture's fields."""
    a = get(cfg)
    return {"architectures": [a.hf_class], "model_type": a.hf_model_type, **a.to_hf(cfg)}


def preset_config(name: str, **overrides: Any) -> tuple[str, dict]:
    """(arch, hf_config) of a preset, with HF-named fields overridden (e.g. hidden_size=512 for width sweeps).

    Overriding the width does NOT touch the HF dict's FF width (faithful to the paper's scripts).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    arch_name, base = PRESETS[name]
    arch = ARCHITECTURES[arch_name]
    hf = copy.deepcopy(base)
    unknown = sorted(set(overrides) - set(hf) - arch.hf_optional_keys)
    if unknown:
        valid = sorted((set(hf) | arch.hf_optional_keys) - {"architectures", "model_type"})
        raise ValueError(f"unknown override key(s) {unknown} for preset {name!r} ({arch_name}); valid: {valid}")
    hf.update(copy.deepcopy(overrides))
    arch.parse_hf(hf)  # fail early on inconsistent overrides
    return arch_name, hf


from . import gpt2, gpt_neox, imagegpt, vgg, vit  # noqa: E402  (the modules build their ARCH from the classes above)

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    gpt_neox.ARCH,
    gpt2.ARCH,
    imagegpt.ARCH,
    vit.ARCH,
    vgg.ARCH,
)}
ARCHS = tuple(ARCHITECTURES)
# Preset name -> (arch, HF config.json dict): the fields of the Hub files (EleutherAI/pythia-*,
# openai-community/gpt2*), revision main.
PRESETS: dict[str, tuple[str, dict]] = {
    name: (a.name, hf) for a in ARCHITECTURES.values() for name, hf in a.presets.items()
}
