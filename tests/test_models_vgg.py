"""VGG port: logits / gradient / optimizer-step parity with a torch VGG in torchvision's layout and names,
state-dict I/O (torchvision .pth / safetensors / directory, timm names), dropout, the VGG-19 layout.

torchvision itself is not used: the only wheel built for torch 2.13 (torchvision 0.28.0) is a CUDA build whose
operators do not load against the CPU torch of the test environment. `TorchVGG` rebuilds torchvision's
`VGG(make_layers(cfg))` from torch.nn layers with the same module names (features / avgpool / classifier)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file

from recovery_jax.models import vgg

from .vision_helpers import (  # noqa: F401  (highest_precision is an autouse fixture)
    check_training_parity, highest_precision, max_abs, rel_err, torch, trees_equal,
)

nn = torch.nn
# Odd, distinct widths so that a transposed or misplaced tensor cannot pass by accident.
STAGES = ((5, 3), (6, 7), (4, 5, 3, 6), (7, 4, 5, 3), (6, 5, 4, 7))
TINY = vgg.VGGConfig(stages=STAGES, hidden=19, num_classes=11, dropout=0.5)


class TorchVGG(nn.Module):
    """torchvision.models.vgg.VGG with make_layers(cfg): same Sequential indices and parameter names."""

    def __init__(self, cfg: vgg.VGGConfig):
        super().__init__()
        layers, c = [], cfg.in_channels
        for stage in cfg.stages:
            for w in stage:
                layers += [nn.Conv2d(c, w, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = w
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((cfg.pool_hw, cfg.pool_hw))
        self.classifier = nn.Sequential(
            nn.Linear(c * cfg.pool_hw * cfg.pool_hw, cfg.hidden), nn.ReLU(True), nn.Dropout(p=cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(True), nn.Dropout(p=cfg.dropout),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def tiny_torch(cfg: vgg.VGGConfig = TINY, seed: int = 0) -> TorchVGG:
    """Random weights scaled so activations stay O(1) through the narrow layers (not torchvision's init)."""
    torch.manual_seed(seed)
    model = TorchVGG(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn_like(p) * (1.6 / fan_in**0.5 if p.ndim > 1 else 0.1))
    return model


def torch_logits(model, pixels_BHWC: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(pixels_BHWC).permute(0, 3, 1, 2)).numpy()


def pixels(b: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, h, w, 3)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _jitted(cfg):
    return jax.jit(vgg.VGG(cfg).apply, static_argnames="deterministic")


def apply(cfg, params, x, **kw):
    return np.asarray(_jitted(cfg)({"params": params}, x, **kw))


# (32, 32): 1x1 final map, the adaptive pool repeats it 7x7; (45, 38): odd sizes floored by the max-pools;
# (300, 261): a 9x8 final map, overlapping adaptive-pool bins.
@pytest.mark.parametrize("hw", [(32, 32), (45, 38), (300, 261)])
def test_logits_match_torch(hw):
    model = tiny_torch()
    params = vgg.from_state_dict(TINY, model.state_dict())
    x = pixels(2, *hw)
    ref = torch_logits(model, x)
    ours = apply(TINY, params, jnp.asarray(x))
    assert ours.shape == (2, 11) and ours.dtype == np.float32
    assert np.max(np.abs(ref)) > 0.5  # non-trivial logits
    assert rel_err(ours, ref) <= 1e-4, rel_err(ours, ref)
    print(f"vgg logits {hw}: max abs diff {max_abs(ours, ref):.2e}, relative {rel_err(ours, ref):.2e}")


def test_adaptive_avg_pool_matches_torch():
    x = np.random.default_rng(3).standard_normal((2, 11, 9, 4)).astype(np.float32)
    for out in (7, 4, 3, 12):
        ref = nn.AdaptiveAvgPool2d(out)(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        assert max_abs(jax.jit(vgg.adaptive_avg_pool, static_argnums=1)(jnp.asarray(x), out), ref) <= 1e-6


def test_gradients_and_optimizer_steps_match_torch():
    model = tiny_torch()
    x = pixels(3, 40, 36, seed=1)
    labels = np.array([1, 7, 10])
    t_x, t_labels = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(labels)
    module = vgg.VGG(TINY)
    report = {}
    check_training_parity(
        model, lambda sd: vgg.from_state_dict(TINY, sd),
        lambda m: nn.functional.cross_entropy(m(t_x), t_labels),
        lambda p: vgg.classification_loss(module.apply({"params": p}, jnp.asarray(x)), jnp.asarray(labels)),
        grad_tol=1e-4, loss_tol=1e-4, report=report)
    print("vgg training parity:", report)


def test_dropout_train_flag():
    model = tiny_torch()
    params = vgg.from_state_dict(TINY, model.state_dict())
    x = jnp.asarray(pixels(4, 32, 32))
    det = apply(TINY, params, x)
    assert np.array_equal(apply(TINY, params, x, deterministic=True), det)

    def train(key):
        return apply(TINY, params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(key)})

    assert np.array_equal(train(0), train(0))
    assert not np.allclose(train(0), train(1))
    assert not np.allclose(train(0), det)
    with pytest.raises(Exception, match="dropout"):  # train mode needs a dropout key
        apply(TINY, params, x, deterministic=False)
    no_drop = vgg.VGGConfig(stages=STAGES, hidden=19, num_classes=11, dropout=0.0)
    assert np.array_equal(apply(no_drop, params, x, deterministic=False), det)


def test_save_load_round_trips(tmp_path):
    model = tiny_torch()
    params = vgg.from_state_dict(TINY, model.state_dict())
    params = jax.tree_util.tree_map(lambda p: p * 1.25, params)  # the exported values are ours, not torch's
    x = pixels(2, 33, 35)
    ours = apply(TINY, params, jnp.asarray(x))
    for name in ("weights.pth", "weights.safetensors", "exported_dir"):
        vgg.export(params, TINY, tmp_path / name)
        cfg2, params2 = vgg.load(tmp_path / name, dropout=0.5)
        assert cfg2 == TINY, name  # shapes inferred from the tensors (files) or config.json (directory)
        assert trees_equal(params, params2), name
    # the .pth is a plain torchvision state dict: load_state_dict into the torch model, logits equal
    fresh = tiny_torch(seed=1)
    fresh.load_state_dict(torch.load(tmp_path / "weights.pth", weights_only=True))
    assert rel_err(ours, torch_logits(fresh, x)) <= 1e-4
    # a torch.save'd state dict straight from the model
    torch.save(model.state_dict(), tmp_path / "tv.pth")
    assert trees_equal(vgg.load(tmp_path / "tv.pth")[1], vgg.from_state_dict(TINY, model.state_dict()))


def test_timm_naming_loads_the_same_weights(tmp_path):
    """timm's vgg19.tv_in1k spelling (timm/models/vgg.py _filter_fn): classifier.0 as a [hid, C, 7, 7] conv
    pre_logits.fc1, classifier.3 as a 1x1 conv pre_logits.fc2, classifier.6 as head.fc."""
    model = tiny_torch()
    tv = {k: v.numpy() for k, v in model.state_dict().items()}
    timm = {k: v for k, v in tv.items() if k.startswith("features.")}
    c, hid = STAGES[-1][-1], TINY.hidden
    timm["pre_logits.fc1.weight"] = tv["classifier.0.weight"].reshape(hid, c, 7, 7)
    timm["pre_logits.fc1.bias"] = tv["classifier.0.bias"]
    timm["pre_logits.fc2.weight"] = tv["classifier.3.weight"].reshape(hid, hid, 1, 1)
    timm["pre_logits.fc2.bias"] = tv["classifier.3.bias"]
    timm["head.fc.weight"], timm["head.fc.bias"] = tv["classifier.6.weight"], tv["classifier.6.bias"]
    save_file(timm, str(tmp_path / "timm.safetensors"))
    cfg, params = vgg.load(tmp_path / "timm.safetensors")
    assert cfg == TINY
    assert trees_equal(params, vgg.from_state_dict(TINY, tv))
    # and timm's forward at a 7x7 final map (input 224) is the 7x7 conv + 1x1 conv + linear on the same weights
    x = pixels(1, 224, 224)
    with torch.no_grad():
        feats = model.features(torch.from_numpy(x).permute(0, 3, 1, 2))
        assert feats.shape[-2:] == (7, 7)
        f = torch.nn.functional
        h = f.relu(f.conv2d(feats, torch.from_numpy(timm["pre_logits.fc1.weight"]), model.classifier[0].bias))
        h = f.relu(f.conv2d(h, torch.from_numpy(timm["pre_logits.fc2.weight"]), model.classifier[3].bias))
        timm_logits = model.classifier[6](h.mean((2, 3))).numpy()
    assert rel_err(apply(TINY, params, jnp.asarray(x)), timm_logits) <= 1e-4


def test_vgg19_layout_and_param_count():
    cfg = vgg.VGGConfig()
    assert cfg.conv_indices == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    shapes = vgg.param_shapes(cfg)
    assert shapes["classifier_0"]["kernel"].shape == (7, 7, 512, 4096)
    n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
    assert n == 143_667_240  # torchvision's documented VGG19_Weights num_params
    table = vgg.key_table(cfg)
    names = {e.keys[0]: e.shape for e in table}
    assert names["features.34.weight"] == (512, 512, 3, 3) and names["classifier.0.weight"] == (4096, 25088)
    assert names["classifier.6.weight"] == (1000, 4096) and len(names) == 38


def test_init_params_follow_torchvision():
    params = vgg.init_params(TINY, jax.random.PRNGKey(0))
    flat, shapes = traverse_util.flatten_dict(params), traverse_util.flatten_dict(vgg.param_shapes(TINY))
    assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in shapes.items()}
    k = params["features_0"]["kernel"]  # fan_out = 5 * 9
    assert abs(float(jnp.std(k)) - (2 / 45) ** 0.5) < 0.1
    assert float(jnp.abs(params["classifier_6"]["bias"]).max()) == 0.0
    assert abs(float(jnp.std(params["classifier_0"]["kernel"])) - 0.01) < 0.002


