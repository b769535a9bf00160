"""GPT-2 causal LM in flax.linen; parameter names mirror the HF checkpoint (Conv1D weights are already [in, out])."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from .config import ModelConfig
from .layers import F32, MLP, Dtype, Embed, LayerNorm, apply_dropout, causal_attention, dense, maybe_dropout


class GPT2Attention(nn.Module):
    cfg: ModelConfig
    dtype: Dtype
    deterministic: bool
    layer_idx: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        b, seq, d = x.shape
        qkv = dense(3 * d, "c_attn", self.dtype)(x)
        # The fused output axis is ({q,k,v}, head, head_dim): split in three first, then into heads.
        q, k, v = (t.reshape(b, seq, cfg.n_heads, cfg.head_dim) for t in jnp.split(qkv, 3, axis=-1))
        scale = cfg.head_dim**-0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= float(self.layer_idx + 1)
        out = causal_attention(q, k, v, scale, maybe_dropout(cfg.attn_pdrop, self.deterministic), cfg.attn_block)
        out = dense(d, "c_proj", self.dtype)(out.reshape(b, seq, d))
        return apply_dropout(out, cfg.resid_pdrop, self.deterministic)


class GPT2Block(nn.Module):
    cfg: ModelConfig
    dtype: Dtype
    deterministic: bool
    layer_idx: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg, det = self.cfg, self.deterministic
        a = LayerNorm(cfg.ln_eps, self.dtype, name="ln_1")(x)
        x = GPT2Attention(cfg, self.dtype, det, self.layer_idx, name="attn")(a) + x
        m = MLP(cfg.d_model, cfg.d_ff, cfg.act, "c_fc", "c_proj", self.dtype, name="mlp")(
            LayerNorm(cfg.ln_eps, self.dtype, name="ln_2")(x)
        )
        return x + apply_dropout(m, cfg.resid_pdrop, det)


class GPT2LM(nn.Module):
    """input_ids [B, L] -> fp32 logits [B, L, V]; the LM head is wte^T (tied, one shared matrix)."""

    cfg: ModelConfig
    dtype: Dtype = F32
    remat: bool = False

    @nn.compact
    def __call__(self, input_ids: jax.Array, deterministic: bool = True, return_hidden: bool = False):
        cfg = self.cfg
        seq = input_ids.shape[1]
        if seq > cfg.max_len:
            raise ValueError(f"sequence length {seq} exceeds n_positions {cfg.max_len}")
        wte = Embed(cfg.vocab_size, cfg.d_model, self.dtype, name="wte")
        wpe = Embed(cfg.max_len, cfg.d_model, self.dtype, name="wpe")
        x = wte(input_ids) + wpe(jnp.arange(seq))[None]
        x = apply_dropout(x, cfg.embd_pdrop, deterministic)
        block = nn.remat(GPT2Block) if self.remat else GPT2Block
        for i in range(cfg.n_layers):
            x = block(cfg, self.dtype, deterministic, i, name=f"h_{i}")(x)
        h = LayerNorm(cfg.ln_eps, self.dtype, name="ln_f")(x)
        logits = wte.attend(h)
        return (logits, h) if return_hidden else logits
