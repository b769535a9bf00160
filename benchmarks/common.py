"""What both sides of the benchmark share: the inputs (one "bundle" on disk), FLOP counts, machine facts,
memory high-water marks and the measured matmul peak.

The bundle is written once by the orchestrating process and read by both workers, so the two
implementations see byte-identical documents, order and initial weights:

    bundle/
      meta.json         arch, HF config, protocol (T, C, M, E, episodes), optimizer, config dict
      data.npz          train_tokens_TC, train_mask_TC, eval_tokens_TC, eval_mask_TC, docs_K
      params.pkl        our initial parameter pytree (numpy)
      hf/               the same weights exported with recovery_jax.models.export_hf (torch loads this)
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            return m.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            if m:
                return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def uptime_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average_1_5_15": load_average(), "uptime": uptime_line()}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "transformers"):
        mod = sys.modules.get(name)
        if mod is not None:
            info[f"{name}_version"] = getattr(mod, "__version__", "?")
    return info


# --------------------------------------------------------------------------------------- memory


def rss_mb() -> float:
    """Current resident set size of this process (MiB)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def peak_rss_mb() -> float:
    """High-water mark of this process's RSS since it started (MiB; ru_maxrss is KiB on Linux)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0: write 5 to /proc/self/clear_refs).
    Then /proc/self/status VmHWM is the peak from now on. Returns whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    """VmHWM from /proc/self/status (resettable with reset_peak_rss), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(r"^VmHWM:\s*(\d+)\s*kB", f.read(), re.M)
        if m:
            return int(m.group(1)) / 1024
    except OSError:
        pass
    return peak_rss_mb()


class MemoryWindow:
    """Peak RSS over a region of code: baseline RSS at entry, high-water mark at exit."""

    def __init__(self):
        self.reset_ok = reset_peak_rss()
        self.base_mb = rss_mb()

    def report(self) -> dict:
        peak = hwm_mb()
        return {"rss_before_mb": round(self.base_mb, 1), "rss_peak_mb": round(peak, 1),
                "rss_peak_delta_mb": round(peak - self.base_mb, 1),
                "peak_is_windowed": bool(self.reset_ok)}


# --------------------------------------------------------------------------------------- FLOPs


def model_dims(arch: str, hf: dict) -> dict:
    from recovery_jax import models

    m = models.parse_config(arch, hf)
    return {"d": m.hidden_size, "layers": m.num_layers, "heads": m.num_heads, "ff": m.intermediate_size,
            "vocab": m.vocab_size}


def flop_model(arch: str, hf: dict, C: int) -> dict:
    """Analytic FLOPs (1 multiply-add = 2 FLOPs) of one sequence of C tokens.

    matmul params per token: per block qkv (d x 3d) + attention out (d x d) + MLP (2 d x ff), plus the
    unembedding (d x V; a real matmul even though it is an "embedding" parameter). Attention scores and
    the weighted sum cost 2 * 2 * C^2 * d per block for the FULL C x C matrix (the usual MFU convention, the
    same count for both implementations; with model.attention_block = b the engine computes (n+1)/(2n) of it
    for n = C/b query blocks, at most 4 % fewer FLOPs in total at the default). Training = 3 x forward.
    Elementwise work (LayerNorm, GELU, softmax, Adam) is not counted: it is the usual convention and
    on any hardware it is what keeps the achieved rate below the matmul peak.
    """
    m = model_dims(arch, hf)
    d, L, F, V = m["d"], m["layers"], m["ff"], m["vocab"]
    block_matmul = L * (3 * d * d + d * d + 2 * d * F)
    nonembed_params = L * (4 * d * d + 2 * d * F)  # weights only (the 6N convention's N)
    matmul_params = block_matmul + d * V
    fwd_matmul = 2 * matmul_params * C
    fwd_attn = L * 4 * C * C * d
    fwd = fwd_matmul + fwd_attn
    return {"dims": m, "nonembedding_params": nonembed_params, "matmul_params": matmul_params,
            "forward_flops_per_seq": float(fwd), "forward_attention_flops_per_seq": float(fwd_attn),
            "train_step_flops": float(3 * fwd), "sixN_flops_per_step": float(6 * nonembed_params * C)}


def protocol_flops(fm: dict, T: int, M: int, episodes: int, include_row0: bool = True) -> dict:
    train = episodes * M * fm["train_step_flops"]
    evals = (episodes + (1 if include_row0 else 0)) * T * fm["forward_flops_per_seq"]
    return {"train_flops": train, "eval_flops": evals, "total_flops": train + evals}


# --------------------------------------------------------------------------------------- matmul peak


def call_times(fn, reps: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `reps` calls of fn() after `warmup` untimed ones; fn must block until its work is done."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def matmul_peak(dtype: str = "float32", sizes=(1024, 2048), repeats: int = 7) -> dict:
    """Best-of-`repeats` FLOP/s of a jitted square matmul, for each size; the peak is the best over sizes."""
    import jax
    import jax.numpy as jnp

    dt = jnp.dtype(dtype)
    out = {"dtype": dtype, "by_size": {}}
    best = 0.0
    for n in sizes:
        key = jax.random.PRNGKey(n)
        a = jax.random.normal(key, (n, n), jnp.float32).astype(dt)
        b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32).astype(dt)
        f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=dt)).lower(a, b).compile()
        times = call_times(lambda: f(a, b).block_until_ready(), repeats)
        rate = 2 * n**3 / min(times)
        out["by_size"][str(n)] = {"best_s": min(times), "median_s": float(np.median(times)), "flops_per_s": rate}
        best = max(best, rate)
    out["peak_flops_per_s"] = best
    return out


