"""Probes against brute force: the pairwise matrix by explicit reset-and-train, Grams by explicit vectors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recovery_jax import metrics
from recovery_jax.config import base_config
from recovery_jax.engine import Engine, EpisodeSpec
from recovery_jax.optim import make_optimizer
from recovery_jax.probes import Probes, _countsketch, _flat
from tests import tiny_lm
from tests.test_engine import docs, ref_loss

V, L, T, M = 17, 12, 5, 3


def sgd_engine(lr=0.3):
    c = base_config()
    c.optim.name, c.optim.lr = "sgd", lr
    apply_fn, params = tiny_lm.make(V, 8, L)

    def hidden_fn(p, ids):
        logits = apply_fn(p, ids, True, None)
        return logits, logits  # the tiny LM's "hidden state": its logits (enough to test the plumbing)
    return Engine(apply_fn, make_optimizer(c, 100), EpisodeSpec(M=M, C=L), hidden_fn), apply_fn, params


def test_pairwise_equals_brute_force_reset_and_train():
    eng, apply_fn, params = sgd_engine()
    tok, msk = docs(4)
    state = eng.init_state(params, jax.random.PRNGKey(0))
    # move away from init first: one epoch of cyclic training
    for d in range(T):
        state, _, _ = eng.episode(state, tok[d], msk[d], tok, msk)
    theta = jax.tree_util.tree_map(np.array, state["params"])
    probes = Probes([], engine=eng, arch="gpt_neox", params=state["params"], eval_tokens_TC=tok, eval_mask_TC=msk,
                    train_tokens_TB=tok, train_mask_TB=msk, doc=0, epoch=1, T=T, grad_layer=0, max_episodes=0,
                    sketch_dim=0, n_episodes=T)
    R = probes.pairwise(state)
    base = np.array([float(ref_loss(apply_fn, theta, tok[j], msk[j])) for j in range(T)])
    for i in range(T):
        p = theta
        tx = optax.sgd(0.3)
        s = tx.init(p)
        for _ in range(M):
            g = jax.grad(ref_loss, argnums=1)(apply_fn, p, tok[i], msk[i])
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
        after = np.array([float(ref_loss(apply_fn, p, tok[j], msk[j])) for j in range(T)])
        np.testing.assert_allclose(R[i], base - after, atol=2e-5)
    assert (np.diag(R) > 0).all()
    # deterministic
    np.testing.assert_array_equal(R, probes.pairwise(state))


def test_gram_probes_equal_explicit_vectors():
    eng, apply_fn, params = sgd_engine()
    tok, msk = docs(5)
    state = eng.init_state(params, jax.random.PRNGKey(0))
    probes = Probes(["weights", "activations"], engine=eng, arch="gpt_neox", params=state["params"],
                    eval_tokens_TC=tok, eval_mask_TC=msk, train_tokens_TB=tok, train_mask_TB=msk, doc=2, epoch=1,
                    T=T, grad_layer=0, max_episodes=0, sketch_dim=0, n_episodes=2 * T)
    vecs, acts = [np.asarray(_flat(state["params"]))], [np.asarray(apply_fn(state["params"], tok[2][None], True, None)).ravel()]
    for k in range(1, 2 * T + 1):
        d = (k - 1) % T
        state, _, _ = eng.episode(state, tok[d], msk[d], tok, msk)
        probes.after_episode(k, state)
        vecs.append(np.asarray(_flat(state["params"])))
        acts.append(np.asarray(apply_fn(state["params"], tok[2][None], True, None)).ravel())
    out = probes.finish()
    W = np.stack(vecs).astype(np.float64)
    A = np.stack(acts).astype(np.float64)
    np.testing.assert_allclose(out["weight_gram"], W @ W.T, rtol=1e-5)
    np.testing.assert_allclose(out["activations_gram"], A @ A.T, rtol=1e-5)
    # the metrics read update magnitudes straight off the Gram matrix
    np.testing.assert_allclose(metrics.update_magnitudes_from_gram(out["weight_gram"]),
                               np.linalg.norm(np.diff(W, axis=0), axis=1), rtol=1e-3)
    # Fig 22's magnitudes, kept directly: weights and the tracked document's activations
    np.testing.assert_allclose(out["weight_diff_norms"], np.linalg.norm(np.diff(W, axis=0), axis=1), rtol=1e-5)
    np.testing.assert_allclose(out["act_diff_norms"], np.linalg.norm(np.diff(A, axis=0), axis=1), rtol=1e-5)
    assert out["weight_diff_norms"].shape == out["act_diff_norms"].shape == (2 * T,)


def test_countsketch_preserves_inner_products():
    rng = np.random.default_rng(0)
    a = rng.normal(size=20000).astype(np.float32)
    b = (0.6 * a + 0.8 * rng.normal(size=20000)).astype(np.float32)
    sa = np.asarray(_countsketch({"x": jnp.asarray(a)}, 4096))
    sb = np.asarray(_countsketch({"x": jnp.asarray(b)}, 4096))
    cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    cos_s = sa @ sb / np.linalg.norm(sa) / np.linalg.norm(sb)
    assert abs(cos - cos_s) < 0.05
    # linear, so differences of sketches are sketches of differences
    sd = np.asarray(_countsketch({"x": jnp.asarray(a - b)}, 4096))
    np.testing.assert_allclose(sd, sa - sb, atol=1e-3)


def test_snapshot_restore_round_trip():
    eng, apply_fn, params = sgd_engine()
    tok, msk = docs(6)
    mk = lambda p: Probes(["weights"], engine=eng, arch="gpt_neox", params=p, eval_tokens_TC=tok, eval_mask_TC=msk,
                          train_tokens_TB=tok, train_mask_TB=msk, doc=0, epoch=1, T=T, grad_layer=0,
                          max_episodes=0, sketch_dim=0, n_episodes=T)
    state = eng.init_state(params, jax.random.PRNGKey(0))
    a = mk(state["params"])
    for k in range(1, 4):
        state, _, _ = eng.episode(state, tok[k - 1], msk[k - 1], tok, msk)
        a.after_episode(k, state)
    snap = a.snapshot()
    b = mk(state["params"])
    b.restore(snap, episodes_done=2)  # a snapshot one save ahead is cut back
    assert len(b._vecs["weights"]) == 3
