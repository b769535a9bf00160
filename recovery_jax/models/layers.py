"""Building blocks shared by the architectures (GPT-NeoX, GPT-2, Image GPT, ViT, ...): the fields every model
and block module declares, the trunk helpers (sequence-length check, the stack of blocks), norms, dense layers,
embeddings, attention, MLP, dropout.

Numerics policy: parameters are float32; matmuls run in the compute `dtype`; LayerNorm statistics, rotary
angles, attention logits/softmax and the unembedding accumulate in float32 (what HF does in fp32 and what keeps
bf16 runs stable).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import flax.linen as nn

Dtype = Any
F32 = jnp.float32
DEFAULT_INIT = nn.initializers.normal(0.02)  # overwritten by init_params(); only used by raw model.init


_INV_SQRT2 = 0.7071067811865476


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """HF activation name -> function. "gelu" is the exact erf GELU (jax defaults to tanh, a classic port bug)."""
    if name == "gelu":
        # x/2 * (1 + erf(x/sqrt 2)), torch's formula; jax.nn.gelu(approximate=False) goes through erfc, whose
        # XLA:CPU expansion (exp + selects) is 1.7-2.5x slower. Both within 1.1e-6 of float64.
        return lambda x: 0.5 * x * (1.0 + jax.lax.erf(x * _INV_SQRT2))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    if name == "relu":
        return jax.nn.relu
    if name == "quick_gelu":  # x * sigmoid(1.702 x) (Image GPT's default)
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    raise ValueError(f"unsupported activation {name!r}")


class Model(nn.Module):
    """The fields of every top-level model: its config, the compute dtype (params stay fp32), and `remat`: each
    block's activations are recomputed in the backward pass instead of stored (nn.remat)."""

    cfg: Any
    dtype: Dtype = F32
    remat: bool = False

    def blocks(self, block: type[nn.Module], count: int, prefix: str, deterministic: bool,
               numbered: bool = False) -> list[nn.Module]:
        """The `count` blocks params[f"{prefix}{i}"], each block(cfg, dtype, deterministic) (and its index i when
        `numbered`, for blocks that scale by their depth), rematerialised when self.remat."""
        cls = nn.remat(block) if self.remat else block
        return [cls(self.cfg, self.dtype, deterministic, *((i,) if numbered else ()), name=f"{prefix}{i}")
                for i in range(count)]


class Sublayer(nn.Module):
    """The fields of every block and of its parts: the model's config, the compute dtype, and `deterministic`
    (True: dropout off; False draws from the "dropout" rng)."""

    cfg: Any
    dtype: Dtype
    deterministic: bool


def check_length(seq: int, limit: int, what: str) -> int:
    """seq, or a ValueError when a sequence of `seq` tokens is longer than the model's `limit` positions (`what`
    names that config field)."""
    if seq > limit:
        raise ValueError(f"sequence length {seq} exceeds {what} {limit}")
    return seq


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm semantics: two-pass variance in fp32, epsilon from the HF config (flax defaults to 1e-6)."""

    eps: float
    dtype: Dtype = F32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (d,), F32)
        bias = self.param("bias", nn.initializers.zeros, (d,), F32)
        x32 = x.astype(F32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        centered = x32 - mean
        var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
        y = centered * jax.lax.rsqrt(var + self.eps) * scale + bias
        return y.astype(self.dtype)


def dense(features: int, name: str, dtype: Dtype, use_bias: bool = True) -> nn.Dense:
    """Linear layer with an fp32 [in, out] kernel (torch Linear weights are transposed on load)."""
    return nn.Dense(
        features, use_bias=use_bias, dtype=dtype, param_dtype=F32, kernel_init=DEFAULT_INIT, name=name
    )


class Embed(nn.Module):
    """Token/position table [num, features] in fp32. `attend` gives the tied unembedding (GPT-2 lm_head = wte^T)."""

    num: int
    features: int
    dtype: Dtype = F32

    def setup(self) -> None:
        self.embedding = self.param("embedding", DEFAULT_INIT, (self.num, self.features), F32)

    def __call__(self, ids: jax.Array) -> jax.Array:
        # jnp.take's default mode fills out-of-range ids with NaN, so a vocab/tokenizer mismatch is loud.
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, h: jax.Array) -> jax.Array:
        return jnp.einsum("...d,vd->...v", h, self.embedding.astype(self.dtype), preferred_element_type=F32)


class Unembed(nn.Module):
    """Untied output projection (GPT-NeoX embed_out, no bias): kernel [D, V], logits accumulated in fp32."""

    vocab_size: int
    dtype: Dtype = F32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        kernel = self.param("kernel", DEFAULT_INIT, (h.shape[-1], self.vocab_size), F32)
        return jnp.einsum("...d,dv->...v", h, kernel.astype(self.dtype), preferred_element_type=F32)


def rotary_cos_sin(seq_len: int, ndims: int, base: float) -> tuple[jax.Array, jax.Array]:
    """NeoX rotary tables [L, ndims] in fp32; inv_freq uses `ndims` (not the head size) in the exponent."""
    inv_freq = 1.0 / (base ** (jnp.arange(0, ndims, 2, dtype=F32) / ndims))
    freqs = jnp.arange(seq_len, dtype=F32)[:, None] * inv_freq[None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate the first cos.shape[-1] channels of x [B, L, H, d] (NeoX rotate_half layout); the rest pass through.

    Written as two half-rotations and one concatenate (rotate_half + a second concatenate for the pass-through
    part cost ~7 % of a C=512 evaluation on CPU); cos/sin repeat their first half, so the halves suffice."""
    n = cos.shape[-1]
    if n == 0:
        return x
    h = n // 2
    c, s = cos[None, :, None, :h], sin[None, :, None, :h]
    x1, x2 = x[..., :h].astype(F32), x[..., h:n].astype(F32)
    parts = [(x1 * c - x2 * s).astype(x.dtype), (x2 * c + x1 * s).astype(x.dtype)]
    if n < x.shape[-1]:
        parts.append(x[..., n:])
    return jnp.concatenate(parts, axis=-1)


