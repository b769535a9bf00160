"""The authors' cyclic fine-tuning loop in PyTorch, for benchmarking only.

A transcription of `llm-experiments/training/train_interleave_optimizer_reset.py` (and of the SGD
scripts) without accelerate, datasets or logging: HF `GPTNeoXForCausalLM` in float32, batch size 1,
for every episode M steps of `loss = model(**batch).loss; loss.backward(); opt.step(); opt.zero_grad()`
with the loss recorded (detached) before its update, a NEW `torch.optim.Adam` per document for
adam_reset (`torch.optim.SGD` built once for sgd), then `model.eval()` + `torch.no_grad()` evaluation
of every document one at a time at batch size 1, unpadded and truncated to C.

Run standalone as a worker (what benchmarks.throughput does, so its memory high-water mark is its own):

    python -m benchmarks.torch_ref BUNDLE_DIR OUT_PREFIX [--episodes N] [--repeat R] [--threads N] [--device cuda]

On a GPU (`--device cuda`) the same loop runs there, synchronising only where its timings need it (the
authors' loop itself synchronises once per step, by logging the loss).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from benchmarks import common
from recovery_jax import cli


def check_device(device: str) -> str:
    """'cpu' or a CUDA device torch can use; a clear error otherwise."""
    import torch

    if device == "cpu":
        return device
    if not device.startswith("cuda"):
        raise ValueError(f"torch device {device!r} is not supported; use cpu or cuda[:N]")
    if not torch.cuda.is_available():
        raise ValueError(f"torch device {device!r} requested but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); use --torch-device cpu")
    return device


def _sync(device: str) -> None:
    if device != "cpu":
        import torch

        torch.cuda.synchronize(device)


def _batches(b: common.Bundle, device: str = "cpu"):
    """Training batches (right-padded to C, labels -100 on padding, as `padding='max_length'`) and
    evaluation batches (no padding: the first n real tokens, labels = input_ids), on `device`."""
    import torch

    train, evals = [], []
    for tok, msk in zip(b.train_tokens_TC, b.train_mask_TC):
        ids = torch.as_tensor(tok[None].astype(np.int64))
        att = torch.as_tensor(msk[None].astype(np.int64))
        labels = torch.where(att.bool(), ids, torch.full_like(ids, -100))
        train.append({k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": att, "labels": labels}.items()})
    for tok, msk in zip(b.eval_tokens_TC, b.eval_mask_TC):
        n = int(msk.sum())
        if not msk[:n].all():
            raise ValueError("evaluation masks must be a prefix of ones (right padding)")
        ids = torch.as_tensor(tok[None, :n].astype(np.int64))
        evals.append({k: v.to(device) for k, v in
                      {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}.items()})
    return train, evals


def load_model(b: common.Bundle, device: str = "cpu"):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(b.hf_dir, dtype=torch.float32)
    model.to(device=device, dtype=torch.float32)
    return model


def run_protocol(b: common.Bundle, n_episodes: int | None = None, model=None, log=None, threads=None,
                 device: str = "cpu") -> dict:
    """The whole protocol (row-0 evaluation + episodes), timed end to end. Returns losses and timings."""
    import torch

    torch.set_num_threads(threads or os.cpu_count())
    opt_cfg = b.meta["optimizer"]
    name, lr = opt_cfg["name"], float(opt_cfg["lr"])
    K = b.meta["episodes"] if n_episodes is None else min(int(n_episodes), b.meta["episodes"])
    M, T = b.meta["M"], b.meta["T"]
    if model is None:
        model = load_model(b, device)
    train_batches, eval_batches = _batches(b, device)
    params = list(model.parameters())

    def make_opt():
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr)
        if name == "momentum":
            return torch.optim.SGD(params, lr=lr, momentum=opt_cfg["momentum"])
        return torch.optim.Adam(params, lr=lr, betas=(opt_cfg["b1"], opt_cfg["b2"]), eps=opt_cfg["eps"])

    eval_losses = torch.zeros(K + 1, T, device=device)
    train_losses = []
    t_train = t_eval = 0.0
    ep_train, ep_eval = [], []

    def evaluate(row):
        model.eval()
        with torch.no_grad():
            for t, batch in enumerate(eval_batches):
                eval_losses[row, t] = model(**batch).loss.detach()

    _sync(device)
    t0 = time.perf_counter()
    evaluate(0)
    _sync(device)
    t_eval += time.perf_counter() - t0
    optimizer = None if name == "adam_reset" else make_opt()
    for k in range(1, K + 1):
        ta = time.perf_counter()
        batch = train_batches[int(b.docs_K[k - 1])]
        if name == "adam_reset":
            optimizer = make_opt()  # the authors build a new Adam for every document
        model.train()
        for _ in range(M):
            loss = model(**batch).loss
            train_losses.append(loss.detach().unsqueeze(0))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        _sync(device)
        tb = time.perf_counter()
        evaluate(k)
        _sync(device)
        tc = time.perf_counter()
        t_train += tb - ta
        t_eval += tc - tb
        ep_train.append(tb - ta)
        ep_eval.append(tc - tb)
        if log is not None and (k % max(1, K // 10) == 0 or k == K):
            log(f"  torch: episode {k}/{K}  {tc - t0:.1f}s")
    wall = time.perf_counter() - t0
    return {"eval_losses": eval_losses.cpu().numpy().astype(np.float32),
            "train_losses": torch.cat(train_losses).cpu().numpy().astype(np.float32),
            "wall_s": wall, "train_s": t_train, "eval_s": t_eval, "episodes": K,
            "episode_train_s": ep_train, "episode_eval_s": ep_eval,
            "threads": torch.get_num_threads(), "device": device}


def benchmark(b: common.Bundle, n_episodes: int | None = None, repeat: int = 1, log=print, threads=None,
              device: str = "cpu") -> dict:
    """Load the model, run the protocol `repeat` times from the same initial weights; timings + memory.
    threads: torch intra-op threads (default os.cpu_count(), as the brief of issue 6 asks)."""
    import torch
    import transformers

    device = check_device(device)
    torch.set_num_threads(threads or os.cpu_count())
    mem = common.MemoryWindow()
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    model = load_model(b, device)
    load_s = time.perf_counter() - t0
    init_state = {k: v.clone() for k, v in model.state_dict().items()}
    runs = []
    for r in range(repeat):
        if r:
            model.load_state_dict(init_state)
        load_avg = common.load_average()
        out = run_protocol(b, n_episodes, model=model, log=log, threads=threads, device=device)
        out["load_average_before"] = load_avg
        runs.append(out)
    best = min(runs, key=lambda o: o["wall_s"])
    res = {k: v for k, v in best.items() if k not in ("eval_losses", "train_losses")}
    res.update({"load_s": load_s, "wall_s_all": [o["wall_s"] for o in runs],
                "load_average_before_all": [o["load_average_before"] for o in runs],
                "memory": mem.report(), "torch_version": torch.__version__, "device": device,
                "transformers_version": transformers.__version__,
                "attn_implementation": getattr(model.config, "_attn_implementation", None),
                # torch's default for CPU tensors: neither foreach nor fused (single-tensor loop)
                "optimizer_impl": ("torch default (single-tensor loop on CPU)" if device == "cpu"
                                   else "torch default (foreach on CUDA)")})
    if device != "cpu":
        res["memory"]["device_peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return {"report": res, "eval_losses": runs[0]["eval_losses"], "train_losses": runs[0]["train_losses"]}


def _main(argv) -> int:
    p = cli.ArgumentParser(prog="python -m benchmarks.torch_ref")
    p.add_argument("bundle")
    p.add_argument("out_prefix")
    p.add_argument("--episodes", type=cli.positive_int, default=None)
    p.add_argument("--repeat", type=cli.positive_int, default=1)
    p.add_argument("--threads", type=cli.positive_int, default=None)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    b = common.read_bundle(a.bundle)
    out = benchmark(b, a.episodes, a.repeat, log=lambda s: print(s, flush=True), threads=a.threads, device=a.device)
    np.savez(a.out_prefix + ".npz", eval_losses=out["eval_losses"], train_losses=out["train_losses"])
    common.write_json(a.out_prefix + ".json", out["report"])
    return 0


def main(argv=None) -> int:
    return cli.guarded(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
