"""Hugging Face checkpoint <-> Flax params.

The converter is an explicit table (HF key -> our param path, expected HF shape, transform) checked both ways:
every model parameter is filled exactly once and every checkpoint tensor is either used or on the explicit
ignore list (causal-mask and rotary buffers). Tensors are streamed one at a time from safetensors files, so
host memory stays about one model in size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from . import registry
from .config import ModelConfig
from .factory import param_shapes
from .hub import read_hf_config, resolve_dir, weight_files, write_hf_dir
from .registry import parse_config



# ----------------------------------------------------------------------------------------------- tensor sources


class _Source:
    """Read-only key -> tensor access; `read(key, rows)` returns the first `rows` rows as a numpy array."""

    def keys(self) -> set[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def read(self, key: str, rows: int | None) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16}


def _safetensors_header(path: Path) -> tuple[int, dict]:
    """Parse and sanity-check a safetensors header; catches truncated/corrupt files with a clear message."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ValueError(f"corrupt safetensors file {path}: only {size} bytes, no header")
        (n,) = struct.unpack("<Q", raw)
        if 8 + n > size:
            raise ValueError(f"corrupt or truncated safetensors file {path}: header of {n} bytes, file of {size}")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"corrupt safetensors file {path}: unreadable header ({e})") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
    if 8 + n + end != size:
        raise ValueError(
            f"truncated or corrupt safetensors file {path}: tensors need {8 + n + end} bytes, file has {size}"
        )
    return 8 + n, tensors


class _SafetensorsSource(_Source):
    def __init__(self, files: Iterable[Path]):
        from safetensors import SafetensorError, safe_open

        self._files: dict[str, Any] = {}
        self._where: dict[str, tuple[Path, int, dict]] = {}
        for path in files:
            data_start, header = _safetensors_header(path)
            try:
                handle = safe_open(str(path), framework="numpy")
            except SafetensorError as e:
                raise ValueError(f"corrupt safetensors file {path}: {e}") from None
            self._files[str(path)] = handle
            for key, info in header.items():
                if key in self._where:
                    raise ValueError(f"tensor {key!r} appears in both {self._where[key][0]} and {path}")
                self._where[key] = (path, data_start, info)

    def keys(self) -> set[str]:
        return set(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._where[key][2]["shape"])

    def read(self, key: str, rows: int | None) -> np.ndarray:
        path, data_start, info = self._where[key]
        if info["dtype"] == "BF16":  # numpy has no bfloat16: map the bytes with ml_dtypes (a jax dependency)
            import ml_dtypes

            arr = np.memmap(path, dtype=ml_dtypes.bfloat16, mode="r", offset=data_start + info["data_offsets"][0],
                            shape=tuple(info["shape"]))
            return np.asarray(arr[:rows] if rows is not None else arr, dtype=np.float32)
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"tensor {key!r} in {path} has unsupported dtype {info['dtype']}")
        sl = self._files[str(path)].get_slice(key)
        return sl[:rows] if rows is not None else sl[:]

    def close(self) -> None:
        self._files.clear()


class _MappingSource(_Source):
    """In-memory state dict (torch tensors or numpy arrays), e.g. from torch.load or a model's gradients."""

    def __init__(self, state: Mapping[str, Any]):
        self._state = state

    def keys(self) -> set[str]:
        return set(self._state)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._state[key].shape)

    def read(self, key: str, rows: int | None) -> np.ndarray:
        x = self._state[key]
        if rows is not None:
            x = x[:rows]
        if hasattr(x, "detach"):  # torch tensor; bf16 has no numpy equivalent, go through fp32
            import torch

            x = x.detach().cpu()
            x = x.to(torch.float32) if x.dtype in (torch.bfloat16,) else x
            return x.numpy()
        return np.asarray(x)


def _torch_source(files: Iterable[Path]) -> _Source:
    try:
        import torch
    except ImportError:
        raise ValueError(f"{list(files)} are PyTorch pickles; loading them needs torch (pip install torch), "
                         "or convert the checkpoint to safetensors") from None
    state: dict[str, Any] = {}
    for path in files:
        try:
            part = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
            part = torch.load(path, map_location="cpu", weights_only=True)
        dup = set(part) & set(state)
        if dup:
            raise ValueError(f"tensors {sorted(dup)[:5]} appear in several shards, e.g. {path}")
        state.update(part)
    return _MappingSource(state)


# -------------------------------------------------------------------------------------------------- conversion


