"""Shared pieces of the vision ports (imagegpt.py, vit.py, vgg.py): state-dict tables, file I/O, losses.

A port describes its checkpoint layout as a list of `Entry` (accepted source key spellings, our param path, the
source tensor shape, a transform into the Flax layout and its inverse). `convert` fills the param tree from a
state dict and checks it both ways: every model parameter comes from exactly one tensor of the expected shape, and
every tensor in the file is either used or matches an explicit ignore pattern (buffers such as causal masks).
`to_state` is the inverse used for export. Tensor layout conversions are named functions below so that each table
says what it does (torch Linear [out, in] -> kernel [in, out]; torch Conv2d [O, I, kh, kw] -> Flax [kh, kw, I, O]).

Files: `read_state_dict` reads a .safetensors file, a torch pickle (.pth / .pt / .bin; needs torch) or an HF
directory (model.safetensors, pytorch_model.bin, or their sharded *.index.json) into numpy arrays;
`write_hf_dir` writes config.json + model.safetensors (fp32).
"""

from __future__ import annotations

import dataclasses
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

Array = np.ndarray
CONFIG_NAME = "config.json"
SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_SINGLE, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
TORCH_SUFFIXES = (".pth", ".pt", ".bin")


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


def weight_files(d: Path) -> list[Path]:
    """The weight file(s) of an HF-style directory, safetensors preferred; FileNotFoundError if none (the same
    lookup as the language models' loader)."""
    from .hf_io import weight_files as hf_weight_files  # hf_io imports the registry, which imports this module

    return hf_weight_files(d)[1]


def read_state_dict(path: str | os.PathLike) -> dict[str, Array]:
    """A .safetensors file, a torch pickle (.pth/.pt/.bin) or an HF directory -> {name: numpy array}."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return _read_files(weight_files(p))
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if p.suffix == ".safetensors":
        return _read_safetensors(p)
    if p.suffix in TORCH_SUFFIXES:
        return _read_torch(p)
    raise ValueError(f"unknown checkpoint file type {p.name!r}: expected .safetensors, {', '.join(TORCH_SUFFIXES)} "
                     "or a directory")


def read_hf_config(d: Path) -> dict:
    path = d / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"missing {CONFIG_NAME} in {d}")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt {path}: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return cfg


def resolve_dir(path_or_id: str, revision: str | None = None) -> Path:
    """A local directory as is; otherwise a Hub id, downloaded (config + weights; safetensors preferred)."""
    p = os.path.expanduser(str(path_or_id))
    if os.path.isdir(p):
        if revision is not None:
            raise ValueError(f"revision={revision!r} given for the local directory {p}")
        return Path(p)
    if p.startswith(("/", "./", "../")) or os.path.exists(p) or p.count("/") != 1:
        raise FileNotFoundError(f"checkpoint directory {str(path_or_id)!r} does not exist (or is not a directory)")
    try:
        from huggingface_hub import snapshot_download

        d = Path(snapshot_download(p, revision=revision,
                                   allow_patterns=[CONFIG_NAME, SAFE_INDEX, "model*.safetensors"]))
        if not any(d.glob("*.safetensors")):
            d = Path(snapshot_download(p, revision=revision,
                                       allow_patterns=[CONFIG_NAME, BIN_INDEX, "pytorch_model*.bin"]))
    except Exception as e:  # offline, unknown repo or revision, auth ...
        raise FileNotFoundError(f"{p!r} is not a local directory and downloading it from the Hugging Face Hub "
                                f"(revision={revision!r}) failed: {type(e).__name__}: {e}") from e
    return d


def write_hf_dir(out_dir: str | os.PathLike, config: dict, state: Mapping[str, Array]) -> Path:
    """config.json (sorted keys) + model.safetensors (fp32, metadata format=pt as transformers writes it)."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}, str(out / SAFE_SINGLE),
              metadata={"format": "pt"})
    return out


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