def causal_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    scale: float,
    probs_dropout: Callable[[jax.Array], jax.Array] | None = None,
    block: int = 0,
) -> jax.Array:
    """Causal softmax attention on [B, L, H, d] tensors; logits and softmax in fp32, masked with the fp32 min.

    block > 0: queries in blocks of `block` rows, each attending only to the keys up to its own last row, so
    the key blocks above the diagonal (all masked) are never computed: (n+1)/(2n) of the full matrix for n
    blocks. Same result as block = 0 (masked entries are exactly 0 after the softmax either way). On CPU,
    fwd+bwd of the attention alone is 1.5-2x faster with block 64 from L=128 on; a whole C=512 training step
    13 % faster, a C=128 one the same within noise (benchmarks/README.md, engine note 2). With dropout on the
    probabilities (GPT-2 from_hf) each block draws its own mask: other random numbers than block = 0."""
    seq_len = q.shape[1]
    if block <= 0 or seq_len <= block:
        return _attend(q, k, v, scale, probs_dropout, 0)
    outs = [_attend(q[:, s: s + block], k[:, : min(s + block, seq_len)], v[:, : min(s + block, seq_len)],
                    scale, probs_dropout, s)
            for s in range(0, seq_len, block)]
    return jnp.concatenate(outs, axis=1)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float,
              probs_dropout: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
    """Bidirectional (unmasked) softmax attention on [B, L, H, d] tensors (ViT); logits and softmax in fp32."""
    return _attend(q, k, v, scale, probs_dropout, None)


def _attend(q, k, v, scale, probs_dropout, q_start: int | None) -> jax.Array:
    """Queries at positions q_start.. attend to keys at 0..k_len-1 with the causal mask (none if q_start is None)."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=F32) * scale
    if q_start is not None:
        causal = (q_start + jnp.arange(q.shape[1]))[:, None] >= jnp.arange(k.shape[1])[None, :]
        logits = jnp.where(causal[None, None], logits, jnp.finfo(F32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    if probs_dropout is not None:
        probs = probs_dropout(probs)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


class MLP(nn.Module):
    """in-projection -> activation (evaluated in fp32) -> out-projection; submodule names follow the HF checkpoint.
    `dropout` > 0 with deterministic=False: dropout on the output, drawn inside this module (Image GPT's layout;
    the other models apply their residual dropout in the block)."""

    hidden_size: int
    intermediate_size: int
    act: str
    in_name: str
    out_name: str
    dtype: Dtype = F32
    dropout: float = 0.0
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = dense(self.intermediate_size, self.in_name, self.dtype)(x)
        h = activation(self.act)(h.astype(F32)).astype(self.dtype)
        h = dense(self.hidden_size, self.out_name, self.dtype)(h)
        return apply_dropout(h, self.dropout, self.deterministic)


def maybe_dropout(rate: float, deterministic: bool) -> Callable[[jax.Array], jax.Array] | None:
    """Dropout on rng stream "dropout", or None when it is a no-op (rate 0 or deterministic)."""
    if rate == 0.0 or deterministic:
        return None
    return lambda x: nn.Dropout(rate, deterministic=False)(x)


def apply_dropout(x: jax.Array, rate: float, deterministic: bool) -> jax.Array:
    fn = maybe_dropout(rate, deterministic)
    return x if fn is None else fn(x)
