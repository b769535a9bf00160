"""VGG (torchvision layout, VGG-19 by default) in flax.linen, with init and torchvision / timm state-dict I/O in
this one file.

Architecture (checked against torchvision 0.28's ``models/vgg.py``, configuration "E" = VGG-19): ``features`` =
5 stages of 3x3 convolutions (padding 1, bias) each followed by ReLU, a 2x2 / stride 2 max-pool after every stage
(64, 64 | 128, 128 | 256 x4 | 512 x4 | 512 x4: 16 convs); ``avgpool`` = adaptive average pool to 7 x 7;
``classifier`` = Linear(512*7*7, 4096) -> ReLU -> Dropout(0.5) -> Linear(4096, 4096) -> ReLU -> Dropout(0.5) ->
Linear(4096, num_classes). The channel widths per stage, the hidden width, the number of classes and the dropout
rate are config fields, so tests can run a narrow copy on 32 x 32 images; the defaults are VGG-19's.

Pitfalls handled:
- NHWC input (``pixels_BHWC``) and Flax conv kernels [kh, kw, in, out]; torch weights are [out, in, kh, kw].
- Flatten order before the first Linear: torch flattens the pooled [C, 7, 7] map channel-major (c, h, w). Here the
  first classifier layer keeps its weight as a [7, 7, C, out] kernel (the same transform as a 7x7 convolution)
  applied to the NHWC map by one contraction, so no activation transpose is needed and timm's 7x7-conv spelling
  of the same weight maps onto it directly.
- Adaptive average pooling exactly as torch: output cell i averages input rows floor(i*H/7) .. ceil((i+1)*H/7)-1
  (overlapping bins when H is not a multiple of 7; each value repeated when H < 7, e.g. 1 x 1 maps from 32 x 32
  inputs). Max-pooling floors odd sizes, as torch. Inputs must be at least 2^stages pixels on each side.
- Dropout only with deterministic=False (torch's model.train()), drawing from the "dropout" rng; evaluation is
  deterministic. torchvision applies it after the two hidden ReLUs only.
- Checkpoints: torchvision names ``features.N.{weight,bias}`` (N = index in the Sequential: conv, ReLU, ..., pool)
  and ``classifier.{0,3,6}.{weight,bias}`` from a .pth / .safetensors file, a directory, or an in-memory dict; timm
  ``vgg19.tv_in1k`` names (same weights: ``pre_logits.fc1`` = classifier.0 as a [4096, 512, 7, 7] conv,
  ``pre_logits.fc2`` = classifier.3 as a 1x1 conv, ``head.fc`` = classifier.6; timm's ``_filter_fn``) are read too.
  timm's forward differs from torchvision's only for feature maps larger than 7x7 (inputs above 255 pixels), where
  it slides the 7x7 conv and averages; this module always computes the torchvision function.
  Batch-norm variants (vgg19_bn) are rejected.

    cfg, params = load("vgg19-dcbb9e9d.pth")                 # torchvision's VGG19_Weights.IMAGENET1K_V1 file
    logits_BK = VGG(cfg).apply({"params": params}, pixels_BHWC)                       # eval
    logits_BK = VGG(cfg).apply({"params": params}, pixels_BHWC, deterministic=False, rngs={"dropout": key})
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import F32, Dtype, apply_dropout
from .hub import CONFIG_NAME, read_hf_config, resolve_dir, write_hf_dir
from .vision_common import (
    TORCH_SUFFIXES, Entry, Port, check_config_dict, check_positive, check_rates, conv_to_kernel, convert,
    cross_entropy, kernel_to_conv, linear, param_paths, read_state_dict,
)

VGG19_STAGES = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))
MODEL_TYPE = "vgg"
NAME = "vgg"  # models.registry name and the run config's model.arch
ARCHITECTURE = "VGG"  # torchvision's class


@dataclasses.dataclass(frozen=True)
class VGGConfig:
    """stages: output channels of the 3x3 convs of each stage (a max-pool ends every stage). Defaults: VGG-19."""

    stages: tuple[tuple[int, ...], ...] = VGG19_STAGES
    hidden: int = 4096
    num_classes: int = 1000
    dropout: float = 0.5
    in_channels: int = 3
    pool_hw: int = 7  # adaptive average pool output size (torchvision: 7)

    def __post_init__(self) -> None:
        ok = (isinstance(self.stages, tuple) and self.stages
              and all(isinstance(s, tuple) and s and all(isinstance(c, int) and c > 0 for c in s) for s in self.stages))
        if not ok:
            raise ValueError(f"unsupported config value stages={self.stages!r}; valid: a non-empty tuple of "
                             "non-empty tuples of positive channel counts")
        check_positive(self, ("hidden", "num_classes", "in_channels", "pool_hw"))
        check_rates(self, ("dropout",))

    @property
    def arch(self) -> str:
        """The registry name (models.registry.get accepts this config)."""
        return NAME

    @property
    def conv_indices(self) -> list[int]:
        """Index of each conv in torchvision's `features` Sequential (conv, ReLU pairs; one pool per stage)."""
        out, i = [], 0
        for stage in self.stages:
            for _ in stage:
                out.append(i)
                i += 2
            i += 1
        return out

    @property
    def conv_shapes(self) -> list[tuple[int, int]]:
        """(in, out) channels of each conv, in order."""
        out, c = [], self.in_channels
        for stage in self.stages:
            for w in stage:
                out.append((c, w))
                c = w
        return out

    @property
    def min_size(self) -> int:
        return 2 ** len(self.stages)

    def to_dict(self) -> dict:
        return {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "stages": [list(s) for s in self.stages],
                "hidden": self.hidden, "num_classes": self.num_classes, "dropout": self.dropout, "in_channels": self.in_channels,
                "pool_hw": self.pool_hw}


