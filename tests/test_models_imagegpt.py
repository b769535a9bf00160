"""Image GPT port: logits / loss / gradient / optimizer-step parity with transformers'
ImageGPTForCausalImageModeling (tiny random models built in-process), checkpoint I/O, dropout, config errors."""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from recovery_jax.models import imagegpt as ig

from .vision_helpers import (  # noqa: F401  (highest_precision is an autouse fixture)
    check_training_parity, highest_precision, max_abs, torch, trees_equal,
)

transformers = pytest.importorskip("transformers")
SEQ = 45  # = n_positions below


def tiny(seed: int = 0, **kw):
    """Random tiny ImageGPTForCausalImageModeling (eval mode): 16 colours + start token, odd widths, LN gains
    randomised (HF inits them to 1, which would hide a missing or misplaced scale)."""
    cfg = dict(vocab_size=17, n_positions=SEQ, n_embd=24, n_layer=2, n_head=3, n_inner=37,
               attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    cfg.update(kw)
    torch.manual_seed(seed)
    model = transformers.ImageGPTForCausalImageModeling(transformers.ImageGPTConfig(**cfg)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.mul_(5.0)  # std 0.1: logits of order 1 instead of ~0.05
    return model, model.config.to_dict()


def image_ids(b: int = 2, seq: int = SEQ, n_colors: int = 16, sos: bool = True, seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(0, n_colors, (b, seq))
    if sos:
        ids[:, 0] = n_colors  # start token
    return ids


@functools.lru_cache(maxsize=None)
def _jitted(cfg):
    return jax.jit(ig.ImageGPT(cfg).apply, static_argnames=("deterministic", "return_hidden"))


def apply(cfg, params, ids, **kw):
    return _jitted(cfg)({"params": params}, jnp.asarray(ids), **kw)


@pytest.mark.parametrize("extra", [{}, {"scale_attn_by_inverse_layer_idx": True},
                                   {"activation_function": "gelu", "n_head": 4, "n_inner": None}])
def test_logits_hidden_and_loss_match_transformers(extra):
    model, hf = tiny(**extra)
    cfg = ig.parse_config(hf)
    params = ig.from_state_dict(cfg, model.state_dict())
    ids = image_ids()
    with torch.no_grad():
        out = model(torch.from_numpy(ids), labels=torch.from_numpy(ids), output_hidden_states=True)
    logits, hidden = apply(cfg, params, ids, return_hidden=True)
    assert logits.shape == (2, SEQ, 16) and logits.dtype == jnp.float32  # colours only, no start-token logit
    assert np.max(np.abs(out.logits.numpy())) > 1.0
    diff = max_abs(logits, out.logits.numpy())
    print(f"imagegpt logits {extra}: max abs diff {diff:.2e}")
    assert diff <= 1e-5
    assert max_abs(hidden, out.hidden_states[-1].numpy()) <= 1e-5
    assert abs(float(ig.lm_loss(logits, jnp.asarray(ids))) - out.loss.item()) <= 1e-5
    # blocked causal attention (attn_block) gives the same numbers
    blocked = dataclasses.replace(cfg, attn_block=16)
    assert max_abs(apply(blocked, params, ids), logits) <= 1e-5


def test_layer_norm_has_no_centring_and_no_bias():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32) + 3.0)
    ln = ig.ImageGPTLayerNorm(1e-5)
    params = ln.init(jax.random.PRNGKey(0), x)["params"]
    assert set(params) == {"scale"}
    x64 = np.asarray(x, np.float64)
    ref = x64 / np.sqrt(np.mean(x64**2, -1, keepdims=True) + 1e-5)
    assert max_abs(ln.apply({"params": params}, x), ref) <= 1e-6


def test_processor_style_ids_without_start_token():
    """The image processor emits colour ids only (no start token); labels = input_ids then covers L-1 targets."""
    model, hf = tiny()
    cfg = ig.parse_config(hf)
    params = ig.from_state_dict(cfg, model.state_dict())
    ids = image_ids(sos=False, seed=3)
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), labels=torch.from_numpy(ids)).loss.item()
    assert abs(float(ig.lm_loss(apply(cfg, params, ids), jnp.asarray(ids))) - ref) <= 1e-5
    # a start token among the targets is out of range for the colour-only head: NaN here (torch raises)
    bad = ids.copy()
    bad[0, 5] = 16
    assert np.isnan(float(ig.lm_loss(apply(cfg, params, bad), jnp.asarray(bad))))


