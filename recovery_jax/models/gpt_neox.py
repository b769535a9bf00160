"""GPT-NeoX (Pythia) causal LM in flax.linen; parameter names mirror the HF checkpoint for a readable converter."""

from __future__ import annotations

import jax
import flax.linen as nn

from .config import ModelConfig
from .layers import (
    F32, MLP, Dtype, Embed, LayerNorm, Unembed, apply_dropout, apply_rotary, causal_attention, dense,
    maybe_dropout, rotary_cos_sin,
)


class NeoXAttention(nn.Module):
    cfg: ModelConfig
    dtype: Dtype
    deterministic: bool

    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        cfg = self.cfg
        b, seq, d = x.shape
        qkv = dense(3 * d, "query_key_value", self.dtype, cfg.attention_bias)(x)
        # The fused output axis is laid out per head as (head, {q,k,v}, head_dim), NOT ({q,k,v}, head, head_dim).
        qkv = qkv.reshape(b, seq, cfg.n_heads, 3, cfg.head_dim)
        q, k, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = causal_attention(q, k, v, cfg.head_dim**-0.5, maybe_dropout(cfg.attn_pdrop, self.deterministic),
                               cfg.attn_block)
        return dense(d, "dense", self.dtype, cfg.attention_bias)(out.reshape(b, seq, d))


class NeoXBlock(nn.Module):
    """Parallel residual: x + attn(ln1(x)) + mlp(ln2(x)); sequential: h = x + attn(ln1(x)); h + mlp(ln2(h))."""

    cfg: ModelConfig
    dtype: Dtype
    deterministic: bool

    @nn.compact
    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        cfg, det = self.cfg, self.deterministic
        mlp = MLP(cfg.d_model, cfg.d_ff, cfg.act, "dense_h_to_4h", "dense_4h_to_h", self.dtype, name="mlp")
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


class GPTNeoXLM(nn.Module):
    """input_ids [B, L] -> fp32 logits [B, L, V] (and the final-LayerNorm output if return_hidden)."""

    cfg: ModelConfig
    dtype: Dtype = F32
    remat: bool = False

    @nn.compact
    def __call__(self, input_ids: jax.Array, deterministic: bool = True, return_hidden: bool = False):
        cfg = self.cfg
        seq = input_ids.shape[1]
        if seq > cfg.max_len:
            raise ValueError(f"sequence length {seq} exceeds max_position_embeddings {cfg.max_len}")
        x = Embed(cfg.vocab_size, cfg.d_model, self.dtype, name="embed_in")(input_ids)
        x = apply_dropout(x, cfg.embd_pdrop, deterministic)
        cos, sin = rotary_cos_sin(seq, cfg.rotary_ndims, cfg.rotary_base)
        block = nn.remat(NeoXBlock) if self.remat else NeoXBlock
        for i in range(cfg.n_layers):
            x = block(cfg, self.dtype, deterministic, name=f"layers_{i}")(x, cos, sin)
        h = LayerNorm(cfg.ln_eps, self.dtype, name="final_layer_norm")(x)
        logits = Unembed(cfg.vocab_size, self.dtype, name="embed_out")(h)
        return (logits, h) if return_hidden else logits
