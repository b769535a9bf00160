"""Throughput benchmarks of recovery_jax against a PyTorch re-implementation of the authors' loop.

    python -m benchmarks.throughput [--config configs/default.py] [--config.KEY=VALUE ...] [--out FILE.json]
    python -m benchmarks.scaling [--out benchmarks/results/scaling.json]

See benchmarks/README.md.
"""