@pytest.mark.parametrize("extra", [{}, {"scale_attn_by_inverse_layer_idx": True}])
def test_gradients_and_optimizer_steps_match_torch(extra):
    model, hf = tiny(**extra)
    cfg = ig.parse_config(hf)
    ids = image_ids(b=2, seed=1)
    labels = ids.copy()
    labels[1, 30:] = -100  # ignored targets
    t_ids, t_labels = torch.from_numpy(ids), torch.from_numpy(labels)
    module = ig.ImageGPT(dataclasses.replace(cfg, attn_block=16))
    report = {}
    check_training_parity(
        model, lambda sd: ig.from_state_dict(cfg, sd),
        lambda m: m(t_ids, labels=t_labels).loss,
        lambda p: ig.lm_loss(module.apply({"params": p}, jnp.asarray(ids)), jnp.asarray(labels)),
        grad_tol=1e-4, loss_tol=1e-5, report=report)
    print(f"imagegpt training parity {extra}:", report)


def test_dropout():
    model, hf = tiny(attn_pdrop=0.1, resid_pdrop=0.1, embd_pdrop=0.1)
    cfg = ig.parse_config(hf)
    assert (cfg.attn_pdrop, cfg.resid_pdrop, cfg.embd_pdrop) == (0.1, 0.1, 0.1)
    params = ig.from_state_dict(cfg, model.state_dict())
    ids = image_ids()

    def run(key=None, deterministic=False):
        rngs = None if key is None else {"dropout": jax.random.PRNGKey(key)}
        return np.asarray(apply(cfg, params, ids, deterministic=deterministic, rngs=rngs))

    det = run(deterministic=True)
    assert np.array_equal(run(0), run(0)) and not np.allclose(run(0), run(1)) and not np.allclose(run(0), det)
    with torch.no_grad():
        assert max_abs(det, model(torch.from_numpy(ids)).logits.numpy()) <= 1e-5
    remat = ig.ImageGPT(cfg, remat=True)
    out = jax.jit(remat.apply, static_argnames="deterministic")(
        {"params": params}, jnp.asarray(ids), deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})
    assert np.array_equal(np.asarray(out), run(0))


def test_save_load_export_round_trips(tmp_path):
    model, hf = tiny()
    model.save_pretrained(tmp_path / "hf")
    cfg, params = ig.load(tmp_path / "hf")
    assert cfg == ig.parse_config(hf)
    assert trees_equal(params, ig.from_state_dict(cfg, model.state_dict()))
    params = jax.tree_util.tree_map(lambda p: p * 1.1, params)  # exported values are ours
    ids = image_ids()
    ours = np.asarray(apply(cfg, params, ids))
    ig.export(params, cfg, tmp_path / "out")
    reloaded = transformers.ImageGPTForCausalImageModeling.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        theirs = reloaded(torch.from_numpy(ids)).logits.numpy()
    print(f"imagegpt export -> transformers: max abs diff {max_abs(ours, theirs):.2e}")
    assert max_abs(ours, theirs) <= 1e-5
    cfg2, params2 = ig.load(tmp_path / "out")
    assert cfg2 == cfg and trees_equal(params, params2)  # bit-identical
    assert ig.parse_config(ig.to_hf_config(cfg)) == cfg
    ig.export(params, cfg, tmp_path / "revisions" / "step7")  # a local folder of revisions, as the LMs read one
    assert trees_equal(ig.load(tmp_path / "revisions", revision="step7")[1], params)
    with pytest.raises(ValueError, match="revision 'step8' .*available revisions: step7$"):
        ig.load(tmp_path / "revisions", revision="step8")