def _convert(arch: str, hf_config: dict, source: _Source, vocab_size: int | None, dtype: Any) -> dict:
    cfg = parse_config(arch, hf_config)
    src_vocab = cfg.vocab_size
    if vocab_size is not None and not 0 < vocab_size <= src_vocab:
        raise ValueError(f"vocab_size={vocab_size} must be in [1, {src_vocab}] (the checkpoint's vocab_size)")
    rows = None if vocab_size in (None, src_vocab) else vocab_size
    expected = traverse_util.flatten_dict(param_shapes(dataclasses.replace(cfg, vocab_size=vocab_size or src_vocab)))

    arch_spec = registry.get(cfg)
    table = arch_spec.hf_params(cfg)
    paths = [e.path for e in table]
    if len(set(paths)) != len(paths) or set(paths) != set(expected):  # converter bug, not a user error
        raise AssertionError(f"converter table out of sync with the model: {set(paths) ^ set(expected)}")

    available, used, out = source.keys(), set(), {}
    for e in table:
        present = [k for k in e.keys if k in available]
        if not present:
            raise ValueError(f"checkpoint is missing tensor {e.keys[0]!r}" +
                             (f" (also tried {list(e.keys[1:])})" if len(e.keys) > 1 else ""))
        if len(present) > 1:
            raise ValueError(f"checkpoint has several spellings of one tensor: {present}")
        key = present[0]
        got = source.shape(key)
        if got != e.shape:
            raise ValueError(f"tensor {key!r} has shape {list(got)}, expected {list(e.shape)}")
        arr = source.read(key, rows if e.vocab_rows else None)
        arr = arr.T if e.transpose else arr
        want = expected[e.path].shape
        if arr.shape != want:  # should be unreachable after the HF-shape check
            raise AssertionError(f"{key} -> {'/'.join(e.path)}: got {arr.shape}, model expects {want}")
        # copy=True: never alias host buffers (torch tensors, mmaps) that the caller may mutate later
        out[e.path] = jnp.array(np.ascontiguousarray(arr), dtype=dtype, copy=True)
        used.add(key)
    ignored = {k for k in available - used if any(re.fullmatch(p, k) for p in arch_spec.hf_ignored)}
    unknown = sorted(available - used - ignored)
    if unknown:
        raise ValueError(f"checkpoint has {len(unknown)} unexpected tensor(s) for {arch}: {unknown[:10]}")
    return traverse_util.unflatten_dict(out)


def convert_state_dict(arch: str, hf_config: dict, state_dict: Mapping[str, Any], *, dtype: Any = jnp.float32,
                       vocab_size: int | None = None) -> dict:
    """HF-named state dict (torch tensors or numpy arrays) -> our params, with the same checks as load_hf."""
    return _convert(arch, hf_config, _MappingSource(state_dict), vocab_size, dtype)


# -------------------------------------------------------------------------------------------------- load / export


def detect_arch(hf_config: dict) -> str:
    """The architecture name (e.g. "gpt_neox") of config.json's model_type / architectures."""
    return registry.detect(hf_config).name


def load_hf(path_or_id: str, *, revision: str | None = None, dtype: Any = jnp.float32,
            vocab_size: int | None = None) -> tuple[str, dict, dict]:
    """Load an HF causal LM of a registered architecture -> (arch, hf_config, params).

    `path_or_id`: a directory with config.json and model.safetensors / a sharded model.safetensors.index.json /
    pytorch_model.bin, or a Hub id (downloaded at `revision`, e.g. "step0"); with a `revision`, a local directory
    is read at its subdirectory of that name (W/step0/, ..., W/final/: hub.resolve_dir). `vocab_size` keeps only the first
    rows of the token embedding(s) (the authors resize Pythia to 50277) and is written into the returned config.
    """
    d = resolve_dir(path_or_id, revision)
    hf_config = read_hf_config(d)
    arch = detect_arch(hf_config)
    parse_config(arch, hf_config)  # unsupported settings fail before any tensor is read
    kind, files = weight_files(d)
    source = _SafetensorsSource(files) if kind == "safetensors" else _torch_source(files)
    try:
        params = _convert(arch, hf_config, source, vocab_size, dtype)
    finally:
        source.close()
    if vocab_size is not None:
        hf_config["vocab_size"] = int(vocab_size)
    return arch, hf_config, params


def load_pretrained(path_or_id: str, *, revision: str | None = None,
                    dtype: Any = jnp.float32) -> tuple[ModelConfig, dict]:
    """load_hf for the model side: (ModelConfig, params)."""
    arch, hf_config, params = load_hf(path_or_id, revision=revision, dtype=dtype)
    return parse_config(arch, hf_config), params


def to_hf_state_dict(arch: str, hf_config: dict, params: dict) -> dict[str, np.ndarray]:
    """Our params -> HF-named fp32 numpy state dict (keys as save_pretrained writes them)."""
    cfg = parse_config(arch, hf_config)
    flat = traverse_util.flatten_dict(params)
    table = registry.get(cfg).hf_params(cfg)
    if {e.path for e in table} != set(flat):
        raise ValueError(f"params do not match the {arch} config: {sorted(set(flat) ^ {e.path for e in table})[:10]}")
    out = {}
    for e in table:
        arr = np.asarray(flat[e.path], dtype=np.float32)
        arr = arr.T if e.transpose else arr
        if arr.shape != e.shape:
            raise ValueError(f"param {'/'.join(e.path)} has shape {list(arr.shape)}, config implies {list(e.shape)}")
        out[e.keys[0]] = np.ascontiguousarray(arr)
    return out


def export_hf(arch: str, hf_config: dict, params: dict, out_dir: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors (fp32) loadable by transformers' AutoModelForCausalLM.
    hf_config: e.g. load_hf's, or to_hf_config(ModelConfig)."""
    state = to_hf_state_dict(arch, hf_config, params)
    a = registry.get(arch)
    config = dict(hf_config)
    config["architectures"] = [a.hf_class]
    config["model_type"] = a.hf_model_type
    config["torch_dtype"] = "float32"
    config.pop("dtype", None)
    return write_hf_dir(out_dir, config, state)
