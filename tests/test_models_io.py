"""Checkpoint I/O (load_hf / export_hf), init schemes, trainable masks and error messages."""

from __future__ import annotations

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors.numpy import load_file, save_file

from recovery_jax import cli
from recovery_jax.models import (
    block_param_path, build_model, export_hf, get_by_path, init_params, load_hf, load_pretrained, param_count,
    parse_config, preset_config, trainable_mask,
)
from recovery_jax.models.hub import local_revisions

from .test_models_common import (  # noqa: F401  (highest_precision is an autouse fixture)
    highest_precision, jax_params, jit_apply, tiny_gpt2, tiny_neox, torch, transformers,
)

IDS = np.random.default_rng(0).integers(0, 257, (2, 40))


def torch_logits(model, ids=IDS) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


def our_logits(arch, hf, params, ids=IDS) -> np.ndarray:
    return np.asarray(jit_apply(build_model(parse_config(arch, hf)))({"params": params}, jnp.asarray(ids)))


@pytest.fixture(scope="module")
def neox_dir(tmp_path_factory):
    model, _ = tiny_neox()
    d = tmp_path_factory.mktemp("neox")
    model.save_pretrained(d)
    return d, model


def copy_dir(src, dst):
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_export_then_transformers_from_pretrained(tmp_path, arch):
    model, hf = tiny_neox() if arch == "gpt_neox" else tiny_gpt2()
    model.save_pretrained(tmp_path / "src")
    arch_, hf_, params = load_hf(str(tmp_path / "src"))
    params = jax.tree_util.tree_map(lambda p: p * 1.5, params)  # make sure the exported values are ours
    export_hf(arch_, hf_, params, tmp_path / "out")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(reloaded) is type(model)
    np.testing.assert_allclose(torch_logits(reloaded), our_logits(arch_, hf_, params), atol=1e-5, rtol=0)
    _, _, params2 = load_hf(str(tmp_path / "out"))  # and back: bit-identical
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), params, params2))


def test_vocab_truncation(neox_dir):
    d, model = neox_dir
    arch, hf, params = load_hf(str(d), vocab_size=200)
    assert hf["vocab_size"] == 200
    assert params["embed_in"]["embedding"].shape == (200, 64)
    assert params["embed_out"]["kernel"].shape == (64, 200)
    ids = IDS % 200
    np.testing.assert_allclose(our_logits(arch, hf, params, ids), torch_logits(model, ids)[..., :200], atol=1e-5)
    with pytest.raises(ValueError, match=r"vocab_size=300 must be in \[1, 257\]"):
        load_hf(str(d), vocab_size=300)


def test_sharded_bf16_and_pytorch_bin(tmp_path, neox_dir):
    d, model = neox_dir
    ref = load_hf(str(d))[2]
    state = load_file(str(d / "model.safetensors"))
    # sharded safetensors with an index
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(d / "config.json", sharded)
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, ks in shards.items():
        save_file({k: state[k] for k in ks}, str(sharded / name), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), ref, load_hf(str(sharded))[2])
    assert jax.tree_util.tree_all(same)
    # bf16 safetensors (numpy has no bf16: read through ml_dtypes) and pytorch_model.bin; transformers 5
    # state dicts name the head lm_head.weight (the Hub files say embed_out.weight): both are accepted
    bf16 = tmp_path / "bf16"
    bf16.mkdir()
    shutil.copy(d / "config.json", bf16)
    t_state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    import safetensors.torch

    safetensors.torch.save_file(t_state, str(bf16 / "model.safetensors"), metadata={"format": "pt"})
    _, _, p_bf16 = load_hf(str(bf16), dtype=jnp.bfloat16)
    assert p_bf16["embed_in"]["embedding"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(p_bf16["embed_out"]["kernel"], np.float32),
                                  t_state["lm_head.weight"].float().numpy().T)
    binary = tmp_path / "bin"
    binary.mkdir()
    shutil.copy(d / "config.json", binary)
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), ref, load_hf(str(binary))[2])
    assert jax.tree_util.tree_all(same)


# ------------------------------------------------------------------------------------------------ errors


def test_missing_files(tmp_path, neox_dir):
    d, _ = neox_dir
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf(str(tmp_path / "nope"))
    no_cfg = copy_dir(d, tmp_path / "no_cfg")
    (no_cfg / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing config\.json"):
        load_hf(str(no_cfg))
    no_weights = copy_dir(d, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no weight file in .*model\.safetensors"):
        load_hf(str(no_weights))


def _rewrite(d, fn):
    state = load_file(str(d / "model.safetensors"))
    fn(state)
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})


