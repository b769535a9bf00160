import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from recovery_jax import engine as engine_lib
from recovery_jax.config import base_config
from recovery_jax.engine import Engine, EpisodeSpec, masked_doc_losses
from recovery_jax.optim import make_optimizer
from tests import tiny_lm

V, L, T = 17, 12, 5


def docs(seed=0, pad_from=None):
    rng = np.random.default_rng(seed)
    tok = rng.integers(1, V, size=(T, L)).astype(np.int32)
    msk = np.ones((T, L), bool)
    lengths = [L, L - 3, L, 6, L - 1]
    for t, n in enumerate(lengths):
        msk[t, n:] = False
        tok[t, n:] = 0
    return jnp.asarray(tok), jnp.asarray(msk)


def cfg_for(name, lr, **kw):
    c = base_config()
    c.optim.name = name
    c.optim.lr = lr
    for k, v in kw.items():
        setattr(c.optim, k, v)
    return c


def ref_loss(apply_fn, p, tok_L, msk_L):
    logits = apply_fn(p, tok_L[None], True, None)[0].astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:-1], -1)
    nll = -jnp.take_along_axis(logp, tok_L[1:, None], -1)[:, 0]
    w = msk_L[1:].astype(jnp.float32)
    return (nll * w).sum() / w.sum()


@pytest.mark.parametrize("name,lr,reset", [("sgd", 0.3, False), ("adam", 0.01, False), ("adam_reset", 0.01, True),
                                           ("momentum", 0.1, False)])
