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
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from .config import ModelConfig, check_arch, parse_config
from .factory import param_shapes

CONFIG_NAME = "config.json"
SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_SINGLE, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"

_ARCH_BY_NAME = {
    "gpt_neox": "gpt_neox", "GPTNeoXForCausalLM": "gpt_neox",
    "gpt2": "gpt2", "GPT2LMHeadModel": "gpt2",
}
# Buffers that HF checkpoints may carry and that hold no trainable state.
_IGNORED = {
    "gpt_neox": [
        r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)",
        r"gpt_neox\.rotary_emb\.(inv_freq|original_inv_freq)",
    ],
    "gpt2": [r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)", r"lm_head\.weight"],  # lm_head is tied to wte
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One parameter: accepted HF key spellings, our path, HF shape, and whether to transpose a torch Linear."""

    keys: tuple[str, ...]
    path: tuple[str, ...]
    shape: tuple[int, ...]
    transpose: bool = False
    vocab_rows: bool = False  # rows indexed by token id: truncated by load_hf(vocab_size=...)


def _neox_table(cfg: ModelConfig, vocab: int) -> list[_Entry]:
    d, f = cfg.d_model, cfg.d_ff
    t = [
        _Entry(("gpt_neox.embed_in.weight",), ("embed_in", "embedding"), (vocab, d), vocab_rows=True),
        _Entry(("embed_out.weight", "lm_head.weight"), ("embed_out", "kernel"), (vocab, d), True, True),
        _Entry(("gpt_neox.final_layer_norm.weight",), ("final_layer_norm", "scale"), (d,)),
        _Entry(("gpt_neox.final_layer_norm.bias",), ("final_layer_norm", "bias"), (d,)),
    ]
    linears = [("attention.query_key_value", 3 * d, d, cfg.attention_bias), ("attention.dense", d, d, cfg.attention_bias),
               ("mlp.dense_h_to_4h", f, d, True), ("mlp.dense_4h_to_h", d, f, True)]
    for i in range(cfg.n_layers):
        src, dst = f"gpt_neox.layers.{i}.", (f"layers_{i}",)
        for ln in ("input_layernorm", "post_attention_layernorm"):
            t.append(_Entry((src + ln + ".weight",), dst + (ln, "scale"), (d,)))
            t.append(_Entry((src + ln + ".bias",), dst + (ln, "bias"), (d,)))
        for name, n_out, n_in, bias in linears:
            sub = dst + tuple(name.split("."))
            t.append(_Entry((src + name + ".weight",), sub + ("kernel",), (n_out, n_in), transpose=True))
            if bias:
                t.append(_Entry((src + name + ".bias",), sub + ("bias",), (n_out,)))
    return t


def _gpt2_table(cfg: ModelConfig, vocab: int) -> list[_Entry]:
    d, f = cfg.d_model, cfg.d_ff

    def e(key: str, path: tuple[str, ...], shape: tuple[int, ...], vocab_rows: bool = False) -> _Entry:
        return _Entry((key, "transformer." + key), path, shape, vocab_rows=vocab_rows)

    t = [
        e("wte.weight", ("wte", "embedding"), (vocab, d), vocab_rows=True),
        e("wpe.weight", ("wpe", "embedding"), (cfg.max_len, d)),
        e("ln_f.weight", ("ln_f", "scale"), (d,)),
        e("ln_f.bias", ("ln_f", "bias"), (d,)),
    ]
    # Conv1D weights are stored [in, out], the Flax kernel layout: copied without transposing.
    convs = [("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d), ("mlp.c_fc", d, f), ("mlp.c_proj", f, d)]
    for i in range(cfg.n_layers):
        src, dst = f"h.{i}.", (f"h_{i}",)
        for ln in ("ln_1", "ln_2"):
            t.append(e(src + ln + ".weight", dst + (ln, "scale"), (d,)))
            t.append(e(src + ln + ".bias", dst + (ln, "bias"), (d,)))
        for name, n_in, n_out in convs:
            sub = dst + tuple(name.split("."))
            t.append(e(src + name + ".weight", sub + ("kernel",), (n_in, n_out)))
            t.append(e(src + name + ".bias", sub + ("bias",), (n_out,)))
    return t


def _table(arch: str, cfg: ModelConfig, vocab: int) -> list[_Entry]:
    return _neox_table(cfg, vocab) if arch == "gpt_neox" else _gpt2_table(cfg, vocab)


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
    target_cfg = dict(hf_config, vocab_size=vocab_size or src_vocab)
    expected = traverse_util.flatten_dict(param_shapes(arch, target_cfg))

    table = _table(arch, cfg, src_vocab)
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
    ignored = {k for k in available - used if any(re.fullmatch(p, k) for p in _IGNORED[arch])}
    unknown = sorted(available - used - ignored)
    if unknown:
        raise ValueError(f"checkpoint has {len(unknown)} unexpected tensor(s) for {arch}: {unknown[:10]}")
    return traverse_util.unflatten_dict(out)


def convert_state_dict(arch: str, hf_config: dict, state_dict: Mapping[str, Any], *, dtype: Any = jnp.float32,
                       vocab_size: int | None = None) -> dict:
    """HF-named state dict (torch tensors or numpy arrays) -> our params, with the same checks as load_hf."""
    return _convert(check_arch(arch), hf_config, _MappingSource(state_dict), vocab_size, dtype)


# -------------------------------------------------------------------------------------------------- load / export


def detect_arch(hf_config: dict) -> str:
    """"gpt_neox" or "gpt2" from config.json's model_type / architectures."""
    names = [hf_config.get("model_type")] + list(hf_config.get("architectures") or [])
    found = {_ARCH_BY_NAME[n] for n in names if n in _ARCH_BY_NAME}
    if len(found) != 1:
        raise ValueError(
            f"unknown or ambiguous architecture: model_type={hf_config.get('model_type')!r}, "
            f"architectures={hf_config.get('architectures')!r}; supported: GPTNeoXForCausalLM (gpt_neox), "
            "GPT2LMHeadModel (gpt2)"
        )
    return found.pop()