def test_errors(tmp_path):
    model = tiny_torch()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    bad = dict(sd)
    bad.pop("features.12.bias")
    with pytest.raises(ValueError, match=r"missing tensor 'features\.12\.bias'"):
        vgg.from_state_dict(TINY, bad)
    with pytest.raises(ValueError, match=r"'features\.0\.weight' has shape \[5, 3, 3, 3\], expected \[64, 3, 3, 3\]"):
        vgg.from_state_dict(vgg.VGGConfig(), sd)
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\): \['features\.99\.weight'\]"):
        vgg.from_state_dict(TINY, dict(sd, **{"features.99.weight": np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match="batch-norm"):
        vgg.from_state_dict(TINY, dict(sd, **{"features.1.running_mean": np.zeros(5, np.float32)}))
    with pytest.raises(ValueError, match="too small"):
        apply(TINY, vgg.from_state_dict(TINY, sd), jnp.zeros((1, 31, 40, 3)))
    with pytest.raises(ValueError, match="NHWC"):
        apply(TINY, vgg.from_state_dict(TINY, sd), jnp.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="stages"):
        vgg.VGGConfig(stages=((3, 0),))
    with pytest.raises(FileNotFoundError):
        vgg.load(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read"):
        vgg.load(tmp_path / "junk.pth")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match="flat state dict"):
        vgg.load(tmp_path / "ckpt.pth")


def test_bfloat16_compute_keeps_fp32_params_and_logits():
    params = vgg.from_state_dict(TINY, tiny_torch().state_dict())
    x = jnp.asarray(pixels(2, 32, 32))
    ref = apply(TINY, params, x)
    out = jax.jit(vgg.VGG(TINY, dtype=jnp.bfloat16).apply)({"params": params}, x)
    assert out.dtype == jnp.float32
    assert rel_err(out, ref) < 0.05
