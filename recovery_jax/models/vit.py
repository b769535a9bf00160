"""Vision Transformer classifier in flax.linen: a port of transformers' `ViTForImageClassification`
(google/vit-*), with config parsing, init and HF checkpoint I/O in this one file.

Architecture (checked against transformers 5.23's `modeling_vit.py`): a patch embedding convolution (kernel =
stride = patch size, bias), a learned CLS token put before the patches, learned position embeddings for
patches + 1 tokens (no interpolation: the input must have the config's image size), pre-LN encoder blocks
``x + attn(LN(x))`` then ``x + mlp(LN(x))`` with bidirectional softmax attention (q/k/v biases per ``qkv_bias``,
scale 1/sqrt(head_dim), softmax in fp32), ``hidden_act`` "gelu" = exact erf GELU, a final LayerNorm
(``layer_norm_eps``, 1e-12 for the google checkpoints, not flax's 1e-6), and a Linear classifier on the CLS token.
Dropouts (hidden_dropout_prob, attention_probs_dropout_prob; 0.0 for the google checkpoints) are on with
deterministic=False and a "dropout" rng.

Pitfalls handled:
- Input is NHWC (``pixels_BHWC``), not torch's NCHW. Conv kernels are converted [O, I, kh, kw] -> [kh, kw, I, O];
  the patch grid is flattened in row-major (row, column) order, as torch's ``flatten(2).transpose(1, 2)``.
- Two key spellings. transformers 5 builds the model with ``vit.layers.N.attention.{q,k,v,o}_proj`` and
  ``vit.layers.N.mlp.fc{1,2}`` (what ``model.state_dict()`` returns) but ``save_pretrained`` writes, and the Hub
  files hold, the legacy ``vit.encoder.layer.N.attention.attention.{query,key,value}``,
  ``.attention.output.dense``, ``.intermediate.dense``, ``.output.dense``. Both are read; export writes the
  legacy one, which both old and new transformers load. Checkpoints of a bare ``ViTModel`` (no ``vit.`` prefix)
  are read too, but they have no classifier: that is an error, not a silent random head. ``vit.pooler.*``
  (present in ViTModel checkpoints, unused by the classifier) is ignored.
- The config's ``num_labels`` is the length of ``id2label`` when that is given (transformers' rule).

    cfg, params = load("google/vit-base-patch16-224")
    logits_BK = ViT(cfg).apply({"params": params}, pixels_BHWC)   # pixels normalised as the image processor does
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import F32, MLP, Dtype, LayerNorm, Model, Sublayer, apply_dropout, attention, dense, maybe_dropout
from .vision_common import (
    Entry, Port, TransformerShape, check_act_and_eps, check_config_dict, check_positive, check_rates, conv_to_kernel,
    cross_entropy, kernel_to_conv, linear,
)

NAME = "vit"  # models.registry name and the run config's model.arch
ARCHITECTURE = "ViTForImageClassification"
MODEL_TYPE = "vit"
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
IGNORED_KEYS = (r"(vit\.)?pooler\.dense\.(weight|bias)",)
DROPOUT_FIELDS = ("hidden_dropout", "attn_dropout")


@dataclasses.dataclass(frozen=True)
class ViTConfig(TransformerShape):
    """Shapes and numerics of a ViT classifier: d_model, n_layers, n_heads, d_ff (TransformerShape, by keyword) and
    the fields below. Defaults are transformers' ViTConfig ones (parse_config({}) is ViT-B/16 at 224)."""

    image_hw: tuple[int, int] = (224, 224)
    patch_hw: tuple[int, int] = (16, 16)
    num_channels: int = 3
    act: str = "gelu"
    ln_eps: float = 1e-12
    qkv_bias: bool = True
    hidden_dropout: float = 0.0
    attn_dropout: float = 0.0
    num_labels: int = 1000
    initializer_range: float = 0.02

    @property
    def arch(self) -> str:
        """The registry name (models.registry.get accepts this config)."""
        return NAME

    @property
    def grid_hw(self) -> tuple[int, int]:
        return self.image_hw[0] // self.patch_hw[0], self.image_hw[1] // self.patch_hw[1]

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid_hw
        return gh * gw

    def __post_init__(self) -> None:
        check_positive(self, ("num_channels", "num_labels"))
        self.check_shape()
        for name in ("image_hw", "patch_hw"):
            v = getattr(self, name)
            if not (isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
                raise ValueError(f"unsupported config value {name}={v!r}; valid: two positive integers")
        if self.num_patches == 0:
            raise ValueError(f"image size {self.image_hw} is smaller than the patch size {self.patch_hw}")
        check_act_and_eps(self, ACTIVATIONS, "hidden_act", "layer_norm_eps")
        check_rates(self, DROPOUT_FIELDS)


def _pair(name: str, v: Any) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    raise ValueError(f"unsupported config value {name}={v!r}; valid: an integer or two integers")


def parse_config(hf: dict) -> ViTConfig:
    """HF config.json dict (model_type "vit") -> ViTConfig; ValueError for what the port does not do."""
    check_config_dict(hf, MODEL_TYPE, "a ViT")
    d = int(hf.get("hidden_size", 768))
    h = int(hf.get("num_attention_heads", 12))
    if hf.get("head_dim") is not None and h > 0 and hf["head_dim"] != d // h:
        raise ValueError(f"unsupported config value head_dim={hf['head_dim']!r}; valid: {d // h} (hidden size / heads)")
    if hf.get("qkv_bias", True) not in (True, False):
        raise ValueError(f"unsupported config value qkv_bias={hf['qkv_bias']!r}; valid: [True, False]")
    id2label = hf.get("id2label")
    num_labels = len(id2label) if id2label else int(hf.get("num_labels", 2))
    return ViTConfig(
        image_hw=_pair("image_size", hf.get("image_size", 224)),
        patch_hw=_pair("patch_size", hf.get("patch_size", 16)),
        num_channels=int(hf.get("num_channels", 3)),
        d_model=d,
        n_layers=int(hf.get("num_hidden_layers", 12)),
        n_heads=h,
        d_ff=int(hf.get("intermediate_size", 3072)),
        act=str(hf.get("hidden_act", "gelu")),
        ln_eps=float(hf.get("layer_norm_eps", 1e-12)),
        qkv_bias=bool(hf.get("qkv_bias", True)),
        hidden_dropout=float(hf.get("hidden_dropout_prob", 0.0)),
        attn_dropout=float(hf.get("attention_probs_dropout_prob", 0.0)),
        num_labels=num_labels,
        initializer_range=float(hf.get("initializer_range", 0.02)),
    )


def to_hf_config(cfg: ViTConfig, id2label: dict | None = None) -> dict:
    """ViTConfig -> config.json dict for transformers' ViTForImageClassification (labels LABEL_i unless given)."""
    if id2label is not None and len(id2label) != cfg.num_labels:
        raise ValueError(f"id2label has {len(id2label)} entries, the config {cfg.num_labels} labels")
    labels = {str(k): v for k, v in (id2label or {i: f"LABEL_{i}" for i in range(cfg.num_labels)}).items()}

    def one(p: tuple[int, int]) -> int | list[int]:
        return p[0] if p[0] == p[1] else list(p)

    return {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "torch_dtype": "float32",
        "image_size": one(cfg.image_hw), "patch_size": one(cfg.patch_hw), "num_channels": cfg.num_channels,
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff, "hidden_act": cfg.act, "layer_norm_eps": cfg.ln_eps,
        "qkv_bias": cfg.qkv_bias, "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attn_dropout, "initializer_range": cfg.initializer_range,
        "id2label": labels, "label2id": {v: int(k) for k, v in labels.items()},
    }


# ------------------------------------------------------------------------------------------------------- model


class ViTAttention(Sublayer):
    @nn.compact
    def __call__(self, x_BND: jax.Array) -> jax.Array:
        cfg = self.cfg
        b, n, d = x_BND.shape
        q_BNHd, k_BNHd, v_BNHd = (
            dense(d, name, self.dtype, use_bias=cfg.qkv_bias)(x_BND).reshape(b, n, cfg.n_heads, cfg.head_dim)
            for name in ("q_proj", "k_proj", "v_proj"))
        out_BNHd = attention(q_BNHd, k_BNHd, v_BNHd, cfg.head_dim**-0.5,
                             maybe_dropout(cfg.attn_dropout, self.deterministic))
        return dense(d, "o_proj", self.dtype)(out_BNHd.reshape(b, n, d))


class ViTLayer(Sublayer):
    @nn.compact
    def __call__(self, x_BND: jax.Array) -> jax.Array:
        cfg, det = self.cfg, self.deterministic
        a = ViTAttention(cfg, self.dtype, det, name="attention")(LayerNorm(cfg.ln_eps, self.dtype,
                                                                           name="layernorm_before")(x_BND))
        x_BND = x_BND + apply_dropout(a, cfg.hidden_dropout, det)
        mlp = MLP(cfg.d_model, cfg.d_ff, cfg.act, "fc1", "fc2", self.dtype, name="mlp")
        m = mlp(LayerNorm(cfg.ln_eps, self.dtype, name="layernorm_after")(x_BND))
        return x_BND + apply_dropout(m, cfg.hidden_dropout, det)


class ViTPatchEmbeddings(nn.Module):
    """Conv with kernel = stride = patch size; the [B, h, w, D] grid flattened row-major to [B, h*w, D] (the order
    of torch's projection(x).flatten(2).transpose(1, 2))."""

    cfg: ViTConfig
    dtype: Dtype

    @nn.compact
    def __call__(self, pixels_BHWC: jax.Array) -> jax.Array:
        cfg = self.cfg
        x_BhwD = nn.Conv(cfg.d_model, cfg.patch_hw, strides=cfg.patch_hw, padding="VALID", dtype=self.dtype,
                         param_dtype=F32, name="projection")(pixels_BHWC.astype(self.dtype))
        return x_BhwD.reshape(x_BhwD.shape[0], -1, cfg.d_model)


class ViTEmbeddings(Sublayer):
    @nn.compact
    def __call__(self, pixels_BHWC: jax.Array) -> jax.Array:
        cfg = self.cfg
        b = pixels_BHWC.shape[0]
        init = nn.initializers.normal(cfg.initializer_range)
        cls_token = self.param("cls_token", init, (1, 1, cfg.d_model), F32)
        pos = self.param("position_embeddings", init, (1, cfg.num_patches + 1, cfg.d_model), F32)
        x_BPD = ViTPatchEmbeddings(cfg, self.dtype, name="patch_embeddings")(pixels_BHWC)
        x_BND = jnp.concatenate([jnp.broadcast_to(cls_token.astype(self.dtype), (b, 1, cfg.d_model)), x_BPD], axis=1)
        x_BND = x_BND + pos.astype(self.dtype)
        return apply_dropout(x_BND, cfg.hidden_dropout, self.deterministic)


class ViT(Model):
    """pixels_BHWC (normalised, NHWC) -> fp32 logits_BK over cfg.num_labels classes (classifier on the CLS token).

    Params: embeddings/{cls_token [1,1,D], position_embeddings [1,P+1,D],
    patch_embeddings/projection/{kernel [ph,pw,C,D], bias}},
    layers_{i}/{layernorm_before, attention/{q_proj,k_proj,v_proj,o_proj}, layernorm_after, mlp/{fc1,fc2}},
    layernorm, classifier. return_hidden also returns the final-LayerNorm output [B, P+1, D]."""

    @nn.compact
    def __call__(self, pixels_BHWC: jax.Array, deterministic: bool = True, return_hidden: bool = False):
        cfg = self.cfg
        if pixels_BHWC.ndim != 4 or pixels_BHWC.shape[1:] != (*cfg.image_hw, cfg.num_channels):
            raise ValueError(f"expected pixels of shape [B, {cfg.image_hw[0]}, {cfg.image_hw[1]}, {cfg.num_channels}] "
                             f"(NHWC), got {list(pixels_BHWC.shape)}")
        x_BND = ViTEmbeddings(cfg, self.dtype, deterministic, name="embeddings")(pixels_BHWC)
        for layer in self.blocks(ViTLayer, cfg.n_layers, "layers_", deterministic):
            x_BND = layer(x_BND)
        h_BND = LayerNorm(cfg.ln_eps, self.dtype, name="layernorm")(x_BND)
        logits_BK = nn.Dense(cfg.num_labels, dtype=F32, param_dtype=F32, name="classifier")(h_BND[:, 0].astype(F32))
        return (logits_BK, h_BND) if return_hidden else logits_BK


def classification_loss(logits_BK: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Mean cross entropy, as ViTForImageClassification's single-label loss (torch CrossEntropyLoss)."""
    return cross_entropy(logits_BK, labels_B)


# ------------------------------------------------------------------------------------------------ params / I/O


def param_shapes(cfg: ViTConfig) -> dict:
    x = jnp.zeros((1, *cfg.image_hw, cfg.num_channels), jnp.float32)
    return jax.eval_shape(lambda: ViT(cfg).init(jax.random.PRNGKey(0), x))["params"]


def init_spec(cfg: ViTConfig, path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, float]:
    """HF init: Linear / Conv weights N(0, initializer_range), biases 0, LayerNorm 1 / 0, CLS token and position
    embeddings truncated normal (std initializer_range, cut at +-2 absolute as torch's trunc_normal_)."""
    if path[-1] in ("cls_token", "position_embeddings"):
        return "trunc_normal", cfg.initializer_range
    if path[-1] in ("bias", "scale"):
        return ("zeros" if path[-1] == "bias" else "ones"), 0.0
    return "normal", cfg.initializer_range


def key_table(cfg: ViTConfig) -> list[Entry]:
    """Legacy Hub spelling first (what export writes), then transformers 5's module names, then bare ViTModel."""
    d, f = cfg.d_model, cfg.d_ff
    ph, pw = cfg.patch_hw

    def e(legacy: str, new: str, path: tuple[str, ...], shape: tuple[int, ...], **kw) -> Entry:
        keys = tuple(dict.fromkeys(("vit." + legacy, "vit." + new, legacy)))
        return Entry(keys, path, shape, **kw)

    emb = "embeddings."
    t = [
        e(emb + "cls_token", emb + "cls_token", ("embeddings", "cls_token"), (1, 1, d)),
        e(emb + "position_embeddings", emb + "position_embeddings", ("embeddings", "position_embeddings"),
          (1, cfg.num_patches + 1, d)),
        e(emb + "patch_embeddings.projection.weight", emb + "patch_embeddings.projection.weight",
          ("embeddings", "patch_embeddings", "projection", "kernel"), (d, cfg.num_channels, ph, pw),
          to_flax=conv_to_kernel, to_torch=kernel_to_conv),
        e(emb + "patch_embeddings.projection.bias", emb + "patch_embeddings.projection.bias",
          ("embeddings", "patch_embeddings", "projection", "bias"), (d,)),
        e("layernorm.weight", "layernorm.weight", ("layernorm", "scale"), (d,)),
        e("layernorm.bias", "layernorm.bias", ("layernorm", "bias"), (d,)),
    ]
    t += linear("classifier", ("classifier",), d, cfg.num_labels)
    for i in range(cfg.n_layers):
        old, new, dst = f"encoder.layer.{i}.", f"layers.{i}.", (f"layers_{i}",)
        for ln in ("layernorm_before", "layernorm_after"):
            t.append(e(old + ln + ".weight", new + ln + ".weight", dst + (ln, "scale"), (d,)))
            t.append(e(old + ln + ".bias", new + ln + ".bias", dst + (ln, "bias"), (d,)))
        lin = [("attention.attention.query", "attention.q_proj", ("attention", "q_proj"), d, d, cfg.qkv_bias),
               ("attention.attention.key", "attention.k_proj", ("attention", "k_proj"), d, d, cfg.qkv_bias),
               ("attention.attention.value", "attention.v_proj", ("attention", "v_proj"), d, d, cfg.qkv_bias),
               ("attention.output.dense", "attention.o_proj", ("attention", "o_proj"), d, d, True),
               ("intermediate.dense", "mlp.fc1", ("mlp", "fc1"), d, f, True),
               ("output.dense", "mlp.fc2", ("mlp", "fc2"), f, d, True)]
        for o, n, sub, n_in, n_out, bias in lin:
            keys = [old + o, new + n]
            t += linear("vit." + keys[0], dst + sub, n_in, n_out, bias, alt=("vit." + keys[1], keys[0]))
    return t


def check_has_classifier(state_dict: Mapping) -> None:
    """A bare ViTModel checkpoint (legacy file names or transformers 5 module names) has no head: an error, not a
    silent random classifier."""
    if not any(k in state_dict for k in ("classifier.weight", "classifier.bias")) and any(
            k.startswith(("embeddings.", "vit.embeddings.")) for k in state_dict):
        raise ValueError("the ViT checkpoint has no classifier (a bare ViTModel, e.g. an in21k backbone): "
                         "ViTForImageClassification needs classifier.weight / classifier.bias")


# ------------------------------------------------------------------------------------------------ the run's hooks

# google/vit-base-patch16-224 (ImageNet-21k pretraining, ImageNet-1k fine-tuning at 224: a 1000-class head, which
# the in21k-only checkpoints lack), and a tiny from-scratch model for CPU runs (8 x 8 images, 2 x 2 patches).
_HUB = {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "image_size": 224, "patch_size": 16,
        "num_channels": 3, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "qkv_bias": True,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
        "num_labels": 1000}
PRESETS = {
    "vit-base-patch16-224": _HUB,
    "vit-tiny": dict(_HUB, image_size=8, patch_size=2, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, num_labels=10),
}
SHAPE_KEYS = {"hidden_size": "hidden_size", "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
              "intermediate_size": "intermediate_size"}


def from_run(model: dict, num_labels: int | None = None, image_size: int = 0) -> ViTConfig:
    """The run config's model section -> ViTConfig: the preset, model.<shape key> overrides, `num_labels` classes
    and an `image_size` (position embeddings for its patch grid) when the run's data set them; dropout rates 0
    with model.dropout="off"."""
    return PORT.run_config(model, num_labels=num_labels, image_size=image_size or None)


def image_spec(cfg: ViTConfig) -> dict:
    """Exactly the configured square resolution (no position interpolation)."""
    h, w = cfg.image_hw
    return {"size": h if h == w else 0, "min_size": max(h, w), "channels": cfg.num_channels,
            "outputs": cfg.num_labels}


def _build(cfg: ViTConfig, dtype: Any = jnp.float32, remat: bool = False, attn_block: int = 0) -> ViT:
    return ViT(cfg, dtype=dtype, remat=remat)


PORT = Port(name=NAME, what="ViT", hf_model_type=MODEL_TYPE, hf_class=ARCHITECTURE, parse_config=parse_config,
            to_hf_config=to_hf_config, presets=PRESETS, shape_keys=SHAPE_KEYS, param_shapes=param_shapes,
            key_table=key_table, init_spec=init_spec, dropout_fields=DROPOUT_FIELDS,
            ignored=IGNORED_KEYS, check_state=check_has_classifier)
# The checkpoint and run plumbing (vision_common.Port) under this module's names: init_params(cfg, rng),
# from_state_dict(cfg, state_dict) (legacy file names or transformers 5 module names), to_state_dict(params, cfg)
# (legacy names), load(path_or_id, revision=), export(params, cfg, path, id2label=None) writing what
# ViTForImageClassification.from_pretrained reads.
init_params, from_state_dict, to_state_dict, load, export = (
    PORT.init_params, PORT.from_state_dict, PORT.to_state_dict, PORT.load, PORT.export)
without_dropout, uses_dropout = PORT.without_dropout, PORT.uses_dropout
ARCH = PORT.registry_entry(module=ViT, block_prefix="layers_", task="classify", from_run=from_run, build=_build,
                           image_spec=image_spec)
