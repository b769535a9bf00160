"""Flax GPT-NeoX (Pythia) and GPT-2 causal LMs with Hugging Face checkpoint I/O.

Quick reference::

    arch, hf = preset_config("pythia-160m")                    # or load_hf("EleutherAI/pythia-160m")
    model = build_model(arch, hf, dtype=jnp.bfloat16, remat=True)
    params = init_params(arch, hf, jax.random.PRNGKey(0), scheme="pythia")
    logits = model.apply({"params": params}, ids_BL)          # fp32 [B, L, V]
    logits, hidden = model.apply({"params": params}, ids_BL, return_hidden=True)
    logits = model.apply({"params": params}, ids_BL, deterministic=False, rngs={"dropout": key})

Param layout mirrors HF module names: gpt_neox -> embed_in, layers_{i}/{input_layernorm, attention/
{query_key_value, dense}, post_attention_layernorm, mlp/{dense_h_to_4h, dense_4h_to_h}}, final_layer_norm,
embed_out; gpt2 -> wte, wpe, h_{i}/{ln_1, attn/{c_attn, c_proj}, ln_2, mlp/{c_fc, c_proj}}, ln_f.
Dense kernels are [in, out]; LayerNorm params are scale/bias; embeddings are "embedding" [V, D].
Logits are always fp32; `hidden` (final-LayerNorm output) is in the compute dtype. Matmuls follow
jax_default_matmul_precision (use "highest" for fp32 parity checks; GPUs may otherwise use TF32).
"""

from .config import ACTIVATIONS, ARCHS, PRESETS, ModelConfig, parse_config, preset_config
from .factory import INIT_SCHEMES, build_model, init_params, param_shapes
from .hf_io import convert_state_dict, detect_arch, export_hf, load_hf, to_hf_state_dict
from .tree import block_param_path, get_by_path, num_blocks, param_count, trainable_mask

__all__ = [
    "ACTIVATIONS", "ARCHS", "INIT_SCHEMES", "PRESETS", "ModelConfig",
    "block_param_path", "build_model", "convert_state_dict", "detect_arch", "export_hf", "get_by_path",
    "init_params", "load_hf", "num_blocks", "param_count", "param_shapes", "parse_config", "preset_config",
    "to_hf_state_dict", "trainable_mask",
]
