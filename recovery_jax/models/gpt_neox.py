"""GPT-NeoX (Pythia): the Flax causal LM and everything else that knows this architecture — HF config and
checkpoint names, presets, init roles and parameter paths (the ARCH at the end). Parameter names mirror the
HF checkpoint for a readable converter."""

from __future__ import annotations

import jax
import flax.linen as nn

from .config import ACTIVATIONS, ModelConfig, bad_value, check_bool, check_choice, hf_get
from .layers import (
    MLP, Embed, LayerNorm, Model, Sublayer, Unembed, apply_dropout, apply_rotary, causal_attention, check_length,
    dense, maybe_dropout, rotary_cos_sin,
)
from .registry import Architecture, HFParam


class NeoXAttention(Sublayer):
    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        cfg = self.cfg
        b, seq, d = x.shape
        qkv = dense(3 * d, "query_key_value", self.dtype, cfg.attention_bias)(x)
        # The fused output axis is laid out per head as (head, {q,k,v}, head_dim), NOT ({q,k,v}, head, head_dim).
        qkv = qkv.reshape(b, seq, cfg.num_heads, 3, cfg.head_dim)
        q, k, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = causal_attention(q, k, v, cfg.head_dim**-0.5, maybe_dropout(cfg.attn_pdrop, self.deterministic),
                               cfg.attn_block)
        return dense(d, "dense", self.dtype, cfg.attention_bias)(out.reshape(b, seq, d))


class NeoXBlock(Sublayer):
    """Parallel residual: x + attn(ln1(x)) + mlp(ln2(x)); sequential: h = x + attn(ln1(x)); h + mlp(ln2(h))."""

    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        cfg, det = self.cfg, self.deterministic
        mlp = MLP(cfg.hidden_size, cfg.intermediate_size, cfg.act, "dense_h_to_4h", "dense_4h_to_h", self.dtype,
                  name="mlp")
        ln2 = LayerNorm(cfg.ln_eps, self.dtype, name="post_attention_layernorm")
        attn = NeoXAttention(cfg, self.dtype, det, name="attention")(
            LayerNorm(cfg.ln_eps, self.dtype, name="input_layernorm")(x), cos, sin
        )
        attn = apply_dropout(attn, cfg.resid_pdrop, det)
        if cfg.parallel_residual:
            m = apply_dropout(mlp(ln2(x)), cfg.resid_pdrop, det)
            return m + attn + x  # same summation order as HF
        h = attn + x
        return apply_dropout(mlp(ln2(h)), cfg.resid_pdrop, det) + h


class GPTNeoXLM(Model):
    """input_ids [B, L] -> fp32 logits [B, L, V] (and the final-LayerNorm output if return_hidden)."""

    @nn.compact
    def __call__(self, input_ids: jax.Array, deterministic: bool = True, return_hidden: bool = False):
        cfg = self.cfg
        seq = check_length(input_ids.shape[1], cfg.max_positions, "max_position_embeddings")
        x = Embed(cfg.vocab_size, cfg.hidden_size, self.dtype, name="embed_in")(input_ids)
        x = apply_dropout(x, cfg.embd_pdrop, deterministic)
        cos, sin = rotary_cos_sin(seq, cfg.rotary_ndims, cfg.rotary_base)
        for block in self.blocks(NeoXBlock, cfg.num_layers, "layers_", deterministic):
            x = block(x, cos, sin)
        h = LayerNorm(cfg.ln_eps, self.dtype, name="final_layer_norm")(x)
        logits = Unembed(cfg.vocab_size, self.dtype, name="embed_out")(h)
        return (logits, h) if return_hidden else logits


# ------------------------------------------------------------------------------------------- HF config.json


