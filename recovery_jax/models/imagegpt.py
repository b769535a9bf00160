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
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .config import DROPOUT_FIELDS, GPT2Settings, hf_get
from .gpt2 import GPT2Block, block_tensors
from .layers import F32, MLP, Dtype, Embed, Model, Unembed, apply_dropout, check_length
from .vision_common import (
    Entry, Port, TransformerShape, check_act_and_eps, check_config_dict, check_positive, check_rates, cross_entropy,
    kernel_to_linear, linear_to_kernel,
)

NAME = "imagegpt"  # models.registry name and the run config's model.arch
ARCHITECTURE = "ImageGPTForCausalImageModeling"
MODEL_TYPE = "imagegpt"
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
IGNORED_KEYS = (r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)",)


@dataclasses.dataclass(frozen=True)
class ImageGPTConfig(TransformerShape, GPT2Settings):
    """Shape and numerics of an Image GPT: d_model, n_layers, n_heads, d_ff (TransformerShape, by keyword), the
    GPT-2 settings (dropouts, attention scaling, init std, attn_block: GPT2Settings, by keyword) and the fields
    below. Defaults are transformers 5.23's ImageGPTConfig ones (parse_config({}) is the default model)."""

    vocab_size: int = 513  # 512 colours + start token
    n_positions: int = 1024
    act: str = "quick_gelu"
    ln_eps: float = 1e-5

    @property
    def arch(self) -> str:
        """The registry name (models.registry.get accepts this config)."""
        return NAME

    @property
    def n_colors(self) -> int:
        """Number of logits (the head predicts colour clusters only)."""
        return self.vocab_size - 1

    @property
    def sos_id(self) -> int:
        return self.vocab_size - 1

    def __post_init__(self) -> None:
        check_positive(self, ("vocab_size", "n_positions"))
        self.check_shape()
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size={self.vocab_size} must be >= 2 (colours + the start token)")
        check_act_and_eps(self, ACTIVATIONS, "activation_function", "layer_norm_epsilon")
        check_rates(self, DROPOUT_FIELDS)
        if self.attn_block < 0:
            raise ValueError(f"attn_block must be >= 0, got {self.attn_block}")