def test_bad_tensors(tmp_path, neox_dir):
    d, _ = neox_dir
    missing = copy_dir(d, tmp_path / "missing")
    _rewrite(missing, lambda s: s.pop("gpt_neox.layers.1.mlp.dense_4h_to_h.bias"))
    with pytest.raises(ValueError, match=r"missing tensor 'gpt_neox\.layers\.1\.mlp\.dense_4h_to_h\.bias'"):
        load_hf(str(missing))
    shape = copy_dir(d, tmp_path / "shape")
    _rewrite(shape, lambda s: s.update({"gpt_neox.layers.0.attention.dense.weight": np.zeros((64, 32), np.float32)}))
    with pytest.raises(ValueError, match=r"'gpt_neox\.layers\.0\.attention\.dense\.weight' has shape \[64, 32\], "
                                         r"expected \[64, 64\]"):
        load_hf(str(shape))
    extra = copy_dir(d, tmp_path / "extra")
    _rewrite(extra, lambda s: s.update({"gpt_neox.layers.0.attention.bias": np.ones((1, 1, 8, 8), np.float32),
                                        "gpt_neox.layers.0.attention.rotary_emb.inv_freq": np.ones(2, np.float32),
                                        "gpt_neox.layers.0.adapter.weight": np.ones(3, np.float32)}))
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\) for gpt_neox: \['gpt_neox\.layers\.0\.adapter"):
        load_hf(str(extra))


def test_unknown_architecture_and_unsupported_config(tmp_path, neox_dir):
    d, _ = neox_dir
    llama = copy_dir(d, tmp_path / "llama")
    cfg = json.loads((llama / "config.json").read_text())
    (llama / "config.json").write_text(json.dumps(dict(cfg, model_type="llama", architectures=["LlamaForCausalLM"])))
    with pytest.raises(ValueError, match=r"unknown or ambiguous architecture: model_type='llama'"):
        load_hf(str(llama))
    act = copy_dir(d, tmp_path / "act")
    (act / "config.json").write_text(json.dumps(dict(cfg, hidden_act="silu")))
    with pytest.raises(ValueError, match=r"hidden_act='silu'; valid: \['gelu'"):
        load_hf(str(act))


def test_truncated_and_corrupt_safetensors(tmp_path, neox_dir):
    d, _ = neox_dir
    data = (d / "model.safetensors").read_bytes()
    for name, blob, match in [("cut_data", data[:-1000], "truncated or corrupt"),
                              ("cut_header", data[:100], "corrupt or truncated"),
                              ("tiny", data[:5], "no header"),
                              ("garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"\xff" * 40, "unreadable header")]:
        bad = copy_dir(d, tmp_path / name)
        (bad / "model.safetensors").write_bytes(blob)
        with pytest.raises(ValueError, match=match) as err:
            load_hf(str(bad))
        assert "model.safetensors" in str(err.value)


def test_hub_id_offline_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"'EleutherAI/pythia-14m'.*revision='step0'"):
        load_hf("EleutherAI/pythia-14m", revision="step0")


def test_local_directory_at_a_revision(tmp_path):
    """A local folder of revisions (the offline pretraining writes W/step0/, ..., W/final/, each an HF directory) is
    read at a revision as a Hub repository is; an unknown revision is one error line listing the available ones."""
    model, hf = tiny_neox(seed=1)
    model.save_pretrained(tmp_path / "step5")
    (tmp_path / "logs").mkdir()  # a subdirectory without config.json is no revision
    mcfg, params = load_pretrained(str(tmp_path), revision="step5")
    assert mcfg == parse_config("gpt_neox", hf)
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), params, jax_params("gpt_neox", model, hf))
    assert jax.tree_util.tree_all(same)
    for bad in ("step6", "logs", "..", "step5/../step5"):
        with pytest.raises(ValueError, match=r"revision .* is not in the local directory .*available revisions: step5$"):
            load_pretrained(str(tmp_path), revision=bad)
    try:
        load_hf(str(tmp_path), revision="step6")
    except ValueError as e:
        line = cli.user_error_line(e)
    assert line == (f"revision 'step6' is not in the local directory {tmp_path}: it has no subdirectory 'step6' "
                    f"with a config.json; available revisions: step5")
    with pytest.raises(ValueError, match=r"available revisions: none \(no subdirectory with a config\.json\)"):
        load_hf(str(tmp_path / "step5"), revision="main")
    assert load_hf(str(tmp_path / "step5"))[0] == "gpt_neox"  # no revision: the folder itself


def test_local_revisions_in_natural_order(tmp_path):
    for name in ("step100", "final", "step20", "step0", "notes"):
        (tmp_path / name).mkdir()
        if name != "notes":
            (tmp_path / name / "config.json").write_text("{}")
    assert local_revisions(tmp_path) == ["final", "step0", "step20", "step100"]


# ------------------------------------------------------------------------------------------------ init / masks


