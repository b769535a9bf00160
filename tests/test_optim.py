"""Optimizers against hand-computed updates: directions, schedules, inverse-lr scaling, frozen leaves."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from recovery_jax import config as config_lib
from recovery_jax.optim import apply_update, effective_lr, make_optimizer


def cfg_with(**over):
    return config_lib.apply_overrides(config_lib.base_config(), [f"{k}={v}" for k, v in over.items()])


PARAMS = {"a": jnp.asarray([1.0, -2.0]), "b": {"w": jnp.asarray([[0.5]])}}
GRADS = {"a": jnp.asarray([0.1, 0.3]), "b": {"w": jnp.asarray([[-0.2]])}}


def step(opt, params, grads, state, gstep):
    d, state = opt.direction.update(grads, state, params)
    return apply_update(params, d, opt.lr_at(jnp.asarray(gstep))), state


def test_sgd_is_p_minus_lr_g():
    opt = make_optimizer(cfg_with(**{"optim.name": "sgd", "optim.lr": 0.5}), total_steps=10)
    new, _ = step(opt, PARAMS, GRADS, opt.direction.init(PARAMS), 0)
    np.testing.assert_allclose(new["a"], [1.0 - 0.05, -2.0 - 0.15], rtol=1e-6)
    np.testing.assert_allclose(new["b"]["w"], [[0.5 + 0.1]], rtol=1e-6)
    assert not opt.reset_each_episode


def test_adam_first_step_is_sign_times_lr():
    opt = make_optimizer(cfg_with(**{"optim.name": "adam_reset", "optim.lr": 0.01, "optim.eps": 0.0}), 10)
    new, _ = step(opt, PARAMS, GRADS, opt.direction.init(PARAMS), 0)
    # bias-corrected m/sqrt(v) = g/|g| on the first step
    np.testing.assert_allclose(new["a"], [1.0 - 0.01, -2.0 - 0.01], rtol=1e-6)
    np.testing.assert_allclose(new["b"]["w"], [[0.5 + 0.01]], rtol=1e-6)
    assert opt.reset_each_episode


def test_momentum_accumulates():
    opt = make_optimizer(cfg_with(**{"optim.name": "momentum", "optim.lr": 1.0, "optim.momentum": 0.5}), 10)
    state = opt.direction.init(PARAMS)
    p1, state = step(opt, PARAMS, GRADS, state, 0)
    p2, _ = step(opt, p1, GRADS, state, 1)
    # trace: d1 = g, d2 = g + 0.5 g
    np.testing.assert_allclose(p2["a"], np.asarray(PARAMS["a"]) - 2.5 * np.asarray(GRADS["a"]), rtol=1e-6)


def test_cosine_schedule_endpoints_and_inverse_lr_scaling():
    cfg = cfg_with(**{"optim.lr": 1e-2, "optim.schedule": "cosine", "optim.min_lr": 1e-3})
    lr = make_optimizer(cfg, total_steps=100).lr_at
    assert float(lr(jnp.asarray(0))) == pytest.approx(1e-2)
    assert float(lr(jnp.asarray(50))) == pytest.approx(1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi / 2)))
    assert float(lr(jnp.asarray(100))) == pytest.approx(1e-3)
    scaled = cfg_with(**{"optim.lr": 1e-2, "optim.lr_ref_M": 10, "M": 5})
    assert effective_lr(scaled) == pytest.approx(2e-2)  # the same total update in half the steps


def test_frozen_leaves_get_no_update():
    opt = make_optimizer(cfg_with(**{"optim.name": "adam", "optim.lr": 0.1}), 10,
                         trainable={"a": False, "b": {"w": True}})
    new, _ = step(opt, PARAMS, GRADS, opt.direction.init(PARAMS), 0)
    np.testing.assert_array_equal(new["a"], PARAMS["a"])
    assert not np.allclose(new["b"]["w"], PARAMS["b"]["w"])
