"""Shared pieces of the vision ports (imagegpt.py, vit.py, vgg.py): state-dict tables, file I/O, losses.

A port describes its checkpoint layout as a list of `Entry` (accepted source key spellings, our param path, the
source tensor shape, a transform into the Flax layout and its inverse). `convert` fills the param tree from a
state dict and checks it both ways: every model parameter comes from exactly one tensor of the expected shape, and
every tensor in the file is either used or matches an explicit ignore pattern (buffers such as causal masks).
`to_state` is the inverse used for export. Tensor layout conversions are named functions below so that each table
says what it does (torch Linear [out, in] -> kernel [in, out]; torch Conv2d [O, I, kh, kw] -> Flax [kh, kw, I, O]).

Files: `read_state_dict` reads a .safetensors file, a torch pickle (.pth / .pt / .bin; needs torch) or an HF
directory (model.safetensors, pytorch_model.bin, or their sharded *.index.json) into numpy arrays; where a
directory is, and writing one, is hub.py's (shared with the language models' loader).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from .hub import read_hf_config, resolve_dir, weight_files, write_hf_dir

Array = np.ndarray
TORCH_SUFFIXES = (".pth", ".pt", ".bin")


# ------------------------------------------------------------------------------------------------ configs


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerShape:
    """Width, depth, heads and MLP width of a transformer port's config (imagegpt.ImageGPTConfig, vit.ViTConfig):
    keyword arguments without defaults (each port's parse_config holds its Hugging Face defaults), the head size,
    and their checks."""

    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def check_shape(self) -> None:
        check_positive(self, ("d_model", "n_layers", "n_heads", "d_ff"))
        if self.d_model % self.n_heads:
            raise ValueError(f"hidden size {self.d_model} is not divisible by the number of heads {self.n_heads}")


def check_config_dict(hf: Any, model_type: str, what: str) -> None:
    """The start of a port's parse_config: `hf` is a config.json dict whose model_type, where it has one, is the
    port's (`what`: the model's name with its article, "an Image GPT")."""
    if not isinstance(hf, Mapping):
        raise TypeError(f"{what} config must be a dict, got {type(hf).__name__}")
    mt = hf.get("model_type", model_type)
    if mt != model_type:
        raise ValueError(f"not {what} config: model_type={mt!r} (expected {model_type!r})")


def check_positive(cfg: Any, names: Iterable[str]) -> None:
    """A port config's checks: each field in `names` a positive integer ..."""
    for name in names:
        v = getattr(cfg, name)
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"unsupported config value {name}={v!r}; valid: a positive integer")


def check_act_and_eps(cfg: Any, activations: Iterable[str], act_key: str, eps_key: str) -> None:
    """... cfg.act one of `activations` and cfg.ln_eps > 0 (the messages name config.json's keys for them) ..."""
    if cfg.act not in activations:
        raise ValueError(f"unsupported config value {act_key}={cfg.act!r}; valid: {list(activations)}")
    if cfg.ln_eps <= 0:
        raise ValueError(f"unsupported config value {eps_key}={cfg.ln_eps!r}; valid: > 0")


def check_rates(cfg: Any, names: Iterable[str]) -> None:
    """... and each field in `names` a dropout rate in [0, 1)."""
    for name in names:
        v = getattr(cfg, name)
        if not 0.0 <= v < 1.0:
            raise ValueError(f"unsupported config value {name}={v!r}; valid: a rate in [0, 1)")


# --------------------------------------------------------------------------------------------- layout transforms


def identity(x: Array) -> Array:
    return x


def linear_to_kernel(w_OI: Array) -> Array:
    """torch Linear weight [out, in] -> Flax Dense kernel [in, out]."""
    return w_OI.T


def kernel_to_linear(k_IO: Array) -> Array:
    return k_IO.T


def conv_to_kernel(w_OIHW: Array) -> Array:
    """torch Conv2d weight [out, in, kh, kw] -> Flax Conv kernel [kh, kw, in, out] (NHWC convolutions)."""
    return w_OIHW.transpose(2, 3, 1, 0)