def test_init_schemes_match_formulas():
    arch, hf = preset_config("pythia-14m", vocab_size=512, hidden_size=256, num_hidden_layers=3,
                             num_attention_heads=4, intermediate_size=512)
    d, n = 256, 3
    key = jax.random.PRNGKey(0)
    small, wang = math.sqrt(2 / (5 * d)), 2 / (n * math.sqrt(d))
    expect = {
        "pythia": (small, wang),
        "pythia_1b_hardcoded": (math.sqrt(2 / (5 * 2048)), 2 / (16 * math.sqrt(2048))),
        "normal": (0.02, 0.02),
        "gpt2": (0.02, 0.02 / math.sqrt(2 * n)),
    }
    for scheme, (s_in, s_out) in expect.items():
        p = init_params(parse_config(arch, hf), key, scheme=scheme)
        layer = p["layers_1"]
        checks = [(p["embed_in"]["embedding"], s_in), (p["embed_out"]["kernel"], s_in),
                  (layer["attention"]["query_key_value"]["kernel"], s_in),
                  (layer["mlp"]["dense_h_to_4h"]["kernel"], s_in),
                  (layer["attention"]["dense"]["kernel"], s_out), (layer["mlp"]["dense_4h_to_h"]["kernel"], s_out)]
        for w, std in checks:
            assert w.dtype == jnp.float32
            assert abs(float(jnp.std(w)) / std - 1) < 0.03, (scheme, w.shape)
            assert abs(float(jnp.mean(w))) < 0.05 * std
        assert float(jnp.max(jnp.abs(layer["attention"]["dense"]["bias"]))) == 0.0
        assert bool(jnp.all(layer["input_layernorm"]["scale"] == 1)) and bool(jnp.all(p["final_layer_norm"]["bias"] == 0))
    a, b = init_params(parse_config(arch, hf), key), init_params(parse_config(arch, hf), key)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    c = init_params(parse_config(arch, hf), jax.random.PRNGKey(1))
    assert not np.array_equal(a["embed_in"]["embedding"], c["embed_in"]["embedding"])
    with pytest.raises(ValueError, match=r"unknown init scheme 'xavier'; valid: \['pythia'"):
        init_params(parse_config(arch, hf), key, scheme="xavier")
    # GPT-2 default init: c_proj scaled by 1/sqrt(2 n_layer), tied wte
    arch2, hf2 = preset_config("gpt2", vocab_size=512, n_embd=256, n_layer=3, n_head=4)
    p2 = init_params(parse_config(arch2, hf2), key, scheme="gpt2")
    assert abs(float(jnp.std(p2["h_0"]["mlp"]["c_proj"]["kernel"])) / (0.02 / math.sqrt(6)) - 1) < 0.03
    assert abs(float(jnp.std(p2["wte"]["embedding"])) / 0.02 - 1) < 0.03


def test_trainable_mask_and_block_paths():
    arch, hf = preset_config("pythia-14m", vocab_size=64, hidden_size=32, num_hidden_layers=3,
                             num_attention_heads=2, intermediate_size=64)
    params = init_params(parse_config(arch, hf), jax.random.PRNGKey(0))
    per_block = param_count(params["layers_0"])
    emb = param_count(params["embed_in"])
    total = param_count(params)

    def frozen(mask):
        return sum(param_count(p) for p, m in zip(jax.tree_util.tree_leaves(params),
                                                     jax.tree_util.tree_leaves(mask)) if not m)

    assert frozen(trainable_mask(arch, params)) == 0
    assert frozen(trainable_mask(arch, params, freeze_first=2)) == emb + 2 * per_block
    assert frozen(trainable_mask(arch, params, freeze_last=1)) == per_block
    assert frozen(trainable_mask(arch, params, freeze_first=3)) == total - param_count(
        [params["final_layer_norm"], params["embed_out"]])
    with pytest.raises(ValueError, match="freeze_first=4 is out of range: the model has 3 blocks"):
        trainable_mask(arch, params, freeze_first=4)
    with pytest.raises(ValueError, match="at most one"):
        trainable_mask(arch, params, freeze_first=1, freeze_last=1)
    # the mask plugs into optax: frozen leaves do not move
    mask = trainable_mask(arch, params, freeze_first=1)
    opt = optax.multi_transform({True: optax.sgd(1.0), False: optax.set_to_zero()}, mask)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    new = optax.apply_updates(params, opt.update(grads, opt.init(params), params)[0])
    assert jnp.array_equal(new["layers_0"]["mlp"]["dense_h_to_4h"]["kernel"],
                           params["layers_0"]["mlp"]["dense_h_to_4h"]["kernel"])
    assert not jnp.array_equal(new["layers_1"]["mlp"]["dense_h_to_4h"]["kernel"],
                               params["layers_1"]["mlp"]["dense_h_to_4h"]["kernel"])
    # block paths
    assert block_param_path(arch, 2, "attn") == ("layers_2", "attention")
    assert get_by_path(params, block_param_path(arch, 1, "mlp_out"))["kernel"].shape == (64, 32)
    assert block_param_path("gpt2", 0, "attn_out") == ("h_0", "attn", "c_proj")
    with pytest.raises(ValueError, match="unknown block part 'ffn'"):
        block_param_path(arch, 0, "ffn")
    with pytest.raises(KeyError, match="layers_9"):
        get_by_path(params, block_param_path(arch, 9))
