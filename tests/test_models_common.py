"""Shared helpers for the models tests (tiny HF torch models built in-process) plus config/preset tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recovery_jax.models import PRESETS, build_model, convert_state_dict, parse_config, preset_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def highest_precision():
    """fp32 matmuls at full precision for parity checks, scoped to each test (no global side effect)."""
    with jax.default_matmul_precision("highest"):
        yield


def tiny_neox(seed: int = 0, **kw):
    """Random tiny GPTNeoXForCausalLM (torch, CPU, eval mode) and its HF config dict."""
    cfg = dict(vocab_size=257, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
               rotary_pct=0.25, max_position_embeddings=512, use_parallel_residual=True)
    cfg.update(kw)
    torch.manual_seed(seed)
    model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**cfg)).eval()
    return model, model.config.to_dict()


def tiny_gpt2(seed: int = 0, **kw):
    cfg = dict(vocab_size=257, n_embd=64, n_layer=2, n_head=4, n_positions=512, bos_token_id=0, eos_token_id=0)
    cfg.update(kw)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()
    return model, model.config.to_dict()


def jit_apply(module):
    """Jitted module.apply (eager flax dispatch is slow on CPU); flags stay static."""
    return jax.jit(module.apply, static_argnames=("deterministic", "return_hidden"))


def jax_params(arch: str, model, hf: dict) -> dict:
    return convert_state_dict(arch, hf, model.state_dict())


def masked_next_token_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """HF causal-LM loss: logits[:, t] predict labels[:, t+1]; mean over targets != -100."""
    logits, targets = logits[:, :-1].astype(jnp.float32), labels[:, 1:]
    mask = targets != -100
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.where(mask, targets, 0)[..., None], axis=-1)[..., 0]
    return jnp.sum(nll * mask) / jnp.sum(mask)


def padded_batch(vocab: int, lengths=(48, 33), seq: int = 48, seed: int = 0):
    """Right-padded ids (pad id 0) and labels with -100 on padding, as the data pipeline produces."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), seq), np.int64)
    labels = np.full((len(lengths), seq), -100, np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, vocab, n)
        labels[i, :n] = ids[i, :n]
    return ids, labels


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def check_training_parity(arch: str, model, hf: dict, remat: bool = False) -> None:
    """Loss, every gradient, and the loss after one SGD / one Adam step agree with torch (attention in query
    blocks of 16, so the block-skipping path with a ragged diagonal is what is checked against torch)."""
    ids, labels = padded_batch(hf["vocab_size"])
    module = build_model(parse_config(arch, hf), remat=remat, attn_block=16)
    grad_fn = jax.jit(jax.value_and_grad(
        lambda p: masked_next_token_ce(module.apply({"params": p}, jnp.asarray(ids)), jnp.asarray(labels))))

    params0 = jax_params(arch, model, hf)
    t_ids, t_labels = torch.from_numpy(ids), torch.from_numpy(labels)
    state0 = {k: v.clone() for k, v in model.state_dict().items()}

    model.zero_grad()
    t_loss = model(t_ids, labels=t_labels).loss
    t_loss.backward()
    loss, grads = grad_fn(params0)
    assert abs(float(loss) - t_loss.item()) <= 1e-5
    t_grads = convert_state_dict(arch, hf, {k: p.grad for k, p in model.named_parameters()})
    errs = jax.tree_util.tree_map(rel_err, grads, t_grads)
    assert max(jax.tree_util.tree_leaves(errs)) <= 1e-4, errs

    for t_opt, opt in ((lambda ps: torch.optim.SGD(ps, lr=0.5), optax.sgd(0.5)),
                       (lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-8), optax.adam(1e-2, eps=1e-8))):
        model.load_state_dict(state0)
        o = t_opt(model.parameters())
        o.zero_grad()
        model(t_ids, labels=t_labels).loss.backward()
        o.step()
        with torch.no_grad():
            t_next = model(t_ids, labels=t_labels).loss.item()
        updates, _ = opt.update(grads, opt.init(params0), params0)
        j_next = float(grad_fn(optax.apply_updates(params0, updates))[0])
        assert abs(t_next - t_loss.item()) > 1e-3  # the step did something
        assert abs(j_next - t_next) <= 1e-5, (type(o).__name__, j_next, t_next)
    model.load_state_dict(state0)


# --------------------------------------------------------------------------------------------------- tests


def test_presets_are_exact_hf_configs():
    arch, hf = PRESETS["pythia-1b"]
    assert arch == "gpt_neox"
    assert (hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"], hf["intermediate_size"]) == (
        2048, 16, 8, 8192)
    assert hf["vocab_size"] == 50304 and hf["rotary_pct"] == 0.25 and hf["use_parallel_residual"] is True
    assert parse_config(*PRESETS["pythia-1b"]).rotary_ndims == 64
    assert parse_config(*PRESETS["pythia-2.8b"]).rotary_ndims == 20
    assert parse_config(*PRESETS["pythia-160m"]).rotary_ndims == 16
    assert PRESETS["pythia-14m"][1]["hidden_size"] == 128 and PRESETS["pythia-31m"][1]["hidden_size"] == 256
    assert PRESETS["pythia-6.9b"][1]["vocab_size"] == 50432 and PRESETS["pythia-12b"][1]["vocab_size"] == 50688
    assert PRESETS["gpt2-xl"][1]["n_head"] == 25