def parse_config(hf: dict) -> ImageGPTConfig:
    """HF config.json dict (model_type "imagegpt") -> ImageGPTConfig; ValueError for what the port does not do."""
    check_config_dict(hf, MODEL_TYPE, "an Image GPT")
    if hf.get("add_cross_attention", False):
        raise ValueError("unsupported config value add_cross_attention=True; valid: [False]")
    if hf.get("tie_word_embeddings", False):
        raise ValueError("unsupported config value tie_word_embeddings=True; valid: [False] (lm_head has "
                         "vocab_size - 1 rows, wte vocab_size: they cannot be tied)")
    for flag in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag) not in (None, True, False):
            raise ValueError(f"unsupported config value {flag}={hf[flag]!r}; valid: [True, False]")
    # reorder_and_upcast_attn only changes fp16/bf16 numerics in torch; the softmax here is always fp32.
    d = int(hf_get(hf, ("n_embd", "hidden_size"), 512))
    n_inner = hf.get("n_inner")
    return ImageGPTConfig(
        vocab_size=int(hf_get(hf, ("vocab_size",), 513)),
        n_positions=int(hf_get(hf, ("n_positions", "max_position_embeddings"), 1024)),
        d_model=d,
        n_layers=int(hf_get(hf, ("n_layer", "num_hidden_layers"), 24)),
        n_heads=int(hf_get(hf, ("n_head", "num_attention_heads"), 8)),
        d_ff=int(n_inner) if n_inner is not None else 4 * d,
        act=str(hf_get(hf, ("activation_function",), "quick_gelu")),
        ln_eps=float(hf_get(hf, ("layer_norm_epsilon",), 1e-5)),
        attn_pdrop=float(hf_get(hf, ("attn_pdrop",), 0.1)),
        resid_pdrop=float(hf_get(hf, ("resid_pdrop",), 0.1)),
        embd_pdrop=float(hf_get(hf, ("embd_pdrop",), 0.1)),
        scale_attn_weights=bool(hf.get("scale_attn_weights", True)),
        scale_attn_by_inverse_layer_idx=bool(hf.get("scale_attn_by_inverse_layer_idx", False)),
        initializer_range=float(hf_get(hf, ("initializer_range",), 0.02)),
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


class ImageGPTBlock(GPT2Block):
    """GPT-2's block with ImageGPTLayerNorm, the MLP's residual dropout drawn inside "mlp" (as HF)."""

    def norm(self, name: str) -> nn.Module:
        return ImageGPTLayerNorm(self.cfg.ln_eps, self.dtype, name=name)

    def feed_forward(self, h_BLD: jax.Array) -> jax.Array:
        cfg = self.cfg
        return MLP(cfg.d_model, cfg.d_ff, cfg.act, "c_fc", "c_proj", self.dtype, cfg.resid_pdrop, self.deterministic,
                   name="mlp")(h_BLD)


class ImageGPT(Model):
    """ids_BL (colour ids, start token = cfg.sos_id) -> fp32 logits_BLK over K = vocab_size - 1 colours.

    Params: wte, wpe, h_{i}/{ln_1, attn/{c_attn, c_proj}, ln_2, mlp/{c_fc, c_proj}}, ln_f, lm_head (kernel [D, K]).
    deterministic=False turns the dropouts on (needs rngs={"dropout": key}); return_hidden also returns the ln_f
    output [B, L, D] in the compute dtype."""

    @nn.compact
    def __call__(self, ids_BL: jax.Array, deterministic: bool = True, return_hidden: bool = False):
        cfg = self.cfg
        seq = check_length(ids_BL.shape[1], cfg.n_positions, "n_positions")
        x_BLD = Embed(cfg.vocab_size, cfg.d_model, self.dtype, name="wte")(ids_BL)
        x_BLD = x_BLD + Embed(cfg.n_positions, cfg.d_model, self.dtype, name="wpe")(jnp.arange(seq))[None]
        x_BLD = apply_dropout(x_BLD, cfg.embd_pdrop, deterministic)
        for block in self.blocks(ImageGPTBlock, cfg.n_layers, "h_", deterministic, numbered=True):
            x_BLD = block(x_BLD)
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


def init_spec(cfg: ImageGPTConfig, path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, float]:
    """HF init: weights N(0, initializer_range), the two c_proj weights / sqrt(2 n_layer); biases 0; LN scale 1."""
    if path[-1] in ("bias", "scale"):
        return ("zeros" if path[-1] == "bias" else "ones"), 0.0
    std = cfg.initializer_range
    return "normal", std / math.sqrt(2.0 * cfg.n_layers) if path[-2] == "c_proj" else std


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
    return t + [e(key, path, shape) for key, path, shape in block_tensors(cfg.n_layers, d, f, ln_bias=False)]


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
    return PORT.run_config(model, vocab_size=vocab_size)


def image_spec(cfg: ImageGPTConfig) -> dict:
    """Pixels in raster order, one token each: a side s with s*s <= n_positions; RGB; n_colors clusters."""
    return {"size": 0, "min_size": 1, "positions": cfg.n_positions, "channels": 3, "outputs": cfg.n_colors}


def _build(cfg: ImageGPTConfig, dtype: Any = jnp.float32, remat: bool = False, attn_block: int = 0) -> ImageGPT:
    return ImageGPT(dataclasses.replace(cfg, attn_block=int(attn_block)), dtype=dtype, remat=remat)


PORT = Port(name=NAME, what="Image GPT", hf_model_type=MODEL_TYPE, hf_class=ARCHITECTURE, parse_config=parse_config,
            to_hf_config=to_hf_config, presets=PRESETS, shape_keys=SHAPE_KEYS, param_shapes=param_shapes,
            key_table=key_table, init_spec=init_spec, dropout_fields=DROPOUT_FIELDS, ignored=IGNORED_KEYS)
# The checkpoint and run plumbing (vision_common.Port) under this module's names: init_params(cfg, rng),
# from_state_dict(cfg, state_dict), to_state_dict(params, cfg), load(path_or_id, revision=), export(params, cfg,
# path) writing what ImageGPTForCausalImageModeling.from_pretrained reads.
init_params, from_state_dict, to_state_dict, load, export = (
    PORT.init_params, PORT.from_state_dict, PORT.to_state_dict, PORT.load, PORT.export)
without_dropout, uses_dropout = PORT.without_dropout, PORT.uses_dropout
ARCH = PORT.registry_entry(module=ImageGPT, block_prefix="h_", task="lm", from_run=from_run, build=_build,
                           image_spec=image_spec)