def kernel_to_conv(k_HWIO: Array) -> Array:
    return k_HWIO.transpose(3, 2, 0, 1)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One parameter. keys: accepted source spellings (export writes keys[0]); path: our param path; shape: the
    source tensor's shape; to_flax / to_torch: layout transform and its inverse."""

    keys: tuple[str, ...]
    path: tuple[str, ...]
    shape: tuple[int, ...]
    to_flax: Callable[[Array], Array] = identity
    to_torch: Callable[[Array], Array] = identity


def linear(key: str, path: tuple[str, ...], n_in: int, n_out: int, bias: bool = True,
           alt: tuple[str, ...] = ()) -> list[Entry]:
    """Entries of a torch nn.Linear `key`.{weight,bias} -> Flax Dense path/{kernel,bias}; `alt`: other prefixes."""
    out = [Entry((key + ".weight",) + tuple(a + ".weight" for a in alt), path + ("kernel",), (n_out, n_in),
                 linear_to_kernel, kernel_to_linear)]
    if bias:
        out.append(Entry((key + ".bias",) + tuple(a + ".bias" for a in alt), path + ("bias",), (n_out,)))
    return out


# ----------------------------------------------------------------------------------------------- tensor sources


def to_numpy(x: Any) -> Array:
    """torch tensor (any float dtype, any device) or array-like -> numpy; bf16/fp16 torch tensors become fp32."""
    if hasattr(x, "detach"):
        import torch

        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.to(torch.float32)
        return x.numpy()
    return np.asarray(x)


def _read_safetensors(path: Path) -> dict[str, Array]:
    from safetensors import SafetensorError, safe_open

    out = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():
                out[key] = f.get_tensor(key)
    except SafetensorError as e:
        raise ValueError(f"corrupt safetensors file {path}: {e}") from None
    except (TypeError, ValueError) as e:  # e.g. BF16, which numpy cannot hold: go through torch
        if "bf16" not in str(e).lower() and "bfloat16" not in str(e).lower():
            raise ValueError(f"cannot read safetensors file {path}: {e}") from None
        import safetensors.torch

        out = {k: to_numpy(v) for k, v in safetensors.torch.load_file(str(path)).items()}
    return out


def _read_torch(path: Path) -> dict[str, Array]:
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path} is a PyTorch pickle; reading it needs torch (pip install torch), "
                         "or convert it to safetensors") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a pickle, disallowed globals ...
        raise ValueError(f"cannot read {path} as a torch state dict: {type(e).__name__}: {e}") from None
    if not isinstance(state, Mapping) or not all(hasattr(v, "shape") for v in state.values()):
        kind = type(state).__name__
        raise ValueError(f"{path} does not hold a flat state dict of tensors (got a {kind}; a training checkpoint "
                         "with the weights under a key such as 'state_dict' must be unpacked first)")
    return {k: to_numpy(v) for k, v in state.items()}


def _read_files(files: Iterable[Path]) -> dict[str, Array]:
    state: dict[str, Array] = {}
    for f in files:
        part = _read_safetensors(f) if f.suffix == ".safetensors" else _read_torch(f)
        dup = sorted(set(part) & set(state))
        if dup:
            raise ValueError(f"tensors {dup[:5]} appear in several shards, e.g. {f}")
        state.update(part)
    return state