def test_scanned_episode_equals_python_loop(name, lr, reset):
    apply_fn, params = tiny_lm.make(V, 8, L)
    tok, msk = docs()
    M = 4
    eng = Engine(apply_fn, make_optimizer(cfg_for(name, lr), total_steps=100), EpisodeSpec(M=M, C=L))
    state = eng.init_state(params, jax.random.PRNGKey(0))
    # reference: plain optax optimizer, one python step at a time, two episodes (docs 1 then 3)
    ref_tx = {"sgd": optax.sgd(lr), "adam": optax.adam(lr), "adam_reset": optax.adam(lr),
              "momentum": optax.sgd(lr, momentum=0.9)}[name]
    p = params
    opt_state = ref_tx.init(p)
    for d in (1, 3):
        if reset:
            opt_state = ref_tx.init(p)
        ref_train = []
        for _ in range(M):
            loss, g = jax.value_and_grad(ref_loss, argnums=1)(apply_fn, p, tok[d], msk[d])
            ref_train.append(float(loss))
            upd, opt_state = ref_tx.update(g, opt_state, p)
            p = optax.apply_updates(p, upd)
        ref_eval = [float(ref_loss(apply_fn, p, tok[t], msk[t])) for t in range(T)]
        state, train_M, eval_T = eng.episode(state, tok[d], msk[d], tok, msk)
        np.testing.assert_allclose(np.asarray(train_M), ref_train, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(eval_T), ref_eval, atol=1e-5, rtol=0)
    for a, b in zip(jax.tree_util.tree_leaves(state["params"]), jax.tree_util.tree_leaves(p)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert int(state["step"]) == 2 * M


def test_losses_recorded_before_update():
    apply_fn, params = tiny_lm.make(V, 8, L)
    tok, msk = docs()
    eng = Engine(apply_fn, make_optimizer(cfg_for("sgd", 0.5), 10), EpisodeSpec(M=3, C=L))
    before = float(ref_loss(apply_fn, params, tok[0], msk[0]))
    state = eng.init_state(params, jax.random.PRNGKey(0))
    _, train_M, eval_T = eng.episode(state, tok[0], msk[0], tok, msk)
    assert abs(float(train_M[0]) - before) < 1e-6
    assert float(eval_T[0]) < float(train_M[0])  # trained on doc 0, so its loss fell


@pytest.mark.parametrize("batch", [0, 2, 3, 5, 8])
def test_batched_evaluation_equals_one_by_one(batch):
    apply_fn, params = tiny_lm.make(V, 8, L)
    tok, msk = docs(1)
    eng = Engine(apply_fn, make_optimizer(cfg_for("sgd", 0.1), 10), EpisodeSpec(M=1, C=L, eval_batch=batch))
    got = np.asarray(eng.evaluate(params, tok, msk))
    want = [float(ref_loss(apply_fn, params, tok[t], msk[t])) for t in range(T)]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_eval_chunks_are_even_and_cover_every_task():
    chunks = engine_lib.eval_chunks
    assert chunks(12, 10) == (2, 6)  # not 2 x 10 with 8 padded documents
    assert chunks(25, 2) == (13, 2)
    assert chunks(25, 5) == (5, 5)
    assert chunks(7, 3) == (3, 3)
    assert chunks(12, 0) == chunks(12, 12) == chunks(12, 40) == (1, 12)
    for T in range(1, 30):
        for b in range(1, T + 1):
            n, size = chunks(T, b)
            assert size <= b and n * size >= T > (n - 1) * size and n == -(-T // b)


def test_evaluation_forward_passes_only_even_chunks():
    """The model sees chunks of eval_chunks' size (T=5 at most 4 at a time: 2 x 3, not 2 x 4)."""
    apply_fn, params = tiny_lm.make(V, 8, L)
    seen = []

    def spy(p, ids_BL, deterministic, rngs):
        seen.append(ids_BL.shape[0])
        return apply_fn(p, ids_BL, deterministic, rngs)

    tok, msk = docs(1)
    eng = Engine(spy, make_optimizer(cfg_for("sgd", 0.1), 10), EpisodeSpec(M=1, C=L, eval_batch=T - 1))
    got = np.asarray(eng.evaluate(params, tok, msk))
    assert seen == [engine_lib.eval_chunks(T, T - 1)[1]] and seen[0] < T - 1
    np.testing.assert_allclose(got, [float(ref_loss(apply_fn, params, tok[t], msk[t])) for t in range(T)], atol=1e-6)


def test_auto_eval_batch_by_hand():
    auto = engine_lib.auto_eval_batch
    # CPU: ~640 tokens per chunk, never more than T, never less than 1
    assert auto(25, 128, backend="cpu", doc_bytes=1) == 5
    assert auto(25, 512, backend="cpu", doc_bytes=1) == 1
    assert auto(25, 2048, backend="cpu", doc_bytes=1) == 1
    assert auto(3, 32, backend="cpu", doc_bytes=1) == 3
    # accelerator: a quarter of the free memory / bytes per document, clipped to [1, T]
    assert auto(100, 256, backend="gpu", doc_bytes=10, free_bytes=400) == 10
    assert auto(100, 256, backend="gpu", doc_bytes=10, free_bytes=10**9) == 100
    assert auto(100, 256, backend="gpu", doc_bytes=10**9, free_bytes=10**9) == 1
    assert auto(7, 256, backend="gpu", doc_bytes=10, free_bytes=None) == 7
    # bytes per document: 4 * C * (2V + 2ff + 8d + 2H * query-block rows)
    assert engine_lib.eval_doc_bytes(C=4, d=2, ff=3, V=5, H=1) == 4 * 4 * (10 + 6 + 16 + 2 * 4)
    assert engine_lib.eval_doc_bytes(C=4, d=2, ff=3, V=5, H=1, attn_block=2) == 4 * 4 * (10 + 6 + 16 + 2 * 2)


@pytest.mark.parametrize("value,want", [(0, 25), (7, 7), (40, 25), (-1, 5)])
def test_resolve_eval_batch(value, want):
    from recovery_jax import runner

    cfg = base_config()
    cfg.T, cfg.C, cfg.eval.batch = 25, 128, value
    hf = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 32, "rotary_pct": 0.25, "max_position_embeddings": 128}
    assert jax.default_backend() == "cpu"  # the test suite runs on CPU
    from recovery_jax import models
    assert runner.resolve_eval_batch(cfg, models.parse_config("gpt_neox", hf)) == want


def test_padding_never_enters_the_loss():
    apply_fn, params = tiny_lm.make(V, 8, L)
    tok, msk = docs(2)
    t = 3  # 6 real tokens, 6 padding
    garbage = jnp.where(msk[t], tok[t], 7)
    loss_fn = lambda p, x: masked_doc_losses(apply_fn(p, x[None], True, None), x[None], msk[t][None])[0]
    l1, g1 = jax.value_and_grad(loss_fn)(params, tok[t])
    l2, g2 = jax.value_and_grad(loss_fn)(params, garbage)
    assert abs(float(l1) - float(l2)) < 1e-6
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    # and equals the loss of the unpadded 6-token document
    short = float(ref_loss(apply_fn, params, tok[t][:6], msk[t][:6]))
    assert abs(float(l1) - short) < 1e-6


def test_masked_doc_losses_matches_hand_computation():
    logits = jnp.log(jnp.asarray([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]]))
    targets = jnp.asarray([[0, 1, 1, 0]])
    weights = jnp.asarray([[1, 1, 1, 0]])
    # targets 1..3 = [1, 1, 0] with weights [1, 1, 0]: mean of -log 0.5, -log 0.1
    want = (-np.log(0.5) - np.log(0.1)) / 2
    assert abs(float(masked_doc_losses(logits, targets, weights)[0]) - want) < 1e-6


