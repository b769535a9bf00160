"""GPT-2 port: logits / loss / gradient / optimizer-step parity with transformers, tied head, dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from recovery_jax.models import build_model, load_hf, parse_config

from .test_models_common import (  # noqa: F401  (highest_precision is an autouse fixture)
    check_training_parity, highest_precision, jax_params, jit_apply, tiny_gpt2, torch,
)

SEQ = 320


@pytest.mark.parametrize(
    "extra",
    [{}, {"scale_attn_by_inverse_layer_idx": True}, {"scale_attn_weights": False, "activation_function": "gelu"},
     {"n_head": 2, "n_inner": 96}],
)
def test_logits_and_hidden_match_transformers(tmp_path, extra):
    model, _ = tiny_gpt2(**extra)
    model.save_pretrained(tmp_path)
    arch, hf, params = load_hf(str(tmp_path))
    assert arch == "gpt2"
    ids = np.random.default_rng(1).integers(0, hf["vocab_size"], (2, SEQ))
    with torch.no_grad():
        out = model(torch.from_numpy(ids), output_hidden_states=True)
    module = build_model(parse_config(arch, hf))
    logits, hidden = jit_apply(module)({"params": params}, jnp.asarray(ids), return_hidden=True)
    assert logits.shape == (2, SEQ, hf["vocab_size"]) and logits.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(logits) - out.logits.numpy())) <= 1e-5
    assert np.max(np.abs(np.asarray(hidden) - out.hidden_states[-1].numpy())) <= 1e-5


def test_keys_with_and_without_transformer_prefix(tmp_path):
    model, _ = tiny_gpt2()
    model.save_pretrained(tmp_path / "prefixed")
    state = load_file(str(tmp_path / "prefixed" / "model.safetensors"))
    assert any(k.startswith("transformer.") for k in state)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tmp_path / "prefixed" / "config.json").read_text())
    # Hub "gpt2" style: no prefix, causal-mask buffers present, duplicated lm_head.
    bare_state = {k.removeprefix("transformer."): v for k, v in state.items()}
    bare_state["h.0.attn.bias"] = np.tril(np.ones((1, 1, 512, 512), np.float32))
    bare_state["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    bare_state["lm_head.weight"] = bare_state["wte.weight"]
    save_file(bare_state, str(bare / "model.safetensors"), metadata={"format": "pt"})
    _, _, p1 = load_hf(str(tmp_path / "prefixed"))
    _, _, p2 = load_hf(str(bare))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), p1, p2))


@pytest.mark.parametrize("extra", [{}, {"scale_attn_by_inverse_layer_idx": True}])
def test_loss_gradients_and_optimizer_steps_match_torch(extra):
    model, hf = tiny_gpt2(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, **extra)
    check_training_parity("gpt2", model, hf)


def test_dropout():
    model, hf = tiny_gpt2()  # HF default pdrops: 0.1
    params = jax_params("gpt2", model, hf)
    apply = jit_apply(build_model(parse_config("gpt2", hf)))
    ids = np.random.default_rng(0).integers(0, 257, (2, 24))

    def run(key=None, deterministic=False):
        rngs = None if key is None else {"dropout": jax.random.PRNGKey(key)}
        return np.asarray(apply({"params": params}, ids, deterministic=deterministic, rngs=rngs))

    det = run(deterministic=True)
    assert np.array_equal(run(0), run(0))
    assert not np.allclose(run(0), run(1))
    assert not np.allclose(run(0), det)
    assert np.array_equal(run(0, deterministic=True), det)  # rngs given but deterministic: dropout off
    with torch.no_grad():
        assert np.max(np.abs(det - model(torch.from_numpy(ids)).logits.numpy())) <= 1e-5
    remat = build_model(parse_config("gpt2", hf), remat=True)
    out = jit_apply(remat)({"params": params}, ids, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})
    assert np.array_equal(np.asarray(out), run(0))  # remat replays the same dropout masks


def test_tied_head_is_wte():
    model, hf = tiny_gpt2()
    params = jax_params("gpt2", model, hf)
    assert "lm_head" not in params
    ids = jnp.zeros((1, 4), jnp.int32)
    module = build_model(parse_config("gpt2", hf))
    logits, hidden = jit_apply(module)({"params": params}, ids, return_hidden=True)
    np.testing.assert_allclose(logits, hidden @ params["wte"]["embedding"].T, atol=1e-6)