def parse_hf(hf: dict) -> ModelConfig:
    """GPTNeoXConfig dict -> ModelConfig; accepts rotary_pct / partial_rotary_factor / rope_parameters."""
    rope = hf.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise bad_value("rope_parameters", rope, "a dict or null")
    if hf.get("rope_scaling") is not None:
        raise bad_value("rope_scaling", hf["rope_scaling"], "null (RoPE scaling is not implemented)")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise bad_value("rope_parameters.rope_type", rope_type, "['default']")
    extra = {k: rope[k] for k in ("partial_rotary_factor", "rope_theta") if k in rope}
    merged = {**hf, **{f"rope_parameters.{k}": v for k, v in extra.items()}}
    if hf.get("tie_word_embeddings", False):
        raise bad_value("tie_word_embeddings", hf["tie_word_embeddings"],
                        "[False] (GPT-NeoX embed_in/embed_out are untied)")
    hidden_dropout = float(hf_get(hf, ("hidden_dropout",), 0.0))
    cfg = ModelConfig(
        arch="gpt_neox",
        vocab_size=int(hf_get(hf, ("vocab_size",))),
        hidden_size=int(hf_get(hf, ("hidden_size",))),
        num_layers=int(hf_get(hf, ("num_hidden_layers",))),
        num_heads=int(hf_get(hf, ("num_attention_heads",))),
        intermediate_size=int(hf_get(hf, ("intermediate_size",))),
        max_positions=int(hf_get(hf, ("max_position_embeddings",), 2048)),
        ln_eps=float(hf_get(hf, ("layer_norm_eps",), 1e-5)),
        act=check_choice("hidden_act", hf_get(hf, ("hidden_act",), "gelu"), ACTIVATIONS),
        rotary_pct=float(hf_get(merged, ("rotary_pct", "partial_rotary_factor",
                                         "rope_parameters.partial_rotary_factor"), 0.25)),
        rotary_base=float(hf_get(merged, ("rotary_emb_base", "rope_theta", "rope_parameters.rope_theta"), 10000.0)),
        parallel_residual=check_bool("use_parallel_residual", hf_get(hf, ("use_parallel_residual",), True)),
        attention_bias=check_bool("attention_bias", hf_get(hf, ("attention_bias",), True)),
        attn_pdrop=float(hf_get(hf, ("attention_dropout",), 0.0)),
        resid_pdrop=hidden_dropout,
        embd_pdrop=hidden_dropout,
        initializer_range=float(hf_get(hf, ("initializer_range",), 0.02)),
    )
    if hf.get("head_dim") is not None and hf["head_dim"] != cfg.head_dim:
        raise bad_value("head_dim", hf["head_dim"],
                        f"{cfg.head_dim} (= hidden size / heads); other head sizes are not supported")
    return cfg


def to_hf(cfg: ModelConfig) -> dict:
    """ModelConfig -> GPTNeoXConfig dict (transformers reads it; parse_hf gives cfg back)."""
    if cfg.embd_pdrop != cfg.resid_pdrop:
        raise ValueError(f"GPT-NeoX has one hidden_dropout: embd_pdrop={cfg.embd_pdrop} and "
                         f"resid_pdrop={cfg.resid_pdrop} must be equal")
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": cfg.act,
        "rotary_pct": cfg.rotary_pct,
        "rotary_emb_base": cfg.rotary_base,
        "max_position_embeddings": cfg.max_positions,
        "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.ln_eps,
        "use_parallel_residual": cfg.parallel_residual,
        "attention_bias": cfg.attention_bias,
        "attention_dropout": cfg.attn_pdrop,
        "hidden_dropout": cfg.resid_pdrop,
        "tie_word_embeddings": False,
    }


# ------------------------------------------------------------------------------------------- HF checkpoint


def hf_params(cfg: ModelConfig) -> list[HFParam]:
    d, f = cfg.hidden_size, cfg.intermediate_size
    vocab = cfg.vocab_size
    table = [
        HFParam(("gpt_neox.embed_in.weight",), ("embed_in", "embedding"), (vocab, d), vocab_rows=True),
        HFParam(("embed_out.weight", "lm_head.weight"), ("embed_out", "kernel"), (vocab, d), True, True),
        HFParam(("gpt_neox.final_layer_norm.weight",), ("final_layer_norm", "scale"), (d,)),
        HFParam(("gpt_neox.final_layer_norm.bias",), ("final_layer_norm", "bias"), (d,)),
    ]
    linears = [("attention.query_key_value", 3 * d, d, cfg.attention_bias),
               ("attention.dense", d, d, cfg.attention_bias),
               ("mlp.dense_h_to_4h", f, d, True), ("mlp.dense_4h_to_h", d, f, True)]
    for i in range(cfg.num_layers):
        src, dst = f"gpt_neox.layers.{i}.", (f"layers_{i}",)
        for ln in ("input_layernorm", "post_attention_layernorm"):
            table.append(HFParam((src + ln + ".weight",), dst + (ln, "scale"), (d,)))
            table.append(HFParam((src + ln + ".bias",), dst + (ln, "bias"), (d,)))
        for name, n_out, n_in, bias in linears:
            sub = dst + tuple(name.split("."))
            table.append(HFParam((src + name + ".weight",), sub + ("kernel",), (n_out, n_in), transpose=True))
            if bias:
                table.append(HFParam((src + name + ".bias",), sub + ("bias",), (n_out,)))
    return table


