"""models.registry and the run path in one step: lookup, detection, model_config against the path it replaced,
to_hf round trips, restrict_vocab, and no architecture-name branches outside the per-architecture modules."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from recovery_jax import config as config_lib
from recovery_jax import models
from recovery_jax.models import (
    ARCHITECTURES, PRESETS, build_model, export_hf, init_params, load_hf, model_config, parse_config,
    preset_config, registry, restrict_vocab, to_hf_config, unembedding, uses_dropout,
)

from .test_models_common import highest_precision, jit_apply, tiny_gpt2, tiny_neox, torch, transformers  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ the path model_config replaced
# runner.model_config + restrict_vocab_params before models.model_config existed, kept here as the reference.

_OLD_SHAPE_KEYS = {
    "gpt_neox": {"hidden_size": "hidden_size", "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
                 "intermediate_size": "intermediate_size", "max_positions": "max_position_embeddings"},
    "gpt2": {"hidden_size": "n_embd", "num_layers": "n_layer", "num_heads": "n_head",
             "intermediate_size": "n_inner", "max_positions": "n_positions"},
}


def old_model_config(model_cfg, vocab_size):
    arch, hf = preset_config(model_cfg.preset)
    hf = dict(hf)
    for ours, theirs in _OLD_SHAPE_KEYS[arch].items():
        if model_cfg[ours]:
            hf[theirs] = int(model_cfg[ours])
    if vocab_size is not None:
        hf["vocab_size"] = int(vocab_size)
    if arch == "gpt2" and model_cfg.dropout == "off":
        hf.update(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    return parse_config(arch, hf)


def old_restrict_vocab_params(arch, params, vocab_map):
    params = dict(params)
    if arch == "gpt_neox":
        params["embed_in"] = {"embedding": params["embed_in"]["embedding"][vocab_map]}
        params["embed_out"] = {"kernel": params["embed_out"]["kernel"][:, vocab_map]}
    else:
        params["wte"] = {"embedding": params["wte"]["embedding"][vocab_map]}
    return params


def params_hash(params) -> str:
    h = hashlib.sha256()
    for path, x in sorted(traverse_util.flatten_dict(params).items()):
        h.update("/".join(path).encode())
        h.update(np.asarray(x, np.float32).tobytes())
    return h.hexdigest()[:16]


def tree_equal(a, b) -> bool:
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                       jax.tree_util.tree_leaves(b)))


def model_section(**kw) -> ml_collections.ConfigDict:
    m = config_lib.base_config().model
    for k, v in kw.items():
        m[k] = v
    return m


# ------------------------------------------------------------------------------------------------ registry


def test_lookup_and_errors():
    assert set(ARCHITECTURES) >= {"gpt_neox", "gpt2"}
    for name, arch in ARCHITECTURES.items():
        assert registry.get(name) is arch
        assert arch.module.__module__ == f"recovery_jax.models.{name}"  # one home per architecture
        assert arch.port == (arch.data == "images")  # the vision ports bring their own config class and hooks
    assert {n: (a.task, a.data) for n, a in ARCHITECTURES.items()} == {
        "gpt_neox": ("lm", "text"), "gpt2": ("lm", "text"), "imagegpt": ("lm", "images"),
        "vit": ("classify", "images"), "vgg": ("classify", "images")}
    cfg = parse_config(*PRESETS["gpt2"])
    assert registry.get(cfg) is ARCHITECTURES["gpt2"]
    with pytest.raises(ValueError, match=r"unknown architecture 'llama'; valid: \['gpt_neox', 'gpt2'"):
        registry.get("llama")
    assert set(PRESETS) == {n for a in ARCHITECTURES.values() for n in a.presets}


def test_detect():
    for name, (arch, hf) in PRESETS.items():
        assert registry.detect(hf).name == arch == models.detect_arch(hf), name
        assert registry.detect({"architectures": hf["architectures"]}).name == arch
        assert registry.detect({"model_type": hf["model_type"]}).name == arch
    with pytest.raises(ValueError, match=r"unknown or ambiguous architecture.*GPTNeoXForCausalLM \(gpt_neox\)"):
        registry.detect({"model_type": "llama"})
    with pytest.raises(ValueError, match="ambiguous"):
        registry.detect({"model_type": "gpt2", "architectures": ["GPTNeoXForCausalLM"]})


# ------------------------------------------------------------------------------------------------ ModelConfig


def test_model_config_checks_hold_after_replace():
    cfg = parse_config(*PRESETS["pythia-160m"])
    assert (cfg.head_dim, cfg.rotary_ndims) == (64, 16)
    wider = dataclasses.replace(cfg, hidden_size=1536)
    assert (wider.head_dim, wider.rotary_ndims) == (128, 32)  # rotary dims follow the width
    with pytest.raises(ValueError, match="hidden_size=1000 is not divisible by num_heads=12"):
        dataclasses.replace(cfg, hidden_size=1000)
    with pytest.raises(ValueError, match="rotary dims must be even"):
        dataclasses.replace(cfg, hidden_size=12 * 12)  # head size 12: 3 rotary dims
    with pytest.raises(ValueError, match=r"num_layers=0; valid: a positive integer"):
        dataclasses.replace(cfg, num_layers=0)
    with pytest.raises(ValueError, match=r"attn_pdrop=1.0; valid: a dropout rate"):
        dataclasses.replace(cfg, attn_pdrop=1.0)
    with pytest.raises(ValueError, match=r"act='swish'"):
        dataclasses.replace(cfg, act="swish")


def test_to_hf_round_trips():
    for name, (arch, hf) in PRESETS.items():
        cfg = parse_config(arch, hf)
        out = to_hf_config(cfg)
        assert parse_config(arch, out) == cfg, name
        # the keys both have agree with the Hub file's (to_hf writes what transformers reads)
        common = set(out) & set(hf)
        assert {k: out[k] for k in common} == {k: hf[k] for k in common}, name
    for cfg in (parse_config("gpt2", dict(PRESETS["gpt2"][1], n_inner=100, attn_pdrop=0.0)),
                parse_config("gpt_neox", dict(PRESETS["pythia-14m"][1], rotary_pct=1.0, use_parallel_residual=False,
                                             hidden_dropout=0.1, attention_bias=False))):
        assert parse_config(cfg.arch, to_hf_config(cfg)) == cfg


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_export_of_to_hf_config_loads_in_transformers(tmp_path, arch):
    """A ModelConfig exported through to_hf_config is the same model for transformers."""
    torch_model, hf = tiny_neox(rotary_pct=0.5) if arch == "gpt_neox" else tiny_gpt2(n_inner=96)
    torch_model.save_pretrained(tmp_path / "src")
    mcfg, params = models.load_pretrained(str(tmp_path / "src"))
    assert mcfg == parse_config(arch, hf)
    export_hf(mcfg.arch, to_hf_config(mcfg), params, tmp_path / "out")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = np.random.default_rng(0).integers(0, 257, (2, 24))
    with torch.no_grad():
        want = reloaded(torch.from_numpy(ids)).logits.numpy()
    got = jit_apply(build_model(mcfg))({"params": params}, jnp.asarray(ids))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)
    assert parse_config(*load_hf(str(tmp_path / "out"))[:2]) == mcfg


# ------------------------------------------------------------------------------------------------ model_config


def config_files():
    """The run configs (configs/pretrain/ holds pretraining configs, tests/test_pretrain.py)."""
    return sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
                  if os.sep + "pretrain" + os.sep not in p)


@pytest.mark.parametrize("path", config_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_model_config_equals_the_old_path_for_every_config_file(path):
    cfg = config_lib.load(path)
    if cfg.model.init == "pretrained":
        pytest.skip("pretrained: the shape comes from the checkpoint")
    for vocab in (None, 1000):
        new = model_config(cfg.model, vocab)
        if not ARCHITECTURES[cfg.model.arch].port:  # the vision ports never had the old path
            assert new == old_model_config(cfg.model, vocab)
        assert parse_config(new.arch, to_hf_config(new)) == new


@pytest.mark.parametrize("preset", ["pythia-70m", "gpt2"])
@pytest.mark.parametrize("shape", [{}, {"hidden_size": 192}, {"hidden_size": 192, "intermediate_size": 300},
                                   {"num_heads": 2, "num_layers": 1}, {"max_positions": 64},
                                   {"hidden_size": 96, "num_heads": 3, "intermediate_size": 64}])
@pytest.mark.parametrize("dropout", ["off", "from_hf"])
def test_model_config_equals_the_old_path(preset, shape, dropout):
    arch = PRESETS[preset][0]
    m = model_section(arch=arch, preset=preset, dropout=dropout, **shape)
    for vocab in (None, 321):
        assert model_config(m, vocab) == old_model_config(m, vocab)
    assert uses_dropout(model_config(m, None)) == (arch == "gpt2" and dropout == "from_hf")


# init_params of today's run path for the two shipped architectures, hashed before the refactor
# (runner.model_config(cfg, 1000) + init_params(arch, hf, PRNGKey(3), scheme) on CPU).
_INIT_HASHES = {("configs/default.py", "pythia"): ("c1f8e56f30a93c1b", 3671552),
                ("configs/cpu/fig20.py", "gpt2"): ("7de407eee016a202", 3677696)}


@pytest.mark.parametrize("path,scheme", sorted(_INIT_HASHES))
def test_init_params_bit_identical_to_the_old_path(path, scheme):
    cfg = config_lib.load(os.path.join(ROOT, path))
    assert cfg.model.init == scheme
    params = init_params(model_config(cfg.model, 1000), jax.random.PRNGKey(3), scheme=scheme)
    assert (params_hash(params), models.param_count(params)) == _INIT_HASHES[path, scheme]


def test_model_config_errors_name_the_key():
    cases = [
        (dict(arch="gpt_neox", preset="gpt2"), r"^model.preset='gpt2' is a gpt2 model but model.arch='gpt_neox'$"),
        (dict(arch="gpt_neox", preset="pythia-3b"), r"^model.preset='pythia-3b' is not a known preset; valid: \["),
        (dict(arch="llama", preset="pythia-70m"), r"^unknown architecture 'llama'"),
        (dict(arch="gpt_neox", preset="pythia-70m", hidden_size=100),
         r"^model.hidden_size=100 is not divisible by model.num_heads=8$"),
        (dict(arch="gpt_neox", preset="pythia-70m", hidden_size=96, num_heads=8),
         r"^model.hidden_size=96 with model.num_heads=8 gives a head size of 12, 3 rotary dims"),
        (dict(arch="gpt2", preset="gpt2", dropout="sometimes"), r"^model.dropout='sometimes' is not valid"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match) as err:
            model_config(model_section(**kw), None)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"^unsupported config value vocab_size=0"):
        model_config(model_section(arch="gpt2", preset="gpt2"), 0)


# ------------------------------------------------------------------------------------------------ restrict_vocab


@pytest.mark.parametrize("preset", ["pythia-14m", "gpt2"])
def test_restrict_vocab_is_the_old_restriction(preset):
    arch = PRESETS[preset][0]
    mcfg = model_config(model_section(arch=arch, preset=preset, hidden_size=32, num_heads=2, num_layers=1,
                                      intermediate_size=64, max_positions=32), 50)
    params = init_params(mcfg, jax.random.PRNGKey(0))
    before = jax.tree_util.tree_map(np.asarray, params)
    vocab_map_V = np.array([3, 0, 17, 42, 5])
    small, new = restrict_vocab(mcfg, params, vocab_map_V)
    assert small == dataclasses.replace(mcfg, vocab_size=5)
    assert tree_equal(new, old_restrict_vocab_params(arch, params, vocab_map_V))
    assert tree_equal(params, before)  # the caller's tree is untouched
    # the restricted model's logits are the full model's at the kept tokens
    ids = jnp.asarray([[1, 4, 2, 0]])
    full = jit_apply(build_model(mcfg))({"params": params}, jnp.asarray(vocab_map_V)[ids])
    got = jit_apply(build_model(small))({"params": new}, ids)
    np.testing.assert_allclose(np.asarray(got), np.asarray(full)[..., vocab_map_V], atol=1e-6, rtol=0)


@pytest.mark.parametrize("preset", ["pythia-14m", "gpt2"])
def test_pad_vocab_appends_zero_entries(preset):
    arch = PRESETS[preset][0]
    mcfg = model_config(model_section(arch=arch, preset=preset, hidden_size=32, num_heads=2, num_layers=1,
                                      intermediate_size=64, max_positions=32), 5)
    params = init_params(mcfg, jax.random.PRNGKey(0))
    before = jax.tree_util.tree_map(np.asarray, params)
    padded = models.pad_vocab(mcfg, params, 8)
    assert tree_equal(params, before)
    assert models.pad_vocab(mcfg, params, 5) is params
    big = init_params(dataclasses.replace(mcfg, vocab_size=8), jax.random.PRNGKey(0))
    assert jax.tree_util.tree_map(np.shape, padded) == jax.tree_util.tree_map(np.shape, big)
    _, back = restrict_vocab(dataclasses.replace(mcfg, vocab_size=8), padded, np.arange(5))
    assert tree_equal(back, params)
    for path, axis in ARCHITECTURES[arch].vocab_params:
        tail = np.take(np.asarray(traverse_util.flatten_dict(padded)[path]), np.arange(5, 8), axis=axis)
        assert not tail.any()
    with pytest.raises(ValueError, match="cannot pad a vocabulary of 5 down to 4"):
        models.pad_vocab(mcfg, params, 4)


def test_unembedding_is_the_output_matrix():
    for preset, path, shape in (("pythia-14m", ("embed_out", "kernel"), (32, 50)),
                                ("gpt2", ("wte", "embedding"), (50, 32))):
        arch = PRESETS[preset][0]
        mcfg = model_config(model_section(arch=arch, preset=preset, hidden_size=32, num_heads=2, num_layers=1,
                                          intermediate_size=64, max_positions=32), 50)
        params = init_params(mcfg, jax.random.PRNGKey(0))
        assert unembedding(mcfg, params) is params[path[0]][path[1]]
        assert unembedding(arch, params).shape == shape


# ------------------------------------------------------------------------------------------------ one home


def _arch_branch_pattern() -> re.Pattern:
    """`== "gpt2"`, `"gpt2" ==`, `"gpt2" if`, `in ("gpt2", ...)` and dict keys `{"gpt2": ...}`, for every name."""
    q = r"""["'](?:%s)["']""" % "|".join(re.escape(n) for n in ARCHITECTURES)
    return re.compile(rf"(?:==|!=)\s*{q}|{q}\s*(?:==|!=)|{q}\s+if\b|\bin\s*[(\[{{]\s*{q}|(?:^|[{{,])\s*{q}\s*:")


def _package_files() -> list[str]:
    homes = {os.path.join(ROOT, *a.module.__module__.split(".")) + ".py" for a in ARCHITECTURES.values()}
    files = sorted(glob.glob(os.path.join(ROOT, "recovery_jax", "**", "*.py"), recursive=True))
    return [p for p in files if p not in homes]


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_no_architecture_branches_outside_the_architecture_modules(path):
    """`arch == "gpt2"`-style branches and per-arch tables belong in the architecture's own module."""
    pattern = _arch_branch_pattern()
    with open(path) as f:
        hits = [f"{os.path.relpath(path, ROOT)}:{i}: {line.strip()}" for i, line in enumerate(f, 1)
                if pattern.search(line)]
    assert not hits, "\n".join(hits)
