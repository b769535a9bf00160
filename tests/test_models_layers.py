"""layers.py building blocks against straightforward reference formulas (no torch needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recovery_jax.models import build_model, parse_config
from recovery_jax.models.layers import apply_rotary, causal_attention, rotary_cos_sin


@pytest.fixture(autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def reference_attention(q, k, v, scale):
    """Textbook causal attention in float64 numpy: softmax over keys j <= i."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    L = q.shape[1]
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    logits = np.where(np.tril(np.ones((L, L), bool)), logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


def qkv(L, B=2, H=3, D=8, seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    return tuple(jax.random.normal(kk, (B, L, H, D), jnp.float32) for kk in ks)


@pytest.mark.parametrize("L,block", [(1, 16), (16, 16), (48, 16), (50, 16), (100, 32), (64, 0), (70, 64), (37, 5)])
def test_blocked_attention_equals_full_and_reference(L, block):
    q, k, v = qkv(L)
    ref = reference_attention(q, k, v, 0.3)
    out = np.asarray(jax.jit(lambda *a: causal_attention(*a, 0.3, None, block))(q, k, v))
    full = np.asarray(jax.jit(lambda *a: causal_attention(*a, 0.3, None, 0))(q, k, v))
    np.testing.assert_allclose(out, ref, atol=2e-6, rtol=0)
    np.testing.assert_allclose(out, full, atol=1e-6, rtol=0)


def test_blocked_attention_gradients_equal_full():
    q, k, v = qkv(50, seed=1)
    w = jax.random.normal(jax.random.PRNGKey(9), q.shape)

    def grads(block):
        f = lambda q, k, v: jnp.sum(causal_attention(q, k, v, 0.25, None, block) * w)  # noqa: E731
        return jax.jit(jax.grad(f, argnums=(0, 1, 2)))(q, k, v)

    for g_blocked, g_full in zip(grads(16), grads(0)):
        np.testing.assert_allclose(np.asarray(g_blocked), np.asarray(g_full), atol=2e-6, rtol=0)
    # keys after a query's position get no gradient from it: the last key only from the last query
    g_k = np.asarray(grads(16)[1])
    assert np.abs(g_k[:, -1]).max() > 0


def test_no_future_leak_with_blocks():
    """Changing the last token changes no earlier position's output (the mask holds across blocks)."""
    q, k, v = qkv(40, seed=2)
    out = causal_attention(q, k, v, 0.5, None, 16)
    k2, v2 = k.at[:, -1].add(5.0), v.at[:, -1].add(5.0)
    out2 = causal_attention(q, k2, v2, 0.5, None, 16)
    np.testing.assert_array_equal(np.asarray(out[:, :-1]), np.asarray(out2[:, :-1]))
    assert np.abs(np.asarray(out[:, -1] - out2[:, -1])).max() > 1e-3


@pytest.mark.parametrize("rot_frac", [0.25, 1.0])
def test_rotary_matches_rotate_half_formula(rot_frac):
    B, L, H, D = 2, 12, 2, 16
    n = int(D * rot_frac)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (B, L, H, D)), np.float64)
    cos, sin = rotary_cos_sin(L, n, 10000.0)
    c, s = np.asarray(cos, np.float64)[None, :, None], np.asarray(sin, np.float64)[None, :, None]
    xr = x[..., :n]
    rotate_half = np.concatenate([-xr[..., n // 2:], xr[..., : n // 2]], -1)
    ref = np.concatenate([xr * c + rotate_half * s, x[..., n:]], -1)
    out = np.asarray(apply_rotary(jnp.asarray(x, jnp.float32), cos, sin))
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_model_logits_do_not_depend_on_attention_block(arch):
    hf = ({"vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 64, "rotary_pct": 0.25, "max_position_embeddings": 128}
          if arch == "gpt_neox" else
          {"vocab_size": 97, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128})
    ids = jax.random.randint(jax.random.PRNGKey(0), (2, 90), 0, 97)
    outs = []
    for block in (0, 16, 64):
        m = build_model(parse_config(arch, hf), attn_block=block)
        params = m.init(jax.random.PRNGKey(1), ids[:, :4])["params"]
        outs.append(np.asarray(jax.jit(m.apply)({"params": params}, ids)))
    np.testing.assert_allclose(outs[1], outs[0], atol=2e-5, rtol=0)
    np.testing.assert_allclose(outs[2], outs[0], atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="attn_block must be >= 0"):
        build_model(parse_config(arch, hf), attn_block=-1)


def test_exact_gelu_and_its_gradient_match_float64():
    """'gelu' is the exact erf GELU (HF/torch), not the tanh approximation: value and derivative
    Phi(x) + x phi(x) against float64 math.erf over [-12, 12]."""
    import math

    from recovery_jax.models.layers import activation

    x = np.linspace(-12, 12, 4001)
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    f = activation("gelu")
    xj = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(xj)), x * Phi, atol=2e-6, rtol=0)
    grad = jax.jit(jax.vmap(jax.grad(f)))(xj)
    np.testing.assert_allclose(np.asarray(grad), Phi + x * phi, atol=2e-6, rtol=0)
    tanh = activation("gelu_new")(xj)  # the approximation differs visibly: the test can tell them apart
    assert np.abs(np.asarray(tanh) - x * Phi).max() > 1e-4
