"""Image GPT (openai/imagegpt-{small,medium,large}) in flax.linen: a port of transformers'
`ImageGPTForCausalImageModeling`, with config parsing, init and HF checkpoint I/O in this one file.

Image GPT is GPT-2 with these differences, each checked against transformers 5.23's `modeling_imagegpt.py`:

- Its LayerNorm has no mean subtraction and no bias: ``x / sqrt(mean(x^2) + eps) * weight`` (an RMSNorm under
  another name), eps = ``layer_norm_epsilon`` (1e-5). Params: ``ln_*/scale`` only.
- Activation ``quick_gelu``: ``x * sigmoid(1.702 x)`` (the config default; neither the tanh nor the erf GELU).
- Vocabulary ``vocab_size`` = 513: 512 colour clusters and a start-of-sequence token (id 512 = vocab_size - 1).
  The head ``lm_head`` is untied and bias-free with ``vocab_size - 1`` outputs: it predicts colours only, never
  the start token (``tie_word_embeddings`` is False; a True value is rejected, the shapes could not be tied).
  Logits are therefore [B, L, vocab_size - 1], fp32.
- 1024 learned positions (32 x 32 pixels in raster order). The image processor does not prepend the start token:
  callers that pass its ``input_ids`` with ``labels = input_ids`` (the authors' scripts) get the mean loss over
  the 1023 next-pixel predictions, pixel 0 never predicted; prepending ``sos_id`` makes it 1024 predictions.
- Otherwise GPT-2: fused ``c_attn`` Conv1D weights already [in, out] (copied without transposing), split
  ({q,k,v}, head, head_dim); attention scale 1/sqrt(head_dim) (optionally / (layer_idx + 1)); causal mask with the
  fp32 minimum; softmax in fp32; dropouts attn_pdrop / resid_pdrop / embd_pdrop (on with deterministic=False and
  a "dropout" rng; the authors never called model.train(), so theirs were off).

Checkpoints: keys ``transformer.*`` + ``lm_head.weight`` (the bare ``h.*`` / ``wte.*`` spelling of ImageGPTModel
files is accepted too); causal-mask buffers ``transformer.h.N.attn.bias`` / ``.masked_bias`` of old files are
ignored, any other unknown tensor is an error.

    cfg, params = load("openai/imagegpt-small")              # or a local directory
    logits_BLK = ImageGPT(cfg).apply({"params": params}, ids_BL)
    loss = lm_loss(logits_BLK, ids_BL)                        # = HF's loss with labels = input_ids
    export(params, cfg, "out/")                               # ImageGPTForCausalImageModeling.from_pretrained("out/")
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .registry import Architecture
from .layers import F32, Dtype, Embed, Unembed, activation, apply_dropout, causal_attention, dense, maybe_dropout
from .vision_common import (
    Entry, check_table, convert, cross_entropy, init_from_spec, kernel_to_linear, linear_to_kernel, param_paths,
    read_hf_config, read_state_dict, resolve_dir, run_hf_config, to_state, write_hf_dir,
)

NAME = "imagegpt"  # models.registry name and the run config's model.arch
ARCHITECTURE = "ImageGPTForCausalImageModeling"
MODEL_TYPE = "imagegpt"
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
IGNORED_KEYS = (r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)",)


@dataclasses.dataclass(frozen=True)
class ImageGPTConfig:
    """Shape and numerics of an Image GPT; the defaults are transformers 5.23's ImageGPTConfig defaults."""

    vocab_size: int = 513  # 512 colours + start token
    n_positions: int = 1024
    d_model: int = 512
    n_layers: int = 24
    n_heads: int = 8
    d_ff: int = 2048
    act: str = "quick_gelu"
    ln_eps: float = 1e-5
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    initializer_range: float = 0.02
    attn_block: int = 0  # query block of causal_attention (0: full matrix; same numbers)

    @property
    def arch(self) -> str:
        """The registry name (models.registry.get accepts this config)."""
        return NAME

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_colors(self) -> int:
        """Number of logits (the head predicts colour clusters only)."""
        return self.vocab_size - 1

    @property
    def sos_id(self) -> int:
        return self.vocab_size - 1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "d_ff"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"unsupported config value {name}={getattr(self, name)!r}; valid: a positive integer")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size={self.vocab_size} must be >= 2 (colours + the start token)")
        if self.d_model % self.n_heads:
            raise ValueError(f"hidden size {self.d_model} is not divisible by the number of heads {self.n_heads}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unsupported config value activation_function={self.act!r}; valid: {list(ACTIVATIONS)}")
        for name in ("attn_pdrop", "resid_pdrop", "embd_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"unsupported config value {name}={getattr(self, name)!r}; valid: a rate in [0, 1)")
        if self.ln_eps <= 0:
            raise ValueError(f"unsupported config value layer_norm_epsilon={self.ln_eps!r}; valid: > 0")
        if self.attn_block < 0:
            raise ValueError(f"attn_block must be >= 0, got {self.attn_block}")


def _field(hf: dict, names: tuple[str, ...], default: Any) -> Any:
    found = {n: hf[n] for n in names if hf.get(n) is not None}
    values = list(found.values())
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"conflicting config values for the same field: {found}")
    return values[0] if values else default


