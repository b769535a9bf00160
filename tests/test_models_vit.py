"""ViT port: logits / loss / gradient / optimizer-step parity with transformers' ViTForImageClassification (tiny
random models built in-process), both key spellings, checkpoint I/O, dropout, config errors."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from recovery_jax.models import vit

from .vision_helpers import (  # noqa: F401  (highest_precision is an autouse fixture)
    check_training_parity, highest_precision, max_abs, torch, trees_equal,
)

transformers = pytest.importorskip("transformers")


def tiny(seed: int = 0, **kw):
    """Random tiny ViTForImageClassification (eval mode): 15 x 10 images in 5 x 5 patches (3 x 2 grid, so a
    swapped row/column flatten cannot pass), odd widths; LayerNorms and biases randomised."""
    cfg = dict(image_size=[15, 10], patch_size=5, num_channels=3, hidden_size=24, num_hidden_layers=2,
               num_attention_heads=3, intermediate_size=37, num_labels=7, initializer_range=0.2)
    cfg.update(kw)
    torch.manual_seed(seed)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**cfg)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name:
                p.copy_(0.3 * torch.randn_like(p) + (1.0 if name.endswith("weight") else 0.0))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model, model.config.to_dict()


def pixels(b: int = 2, hw=(15, 10), c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, *hw, c)).astype(np.float32)


def nchw(x: np.ndarray):
    return torch.from_numpy(x).permute(0, 3, 1, 2)


@functools.lru_cache(maxsize=None)
def _jitted(cfg):
    return jax.jit(vit.ViT(cfg).apply, static_argnames=("deterministic", "return_hidden"))


def apply(cfg, params, x, **kw):
    return _jitted(cfg)({"params": params}, jnp.asarray(x), **kw)


@pytest.mark.parametrize("extra", [
    {}, {"qkv_bias": False, "layer_norm_eps": 1e-6},
    {"image_size": 12, "patch_size": [4, 3], "num_channels": 2, "hidden_act": "gelu_new"}])
def test_logits_and_hidden_match_transformers(extra):
    model, hf = tiny(**extra)
    cfg = vit.parse_config(hf)
    params = vit.from_state_dict(cfg, model.state_dict())  # transformers-5 module names
    x = pixels(hw=cfg.image_hw, c=cfg.num_channels)
    with torch.no_grad():
        out = model(nchw(x), output_hidden_states=True)
        last = model.vit(nchw(x)).last_hidden_state.numpy()
    logits, hidden = apply(cfg, params, x, return_hidden=True)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert np.max(np.abs(out.logits.numpy())) > 0.5
    diff = max_abs(logits, out.logits.numpy())
    print(f"vit logits {extra}: max abs diff {diff:.2e}")
    assert diff <= 1e-5
    assert max_abs(hidden, last) <= 1e-5


def test_gradients_and_optimizer_steps_match_torch():
    model, hf = tiny()
    cfg = vit.parse_config(hf)
    x, labels = pixels(3, seed=1), np.array([0, 6, 3])
    t_x, t_labels = nchw(x), torch.from_numpy(labels)
    module = vit.ViT(cfg)
    report = {}
    check_training_parity(
        model, lambda sd: vit.from_state_dict(cfg, sd),
        lambda m: m(t_x, labels=t_labels).loss,
        lambda p: vit.classification_loss(module.apply({"params": p}, jnp.asarray(x)), jnp.asarray(labels)),
        grad_tol=1e-4, loss_tol=1e-5, report=report, zero_grad=lambda path: path[-2:] == ("k_proj", "bias"))
    print("vit training parity:", report)


def test_dropout():
    model, hf = tiny(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    cfg = vit.parse_config(hf)
    params = vit.from_state_dict(cfg, model.state_dict())
    x = pixels(4)

    def run(key=None, deterministic=False):
        rngs = None if key is None else {"dropout": jax.random.PRNGKey(key)}
        return np.asarray(apply(cfg, params, x, deterministic=deterministic, rngs=rngs))

    det = run(deterministic=True)
    assert np.array_equal(run(0), run(0)) and not np.allclose(run(0), run(1)) and not np.allclose(run(0), det)
    with torch.no_grad():
        assert max_abs(det, model(nchw(x)).logits.numpy()) <= 1e-5
    remat = vit.ViT(cfg, remat=True)
    out = jax.jit(remat.apply, static_argnames="deterministic")(
        {"params": params}, jnp.asarray(x), deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})
    assert np.array_equal(np.asarray(out), run(0))


def test_save_load_export_round_trips(tmp_path):
    model, hf = tiny()
    model.save_pretrained(tmp_path / "hf")
    written = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert "vit.encoder.layer.0.attention.attention.query.weight" in written  # legacy names on disk
    cfg, params = vit.load(tmp_path / "hf")
    assert cfg == vit.parse_config(hf)
    assert trees_equal(params, vit.from_state_dict(cfg, model.state_dict()))  # same as the module names
    params = jax.tree_util.tree_map(lambda p: p * 1.1, params)
    x = pixels()
    ours = np.asarray(apply(cfg, params, x))
    vit.export(params, cfg, tmp_path / "out")
    assert set(load_file(str(tmp_path / "out" / "model.safetensors"))) == set(written)
    reloaded = transformers.ViTForImageClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        theirs = reloaded(nchw(x)).logits.numpy()
    print(f"vit export -> transformers: max abs diff {max_abs(ours, theirs):.2e}")
    assert max_abs(ours, theirs) <= 1e-5
    cfg2, params2 = vit.load(tmp_path / "out")
    assert cfg2 == cfg and trees_equal(params, params2)
    assert vit.parse_config(vit.to_hf_config(cfg)) == cfg


def test_pooler_ignored_and_headless_backbone_rejected(tmp_path):
    model, hf = tiny()
    cfg = vit.parse_config(hf)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    ref = vit.from_state_dict(cfg, state)
    with_pooler = dict(state, **{"vit.pooler.dense.weight": np.zeros((24, 24), np.float32),
                                 "vit.pooler.dense.bias": np.zeros(24, np.float32)})
    assert trees_equal(vit.from_state_dict(cfg, with_pooler), ref)
    backbone = {k.removeprefix("vit."): v for k, v in state.items() if k.startswith("vit.")}
    with pytest.raises(ValueError, match="no classifier"):
        vit.from_state_dict(cfg, backbone)


def test_checkpoint_and_input_errors(tmp_path):
    model, hf = tiny()
    model.save_pretrained(tmp_path / "ok")
    state = load_file(str(tmp_path / "ok" / "model.safetensors"))
    cfg = vit.parse_config(hf)

    def write(name, st):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(hf))
        save_file(st, str(d / "model.safetensors"))
        return d

    missing = dict(state)
    missing.pop("vit.encoder.layer.1.output.dense.bias")
    with pytest.raises(ValueError, match=r"missing tensor 'vit\.encoder\.layer\.1\.output\.dense\.bias'"):
        vit.load(write("missing", missing))
    both = dict(state, **{"vit.layers.0.mlp.fc1.bias": state["vit.encoder.layer.0.intermediate.dense.bias"]})
    with pytest.raises(ValueError, match="several spellings"):
        vit.load(write("both", both))
    bad_pos = dict(state, **{"vit.embeddings.position_embeddings": np.zeros((1, 5, 24), np.float32)})
    with pytest.raises(ValueError, match=r"position_embeddings' has shape \[1, 5, 24\], expected \[1, 7, 24\]"):
        vit.load(write("pos", bad_pos))
    params = vit.from_state_dict(cfg, state)
    with pytest.raises(ValueError, match=r"expected pixels of shape \[B, 15, 10, 3\] \(NHWC\)"):
        apply(cfg, params, np.zeros((1, 3, 15, 10), np.float32))
    for change, match in [({"hidden_act": "swish"}, "hidden_act='swish'"), ({"num_attention_heads": 5}, "divisible"),
                          ({"head_dim": 16}, "head_dim"), ({"model_type": "deit"}, "not a ViT")]:
        with pytest.raises(ValueError, match=match):
            vit.parse_config(dict(hf, **change))


def test_init_params_follow_hf():
    cfg = vit.ViTConfig(image_hw=(32, 32), patch_hw=(8, 8), d_model=64, n_layers=2, n_heads=4, d_ff=96, num_labels=10)
    params = vit.init_params(cfg, jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(vit.param_shapes(cfg))
    emb = params["embeddings"]
    assert emb["position_embeddings"].shape == (1, 17, 64) and emb["cls_token"].shape == (1, 1, 64)
    assert emb["patch_embeddings"]["projection"]["kernel"].shape == (8, 8, 3, 64)
    assert abs(float(jnp.std(params["layers_0"]["mlp"]["fc1"]["kernel"])) - 0.02) < 0.002
    assert float(jnp.min(params["layernorm"]["scale"])) == 1.0
    with torch.device("meta"):
        ref = transformers.ViTForImageClassification(transformers.ViTConfig(**vit.to_hf_config(cfg)))
    assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == sum(p.numel() for p in ref.parameters())


def test_bfloat16_compute_keeps_fp32_params_and_logits():
    model, hf = tiny()
    cfg = vit.parse_config(hf)
    params = vit.from_state_dict(cfg, model.state_dict())
    x = pixels()
    ref = np.asarray(apply(cfg, params, x))
    out = jax.jit(vit.ViT(cfg, dtype=jnp.bfloat16).apply)({"params": params}, jnp.asarray(x))
    assert out.dtype == jnp.float32
    assert max_abs(out, ref) / np.max(np.abs(ref)) < 0.05