def test_old_checkpoint_spellings_and_pytorch_bin(tmp_path):
    """Old files: bare ImageGPTModel-style names are not used by the LM, but causal-mask buffers
    (h.N.attn.bias / masked_bias) are ignored, pytorch_model.bin is read, and bf16 tensors are upcast."""
    model, hf = tiny()
    cfg = ig.parse_config(hf)
    ref = ig.from_state_dict(cfg, model.state_dict())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, SEQ, SEQ, dtype=torch.bool))
    state["transformer.h.1.attn.masked_bias"] = torch.tensor(-1e4)
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hf))
    torch.save(state, d / "pytorch_model.bin")
    assert trees_equal(ig.load(d)[1], ref)
    bare = {k.removeprefix("transformer."): v.numpy() for k, v in model.state_dict().items()}
    assert trees_equal(ig.from_state_dict(cfg, bare), ref)
    import safetensors.torch

    b = tmp_path / "bf16"
    b.mkdir()
    (b / "config.json").write_text(json.dumps(hf))
    safetensors.torch.save_file({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()},
                                str(b / "model.safetensors"))
    p16 = ig.load(b)[1]
    assert p16["wte"]["embedding"].dtype == jnp.float32
    assert max_abs(p16["wte"]["embedding"], ref["wte"]["embedding"]) <= 0.01


def test_checkpoint_errors(tmp_path):
    model, hf = tiny()
    model.save_pretrained(tmp_path / "ok")
    state = load_file(str(tmp_path / "ok" / "model.safetensors"))

    def write(name, st=None, config=None):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(config or hf))
        save_file(st if st is not None else state, str(d / "model.safetensors"))
        return d

    missing = dict(state)
    missing.pop("transformer.h.1.mlp.c_fc.bias")
    with pytest.raises(ValueError, match=r"missing tensor 'transformer\.h\.1\.mlp\.c_fc\.bias'"):
        ig.load(write("missing", missing))
    with pytest.raises(ValueError, match=r"'lm_head\.weight' has shape \[17, 24\], expected \[16, 24\]"):
        ig.load(write("head", dict(state, **{"lm_head.weight": np.zeros((17, 24), np.float32)})))
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\): \['transformer\.h\.0\.adapter'\]"):
        ig.load(write("extra", dict(state, **{"transformer.h.0.adapter": np.zeros(3, np.float32)})))
    for change, match in [({"tie_word_embeddings": True}, "tie_word_embeddings"),
                          ({"add_cross_attention": True}, "add_cross_attention"),
                          ({"activation_function": "swish"}, r"activation_function='swish'"),
                          ({"n_head": 5}, "not divisible"),
                          ({"model_type": "gpt2"}, "not an Image GPT")]:
        with pytest.raises(ValueError, match=match):
            ig.parse_config(dict(hf, **change))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ig.load(tmp_path / "nope")
    with pytest.raises(ValueError, match="exceeds n_positions"):
        apply(ig.parse_config(hf), ig.from_state_dict(ig.parse_config(hf), state), np.zeros((1, SEQ + 1), np.int32))


def test_init_params_follow_hf():
    cfg = ig.ImageGPTConfig(vocab_size=17, n_positions=45, d_model=64, n_layers=3, n_heads=4, d_ff=96)
    params = ig.init_params(cfg, jax.random.PRNGKey(0))
    shapes = ig.param_shapes(cfg)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(shapes)
    assert params["lm_head"]["kernel"].shape == (64, 16) and params["ln_f"]["scale"].shape == (64,)
    assert float(jnp.abs(params["h_0"]["attn"]["c_attn"]["bias"]).max()) == 0.0
    assert float(jnp.min(params["h_1"]["ln_2"]["scale"])) == 1.0
    assert abs(float(jnp.std(params["h_0"]["mlp"]["c_fc"]["kernel"])) - 0.02) < 0.002
    assert abs(float(jnp.std(params["h_0"]["mlp"]["c_proj"]["kernel"])) - 0.02 / math.sqrt(6)) < 0.001
    with torch.device("meta"):
        ref = transformers.ImageGPTForCausalImageModeling(transformers.ImageGPTConfig(**ig.to_hf_config(cfg)))
    n_ref = sum(p.numel() for p in ref.parameters())
    assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == n_ref


def test_bfloat16_compute_keeps_fp32_params_and_logits():
    model, hf = tiny()
    cfg = ig.parse_config(hf)
    params = ig.from_state_dict(cfg, model.state_dict())
    ids = image_ids()
    ref = np.asarray(apply(cfg, params, ids))
    out = jax.jit(ig.ImageGPT(cfg, dtype=jnp.bfloat16).apply)({"params": params}, jnp.asarray(ids))
    assert out.dtype == jnp.float32
    assert max_abs(out, ref) / np.max(np.abs(ref)) < 0.05


def test_hub_id_offline_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"'openai/imagegpt-small' is not a local directory"):
        ig.load("openai/imagegpt-small")