@pytest.mark.parametrize("chunk", [4, 5, 64])  # divides N, leaves a padded last chunk, larger than N
def test_chunked_lm_loss_equals_full_logits(chunk):
    """engine.chunked_lm_loss (gradients formed chunk by chunk in the forward pass) against jax.grad of the plain
    weighted mean of token_nll on the full logits: value and both gradients, under an outer scale (the
    custom VJP must multiply by the incoming cotangent), with zero weights on some rows."""
    r = np.random.default_rng(0)
    N, D, Vs = 12, 6, 9
    h = jnp.asarray(r.normal(size=(N, D)), jnp.float32)
    W = jnp.asarray(r.normal(size=(Vs, D)), jnp.float32)
    t = jnp.asarray(r.integers(0, Vs, N), jnp.int32)
    w = jnp.asarray([1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0], jnp.float32)

    def plain(h, W):
        return 3.0 * (engine_lib.token_nll(h @ W.T, t) * w).sum() / w.sum()

    def chunked(h, W):
        return 3.0 * engine_lib.chunked_lm_loss(h, W, t, w, chunk=chunk)

    (v1, g1), (v2, g2) = (jax.value_and_grad(f, argnums=(0, 1))(h, W) for f in (plain, chunked))
    np.testing.assert_allclose(float(v2), float(v1), rtol=1e-6)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
    assert float(jnp.abs(g2[0][2]).max()) == 0.0  # a row of weight 0 gets no gradient


def test_every_step_eval_and_last_row():
    apply_fn, params = tiny_lm.make(V, 8, L)
    tok, msk = docs()
    eng = Engine(apply_fn, make_optimizer(cfg_for("sgd", 0.3), 10), EpisodeSpec(M=3, C=L, every_step_eval=True))
    state = eng.init_state(params, jax.random.PRNGKey(0))
    state, train_M, eval_T, step_MT = eng.episode(state, tok[2], msk[2], tok, msk)
    assert step_MT.shape == (3, T)
    np.testing.assert_allclose(np.asarray(step_MT[-1]), np.asarray(eval_T), atol=1e-6)
    # step j's loss on the trained doc is the training loss recorded before step j+1
    np.testing.assert_allclose(np.asarray(step_MT[:-1, 2]), np.asarray(train_M[1:]), atol=1e-5)


def test_token_masking_changes_inputs_not_labels():
    apply_fn, params = tiny_lm.make(V, 8, L)
    tok, msk = docs()
    spec = EpisodeSpec(M=1, C=L, mask_prob=0.5, mask_id=0)
    eng = Engine(apply_fn, make_optimizer(cfg_for("sgd", 0.1), 10), spec)
    inputs, targets, weights = eng._view(tok[0], msk[0], jax.random.PRNGKey(3))
    assert (np.asarray(targets) == np.asarray(tok[0])).all()
    frac = float((np.asarray(inputs) != np.asarray(tok[0])).mean())
    assert 0.2 < frac < 0.8
    big = jnp.arange(1, 20001) % (V - 1) + 1
    masked = engine_lib.schedule.mask_tokens(big, jax.random.PRNGKey(0), 0.3, 0)
    assert abs(float((masked == 0).mean()) - 0.3) < 0.02


def test_random_window_offsets_stay_in_range():
    apply_fn, params = tiny_lm.make(V, 8, L)
    B, C, W, start = 40, 10, 5, 12
    tok = jnp.arange(B, dtype=jnp.int32) % (V - 1) + 1
    msk = jnp.ones((B,), bool)
    eng = Engine(apply_fn, make_optimizer(cfg_for("sgd", 0.1), 10), EpisodeSpec(M=1, C=C, window=W, window_start=start))
    firsts = set()
    for i in range(200):
        _, t, _ = eng._view(tok, msk, jax.random.PRNGKey(i))
        assert t.shape == (C,)
        firsts.add(int(np.flatnonzero(np.asarray(tok) == int(t[0]))[0]) if V - 1 > B else int(t[0]))
    offs = {int(engine_lib.schedule.window_offset(jax.random.PRNGKey(i), start, W)) for i in range(400)}
    assert offs == set(range(start - W, start + W + 1))


def test_frozen_parameters_do_not_move():
    apply_fn, params = tiny_lm.make(V, 8, L)
    tok, msk = docs()
    trainable = jax.tree_util.tree_map_with_path(lambda path, _: "Embed" not in jax.tree_util.keystr(path), params)
    eng = Engine(apply_fn, make_optimizer(cfg_for("adam", 0.05), 10, trainable), EpisodeSpec(M=2, C=L))
    original = jax.tree_util.tree_map(np.array, params)  # the episode donates (deletes) its input buffers
    state = eng.init_state(params, jax.random.PRNGKey(0))
    state, _, _ = eng.episode(state, tok[0], msk[0], tok, msk)
    new, params = state["params"], original
    np.testing.assert_array_equal(np.asarray(new["Embed_0"]["embedding"]), np.asarray(params["Embed_0"]["embedding"]))
    assert not np.allclose(np.asarray(new["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["kernel"]))
