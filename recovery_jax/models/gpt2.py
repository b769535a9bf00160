"""GPT-2: the Flax causal LM and everything else that knows this architecture — HF config and checkpoint
names, presets, init roles and parameter paths (the ARCH at the end). Parameter names mirror the HF checkpoint
(Conv1D weights are already [in, out])."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from .config import ACTIVATIONS, ModelConfig, bad_value, check_bool, check_choice, hf_get
from .layers import (
    MLP, Embed, LayerNorm, Model, Sublayer, apply_dropout, causal_attention, check_length, dense, maybe_dropout,
)
from .registry import Architecture, HFParam

FF_MULTIPLE = 4  # n_inner=None: the FF width is 4 x n_embd


class GPT2Attention(Sublayer):
    """Fused c_attn -> causal attention -> c_proj -> residual dropout. Reads cfg.head_dim, the two scaling flags,
    attn_pdrop, resid_pdrop and attn_block, which Image GPT's config spells the same: imagegpt.py uses it too."""

    layer_idx: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        b, seq, d = x.shape
        qkv = dense(3 * d, "c_attn", self.dtype)(x)
        # The fused output axis is ({q,k,v}, head, head_dim): split in three first, then into heads.
        q, k, v = (t.reshape(b, seq, d // cfg.head_dim, cfg.head_dim) for t in jnp.split(qkv, 3, axis=-1))
        scale = cfg.head_dim**-0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= float(self.layer_idx + 1)
        out = causal_attention(q, k, v, scale, maybe_dropout(cfg.attn_pdrop, self.deterministic), cfg.attn_block)
        out = dense(d, "c_proj", self.dtype)(out.reshape(b, seq, d))
        return apply_dropout(out, cfg.resid_pdrop, self.deterministic)


class GPT2Block(Sublayer):
    """Pre-LN: x + attn(ln_1(x)), then + the feed-forward of ln_2(x) (the MLP and its residual dropout). Image GPT's
    block is this one with another norm and feed-forward (imagegpt.ImageGPTBlock overrides the two methods)."""

    layer_idx: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a = self.norm("ln_1")(x)
        x = GPT2Attention(self.cfg, self.dtype, self.deterministic, self.layer_idx, name="attn")(a) + x
        return x + self.feed_forward(self.norm("ln_2")(x))

    def norm(self, name: str) -> nn.Module:
        return LayerNorm(self.cfg.ln_eps, self.dtype, name=name)

    def feed_forward(self, h: jax.Array) -> jax.Array:
        cfg = self.cfg
        m = MLP(cfg.hidden_size, cfg.intermediate_size, cfg.act, "c_fc", "c_proj", self.dtype, name="mlp")(h)
        return apply_dropout(m, cfg.resid_pdrop, self.deterministic)


class GPT2LM(Model):
    """input_ids [B, L] -> fp32 logits [B, L, V]; the LM head is wte^T (tied, one shared matrix)."""

    @nn.compact
    def __call__(self, input_ids: jax.Array, deterministic: bool = True, return_hidden: bool = False):
        cfg = self.cfg
        seq = check_length(input_ids.shape[1], cfg.max_positions, "n_positions")
        wte = Embed(cfg.vocab_size, cfg.hidden_size, self.dtype, name="wte")
        wpe = Embed(cfg.max_positions, cfg.hidden_size, self.dtype, name="wpe")
        x = apply_dropout(wte(input_ids) + wpe(jnp.arange(seq))[None], cfg.embd_pdrop, deterministic)
        for block in self.blocks(GPT2Block, cfg.num_layers, "h_", deterministic, numbered=True):
            x = block(x)
        h = LayerNorm(cfg.ln_eps, self.dtype, name="ln_f")(x)
        logits = wte.attend(h)
        return (logits, h) if return_hidden else logits


# ------------------------------------------------------------------------------------------- HF config.json


def parse_hf(hf: dict) -> ModelConfig:
    """GPT2Config dict -> ModelConfig (n_embd / hidden_size spellings; HF's defaults for absent fields)."""
    if hf.get("add_cross_attention", False):
        raise bad_value("add_cross_attention", hf["add_cross_attention"], "[False]")
    if not hf.get("tie_word_embeddings", True):
        raise bad_value("tie_word_embeddings", hf["tie_word_embeddings"], "[True] (GPT-2 lm_head is tied to wte)")
    # reorder_and_upcast_attn only changes bf16/fp16 numerics; we always take the softmax in fp32.
    check_bool("reorder_and_upcast_attn", hf.get("reorder_and_upcast_attn", False))
    d = int(hf_get(hf, ("n_embd", "hidden_size")))
    n_inner = hf.get("n_inner")
    return ModelConfig(
        arch="gpt2",
        vocab_size=int(hf_get(hf, ("vocab_size",), 50257)),
        hidden_size=d,
        num_layers=int(hf_get(hf, ("n_layer", "num_hidden_layers"))),
        num_heads=int(hf_get(hf, ("n_head", "num_attention_heads"))),
        intermediate_size=int(n_inner) if n_inner is not None else FF_MULTIPLE * d,
        max_positions=int(hf_get(hf, ("n_positions", "max_position_embeddings"), 1024)),
        ln_eps=float(hf_get(hf, ("layer_norm_epsilon",), 1e-5)),
        act=check_choice("activation_function", hf_get(hf, ("activation_function",), "gelu_new"), ACTIVATIONS),
        attn_pdrop=float(hf_get(hf, ("attn_pdrop",), 0.1)),
        resid_pdrop=float(hf_get(hf, ("resid_pdrop",), 0.1)),
        embd_pdrop=float(hf_get(hf, ("embd_pdrop",), 0.1)),
        scale_attn_weights=check_bool("scale_attn_weights", hf.get("scale_attn_weights", True)),
        scale_attn_by_inverse_layer_idx=check_bool(
            "scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx", False)),
        initializer_range=float(hf_get(hf, ("initializer_range",), 0.02)),
    )


def to_hf(cfg: ModelConfig) -> dict:
    """ModelConfig -> GPT2Config dict; n_inner=None when the FF width is the default 4 x n_embd, as the Hub files."""
    n_inner = None if cfg.intermediate_size == FF_MULTIPLE * cfg.hidden_size else cfg.intermediate_size
    return {
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.hidden_size,
        "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads,
        "n_inner": n_inner,
        "n_positions": cfg.max_positions,
        "activation_function": cfg.act,
        "layer_norm_epsilon": cfg.ln_eps,
        "initializer_range": cfg.initializer_range,
        "attn_pdrop": cfg.attn_pdrop,
        "resid_pdrop": cfg.resid_pdrop,
        "embd_pdrop": cfg.embd_pdrop,
        "scale_attn_weights": cfg.scale_attn_weights,
        "scale_attn_by_inverse_layer_idx": cfg.scale_attn_by_inverse_layer_idx,
        "tie_word_embeddings": True,
    }


# ------------------------------------------------------------------------------------------- HF checkpoint


def hf_params(cfg: ModelConfig) -> list[HFParam]:
    """Hub "gpt2" files have bare keys, save_pretrained writes "transformer."-prefixed ones: both are read,
    the prefixed one is written."""
    d, f = cfg.hidden_size, cfg.intermediate_size

    def e(key: str, path: tuple[str, ...], shape: tuple[int, ...], vocab_rows: bool = False) -> HFParam:
        return HFParam(("transformer." + key, key), path, shape, vocab_rows=vocab_rows)

    table = [
        e("wte.weight", ("wte", "embedding"), (cfg.vocab_size, d), vocab_rows=True),
        e("wpe.weight", ("wpe", "embedding"), (cfg.max_positions, d)),
        e("ln_f.weight", ("ln_f", "scale"), (d,)),
        e("ln_f.bias", ("ln_f", "bias"), (d,)),
    ]
    return table + [e(key, path, shape) for key, path, shape in block_tensors(cfg.num_layers, d, f)]


def block_tensors(num_layers: int, d: int, f: int, ln_bias: bool = True):
    """(checkpoint key without the "transformer." prefix, param path, shape) of every block tensor of the GPT-2
    layout, which Image GPT's checkpoints share (their LayerNorms have no bias: ln_bias=False). Conv1D weights
    are stored [in, out], the Flax kernel layout: copied without transposing."""
    convs = [("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d), ("mlp.c_fc", d, f), ("mlp.c_proj", f, d)]
    for i in range(num_layers):
        src, dst = f"h.{i}.", (f"h_{i}",)
        for ln in ("ln_1", "ln_2"):
            yield src + ln + ".weight", dst + (ln, "scale"), (d,)
            if ln_bias:
                yield src + ln + ".bias", dst + (ln, "bias"), (d,)
        for name, n_in, n_out in convs:
            sub = dst + tuple(name.split("."))
            yield src + name + ".weight", sub + ("kernel",), (n_in, n_out)
            yield src + name + ".bias", sub + ("bias",), (n_out,)


# ------------------------------------------------------------------------------------------- presets
# The fields of the Hub config.json files (openai-community/gpt2*), revision main.


def _gpt2(hidden_size: int, num_layers: int, num_heads: int) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_embd": hidden_size,
        "n_layer": num_layers,
        "n_head": num_heads,
        "n_inner": None,
        "n_positions": 1024,
        "n_ctx": 1024,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "attn_pdrop": 0.1,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
    }


PRESETS = {
    "gpt2": _gpt2(768, 12, 12),
    "gpt2-medium": _gpt2(1024, 24, 16),
    "gpt2-large": _gpt2(1280, 36, 20),
    "gpt2-xl": _gpt2(1600, 48, 25),
}


ARCH = Architecture(
    name="gpt2",
    module=GPT2LM,
    presets=PRESETS,
    parse_hf=parse_hf,
    to_hf=to_hf,
    hf_model_type="gpt2",
    hf_class="GPT2LMHeadModel",
    hf_params=hf_params,
    hf_ignored=(r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)", r"lm_head\.weight"),  # lm_head is tied to wte
    hf_optional_keys=frozenset({"add_cross_attention", "tie_word_embeddings"}),
    # By analogy with the Pythia recipe: c_attn, c_fc, wte, wpe small_init; both c_proj wang_init
    init_roles={"c_attn": "in", "c_fc": "in", "wte": "in", "wpe": "in", "c_proj": "out"},
    block_prefix="h_",
    block_parts={
        "block": (), "attn": ("attn",), "mlp": ("mlp",), "ln1": ("ln_1",), "ln2": ("ln_2",),
        "attn_qkv": ("attn", "c_attn"), "attn_out": ("attn", "c_proj"),
        "mlp_in": ("mlp", "c_fc"), "mlp_out": ("mlp", "c_proj"),
    },
    input_embeddings=("wte", "wpe"),  # wte is also the tied head
    unembedding=("wte", "embedding"),  # [V, D] (tied)
    vocab_params=((("wte", "embedding"), 0),),
    # as GPT-NeoX (gpt_neox.ARCH): c_attn's output and c_fc's inner width split, the c_proj after each splits its
    # input rows; embeddings split the width (wte is also the tied head)
    shard_rules=((r"attn/c_attn/(kernel|bias)$", -1), (r"attn/c_proj/kernel$", 0), (r"mlp/c_fc/(kernel|bias)$", -1),
                 (r"mlp/c_proj/kernel$", 0), (r"(wte|wpe)/embedding$", 1)),
    ff_multiple=FF_MULTIPLE,
)
