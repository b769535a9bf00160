"""Optimizers as (direction transform, learning-rate schedule) pairs.

The optax transform yields an update *direction*; the engine multiplies it by -lr(global step).
Keeping the learning rate outside the optax state is what lets Adam's state be reset at every
document (the paper's "Adam, reset") while a cosine schedule still runs over the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


@dataclass(frozen=True)
class Optimizer:
    direction: optax.GradientTransformation
    # (global step (0-based), base learning rate or None for the config's) -> learning rate; the base rate is an
    # argument so that the runs of a group can each have their own (an array under the run axis)
    lr_at: Callable[..., jax.Array]
    reset_each_episode: bool
    name: str


def effective_lr(cfg) -> float:
    """Fig 19a's inverse scaling: the same total update split into M steps."""
    lr = float(cfg.optim.lr)
    if cfg.optim.lr_ref_M:
        lr = lr * cfg.optim.lr_ref_M / cfg.M
    return lr


def make_schedule(cfg, total_steps: int) -> Callable[..., jax.Array]:
    """lr(step, base) for base = the run's effective learning rate (default: this config's)."""
    default = effective_lr(cfg)
    if cfg.optim.schedule == "constant":
        return lambda step, lr=None: jnp.asarray(default if lr is None else lr, jnp.float32)
    if cfg.optim.schedule == "cosine":
        min_lr, steps = cfg.optim.min_lr, max(total_steps, 1)
        at_default = optax.cosine_decay_schedule(default, decay_steps=steps, alpha=min_lr / default if default else 0.0)

        def cosine(step, lr=None):
            if lr is None:
                return jnp.asarray(at_default(step), jnp.float32)
            lr = jnp.asarray(lr, jnp.float32)  # a run's own base rate, traced under the run axis
            alpha = jnp.where(lr > 0, min_lr / lr, 0.0)
            return jnp.asarray(optax.cosine_decay_schedule(lr, decay_steps=steps, alpha=alpha)(step), jnp.float32)
        return cosine
    raise ValueError(f"unknown schedule {cfg.optim.schedule!r}; valid: constant, cosine")


def make_optimizer(cfg, total_steps: int, trainable: Any | None = None) -> Optimizer:
    """trainable: optional pytree of bools (True = train); frozen leaves get zero updates and no
    optimizer state."""
    o = cfg.optim
    name = o.name
    if name == "sgd":
        direction = optax.identity()
    elif name == "momentum":
        direction = optax.trace(decay=o.momentum, nesterov=False)
    elif name in ("adam", "adam_reset"):
        direction = optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps)
    elif name == "adamw":
        direction = optax.chain(optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps),
                                optax.add_decayed_weights(o.weight_decay))
    else:
        raise ValueError(f"unknown optimizer {name!r}; valid: sgd, momentum, adam, adam_reset, adamw")
    if o.weight_decay and name not in ("adamw",):
        direction = optax.chain(direction, optax.add_decayed_weights(o.weight_decay))
    if trainable is not None:
        labels = jax.tree_util.tree_map(lambda t: "train" if t else "freeze", trainable)
        direction = optax.multi_transform({"train": direction, "freeze": optax.set_to_zero()}, labels)
    return Optimizer(direction=direction, lr_at=make_schedule(cfg, total_steps),
                     reset_each_episode=(name == "adam_reset"), name=name)


def apply_update(params, direction, lr):
    return jax.tree_util.tree_map(lambda p, d: (p - lr * d).astype(p.dtype), params, direction)