def test_param_counts_match_transformers():
    """Every preset's parameter count equals the transformers model built on the meta device (no allocation)."""
    from recovery_jax.models import param_count, param_shapes

    from recovery_jax.models import ARCHITECTURES

    for name, (arch, hf) in PRESETS.items():
        if ARCHITECTURES[arch].port:  # the vision ports' counts are checked against their torch models elsewhere
            continue
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**hf))
        ref = sum(p.numel() for p in model.parameters())
        assert param_count(param_shapes(parse_config(arch, hf))) == ref, name
    assert param_count(param_shapes(parse_config(*PRESETS["pythia-70m"]))) == 70_426_624


def test_preset_config_overrides_and_errors():
    arch, hf = preset_config("pythia-1b", hidden_size=512, num_hidden_layers=4, num_attention_heads=4)
    assert hf["intermediate_size"] == 8192  # not overridden, as in the paper's scripts
    assert PRESETS["pythia-1b"][1]["hidden_size"] == 2048  # preset untouched
    with pytest.raises(ValueError, match=r"unknown preset 'pythia-3b'.*pythia-1b"):
        preset_config("pythia-3b")
    with pytest.raises(ValueError, match=r"unknown override key\(s\) \['hidden'\]"):
        preset_config("pythia-70m", hidden=3)
    with pytest.raises(ValueError, match="not divisible"):
        preset_config("pythia-70m", num_attention_heads=7)


@pytest.mark.parametrize(
    "arch,override,match",
    [
        ("gpt_neox", {"hidden_act": "swish"}, r"hidden_act='swish'.*gelu"),
        ("gpt_neox", {"tie_word_embeddings": True}, r"tie_word_embeddings=True"),
        ("gpt_neox", {"rope_scaling": {"type": "linear", "factor": 2.0}}, r"rope_scaling"),
        ("gpt_neox", {"rope_parameters": {"rope_type": "yarn"}}, r"rope_type='yarn'"),
        ("gpt_neox", {"rotary_pct": 0.25, "partial_rotary_factor": 0.5}, r"conflicting"),
        ("gpt2", {"activation_function": "swish"}, r"activation_function='swish'"),
        ("gpt2", {"add_cross_attention": True}, r"add_cross_attention"),
    ],
)
def test_unsupported_config_values(arch, override, match):
    base = "pythia-70m" if arch == "gpt_neox" else "gpt2"
    hf = dict(PRESETS[base][1], **override)
    with pytest.raises(ValueError, match=match):
        build_model(parse_config(arch, hf))


def test_config_spellings():
    """rotary_pct / partial_rotary_factor / rope_parameters (transformers 5) all give the same model config."""
    _, hf = PRESETS["pythia-160m"]
    legacy = parse_config("gpt_neox", hf)
    hf5 = {k: v for k, v in hf.items() if k not in ("rotary_pct", "rotary_emb_base")}
    hf5["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}
    assert parse_config("gpt_neox", hf5) == legacy
    with pytest.raises(ValueError, match="unknown architecture 'llama'"):
        parse_config("llama", hf)
    with pytest.raises(ValueError, match="compute dtype"):
        build_model(legacy, dtype=jnp.float16)


@pytest.mark.parametrize("vocab", [3, 7, 50, 257, 50304])
def test_param_shapes_of_any_vocabulary_equal_a_trace_of_that_model(vocab):
    """param_shapes traces a model once apart from its vocabulary and sizes the vocabulary params itself:
    the tree must be exactly what tracing the model of that vocabulary gives, for every language architecture."""
    import dataclasses

    from recovery_jax.models import ARCHITECTURES, param_shapes
    from recovery_jax.models.factory import _traced_param_shapes

    for arch, spec in ARCHITECTURES.items():
        if spec.port:
            continue
        name = next(n for n, (a, _) in PRESETS.items() if a == arch)
        small = dict(PRESETS[name][1])
        for k in ("n_embd", "hidden_size"):
            if k in small:
                small[k] = 64
        for k in ("n_layer", "num_hidden_layers"):
            if k in small:
                small[k] = 2
        for k in ("n_head", "num_attention_heads"):
            if k in small:
                small[k] = 4
        if "intermediate_size" in small:
            small["intermediate_size"] = 256
        mcfg = dataclasses.replace(parse_config(arch, small), vocab_size=vocab)
        got, want = param_shapes(mcfg), _traced_param_shapes.__wrapped__(mcfg)
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want), arch
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            assert (g.shape, g.dtype) == (w.shape, w.dtype), arch