def read_state_dict(path: str | os.PathLike) -> dict[str, Array]:
    """A .safetensors file, a torch pickle (.pth/.pt/.bin) or an HF directory -> {name: numpy array}."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return _read_files(weight_files(p)[1])
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if p.suffix == ".safetensors":
        return _read_safetensors(p)
    if p.suffix in TORCH_SUFFIXES:
        return _read_torch(p)
    raise ValueError(f"unknown checkpoint file type {p.name!r}: expected .safetensors, {', '.join(TORCH_SUFFIXES)} "
                     "or a directory")


# -------------------------------------------------------------------------------------------------- conversion


def check_table(table: list[Entry], shapes: Mapping[tuple[str, ...], Any]) -> None:
    """The table fills every model parameter exactly once (a converter bug otherwise, not a user error)."""
    paths = [e.path for e in table]
    if len(set(paths)) != len(paths) or set(paths) != set(shapes):
        raise AssertionError(f"converter table out of sync with the model: {sorted(set(paths) ^ set(shapes))[:10]}")


def convert(table: list[Entry], state: Mapping[str, Any], shapes: Mapping[tuple[str, ...], Any], what: str,
            ignore: Iterable[str] = (), dtype: Any = jnp.float32) -> dict:
    """State dict -> nested param dict, checked against the table and the model's param `shapes` (flat)."""
    check_table(table, shapes)
    available, used, out = set(state), set(), {}
    for e in table:
        present = [k for k in e.keys if k in available]
        if not present:
            raise ValueError(f"{what} checkpoint is missing tensor {e.keys[0]!r}"
                             + (f" (also tried {list(e.keys[1:])})" if len(e.keys) > 1 else ""))
        if len(present) > 1:
            raise ValueError(f"{what} checkpoint has several spellings of one tensor: {present}")
        key = present[0]
        got = tuple(state[key].shape)
        if got != e.shape:
            raise ValueError(f"tensor {key!r} has shape {list(got)}, expected {list(e.shape)}")
        arr = e.to_flax(to_numpy(state[key]))
        want = tuple(shapes[e.path].shape)
        if arr.shape != want:  # unreachable unless a transform is wrong
            raise AssertionError(f"{key} -> {'/'.join(e.path)}: got {arr.shape}, model expects {want}")
        out[e.path] = jnp.array(np.ascontiguousarray(arr), dtype=dtype, copy=True)
        used.add(key)
    patterns = list(ignore)
    unknown = sorted(k for k in available - used if not any(re.fullmatch(p, k) for p in patterns))
    if unknown:
        raise ValueError(f"{what} checkpoint has {len(unknown)} unexpected tensor(s): {unknown[:10]}")
    return traverse_util.unflatten_dict(out)


def to_state(table: list[Entry], params: Mapping, what: str) -> dict[str, Array]:
    """Nested params -> {keys[0]: fp32 numpy array in the source layout}; error if the tree does not fit the table."""
    flat = traverse_util.flatten_dict(dict(params))
    paths = {e.path for e in table}
    if paths != set(flat):
        raise ValueError(f"params do not match the {what} config: {sorted(paths ^ set(flat))[:10]}")
    out = {}
    for e in table:
        arr = e.to_torch(np.asarray(jax.device_get(flat[e.path]), dtype=np.float32))
        if arr.shape != e.shape:
            raise ValueError(f"param {'/'.join(e.path)} has shape {list(arr.shape)} in the source layout, "
                             f"the config implies {list(e.shape)}")
        out[e.keys[0]] = np.ascontiguousarray(arr)
    return out


# ------------------------------------------------------------------------------------------------------ losses