def parse_config(hf: dict) -> ImageGPTConfig:
    """HF config.json dict (model_type "imagegpt") -> ImageGPTConfig; ValueError for what the port does not do."""
    if not isinstance(hf, dict):
        raise TypeError(f"hf config must be a dict, got {type(hf).__name__}")
    mt = hf.get("model_type", MODEL_TYPE)
    if mt != MODEL_TYPE:
        raise ValueError(f"not an Image GPT config: model_type={mt!r} (expected {MODEL_TYPE!r})")
    if hf.get("add_cross_attention", False):
        raise ValueError("unsupported config value add_cross_attention=True; valid: [False]")
    if hf.get("tie_word_embeddings", False):
        raise ValueError("unsupported config value tie_word_embeddings=True; valid: [False] (lm_head has "
                         "vocab_size - 1 rows, wte vocab_size: they cannot be tied)")
    for flag in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag) not in (None, True, False):
            raise ValueError(f"unsupported config value {flag}={hf[flag]!r}; valid: [True, False]")
    # reorder_and_upcast_attn only changes fp16/bf16 numerics in torch; the softmax here is always fp32.
    d = int(_field(hf, ("n_embd", "hidden_size"), 512))
    n_inner = hf.get("n_inner")
    return ImageGPTConfig(
        vocab_size=int(_field(hf, ("vocab_size",), 513)),
        n_positions=int(_field(hf, ("n_positions", "max_position_embeddings"), 1024)),
        d_model=d,
        n_layers=int(_field(hf, ("n_layer", "num_hidden_layers"), 24)),
        n_heads=int(_field(hf, ("n_head", "num_attention_heads"), 8)),
        d_ff=int(n_inner) if n_inner is not None else 4 * d,
        act=str(_field(hf, ("activation_function",), "quick_gelu")),
        ln_eps=float(_field(hf, ("layer_norm_epsilon",), 1e-5)),
        attn_pdrop=float(_field(hf, ("attn_pdrop",), 0.1)),
        resid_pdrop=float(_field(hf, ("resid_pdrop",), 0.1)),
        embd_pdrop=float(_field(hf, ("embd_pdrop",), 0.1)),
        scale_attn_weights=bool(hf.get("scale_attn_weights", True)),
        scale_attn_by_inverse_layer_idx=bool(hf.get("scale_attn_by_inverse_layer_idx", False)),
        initializer_range=float(_field(hf, ("initializer_range",), 0.02)),
    )


def to_hf_config(cfg: ImageGPTConfig) -> dict:
    """ImageGPTConfig -> config.json dict that transformers' ImageGPTConfig reads back to the same model."""
    return {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "torch_dtype": "float32",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.n_positions, "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "n_inner": cfg.d_ff,
        "activation_function": cfg.act, "layer_norm_epsilon": cfg.ln_eps,
        "attn_pdrop": cfg.attn_pdrop, "resid_pdrop": cfg.resid_pdrop, "embd_pdrop": cfg.embd_pdrop,
        "scale_attn_weights": cfg.scale_attn_weights,
        "scale_attn_by_inverse_layer_idx": cfg.scale_attn_by_inverse_layer_idx,
        "reorder_and_upcast_attn": False, "add_cross_attention": False, "tie_word_embeddings": False,
        "initializer_range": cfg.initializer_range,
    }


# ------------------------------------------------------------------------------------------------------- model


def _act(name: str):
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    return activation(name)


class ImageGPTLayerNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * scale in fp32: no centring, no bias (HF ImageGPTLayerNorm)."""

    eps: float
    dtype: Dtype = F32

    @nn.compact
    def __call__(self, x_BLD: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x_BLD.shape[-1],), F32)
        x32 = x_BLD.astype(F32)
        y = x32 / jnp.sqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps) * scale
        return y.astype(self.dtype)


class ImageGPTAttention(nn.Module):
    cfg: ImageGPTConfig
    dtype: Dtype
    deterministic: bool
    layer_idx: int

    @nn.compact
    def __call__(self, x_BLD: jax.Array) -> jax.Array:
        cfg = self.cfg
        b, seq, d = x_BLD.shape
        qkv = dense(3 * d, "c_attn", self.dtype)(x_BLD)
        # Fused output axis is ({q,k,v}, head, head_dim) as in GPT-2: split in three, then into heads.
        q_BLHd, k_BLHd, v_BLHd = (t.reshape(b, seq, cfg.n_heads, cfg.head_dim) for t in jnp.split(qkv, 3, axis=-1))
        scale = cfg.head_dim ** -0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= float(self.layer_idx + 1)
        out = causal_attention(q_BLHd, k_BLHd, v_BLHd, scale, maybe_dropout(cfg.attn_pdrop, self.deterministic),
                               cfg.attn_block)
        out = dense(d, "c_proj", self.dtype)(out.reshape(b, seq, d))
        return apply_dropout(out, cfg.resid_pdrop, self.deterministic)


class ImageGPTMLP(nn.Module):
    cfg: ImageGPTConfig
    dtype: Dtype
    deterministic: bool

    @nn.compact
    def __call__(self, x_BLD: jax.Array) -> jax.Array:
        h = dense(self.cfg.d_ff, "c_fc", self.dtype)(x_BLD)
        h = _act(self.cfg.act)(h.astype(F32)).astype(self.dtype)
        h = dense(self.cfg.d_model, "c_proj", self.dtype)(h)
        return apply_dropout(h, self.cfg.resid_pdrop, self.deterministic)


class ImageGPTBlock(nn.Module):
    cfg: ImageGPTConfig
    dtype: Dtype
    deterministic: bool
    layer_idx: int

    @nn.compact
    def __call__(self, x_BLD: jax.Array) -> jax.Array:
        cfg, det = self.cfg, self.deterministic
        a = ImageGPTLayerNorm(cfg.ln_eps, self.dtype, name="ln_1")(x_BLD)
        x_BLD = x_BLD + ImageGPTAttention(cfg, self.dtype, det, self.layer_idx, name="attn")(a)
        m = ImageGPTLayerNorm(cfg.ln_eps, self.dtype, name="ln_2")(x_BLD)
        return x_BLD + ImageGPTMLP(cfg, self.dtype, det, name="mlp")(m)


class ImageGPT(nn.Module):
    """ids_BL (colour ids, start token = cfg.sos_id) -> fp32 logits_BLK over K = vocab_size - 1 colours.

    Params: wte, wpe, h_{i}/{ln_1, attn/{c_attn, c_proj}, ln_2, mlp/{c_fc, c_proj}}, ln_f, lm_head (kernel [D, K]).
    deterministic=False turns the dropouts on (needs rngs={"dropout": key}); return_hidden also returns the ln_f
    output [B, L, D] in the compute dtype."""

    cfg: ImageGPTConfig
    dtype: Dtype = F32
    remat: bool = False

    @nn.compact
    def __call__(self, ids_BL: jax.Array, deterministic: bool = True, return_hidden: bool = False):
        cfg = self.cfg
        seq = ids_BL.shape[1]
        if seq > cfg.n_positions:
            raise ValueError(f"sequence length {seq} exceeds n_positions {cfg.n_positions}")
        x_BLD = Embed(cfg.vocab_size, cfg.d_model, self.dtype, name="wte")(ids_BL)
        x_BLD = x_BLD + Embed(cfg.n_positions, cfg.d_model, self.dtype, name="wpe")(jnp.arange(seq))[None]
        x_BLD = apply_dropout(x_BLD, cfg.embd_pdrop, deterministic)
        block = nn.remat(ImageGPTBlock) if self.remat else ImageGPTBlock
        for i in range(cfg.n_layers):
            x_BLD = block(cfg, self.dtype, deterministic, i, name=f"h_{i}")(x_BLD)
        h_BLD = ImageGPTLayerNorm(cfg.ln_eps, self.dtype, name="ln_f")(x_BLD)
        logits_BLK = Unembed(cfg.n_colors, self.dtype, name="lm_head")(h_BLD)
        return (logits_BLK, h_BLD) if return_hidden else logits_BLK


def lm_loss(logits_BLK: jax.Array, labels_BL: jax.Array) -> jax.Array:
    """HF ImageGPTForCausalImageModeling loss: logits[:, t] predict labels[:, t + 1]; mean over the targets that
    are not -100. A start token (id K) among the targets is out of range: NaN here, an error in torch."""
    k = logits_BLK.shape[-1]
    return cross_entropy(logits_BLK[:, :-1].reshape(-1, k), labels_BL[:, 1:].reshape(-1))


# ------------------------------------------------------------------------------------------------ params / I/O


def param_shapes(cfg: ImageGPTConfig) -> dict:
    """Param tree of jax.ShapeDtypeStruct (no allocation)."""
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: ImageGPT(cfg).init(jax.random.PRNGKey(0), ids))["params"]


def init_params(cfg: ImageGPTConfig, rng: jax.Array) -> dict:
    """HF init: weights N(0, initializer_range), the two c_proj weights / sqrt(2 n_layer); biases 0; LN scale 1."""
    return _init_params(cfg, rng)


@functools.partial(jax.jit, static_argnums=0)  # one compilation per config
def _init_params(cfg: ImageGPTConfig, rng: jax.Array) -> dict:
    def spec(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, float]:
        if path[-1] in ("bias", "scale"):
            return ("zeros" if path[-1] == "bias" else "ones"), 0.0
        std = cfg.initializer_range
        return "normal", std / math.sqrt(2.0 * cfg.n_layers) if path[-2] == "c_proj" else std

    return init_from_spec(rng, param_paths(param_shapes(cfg)), spec)


def key_table(cfg: ImageGPTConfig) -> list[Entry]:
    """HF key (with "transformer." first, the spelling export writes; bare as an alternative) -> param path."""
    d, f, v = cfg.d_model, cfg.d_ff, cfg.vocab_size

    def e(key: str, path: tuple[str, ...], shape: tuple[int, ...]) -> Entry:
        return Entry(("transformer." + key, key), path, shape)

    t = [
        e("wte.weight", ("wte", "embedding"), (v, d)),
        e("wpe.weight", ("wpe", "embedding"), (cfg.n_positions, d)),
        e("ln_f.weight", ("ln_f", "scale"), (d,)),
        Entry(("lm_head.weight",), ("lm_head", "kernel"), (v - 1, d), linear_to_kernel, kernel_to_linear),
    ]
    # Conv1D weights are stored [in, out]: the Flax kernel layout, no transpose.
    convs = [("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d), ("mlp.c_fc", d, f), ("mlp.c_proj", f, d)]
    for i in range(cfg.n_layers):
        src, dst = f"h.{i}.", (f"h_{i}",)
        for ln in ("ln_1", "ln_2"):
            t.append(e(src + ln + ".weight", dst + (ln, "scale"), (d,)))
        for name, n_in, n_out in convs:
            sub = dst + tuple(name.split("."))
            t.append(e(src + name + ".weight", sub + ("kernel",), (n_in, n_out)))
            t.append(e(src + name + ".bias", sub + ("bias",), (n_out,)))
    return t


def from_state_dict(cfg: ImageGPTConfig, state_dict: dict, dtype: Any = jnp.float32) -> dict:
    """HF-named state dict (torch tensors or numpy arrays, e.g. model.state_dict()) -> params, fully checked."""
    return convert(key_table(cfg), state_dict, param_paths(param_shapes(cfg)), "Image GPT", IGNORED_KEYS, dtype)


def to_state_dict(params: dict, cfg: ImageGPTConfig) -> dict:
    """params -> HF-named fp32 numpy state dict (transformer.* and lm_head.weight, as save_pretrained writes)."""
    check_table(key_table(cfg), param_paths(param_shapes(cfg)))
    return to_state(key_table(cfg), params, "Image GPT")


def load(path_or_id: str | os.PathLike, *, revision: str | None = None,
         dtype: Any = jnp.float32) -> tuple[ImageGPTConfig, dict]:
    """HF directory (config.json + model.safetensors / pytorch_model.bin / sharded) or Hub id -> (cfg, params)."""
    d = resolve_dir(str(path_or_id), revision)
    hf = read_hf_config(d)
    archs = hf.get("architectures") or [ARCHITECTURE]
    if hf.get("model_type") != MODEL_TYPE and ARCHITECTURE not in archs:
        raise ValueError(f"{d} is not an Image GPT checkpoint: model_type={hf.get('model_type')!r}, "
                         f"architectures={hf.get('architectures')!r}")
    cfg = parse_config(hf)  # unsupported settings fail before any tensor is read
    return cfg, from_state_dict(cfg, read_state_dict(d), dtype)


def export(params: dict, cfg: ImageGPTConfig, path: str | os.PathLike):
    """Write config.json + model.safetensors (fp32) that ImageGPTForCausalImageModeling.from_pretrained reads."""
    return write_hf_dir(path, to_hf_config(cfg), to_state_dict(params, cfg))


# ------------------------------------------------------------------------------------------------ the run's hooks

# The Hub files' fields (openai/imagegpt-*), and a tiny from-scratch model for CPU runs (16 colours, 16 x 16).
_HUB = {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": 513, "n_positions": 1024,
        "activation_function": "quick_gelu", "layer_norm_epsilon": 1e-5, "attn_pdrop": 0.1, "resid_pdrop": 0.1,
        "embd_pdrop": 0.1, "initializer_range": 0.02, "tie_word_embeddings": False}
PRESETS = {
    "imagegpt-small": dict(_HUB, n_embd=512, n_layer=24, n_head=8),
    "imagegpt-medium": dict(_HUB, n_embd=1024, n_layer=36, n_head=8),
    "imagegpt-large": dict(_HUB, n_embd=1536, n_layer=48, n_head=16),
    "imagegpt-tiny": dict(_HUB, vocab_size=17, n_positions=256, n_embd=64, n_layer=2, n_head=2),
}
SHAPE_KEYS = {"hidden_size": "n_embd", "num_layers": "n_layer", "num_heads": "n_head", "intermediate_size": "n_inner",
              "max_positions": "n_positions"}


def from_run(model: dict, vocab_size: int | None = None, image_size: int = 0) -> ImageGPTConfig:
    """The run config's model section -> ImageGPTConfig: the preset, model.<shape key> overrides (a new width
    keeps the 4x MLP unless model.intermediate_size is given), `vocab_size` = colours + 1 (the start token)
    when the run's colour clusters set it, dropout rates 0 with model.dropout="off"."""
    hf = run_hf_config(model, PRESETS, SHAPE_KEYS, NAME)
    if vocab_size is not None:
        hf["vocab_size"] = int(vocab_size)
    cfg = parse_config(hf)
    return without_dropout(cfg) if model.get("dropout", "off") == "off" else cfg