# ------------------------------------------------------------------------------------------- presets
# The fields of the Hub config.json files (EleutherAI/pythia-*), revision main. Pythia-6.9b / -12b have a
# larger padded vocab (50432 / 50688); all others 50304. All have 2048 positions.


def _pythia(hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int, vocab: int = 50304) -> dict:
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": vocab,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size,
        "hidden_act": "gelu",
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-5,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "use_cache": True,
    }


PRESETS = {
    "pythia-14m": _pythia(128, 6, 4, 512),
    "pythia-31m": _pythia(256, 6, 8, 1024),
    "pythia-70m": _pythia(512, 6, 8, 2048),
    "pythia-160m": _pythia(768, 12, 12, 3072),
    "pythia-410m": _pythia(1024, 24, 16, 4096),
    "pythia-1b": _pythia(2048, 16, 8, 8192),
    "pythia-1.4b": _pythia(2048, 24, 16, 8192),
    "pythia-2.8b": _pythia(2560, 32, 32, 10240),
    "pythia-6.9b": _pythia(4096, 32, 32, 16384, vocab=50432),
    "pythia-12b": _pythia(5120, 36, 40, 20480, vocab=50688),
}


ARCH = Architecture(
    name="gpt_neox",
    module=GPTNeoXLM,
    presets=PRESETS,
    parse_hf=parse_hf,
    to_hf=to_hf,
    hf_model_type="gpt_neox",
    hf_class="GPTNeoXForCausalLM",
    hf_params=hf_params,
    hf_ignored=(r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)",
                r"gpt_neox\.rotary_emb\.(inv_freq|original_inv_freq)"),
    hf_optional_keys=frozenset({"partial_rotary_factor", "rope_theta", "rope_parameters", "rope_scaling",
                                "attention_bias", "attention_dropout", "hidden_dropout", "head_dim"}),
    # Pythia recipe: small_init for these ("in"), wang_init for the residual outputs ("out")
    init_roles={"query_key_value": "in", "dense_h_to_4h": "in", "embed_in": "in", "embed_out": "in",
                "dense": "out", "dense_4h_to_h": "out"},
    block_prefix="layers_",
    block_parts={
        "block": (), "attn": ("attention",), "mlp": ("mlp",),
        "ln1": ("input_layernorm",), "ln2": ("post_attention_layernorm",),
        "attn_qkv": ("attention", "query_key_value"), "attn_out": ("attention", "dense"),
        "mlp_in": ("mlp", "dense_h_to_4h"), "mlp_out": ("mlp", "dense_4h_to_h"),
    },
    input_embeddings=("embed_in",),
    unembedding=("embed_out", "kernel"),  # [D, V]
    vocab_params=((("embed_in", "embedding"), 0), (("embed_out", "kernel"), 1)),
    # Megatron-style pairs over the model axis: the fused qkv output (laid out per head, so shards hold whole
    # heads) and the MLP's inner width are split, and the layers after them split their input rows to match;
    # embeddings split the width (a restricted vocabulary rarely divides), the head its vocabulary if it does
    shard_rules=((r"query_key_value/(kernel|bias)$", -1), (r"attention/dense/kernel$", 0),
                 (r"dense_h_to_4h/(kernel|bias)$", -1), (r"dense_4h_to_h/kernel$", 0),
                 (r"embed_in/embedding$", 1), (r"embed_out/kernel$", 1)),
)