def cross_entropy(logits_NK: jax.Array, labels_N: jax.Array, ignore_index: int = -100) -> jax.Array:
    """torch.nn.CrossEntropyLoss(): mean over labels != ignore_index of -log_softmax(logits)[label], in fp32.

    Labels outside [0, K) that are not ignore_index give NaN (torch raises); nothing is silently clipped."""
    logits = logits_NK.astype(jnp.float32)
    k = logits.shape[-1]
    keep = labels_N != ignore_index
    safe = jnp.where(keep, labels_N, 0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    nll = jnp.where((safe < 0) | (safe >= k), jnp.nan, nll)
    return jnp.sum(jnp.where(keep, nll, 0.0)) / jnp.sum(keep)


def init_from_spec(rng: jax.Array, shapes: Mapping[tuple[str, ...], Any],
                   spec: Callable[[tuple[str, ...], tuple[int, ...]], tuple[str, float]]) -> dict:
    """Fresh fp32 params from spec(path, shape) -> ("zeros" | "ones" | "normal" | "trunc_normal", std).

    All normal draws come from ONE flat standard-normal vector (and truncated ones, cut at +-2 absolute as torch's
    trunc_normal_, from one more): one random op per kind instead of one per tensor keeps XLA:CPU compile time at
    seconds for models with dozens of tensor shapes. Transiently needs a second copy of the weights' size."""
    kinds = {path: spec(path, tuple(sds.shape)) for path, sds in sorted(shapes.items())}
    out = {}
    for j, kind in enumerate(("normal", "trunc_normal")):
        paths = [p for p, (k, _) in kinds.items() if k == kind]
        sizes = [math.prod(shapes[p].shape) for p in paths]
        if not paths:
            continue
        key = jax.random.fold_in(rng, j)
        if kind == "normal":
            z = jax.random.normal(key, (sum(sizes),), jnp.float32)
        else:
            std = kinds[paths[0]][1]
            if any(kinds[p][1] != std for p in paths):
                raise AssertionError("truncated-normal tensors with different stds")  # not needed by any port
            z = jax.random.truncated_normal(key, -2.0 / std, 2.0 / std, (sum(sizes),), jnp.float32)
        offset = 0
        for p, n in zip(paths, sizes):
            out[p] = kinds[p][1] * z[offset: offset + n].reshape(shapes[p].shape)
            offset += n
    for p, (k, _) in kinds.items():
        if k in ("zeros", "ones"):
            out[p] = (jnp.zeros if k == "zeros" else jnp.ones)(shapes[p].shape, jnp.float32)
        elif k not in ("normal", "trunc_normal"):
            raise AssertionError(f"unknown init kind {k!r} for {'/'.join(p)}")
    return traverse_util.unflatten_dict(out)


def param_paths(shapes_tree: Mapping) -> dict[tuple[str, ...], Any]:
    return traverse_util.flatten_dict(dict(shapes_tree))


# ------------------------------------------------------------------------------------------ the run config's model


RUN_SHAPE_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions")
DROPOUT_MODES = ("off", "from_hf")


def run_hf_config(model: Mapping, presets: Mapping[str, dict], shape_keys: Mapping[str, str], arch: str) -> dict:
    """The HF-style config dict a run's `model` section describes: model.preset's dict with each non-zero
    model.<shape key> written under the port's own name (`shape_keys`: run key -> config key). A shape key the port
    has no field for, an unknown preset or dropout mode is a one-line ValueError naming the run-config key."""
    preset = model["preset"]
    if preset not in presets:
        raise ValueError(f"model.preset={preset!r} is not a {arch} preset; valid: {sorted(presets)}")
    hf = json.loads(json.dumps(presets[preset]))  # a deep copy
    for ours in RUN_SHAPE_KEYS:
        value = int(model.get(ours, 0) or 0)
        if not value:
            continue
        if ours not in shape_keys:
            valid = [f"model.{k}" for k in shape_keys]
            raise ValueError(f"model.{ours}={value} is not a shape key of {arch} models; valid: {valid} "
                             f"(or another model.preset)")
        hf[shape_keys[ours]] = value
    if model.get("dropout", "off") not in DROPOUT_MODES:
        raise ValueError(f"model.dropout={model.get('dropout')!r} is not valid; valid: {list(DROPOUT_MODES)}")
    return hf


# ------------------------------------------------------------------------------------------------ a port's plumbing


@dataclasses.dataclass(frozen=True, eq=False, repr=False)  # hashed by identity (a static argument of _init)
class Port:
    """What the vision ports do alike, built from each port's own pieces: params from a state dict and back
    through the key table, an HF directory loaded and exported, the init from the port's spec, the run config's
    model section -> config, and the registry entry. A port binds the methods to its public names
    (from_state_dict, load, init_params, ...); VGG, whose checkpoints are files with two namings, keeps its own
    loading and export."""

    name: str  # registry name and the run config's model.arch
    what: str  # the model's name in messages ("Image GPT")
    hf_model_type: str  # config.json "model_type"
    hf_class: str  # config.json "architectures" entry
    parse_config: Callable[[dict], Any]  # config.json dict -> the port's config (ValueError for what it does not do)
    to_hf_config: Callable[..., dict]  # the inverse
    presets: Mapping[str, dict]  # preset name -> config.json dict
    shape_keys: Mapping[str, str]  # run-config shape key -> config.json key (run_hf_config)
    param_shapes: Callable[[Any], Mapping]  # config -> param tree of ShapeDtypeStruct
    key_table: Callable[[Any], list[Entry]]  # config -> the checkpoint <-> params table
    init_spec: Callable[[Any, tuple[str, ...], tuple[int, ...]], tuple[str, float]]  # (config, path, shape) -> init
    dropout_fields: tuple[str, ...]  # the config's dropout rates
    ignored: tuple[str, ...] = ()  # regexes of checkpoint tensors that hold no parameter (buffers)
    check_state: Callable[[Mapping], None] | None = None  # a check of the state dict before the table's

    def init_params(self, cfg: Any, rng: jax.Array) -> dict:
        """Fresh fp32 params as the port's init_spec says (the reference implementation's init), one
        compilation per config."""
        return _init(self, cfg, rng)

    def from_state_dict(self, cfg: Any, state_dict: Mapping, dtype: Any = jnp.float32) -> dict:
        """HF-named state dict (torch tensors or numpy arrays, e.g. model.state_dict()) -> params, fully checked."""
        if self.check_state is not None:
            self.check_state(state_dict)
        shapes = param_paths(self.param_shapes(cfg))
        return convert(self.key_table(cfg), state_dict, shapes, self.what, self.ignored, dtype)

    def to_state_dict(self, params: Mapping, cfg: Any) -> dict[str, Array]:
        """params -> fp32 numpy state dict under the first name of each table entry (what save_pretrained writes)."""
        check_table(self.key_table(cfg), param_paths(self.param_shapes(cfg)))
        return to_state(self.key_table(cfg), params, self.what)

    def load(self, path_or_id: str | os.PathLike, *, revision: str | None = None,
             dtype: Any = jnp.float32) -> tuple[Any, dict]:
        """HF directory (config.json + model.safetensors / pytorch_model.bin / sharded) or Hub id -> (cfg, params);
        with a `revision`, a local directory is read at its subdirectory of that name (hub.resolve_dir)."""
        d = resolve_dir(path_or_id, revision)
        hf = read_hf_config(d)
        if hf.get("model_type") != self.hf_model_type and self.hf_class not in (hf.get("architectures") or []):
            raise ValueError(f"{d} does not hold a {self.what} checkpoint: model_type={hf.get('model_type')!r}, "
                             f"architectures={hf.get('architectures')!r}")
        cfg = self.parse_config(hf)  # unsupported settings fail before any tensor is read
        return cfg, self.from_state_dict(cfg, read_state_dict(d), dtype)

    def export(self, params: Mapping, cfg: Any, path: str | os.PathLike, *args, **kwargs) -> Path:
        """Write config.json + model.safetensors (fp32) that transformers' from_pretrained reads; extra arguments
        go to to_hf_config (ViT: id2label)."""
        return write_hf_dir(path, self.to_hf_config(cfg, *args, **kwargs), self.to_state_dict(params, cfg))

    def without_dropout(self, cfg: Any) -> Any:
        return dataclasses.replace(cfg, **{f: 0.0 for f in self.dropout_fields})

    def uses_dropout(self, cfg: Any) -> bool:
        return any(getattr(cfg, f) > 0.0 for f in self.dropout_fields)

    def run_config(self, model: Mapping, **sizes: int | None) -> Any:
        """The run config's model section -> config: the preset with the model.<shape key> overrides
        (run_hf_config), then the config.json fields in `sizes` that the run's data sets (None: the preset's);
        dropout rates 0 with model.dropout="off"."""
        hf = run_hf_config(model, self.presets, self.shape_keys, self.name)
        hf.update({key: int(value) for key, value in sizes.items() if value is not None})
        cfg = self.parse_config(hf)
        return self.without_dropout(cfg) if model.get("dropout", "off") == "off" else cfg

    def registry_entry(self, **kw) -> Any:
        """This port's models.registry Architecture; `kw`: the fields only the port knows (module, block_prefix,
        task, from_run, build, image_spec, ...)."""
        from .registry import Architecture  # the registry imports the ports

        fields = dict(name=self.name, presets=self.presets, parse_hf=self.parse_config, to_hf=self.to_hf_config,
                      hf_model_type=self.hf_model_type, hf_class=self.hf_class, hf_params=self._no_hf_table,
                      hf_ignored=self.ignored, data="images", init=self.init_params, load=self.load,
                      dropout=self.uses_dropout, no_dropout=self.without_dropout)
        return Architecture(**{**fields, **kw})

    def _no_hf_table(self, cfg: Any):
        raise ValueError(f"{self.what} checkpoints are read by recovery_jax.models.{self.name}.load, "
                         "not the causal-LM table")


@functools.partial(jax.jit, static_argnums=(0, 1))  # one compilation per port and config
def _init(port: Port, cfg: Any, rng: jax.Array) -> dict:
    return init_from_spec(rng, param_paths(port.param_shapes(cfg)), functools.partial(port.init_spec, cfg))