def parse_config(d: Mapping) -> VGGConfig:
    """The dict written by VGGConfig.to_dict (config.json of an exported directory) -> VGGConfig."""
    check_config_dict(d, MODEL_TYPE, "a VGG")
    known = {f.name for f in dataclasses.fields(VGGConfig)} | {"model_type", "architectures"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown VGG config field(s) {unknown}; valid: {sorted(known)}")
    kw = {k: v for k, v in d.items() if k not in ("model_type", "architectures")}
    if "stages" in kw:
        try:
            kw["stages"] = tuple(tuple(int(c) for c in s) for s in kw["stages"])
        except TypeError:
            raise ValueError(f"unsupported config value stages={d['stages']!r}") from None
    return VGGConfig(**kw)


# ------------------------------------------------------------------------------------------------------- model


def adaptive_avg_pool(x_BHWC: jax.Array, out_hw: int) -> jax.Array:
    """torch AdaptiveAvgPool2d(out_hw) on NHWC: bins [floor(i*n/out), ceil((i+1)*n/out)) on each spatial axis."""

    def pool_axis(x: jax.Array, axis: int) -> jax.Array:
        n = x.shape[axis]
        if n == out_hw:
            return x
        parts = []
        for i in range(out_hw):
            start, end = (i * n) // out_hw, -(-((i + 1) * n) // out_hw)
            parts.append(jnp.mean(jax.lax.slice_in_dim(x, start, end, axis=axis), axis=axis, keepdims=True))
        return jnp.concatenate(parts, axis=axis)

    y = pool_axis(pool_axis(x_BHWC.astype(F32), 1), 2)
    return y.astype(x_BHWC.dtype)


class FlattenDense(nn.Module):
    """torch Linear on flatten(x_BCHW) for an NHWC x: kernel [H, W, C, out] (= the torch weight [out, C*H*W]
    reshaped to [out, C, H, W] and laid out as a Flax conv kernel), one contraction over h, w, c."""

    features: int
    dtype: Dtype = F32

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        _, h, w, c = x_BHWC.shape
        kernel = self.param("kernel", nn.initializers.normal(0.01), (h, w, c, self.features), F32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), F32)
        y = jnp.einsum("bhwc,hwco->bo", x_BHWC, kernel.astype(self.dtype))
        return y + bias.astype(self.dtype)