def _weight_files(d: Path) -> tuple[str, list[Path]]:
    """("safetensors" | "torch", files) in order of preference; FileNotFoundError if none."""
    for kind, single, index in (("safetensors", SAFE_SINGLE, SAFE_INDEX), ("torch", BIN_SINGLE, BIN_INDEX)):
        if (d / single).is_file():
            return kind, [d / single]
        if (d / index).is_file():
            try:
                weight_map = json.loads((d / index).read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"corrupt index file {d / index}: {e!r}") from None
            files = [d / name for name in sorted(set(weight_map.values()))]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise FileNotFoundError(f"{d / index} lists shard(s) that do not exist: {missing}")
            return kind, files
    raise FileNotFoundError(
        f"no weight file in {d}: expected {SAFE_SINGLE}, {SAFE_INDEX}, {BIN_SINGLE} or {BIN_INDEX}"
    )


def _looks_local(p: str) -> bool:
    return p.startswith(("/", "./", "../", "~")) or os.path.exists(p) or p.count("/") > 1


def _download(repo_id: str, revision: str | None) -> Path:
    """snapshot_download config + weights; safetensors preferred, pytorch_model.bin only when there are none."""
    try:
        from huggingface_hub import snapshot_download

        d = Path(snapshot_download(repo_id, revision=revision,
                                   allow_patterns=[CONFIG_NAME, SAFE_INDEX, "model*.safetensors"]))
        if not any(d.glob("*.safetensors")):
            d = Path(snapshot_download(repo_id, revision=revision,
                                       allow_patterns=[CONFIG_NAME, BIN_INDEX, "pytorch_model*.bin"]))
    except Exception as e:  # offline, unknown repo/revision, auth ...
        raise FileNotFoundError(
            f"{repo_id!r} is not a local directory and downloading it from the Hugging Face Hub "
            f"(revision={revision!r}) failed: {type(e).__name__}: {e}"
        ) from e
    return d


def load_hf(path_or_id: str, *, revision: str | None = None, dtype: Any = jnp.float32,
            vocab_size: int | None = None) -> tuple[str, dict, dict]:
    """Load an HF GPT-NeoX / GPT-2 causal LM -> (arch, hf_config, params).

    `path_or_id`: a directory with config.json and model.safetensors / a sharded model.safetensors.index.json /
    pytorch_model.bin, or a Hub id (downloaded at `revision`, e.g. "step0"). `vocab_size` keeps only the first
    rows of the token embedding(s) (the authors resize Pythia to 50277) and is written into the returned config.
    """
    p = str(path_or_id)
    if os.path.isdir(os.path.expanduser(p)):
        d = Path(os.path.expanduser(p))
        if revision is not None:
            warnings.warn(f"revision={revision!r} is ignored for the local directory {d}")
    elif _looks_local(p):
        raise FileNotFoundError(f"checkpoint directory {p!r} does not exist (or is not a directory)")
    else:
        d = _download(p, revision)
    config_path = d / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"missing {CONFIG_NAME} in {d}")
    try:
        hf_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt {config_path}: {e}") from None
    arch = detect_arch(hf_config)
    parse_config(arch, hf_config)  # unsupported settings fail before any tensor is read
    kind, files = _weight_files(d)
    source = _SafetensorsSource(files) if kind == "safetensors" else _torch_source(files)
    try:
        params = _convert(arch, hf_config, source, vocab_size, dtype)
    finally:
        source.close()
    if vocab_size is not None:
        hf_config["vocab_size"] = int(vocab_size)
    return arch, hf_config, params


def to_hf_state_dict(arch: str, hf_config: dict, params: dict) -> dict[str, np.ndarray]:
    """Our params -> HF-named fp32 numpy state dict (embed_out.weight / transformer.* keys, as the Hub files)."""
    cfg = parse_config(check_arch(arch), hf_config)
    flat = traverse_util.flatten_dict(params)
    table = _table(arch, cfg, cfg.vocab_size)
    if {e.path for e in table} != set(flat):
        raise ValueError(f"params do not match the {arch} config: {sorted(set(flat) ^ {e.path for e in table})[:10]}")
    out = {}
    for e in table:
        arr = np.asarray(flat[e.path], dtype=np.float32)
        arr = arr.T if e.transpose else arr
        if arr.shape != e.shape:
            raise ValueError(f"param {'/'.join(e.path)} has shape {list(arr.shape)}, config implies {list(e.shape)}")
        key = e.keys[-1] if arch == "gpt2" else e.keys[0]  # "transformer.*" for GPT-2, "embed_out" for NeoX
        out[key] = np.ascontiguousarray(arr)
    return out


def export_hf(arch: str, hf_config: dict, params: dict, out_dir: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors (fp32) loadable by transformers' AutoModelForCausalLM."""
    from safetensors.numpy import save_file

    state = to_hf_state_dict(arch, hf_config, params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(hf_config)
    config["architectures"] = ["GPTNeoXForCausalLM" if arch == "gpt_neox" else "GPT2LMHeadModel"]
    config["model_type"] = arch
    config["torch_dtype"] = "float32"
    config.pop("dtype", None)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(state, str(out / SAFE_SINGLE), metadata={"format": "pt"})
    return out
