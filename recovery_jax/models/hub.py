"""Where a Hugging Face–format checkpoint's files are, for every loader (the language models' hf_io and the vision
ports' vision_common): the file names of the format, `resolve_dir` (a local directory, a revision inside one, or a
Hub id downloaded at a revision), `read_hf_config`, `weight_files`, and `write_hf_dir` for exports.

Local revisions: a directory whose subdirectories are checkpoints of one run (the offline pretraining command
writes W/step0/, W/step100/, ..., W/final/, each with its own config.json) is read at a revision like the Hub's
Pythia repositories: resolve_dir("W", revision="step100") is W/step100.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

CONFIG_NAME = "config.json"
SAFE_SINGLE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_SINGLE, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def looks_local(path: str) -> bool:
    """Whether `path` names a local path rather than a Hub id ("gpt2", "EleutherAI/pythia-14m")."""
    return path.startswith(("/", "./", "../", "~")) or os.path.exists(path) or path.count("/") > 1


def local_revisions(d: Path) -> list[str]:
    """The revisions a local directory holds: its subdirectories with a config.json, in natural order (step2
    before step10)."""
    names = [c.name for c in d.iterdir() if (c / CONFIG_NAME).is_file()]
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def resolve_dir(path_or_id: str | os.PathLike, revision: str | None = None) -> Path:
    """The directory of a checkpoint: a local directory (its subdirectory `revision` when one is given), or a Hub
    id, downloaded at `revision` (config + weights; safetensors preferred, pytorch_model.bin only when there are
    none). FileNotFoundError for a missing local path or a failed download, ValueError for a local revision that
    is not there (the message lists those that are)."""
    p = os.path.expanduser(str(path_or_id))
    if os.path.isdir(p):
        return _local_revision(Path(p), revision)
    if looks_local(p):
        raise FileNotFoundError(f"checkpoint directory {str(path_or_id)!r} does not exist (or is not a directory)")
    return _download(p, revision)


def _local_revision(d: Path, revision: str | None) -> Path:
    if revision is None:
        return d
    sub = d / revision
    if Path(revision).name == revision and revision not in (".", "..") and (sub / CONFIG_NAME).is_file():
        return sub
    available = local_revisions(d)
    listed = ", ".join(available) if available else "none (no subdirectory with a config.json)"
    raise ValueError(f"revision {revision!r} is not in the local directory {d}: it has no subdirectory "
                     f"{revision!r} with a {CONFIG_NAME}; available revisions: {listed}")


def is_top_revision(path: str | os.PathLike, revision: str) -> bool:
    """Whether revision `revision` of the local checkpoint directory `path` is the checkpoint at its top level, file
    for file (the same config and weight files, as recovery_jax.pretrain hard-links its final revision there), so
    that loading either gives the same weights. False for a Hub id, a missing revision or mere equal copies."""
    d = Path(os.path.expanduser(str(path)))
    if not revision or not d.is_dir():
        return False
    try:
        sub = _local_revision(d, revision)
        (_, top), (_, own) = weight_files(d), weight_files(sub)
        pairs = [(d / CONFIG_NAME, sub / CONFIG_NAME), *zip(top, own)]
        return len(top) == len(own) and all(a.name == b.name and os.path.samefile(a, b) for a, b in pairs)
    except (OSError, ValueError):
        return False


def _download(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download

        d = Path(snapshot_download(repo_id, revision=revision,
                                   allow_patterns=[CONFIG_NAME, SAFE_INDEX, "model*.safetensors"]))
        if not any(d.glob("*.safetensors")):
            d = Path(snapshot_download(repo_id, revision=revision,
                                       allow_patterns=[CONFIG_NAME, BIN_INDEX, "pytorch_model*.bin"]))
    except Exception as e:  # offline, unknown repo or revision, auth ...
        raise FileNotFoundError(
            f"{repo_id!r} is not a local directory and downloading it from the Hugging Face Hub "
            f"(revision={revision!r}) failed: {type(e).__name__}: {e}"
        ) from e
    return d


def read_hf_config(d: Path) -> dict:
    """d/config.json as a dict; FileNotFoundError if missing, ValueError if it is not a JSON object."""
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


def weight_files(d: Path) -> tuple[str, list[Path]]:
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


def write_hf_dir(out_dir: str | os.PathLike, config: dict, state: Mapping[str, Any]) -> Path:
    """config.json (sorted keys) + model.safetensors (fp32, metadata format=pt as transformers writes it)."""
    import numpy as np
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}, str(out / SAFE_SINGLE),
              metadata={"format": "pt"})
    return out