# --------------------------------------------------------------------------------------- the bundle


@dataclass
class Bundle:
    path: str
    meta: dict
    train_tokens_TC: np.ndarray
    train_mask_TC: np.ndarray
    eval_tokens_TC: np.ndarray
    eval_mask_TC: np.ndarray
    docs_K: np.ndarray

    @property
    def hf_dir(self) -> str:
        return os.path.join(self.path, "hf")

    def params(self) -> Any:
        with open(os.path.join(self.path, "params.pkl"), "rb") as f:
            return pickle.load(f)

    def cfg(self):
        from recovery_jax import config as config_lib
        return config_lib.from_dict(self.meta["config"])


def write_bundle(cfg, path: str, log=print) -> Bundle:
    """prepare_data + build_params exactly as recovery_jax.runner.run does, then export for both sides."""
    import jax
    from recovery_jax import config as config_lib, models, runner
    from recovery_jax.optim import effective_lr

    os.makedirs(path, exist_ok=True)
    order = runner.make_run_order(cfg)
    if order.n_fillers:
        raise config_lib.ConfigError("the benchmark does not support order.kind='filler'")
    rd = runner.prepare_data(cfg, order)
    streams = runner.seed_streams(cfg.seed)
    mcfg, params = runner.build_params(cfg, rd, streams["init"])
    arch, hf = mcfg.arch, models.to_hf_config(mcfg)
    params = jax.tree_util.tree_map(np.asarray, params)
    models.export_hf(arch, hf, params, os.path.join(path, "hf"))
    with open(os.path.join(path, "params.pkl"), "wb") as f:
        pickle.dump(params, f)
    docs_K = np.asarray(order.docs_K, np.int32)
    np.savez(os.path.join(path, "data.npz"), train_tokens_TC=rd.train_tokens_TB[:, : cfg.C],
             train_mask_TC=rd.train_mask_TB[:, : cfg.C], eval_tokens_TC=rd.eval_tokens_TC,
             eval_mask_TC=rd.eval_mask_TC, docs_K=docs_K)
    meta = {"arch": arch, "hf_config": hf, "T": int(cfg.T), "C": int(cfg.C), "M": int(cfg.M), "E": int(cfg.E),
            "episodes": int(order.n_episodes), "pad_id": int(rd.pad_id), "vocab_size": int(rd.vocab_size),
            "restrict_vocab": bool(cfg.data.restrict_vocab), "n_params": int(models.param_count(params)),
            "optimizer": {"name": cfg.optim.name, "lr": effective_lr(cfg), "b1": cfg.optim.b1, "b2": cfg.optim.b2,
                          "eps": cfg.optim.eps, "momentum": cfg.optim.momentum},
            "dtype": cfg.model.dtype, "config": config_lib.to_dict(cfg)}
    with open(os.path.join(path, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return read_bundle(path)


def read_bundle(path: str) -> Bundle:
    with open(os.path.join(path, "meta.json")) as f:
        meta = json.load(f)
    z = np.load(os.path.join(path, "data.npz"))
    return Bundle(path, meta, z["train_tokens_TC"], z["train_mask_TC"], z["eval_tokens_TC"], z["eval_mask_TC"],
                  z["docs_K"])


def torch_supported(cfg) -> str | None:
    """None if the PyTorch reference implements this config, else why not."""
    why = []
    if cfg.optim.name not in ("sgd", "momentum", "adam", "adam_reset"):
        why.append(f"optim.name={cfg.optim.name}")
    if cfg.optim.schedule != "constant":
        why.append("optim.schedule != constant")
    if cfg.optim.weight_decay:
        why.append("optim.weight_decay")
    if cfg.optim.freeze_first or cfg.optim.freeze_last:
        why.append("frozen blocks")
    if cfg.variant.mask_prob > 0 or cfg.variant.window >= 0:
        why.append("input masking / random windows")
    if cfg.eval.every_step:
        why.append("eval.every_step")
    if cfg.model.dropout != "off":  # the HF config's dropouts (GPT-2: 0.1) would be active while training
        why.append("model.dropout=from_hf")
    return "; ".join(why) or None


def write_json(path: str, obj: Any) -> None:
    """A benchmark report, written like every run file (recovery_jax.rundir.write_json_atomic: temp file +
    rename, numpy values converted, NaN as null, refuses to replace anything but a regular file)."""
    from recovery_jax.rundir import write_json_atomic

    write_json_atomic(path, obj, indent=1)


def print_report(lines: list[str], report: dict, out: str | None) -> None:
    """A benchmark CLI's ending: its summary lines, then the report JSON where --out asks for it."""
    print()
    for line in lines:
        print(line)
    if out:
        write_json(out, report)
        print(f"report: {out}")
