"""Flax GPT-NeoX (Pythia) and GPT-2 causal LMs with Hugging Face checkpoint I/O.

One module per architecture (gpt_neox.py, gpt2.py) holds everything that knows it; models.registry maps
names to them. Model-facing functions take a ModelConfig, HF-facing ones an HF config.json dict::

    mcfg = model_config(cfg.model, vocab_size)                 # from the run config's model section
    mcfg, params = load_pretrained("EleutherAI/pythia-160m")   # or a pretrained checkpoint
    mcfg = parse_config(*preset_config("pythia-160m"))         # or a preset / any HF config dict
    model = build_model(mcfg, dtype=jnp.bfloat16, remat=True)
    params = init_params(mcfg, jax.random.PRNGKey(0), scheme="pythia")
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

# registry first: it imports the architecture modules, which import it back for Architecture
from .registry import ARCHITECTURES, ARCHS, PRESETS, Architecture, parse_config, preset_config, to_hf_config
from .config import ACTIVATIONS, ModelConfig, without_dropout
from .factory import (
    INIT_SCHEMES, build_model, init_params, model_config, pad_vocab, param_shapes, restrict_vocab, scatter_vocab,
    uses_dropout,
)
from .hf_io import convert_state_dict, detect_arch, export_hf, load_hf, load_pretrained, to_hf_state_dict
from .tree import (
    block_param_path, get_by_path, num_blocks, output_projection, param_count, trainable_mask, unembedding,
)

__all__ = [
    "ACTIVATIONS", "ARCHITECTURES", "ARCHS", "Architecture", "INIT_SCHEMES", "PRESETS", "ModelConfig",
    "block_param_path", "build_model", "convert_state_dict", "detect_arch", "export_hf", "get_by_path",
    "init_params", "load_hf", "load_pretrained", "model_config", "num_blocks", "output_projection", "pad_vocab",
    "param_count", "param_shapes", "parse_config", "preset_config", "restrict_vocab", "scatter_vocab", "to_hf_config",
    "to_hf_state_dict",
    "trainable_mask", "unembedding", "uses_dropout", "without_dropout",
]
