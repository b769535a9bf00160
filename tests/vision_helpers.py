"""Shared pieces of the vision-port tests (test_models_imagegpt/vit/vgg.py): tree comparisons and the
gradient / one-optimizer-step parity check against a torch model."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def highest_precision():
    """fp32 matmuls and convolutions at full precision for parity checks, scoped to each test."""
    with jax.default_matmul_precision("highest"):
        yield


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def trees_equal(a, b) -> bool:
    same = jax.tree_util.tree_map(lambda x, y: x.shape == y.shape and bool(jnp.array_equal(x, y)), a, b)
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and jax.tree_util.tree_all(same)


def _loss_err(ours: float, ref: float) -> float:
    return abs(ours - ref) / max(1.0, abs(ref))


def check_training_parity(model, to_params: Callable, torch_loss: Callable, jax_loss: Callable,
                          grad_tol: float, loss_tol: float, report: dict | None = None,
                          zero_grad: Callable[[tuple[str, ...]], bool] = lambda path: False) -> None:
    """Loss, all gradients, and the loss and params after one SGD and one Adam step agree with torch.

    to_params(state_dict) -> our params (also used for torch gradients / updated weights); torch_loss(model) ->
    scalar loss tensor; jax_loss(params) -> scalar. Losses are compared as |ours - torch| / max(1, |torch|).
    The measured differences are stored in `report`."""
    report = {} if report is None else report
    state0 = {k: v.clone() for k, v in model.state_dict().items()}
    params0 = to_params(state0)
    grad_fn = jax.jit(jax.value_and_grad(jax_loss))

    model.zero_grad()
    t_loss = torch_loss(model)
    t_loss.backward()
    loss, grads = grad_fn(params0)
    report["loss"] = _loss_err(float(loss), t_loss.item())
    assert report["loss"] <= loss_tol, (float(loss), t_loss.item())
    t_grads = to_params({k: p.grad for k, p in model.named_parameters()})
    # Tensors named by `zero_grad` have an exactly zero gradient in exact arithmetic, rounding noise in both
    # frameworks (separate attention key biases: the softmax is invariant to adding the same q.b_k to every
    # key of a query): checked to be negligible instead of compared.
    flat, t_flat = traverse_util.flatten_dict(grads), traverse_util.flatten_dict(t_grads)
    scale = max(float(np.max(np.abs(np.asarray(g)))) for g in t_flat.values())
    errs = {}
    for path, g in flat.items():
        if zero_grad(path):
            assert max(float(np.max(np.abs(np.asarray(x)))) for x in (g, t_flat[path])) <= 1e-5 * scale, path
        else:
            errs["/".join(path)] = rel_err(g, t_flat[path])
    report["grad_rel"] = max(errs.values())
    assert report["grad_rel"] <= grad_tol, errs

    for name, t_opt, opt in (("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1), optax.sgd(0.1)),
                             ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-8), optax.adam(1e-2, eps=1e-8))):
        model.load_state_dict(state0)
        o = t_opt(model.parameters())
        o.zero_grad()
        torch_loss(model).backward()
        o.step()
        with torch.no_grad():
            t_next = torch_loss(model).item()
        updates, _ = opt.update(grads, opt.init(params0), params0)
        params1 = optax.apply_updates(params0, updates)
        j_next = float(grad_fn(params1)[0])
        assert abs(t_next - t_loss.item()) > 1e-3, name  # the step did something
        report[f"{name}_loss"] = _loss_err(j_next, t_next)
        assert report[f"{name}_loss"] <= loss_tol, (name, j_next, t_next)
        # Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g): where a gradient is rounding noise (key biases)
        # torch and JAX step by up to 2 lr in different directions, so only SGD's params are asserted.
        t_params1 = to_params({k: v.detach().clone() for k, v in model.state_dict().items()})
        diffs = jax.tree_util.tree_map(max_abs, params1, t_params1)
        report[f"{name}_params_abs"] = max(jax.tree_util.tree_leaves(diffs))
    model.load_state_dict(state0)
    assert report["sgd_params_abs"] <= 1e-5, report