def without_dropout(cfg: ImageGPTConfig) -> ImageGPTConfig:
    return dataclasses.replace(cfg, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)


def uses_dropout(cfg: ImageGPTConfig) -> bool:
    return max(cfg.attn_pdrop, cfg.resid_pdrop, cfg.embd_pdrop) > 0.0


def image_spec(cfg: ImageGPTConfig) -> dict:
    """Pixels in raster order, one token each: a side s with s*s <= n_positions; RGB; n_colors clusters."""
    return {"size": 0, "min_size": 1, "positions": cfg.n_positions, "channels": 3, "outputs": cfg.n_colors}


def _build(cfg: ImageGPTConfig, dtype: Any = jnp.float32, remat: bool = False, attn_block: int = 0) -> ImageGPT:
    return ImageGPT(dataclasses.replace(cfg, attn_block=int(attn_block)), dtype=dtype, remat=remat)


def _no_hf_table(cfg: ImageGPTConfig):
    raise ValueError("Image GPT checkpoints are read by recovery_jax.models.imagegpt.load, not the causal-LM table")


ARCH = Architecture(
    name=NAME, module=ImageGPT, presets=PRESETS, parse_hf=parse_config, to_hf=to_hf_config,
    hf_model_type=MODEL_TYPE, hf_class=ARCHITECTURE, hf_params=_no_hf_table, hf_ignored=IGNORED_KEYS,
    block_prefix="h_", task="lm", data="images",
    from_run=from_run, init=init_params, load=lambda path, revision=None: load(path, revision=revision),
    build=_build, dropout=uses_dropout, no_dropout=without_dropout, image_spec=image_spec,
)