class VGG(nn.Module):
    """pixels_BHWC (normalised, NHWC, at least cfg.min_size pixels a side) -> fp32 logits_BK.

    Params: features_{N}/{kernel [3,3,in,out], bias} (N = torchvision's Sequential index), classifier_0/{kernel
    [7,7,C,hidden], bias}, classifier_3/{kernel [hidden, hidden], bias}, classifier_6/{kernel [hidden, K], bias}.
    deterministic=False turns dropout on (rngs={"dropout": key})."""

    cfg: VGGConfig
    dtype: Dtype = F32

    @nn.compact
    def __call__(self, pixels_BHWC: jax.Array, deterministic: bool = True) -> jax.Array:
        cfg = self.cfg
        if pixels_BHWC.ndim != 4 or pixels_BHWC.shape[-1] != cfg.in_channels:
            raise ValueError(f"expected pixels of shape [B, H, W, {cfg.in_channels}] (NHWC), "
                             f"got {list(pixels_BHWC.shape)}")
        if min(pixels_BHWC.shape[1:3]) < cfg.min_size:
            raise ValueError(f"input of {pixels_BHWC.shape[1]} x {pixels_BHWC.shape[2]} pixels is too small: "
                             f"{len(cfg.stages)} max-pools need at least {cfg.min_size} x {cfg.min_size}")
        x = pixels_BHWC.astype(self.dtype)
        indices = iter(self.cfg.conv_indices)
        for stage in cfg.stages:
            for width in stage:
                x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=F32,
                            name=f"features_{next(indices)}")(x)
                x = jax.nn.relu(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        x_BhwC = adaptive_avg_pool(x, cfg.pool_hw)
        h = jax.nn.relu(FlattenDense(cfg.hidden, self.dtype, name="classifier_0")(x_BhwC))
        h = apply_dropout(h, cfg.dropout, deterministic)
        h = jax.nn.relu(nn.Dense(cfg.hidden, dtype=self.dtype, param_dtype=F32, name="classifier_3")(h))
        h = apply_dropout(h, cfg.dropout, deterministic)
        return nn.Dense(cfg.num_classes, dtype=F32, param_dtype=F32, name="classifier_6")(h.astype(F32))


def classification_loss(logits_BK: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Mean cross entropy (torch.nn.CrossEntropyLoss()), the authors' criterion."""
    return cross_entropy(logits_BK, labels_B)


# ------------------------------------------------------------------------------------------------ params / I/O


def param_shapes(cfg: VGGConfig) -> dict:
    x = jnp.zeros((1, cfg.min_size, cfg.min_size, cfg.in_channels), jnp.float32)
    return jax.eval_shape(lambda: VGG(cfg).init(jax.random.PRNGKey(0), x))["params"]


def init_spec(cfg: VGGConfig, path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, float]:
    """torchvision init: conv weights kaiming normal (fan_out, ReLU gain: std sqrt(2 / (out*3*3))), Linear
    weights N(0, 0.01), all biases 0."""
    if path[-1] == "bias":
        return "zeros", 0.0
    if path[0].startswith("features_"):
        kh, kw, _, n_out = shape
        return "normal", math.sqrt(2.0 / (n_out * kh * kw))
    return "normal", 0.01


def _features_table(cfg: VGGConfig) -> list[Entry]:
    t = []
    for idx, (c_in, c_out) in zip(cfg.conv_indices, cfg.conv_shapes):
        t.append(Entry((f"features.{idx}.weight",), (f"features_{idx}", "kernel"), (c_out, c_in, 3, 3),
                       conv_to_kernel, kernel_to_conv))
        t.append(Entry((f"features.{idx}.bias",), (f"features_{idx}", "bias"), (c_out,)))
    return t


def key_table(cfg: VGGConfig, naming: str = "torchvision") -> list[Entry]:
    """naming "torchvision" (features.N, classifier.{0,3,6}) or "timm" (features.N, pre_logits.fc{1,2}, head.fc)."""
    c, p, hid = cfg.stages[-1][-1], cfg.pool_hw, cfg.hidden
    t = _features_table(cfg)
    if naming == "torchvision":
        n_flat = c * p * p
        t.append(Entry(("classifier.0.weight",), ("classifier_0", "kernel"), (hid, n_flat),
                       lambda w: conv_to_kernel(w.reshape(hid, c, p, p)),  # torch flattens (c, h, w)
                       lambda k: kernel_to_conv(k).reshape(hid, n_flat)))
        t.append(Entry(("classifier.0.bias",), ("classifier_0", "bias"), (hid,)))
        t += linear("classifier.3", ("classifier_3",), hid, hid)
        t += linear("classifier.6", ("classifier_6",), hid, cfg.num_classes)
    elif naming == "timm":
        t.append(Entry(("pre_logits.fc1.weight",), ("classifier_0", "kernel"), (hid, c, p, p),
                       conv_to_kernel, kernel_to_conv))
        t.append(Entry(("pre_logits.fc1.bias",), ("classifier_0", "bias"), (hid,)))
        t.append(Entry(("pre_logits.fc2.weight",), ("classifier_3", "kernel"), (hid, hid, 1, 1),
                       lambda w: w[:, :, 0, 0].T, lambda k: k.T[:, :, None, None]))
        t.append(Entry(("pre_logits.fc2.bias",), ("classifier_3", "bias"), (hid,)))
        t += linear("head.fc", ("classifier_6",), hid, cfg.num_classes)
    else:
        raise ValueError(f"unknown VGG checkpoint naming {naming!r}; valid: ['torchvision', 'timm']")
    return t


def detect_naming(state_dict: Mapping) -> str:
    if any(k.endswith(("running_mean", "running_var")) for k in state_dict):
        raise ValueError("the VGG checkpoint has batch-norm statistics (a vgg*_bn variant): not supported")
    timm = any(k.startswith(("pre_logits.", "head.")) for k in state_dict)
    tv = any(k.startswith("classifier.") for k in state_dict)
    if timm == tv:
        raise ValueError("cannot tell the VGG checkpoint's naming: expected classifier.{0,3,6}.* (torchvision) or "
                         "pre_logits.fc{1,2}.* + head.fc.* (timm)" + (", found both" if timm else ""))
    return "timm" if timm else "torchvision"


def infer_config(state_dict: Mapping, *, dropout: float = 0.5) -> VGGConfig:
    """VGGConfig from the tensor shapes of a torchvision- or timm-named state dict (dropout cannot be inferred)."""
    naming = detect_naming(state_dict)
    convs = sorted(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"features\.(\d+)\.weight", k)))
    if not convs:
        raise ValueError("no features.N.weight tensors: not a VGG state dict")
    stages, current, prev = [], [], None
    for idx in convs:
        shape = tuple(state_dict[f"features.{idx}.weight"].shape)
        if len(shape) != 4 or shape[2:] != (3, 3):
            raise ValueError(f"features.{idx}.weight has shape {list(shape)}: not a 3x3 convolution")
        if prev is not None and idx - prev == 3:  # conv, ReLU, pool, conv: a stage boundary
            stages.append(tuple(current))
            current = []
        elif prev is not None and idx - prev != 2:
            raise ValueError(f"features.{prev} -> features.{idx}: not the conv/ReLU/max-pool layout of a VGG")
        current.append(shape[0])
        prev = idx
    stages.append(tuple(current))
    in_channels = int(state_dict[f"features.{convs[0]}.weight"].shape[1])
    c_last = stages[-1][-1]
    if naming == "torchvision":
        hidden, n_flat = (int(n) for n in state_dict["classifier.0.weight"].shape)
        num_classes = int(state_dict["classifier.6.weight"].shape[0])
    else:
        hidden, _, ph, pw = (int(n) for n in state_dict["pre_logits.fc1.weight"].shape)
        n_flat = c_last * ph * pw
        num_classes = int(state_dict["head.fc.weight"].shape[0])
    pool = math.isqrt(n_flat // c_last) if n_flat % c_last == 0 else 0
    if pool * pool * c_last != n_flat:
        raise ValueError(f"first classifier layer takes {n_flat} inputs: not {c_last} channels x a square pool")
    return VGGConfig(stages=tuple(stages), hidden=hidden, num_classes=num_classes, dropout=dropout,
                     in_channels=in_channels, pool_hw=pool)


def from_state_dict(cfg: VGGConfig, state_dict: Mapping, dtype: Any = jnp.float32) -> dict:
    """torchvision- or timm-named state dict (torch tensors or numpy arrays) -> params, fully checked."""
    table = key_table(cfg, detect_naming(state_dict))
    return convert(table, state_dict, param_paths(param_shapes(cfg)), "VGG", (), dtype)


def load(path: str | os.PathLike, cfg: VGGConfig | None = None, *, dtype: Any = jnp.float32,
         dropout: float = 0.5) -> tuple[VGGConfig, dict]:
    """A .pth / .pt / .safetensors file (torchvision or timm names) or a directory written by `export` ->
    (cfg, params). Without `cfg` the shapes come from the directory's config.json or from the tensors."""
    p = Path(os.path.expanduser(str(path)))
    state = read_state_dict(p)
    if cfg is None:
        if p.is_dir() and (p / CONFIG_NAME).is_file():
            cfg = parse_config(read_hf_config(p))
        else:
            cfg = infer_config(state, dropout=dropout)
    return cfg, from_state_dict(cfg, state, dtype)


def export(params: dict, cfg: VGGConfig, path: str | os.PathLike) -> Path:
    """Write torchvision-named fp32 weights: a .pth / .pt file (torch.save of a tensor dict, what
    torchvision.models.vgg19().load_state_dict(torch.load(path)) takes), a .safetensors file, or a directory
    with config.json (VGGConfig fields) + model.safetensors."""
    state = to_state_dict(params, cfg)
    out = Path(path)
    if out.suffix in TORCH_SUFFIXES:
        import torch

        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: torch.tensor(v) for k, v in state.items()}, out)
        return out
    if out.suffix == ".safetensors":
        from safetensors.numpy import save_file

        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(out), metadata={"format": "pt"})
        return out
    return write_hf_dir(out, cfg.to_dict(), state)



