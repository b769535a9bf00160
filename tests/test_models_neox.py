"""GPT-NeoX (Pythia) port: logits / hidden / loss / gradient / optimizer-step parity with transformers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recovery_jax.models import build_model, load_hf, parse_config

from .test_models_common import (  # noqa: F401  (highest_precision is an autouse fixture)
    check_training_parity, highest_precision, jax_params, jit_apply, masked_next_token_ce, padded_batch, tiny_neox, torch,
)

SEQ = 320  # several hundred tokens, so rotary errors at large positions would show


@pytest.mark.parametrize(
    "rotary_pct,parallel,heads,extra",
    [(0.25, True, 4, {}), (0.25, False, 2, {}), (1.0, True, 2, {"attention_bias": False}),
     (1.0, False, 4, {"hidden_act": "gelu_new", "rotary_emb_base": 500.0})],  # head sizes 16 and 32
)
def test_logits_and_hidden_match_transformers(tmp_path, rotary_pct, parallel, heads, extra):
    model, _ = tiny_neox(rotary_pct=rotary_pct, use_parallel_residual=parallel, num_attention_heads=heads, **extra)
    model.save_pretrained(tmp_path)
    arch, hf, params = load_hf(str(tmp_path))
    assert arch == "gpt_neox"
    ids = np.random.default_rng(1).integers(0, hf["vocab_size"], (2, SEQ))
    with torch.no_grad():
        out = model(torch.from_numpy(ids), output_hidden_states=True)
    module = build_model(parse_config(arch, hf))
    logits, hidden = jit_apply(module)({"params": params}, jnp.asarray(ids), return_hidden=True)
    assert logits.dtype == jnp.float32 and logits.shape == (2, SEQ, hf["vocab_size"])
    assert np.max(np.abs(np.asarray(logits) - out.logits.numpy())) <= 1e-5
    assert np.max(np.abs(np.asarray(hidden) - out.hidden_states[-1].numpy())) <= 1e-5


def test_qkv_layout_is_per_head(tmp_path):
    """Permuting HF's fused rows to the ({q,k,v}, head, d) order must change the output: the port is not blind."""
    model, hf = tiny_neox(rotary_pct=1.0)
    params = jax_params("gpt_neox", model, hf)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 257, (1, 16)))
    apply = jit_apply(build_model(parse_config("gpt_neox", hf)))
    ref = apply({"params": params}, ids)
    k = params["layers_0"]["attention"]["query_key_value"]["kernel"]  # [D, 3D] with columns (H, 3, d)
    swapped = k.reshape(64, 4, 3, 16).transpose(0, 2, 1, 3).reshape(64, 192)
    params["layers_0"]["attention"]["query_key_value"]["kernel"] = swapped
    assert np.max(np.abs(apply({"params": params}, ids) - ref)) > 1e-3


@pytest.mark.parametrize("parallel,remat", [(True, True), (False, False)])
def test_loss_gradients_and_optimizer_steps_match_torch(parallel, remat):
    model, hf = tiny_neox(use_parallel_residual=parallel, num_attention_heads=2)
    check_training_parity("gpt_neox", model, hf, remat=remat)


def test_right_padding_does_not_change_document_loss():
    model, hf = tiny_neox()
    params = jax_params("gpt_neox", model, hf)
    apply = jit_apply(build_model(parse_config("gpt_neox", hf)))
    ids, labels = padded_batch(hf["vocab_size"], lengths=(30,), seq=64)

    def loss(i, lab):
        return float(masked_next_token_ce(apply({"params": params}, jnp.asarray(i)), jnp.asarray(lab)))

    assert abs(loss(ids, labels) - loss(ids[:, :30], labels[:, :30])) <= 1e-6


def test_bf16_compute():
    """bf16 compute: fp32 logits close to the fp32 model; hidden in bf16; params untouched (fp32 masters)."""
    model, hf = tiny_neox()
    params = jax_params("gpt_neox", model, hf)
    ids = jnp.asarray(padded_batch(hf["vocab_size"])[0])
    model_bf16 = build_model(parse_config("gpt_neox", hf), dtype=jnp.bfloat16)
    logits_bf16, hidden = jit_apply(model_bf16)({"params": params}, ids, return_hidden=True)
    assert logits_bf16.dtype == jnp.float32 and hidden.dtype == jnp.bfloat16
    ref = jit_apply(build_model(parse_config("gpt_neox", hf)))({"params": params}, ids)
    assert 0 < np.max(np.abs(np.asarray(logits_bf16) - np.asarray(ref))) < 5e-2
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))


def test_sequence_longer_than_max_positions_rejected():
    _, hf = tiny_neox(max_position_embeddings=16)
    module = build_model(parse_config("gpt_neox", hf))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 16"):
        jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 17), jnp.int32)))