# ------------------------------------------------------------------------------------------------ the run's hooks

PRESETS = {
    "vgg19": VGGConfig().to_dict(),
    # a tiny from-scratch VGG for CPU runs: two stages (inputs of at least 4 x 4), a 64-wide classifier
    "vgg-tiny": VGGConfig(stages=((8,), (16,)), hidden=64, num_classes=10, pool_hw=2).to_dict(),
}
SHAPE_KEYS = {"hidden_size": "hidden"}


def from_run(model: dict, num_classes: int | None = None, image_size: int = 0) -> VGGConfig:
    """The run config's model section -> VGGConfig: the preset, model.hidden_size as the classifier width,
    `num_classes` when the run's data sets it, dropout 0 with model.dropout="off" (any image size >= min_size)."""
    return PORT.run_config(model, num_classes=num_classes)


def image_spec(cfg: VGGConfig) -> dict:
    """Any side >= 2^stages (the adaptive pool fixes the classifier's input)."""
    return {"size": 0, "min_size": cfg.min_size, "channels": cfg.in_channels, "outputs": cfg.num_classes}


def load_run(path_or_id: str, revision: str | None = None) -> tuple[VGGConfig, dict]:
    """A local file (see load), a local directory (at its subdirectory `revision` when given) or a Hub id such as
    timm/vgg19.tv_in1k (torchvision's VGG-19 weights under timm's names; its config.json is timm's, so the shapes
    come from the tensors)."""
    if Path(os.path.expanduser(str(path_or_id))).is_file():
        return load(path_or_id)
    d = resolve_dir(path_or_id, revision)
    state = read_state_dict(d)
    hf = read_hf_config(d) if (d / CONFIG_NAME).is_file() else {}
    cfg = parse_config(hf) if hf.get("model_type") == MODEL_TYPE else infer_config(state)
    return cfg, from_state_dict(cfg, state)


def _build(cfg: VGGConfig, dtype: Any = jnp.float32, remat: bool = False, attn_block: int = 0) -> VGG:
    return VGG(cfg, dtype=dtype)


PORT = Port(name=NAME, what="VGG", hf_model_type=MODEL_TYPE, hf_class=ARCHITECTURE, parse_config=parse_config,
            to_hf_config=VGGConfig.to_dict, presets=PRESETS, shape_keys=SHAPE_KEYS, param_shapes=param_shapes,
            key_table=key_table, init_spec=init_spec, dropout_fields=("dropout",))
# Port's init, torchvision-named export table and run plumbing; VGG's own load / export read and write files.
# to_state_dict(params, cfg): torchvision-named fp32 numpy state dict (load with torchvision's
# model.load_state_dict after torch.from_numpy on each value).
init_params, to_state_dict = PORT.init_params, PORT.to_state_dict
without_dropout, uses_dropout = PORT.without_dropout, PORT.uses_dropout
ARCH = PORT.registry_entry(module=VGG, task="classify", from_run=from_run, load=load_run, build=_build,
                           image_spec=image_spec)
