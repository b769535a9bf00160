"""Hand-computed checks of recovery_jax.metrics (docs/PROTOCOL.md §2)."""

import math

import numpy as np
import pytest

from recovery_jax import metrics as m

# ---------------------------------------------------------------------------------------------------------
# A hand-built loss tensor, T = 3 documents, E = 3 epochs (K = 9 episodes), cyclic order.
# Document t is trained in episodes t+1, t+4, t+7.
#   cycle n=1: a_t = t+1, b_t = t+3   (doc0 [1,3], doc1 [2,4], doc2 [3,5])
#   cycle n=2: a_t = t+4, b_t = t+6   (doc0 [4,6], doc1 [5,7], doc2 [6,8])
# ---------------------------------------------------------------------------------------------------------
DOC0 = [5.0, 1.0, 3.0, 2.0, 1.0, 2.0, 1.2, 0.5, 0.8, 0.9]
DOC1 = [4.0, 4.5, 1.0, 4.0, 3.0, 0.5, 1.5, 1.0, 0.6, 0.7]
DOC2 = [6.0, 6.0, 6.5, 2.0, 5.0, 4.0, 1.0, 2.0, 1.5, 0.4]
L33 = np.array([DOC0, DOC1, DOC2]).T  # (10, 3)

# cycle 1: doc0 after 1, max 3, before 2 | doc1 after 1, max 4, before 3 | doc2 after 2, max 5, before 4
#   l_after = 4/3, l_max = 12/3 = 4, l_before = 9/3 = 3  →  RS(1) = (4 − 3)/(4 − 4/3) = 3/8 = 0.375
#   (the mean of per-document ratios would be (1/2 + 1/3 + 1/3)/3 = 0.3889: the ratio of means differs)
# cycle 2: doc0 after 1, max 2, before 1.2 | doc1 after 0.5, max 1.5, before 1.0 | doc2 after 1, max 2, before 1.5
#   l_after = 2.5/3, l_max = 5.5/3, l_before = 3.7/3  →  RS(2) = (5.5 − 3.7)/(5.5 − 2.5) = 0.6


def test_rs_hand_computed_cyclic():
    comp = m.recovery_score_components(L33)
    np.testing.assert_allclose(comp["l_after"], [4 / 3, 2.5 / 3])
    np.testing.assert_allclose(comp["l_max"], [4.0, 5.5 / 3])
    np.testing.assert_allclose(comp["l_before"], [3.0, 3.7 / 3])
    np.testing.assert_allclose(comp["rs"], [0.375, 0.6])
    np.testing.assert_array_equal(comp["n"], [1, 2])
    np.testing.assert_array_equal(comp["n_docs"], [3, 3])
    np.testing.assert_allclose(m.recovery_scores(L33), [0.375, 0.6])
    # ratio of averages, not average of ratios
    per_doc = m.per_document_recovery(L33)
    np.testing.assert_allclose(per_doc[0], [0.5, 1 / 3, 1 / 3])
    assert abs(per_doc[0].mean() - 0.375) > 0.01


def test_general_order_equals_cyclic_when_cyclic():
    order = m.cyclic_order(3, 3)
    np.testing.assert_array_equal(order, [0, 1, 2, 0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(m.recovery_scores(L33, order), m.recovery_scores(L33))
    rng = np.random.default_rng(0)
    L = rng.uniform(0, 3, size=(5 * 7 + 1, 7))
    np.testing.assert_allclose(m.recovery_scores(L, m.cyclic_order(7, 5)), m.recovery_scores(L))
    assert m.recovery_scores(L).shape == (4,)  # E − 1 cycles


def test_visit_episodes_cyclic_formula():
    T, E = 4, 3
    v = m.visit_episodes(m.cyclic_order(T, E), T)
    for t in range(T):
        np.testing.assert_array_equal(v[t], [(n - 1) * T + t + 1 for n in range(1, E + 1)])  # k_n(t)


def test_shuffled_order_visits_and_rs():
    # x_1 first every epoch, the others shuffled
    order = np.array([0, 1, 2, 0, 2, 1, 0, 1, 2])
    v = m.visit_episodes(order, 3)
    np.testing.assert_array_equal(v[0], [1, 4, 7])
    np.testing.assert_array_equal(v[1], [2, 6, 8])
    np.testing.assert_array_equal(v[2], [3, 5, 9])
    # cycle 1: doc0 [1,3]: after 1, max 3, before 2; doc1 [2,5]: 1,4,3,0.5 → after 1, max 4, before 0.5;
    #          doc2 [3,4]: 2,5 → after 2, max 5, before 5.  l_after 4/3, l_max 4, l_before 7.5/3 = 2.5
    #          RS = (4 − 2.5)/(4 − 4/3) = 1.5/(8/3) = 0.5625
    # cycle 2: doc0 [4,6]: 1,2,1.2; doc1 [6,7]: 1.5,1.0 → after 1.5, max 1.5, before 1.0;
    #          doc2 [5,8]: 4,1,2,1.5 → after 4, max 4, before 1.5
    #          l_after 6.5/3, l_max 7.5/3, l_before 3.7/3 → RS = (7.5 − 3.7)/(7.5 − 6.5) = 3.8
    np.testing.assert_allclose(m.recovery_scores(L33, order), [0.5625, 3.8])
    # RS > 1 (loss ends below its just-trained value) is flagged as untrustworthy
    pt = m.positive_transfer_flag(L33, order)
    np.testing.assert_array_equal(pt["flags"], [False, True])


def test_docs_without_next_visit_are_skipped():
    # T=2 with filler episodes (−1): doc0 visits 1,3,5; doc1 only once (episode 2)
    order = np.array([0, 1, 0, -1, 0])
    L = np.array(
        [
            [3.0, 3.0],
            [1.0, 3.0],  # k=1 trained doc0
            [2.0, 1.0],  # k=2 trained doc1
            [0.5, 2.0],  # k=3 doc0
            [1.5, 2.5],  # k=4 filler
            [0.2, 2.6],  # k=5 doc0
        ]
    )
    comp = m.recovery_score_components(L, order)
    np.testing.assert_array_equal(comp["n_docs"], [1, 1])
    # cycle 1, doc0 [1,2]: after 1, max 2, before 2 → RS 0; cycle 2 [3,4]: after .5, max 1.5, before 1.5 → 0
    np.testing.assert_allclose(comp["rs"], [0.0, 0.0])
    v = m.visit_episodes(order, 2)
    np.testing.assert_array_equal(v[1], [2])
    np.testing.assert_array_equal(m.epoch_of_episode(order), [1, 1, 2, 2, 3])


def _monotone_forgetting(T, E):
    """L[k, t] = episodes since t was last trained (3 before its first training): monotone rise."""
    K = T * E
    L = np.zeros((K + 1, T))
    last = np.full(T, -1)
    L[0] = 3.0
    for k in range(1, K + 1):
        last[(k - 1) % T] = k
        L[k] = np.where(last < 0, 3.0, k - last)
    return L


def test_monotone_forgetting_gives_zero():
    L = _monotone_forgetting(4, 4)
    np.testing.assert_allclose(m.recovery_scores(L), [0.0, 0.0, 0.0])
    assert not m.positive_transfer_flag(L)["any"]


def test_perfect_recovery_gives_one():
    # after training 0, rises to 2 mid-cycle, back to exactly 0 right before the revisit
    T, E = 4, 3
    L = _monotone_forgetting(T, E)
    shape = {0: 0.0, 1: 1.0, 2: 2.0, 3: 0.0}
    L = np.vectorize(lambda d: shape.get(int(d), 3.0))(L)
    L[0] = 3.0
    np.testing.assert_allclose(m.recovery_scores(L), [1.0, 1.0])


def test_positive_transfer_flagged():
    # losses fall throughout (every document improves after every episode): l_max == l_after
    T, E = 3, 3
    L = np.tile(np.linspace(5.0, 1.0, T * E + 1)[:, None], (1, T))
    pt = m.positive_transfer_flag(L)
    assert pt["any"] and pt["last"]
    np.testing.assert_array_equal(pt["flags"], [True, True])
    np.testing.assert_allclose(pt["rel_forgetting"], [0.0, 0.0])
    np.testing.assert_allclose(pt["frac_docs_max_at_start"], [1.0, 1.0])
    assert np.all(np.isnan(m.recovery_scores(L)))  # 0/0
    # a tiny bump (1 % forgetting) is still flagged; the hand tensor with real forgetting is not
    L2 = L.copy()
    L2[2, 0] = L2[1, 0] * 1.01
    assert m.positive_transfer_flag(L2)["flags"][0]
    assert not m.positive_transfer_flag(L33)["any"]
    s = m.summarize(L, None, None, M=1)
    assert s["positive_transfer"]["last"] is True and s["recovery_scores"] == [None, None]


# ---------------------------------------------------------------------------------------------------------
# Shift-averaged curve (§2.3)
# ---------------------------------------------------------------------------------------------------------
# T=2, E=2 (K=4): doc0 column [1,2,3,4,5] starts at s=0 from k=0; doc1 column [10,20,30,40,50] from k=1.
#   S[0] = (1+20)/2 = 10.5, S[1] = (2+30)/2 = 16, S[2] = (3+40)/2 = 21.5 ; default s ∈ [0, (E−1)T] = [0, 2]
#   population std = |a − b|/2 = 9.5, 14, 18.5
#   tail: S[3] = (4+50)/2 = 27 (2 docs), S[4] = 5 (doc0 only, std 0)
LS = np.array([[1, 10], [2, 20], [3, 30], [4, 40], [5, 50]], dtype=float)


def test_shift_average_hand():
    s, mean, std = m.shift_averaged(LS)
    np.testing.assert_array_equal(s, [0, 1, 2])
    np.testing.assert_allclose(mean, [10.5, 16.0, 21.5])
    np.testing.assert_allclose(std, [9.5, 14.0, 18.5])


def test_shift_average_tail_and_counts():
    s, mean, std, cnt = m.shift_averaged(LS, include_tail=True, return_counts=True)
    np.testing.assert_array_equal(s, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(mean, [10.5, 16.0, 21.5, 27.0, 5.0])
    np.testing.assert_allclose(std, [9.5, 14.0, 18.5, 23.0, 0.0])
    np.testing.assert_array_equal(cnt, [2, 2, 2, 2, 1])


def test_shift_average_over_runs_pools_seeds_and_docs():
    L2 = np.array([[0, 1]] * 5, dtype=float)  # second run: doc0 all 0, doc1 all 1
    s, mean, std, cnt = m.shift_averaged([LS, L2], return_counts=True)
    # s = 0 pools {1, 20, 0, 1}: mean 5.5; squared deviations 20.25+210.25+30.25+20.25 = 281 → std sqrt(70.25)
    assert mean[0] == pytest.approx(5.5)
    assert std[0] == pytest.approx(math.sqrt(70.25))
    np.testing.assert_array_equal(cnt, [4, 4, 4])
    # a (R, K+1, T) stack gives the same
    s2, mean2, std2 = m.shift_averaged(np.stack([LS, L2]))
    np.testing.assert_allclose(mean2, mean)
    np.testing.assert_allclose(std2, std)


def test_shift_average_default_range_is_E_minus_1_epochs():
    T, E = 5, 4
    L = np.random.default_rng(1).uniform(size=(T * E + 1, T))
    s, mean, _ = m.shift_averaged(L)
    assert s[-1] == (E - 1) * T
    # S[s] = mean_t L[s + t, t]
    np.testing.assert_allclose(mean, [np.mean([L[x + t, t] for t in range(T)]) for x in s])


# ---------------------------------------------------------------------------------------------------------
# Doc curve, online loss, revisit check
# ---------------------------------------------------------------------------------------------------------


def test_doc_curve_black_circles():
    k, loss, bk, bl = m.doc_curve(L33, doc=0)
    np.testing.assert_array_equal(k, np.arange(10))
    np.testing.assert_array_equal(loss, DOC0)
    np.testing.assert_array_equal(bk, [0, 3, 6])  # L[(n−1)T, 0]
    np.testing.assert_array_equal(bl, [5.0, 2.0, 1.2])
    _, _, bk1, _ = m.doc_curve(L33, doc=1)
    np.testing.assert_array_equal(bk1, [1, 4, 7])


def test_online_loss_index_convention():
    T, E, M = 3, 3, 4
    tl = np.arange(T * E * M, dtype=float)  # entry j is just j
    mean, per_ep = m.online_loss(tl, M, T)
    # episode k's online loss is train_losses[(k − 1)·M] = 4(k − 1)
    np.testing.assert_array_equal(per_ep, 4 * np.arange(9))
    # epochs 2..3 = episodes 4..9 → 12, 16, ..., 32 → mean 22
    assert mean == pytest.approx(22.0)
    mean1, _ = m.online_loss(tl, M, T, first_epoch=1)
    assert mean1 == pytest.approx(16.0)
    # an explicit order gives the same epochs; filler episodes are left out of the mean
    mean_o, _ = m.online_loss(tl, M, m.cyclic_order(T, E))
    assert mean_o == pytest.approx(22.0)
    order = np.array([0, 1, 2, 0, -1, 2, 0, 1, 2])
    mean_f, _ = m.online_loss(tl, M, order)
    assert mean_f == pytest.approx(np.mean([12, 20, 24, 28, 32]))
    with pytest.raises(ValueError):
        m.online_loss(tl[:-1], M, T)


def test_revisit_recovery():
    r = m.revisit_recovery(L33, doc=0)
    # epoch 2: interval [1,3] = 1,3,2 → peak 3 at k=2, before 2, drop 1/3
    # epoch 3: interval [4,6] = 1,2,1.2 → peak 2 at k=5, before 1.2, drop 0.4
    np.testing.assert_array_equal(r["epoch"], [2, 3])
    np.testing.assert_allclose(r["peak"], [3.0, 2.0])
    np.testing.assert_array_equal(r["peak_k"], [2, 5])
    np.testing.assert_allclose(r["before"], [2.0, 1.2])
    np.testing.assert_allclose(r["rel_drop"], [1 / 3, 0.4])
    assert r["no_recovery_at_last_revisit"] is False
    # monotone forgetting: the loss just before the revisit *is* the peak → within 5 %
    r2 = m.revisit_recovery(_monotone_forgetting(4, 3), doc=0)
    np.testing.assert_allclose(r2["rel_drop"], [0.0, 0.0])
    assert r2["no_recovery_at_last_revisit"] is True


def test_summarize_is_json_and_consistent():
    import json

    T, E, M = 3, 3, 2
    tl = np.arange(T * E * M, dtype=float)
    s = m.summarize(L33, tl, None, M)
    json.dumps(s, allow_nan=False)
    assert s["recovery_scores"] == pytest.approx([0.375, 0.6])
    assert s["rs_last"] == pytest.approx(0.6)
    assert s["recovery_components"]["l_max"] == pytest.approx([4.0, 5.5 / 3])
    assert s["online_loss"]["mean"] == pytest.approx(np.mean(2 * np.arange(3, 9)))
    assert s["online_loss"]["per_epoch"] == pytest.approx([2.0, 8.0, 14.0])
    assert s["T"] == 3 and s["K"] == 9 and s["E"] == 3 and s["M"] == 2
    assert s["revisit_doc0"]["rel_drop"] == pytest.approx([1 / 3, 0.4])


# ---------------------------------------------------------------------------------------------------------
# Gram-matrix statistics (§2.8, §2.10, §2.11)
# ---------------------------------------------------------------------------------------------------------


def test_pca_from_gram_matches_svd():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15, 40)) + np.linspace(0, 3, 15)[:, None]
    coords, ratio = m.pca_from_gram(X @ X.T, k=3)
    Xc = X - X.mean(axis=0)
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    direct = Xc @ Vt[:3].T
    for j in range(3):
        sign = np.sign(direct[:, j] @ coords[:, j])
        np.testing.assert_allclose(coords[:, j], sign * direct[:, j], atol=1e-9)
    np.testing.assert_allclose(ratio, S[:3] ** 2 / np.sum(S**2))
    # subset of states
    idx = np.arange(3, 12)
    c2, _ = m.pca_from_gram(X @ X.T, k=2, indices=idx)
    Xs = X[idx] - X[idx].mean(axis=0)
    _, _, Vt2 = np.linalg.svd(Xs, full_matrices=False)
    d2 = Xs @ Vt2[:2].T
    np.testing.assert_allclose(np.abs(c2), np.abs(d2), atol=1e-9)


def test_residual_cosine_from_gram_matches_direct():
    rng = np.random.default_rng(1)
    K1, D, T = 13, 30, 4  # states 0..12, window T = 4 → half-width 2
    W = rng.standard_normal((K1, D)) + 5.0
    res = np.empty_like(W)
    for t in range(K1):
        lo, hi = max(0, t - 2), min(K1 - 1, t + 2)  # clipped window
        res[t] = W[t] - W[lo : hi + 1].mean(axis=0)
    direct = res @ res.T
    np.testing.assert_allclose(m.residual_gram(W @ W.T, T), direct, atol=1e-8)
    nrm = np.linalg.norm(res, axis=1)
    np.testing.assert_allclose(
        m.cosine_from_gram(m.residual_gram(W @ W.T, T)), direct / np.outer(nrm, nrm), atol=1e-10
    )
    # literal reading: (clipped) sum divided by T
    lit = np.array([W[t] - W[max(0, t - 2) : min(K1 - 1, t + 2) + 1].sum(axis=0) / T for t in range(K1)])
    np.testing.assert_allclose(m.residual_gram(W @ W.T, T, literal=True), lit @ lit.T, atol=1e-8)


def test_update_magnitudes_and_cosine():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((9, 20))
    np.testing.assert_allclose(
        m.update_magnitudes_from_gram(W @ W.T), np.linalg.norm(np.diff(W, axis=0), axis=1), rtol=1e-10
    )
    n = np.linalg.norm(W, axis=1)
    np.testing.assert_allclose(m.cosine_from_gram(W @ W.T), (W @ W.T) / np.outer(n, n), atol=1e-12)


def test_epoch_slice_and_pairwise_helpers():
    assert m.epoch_slice(25, 2, 4) == slice(26, 101)
    R = np.arange(9, dtype=float).reshape(3, 3)
    P = m.pairwise_normalized(R)
    assert np.all(np.isnan(np.diag(P)))
    assert np.nanmax(np.abs(P)) == pytest.approx(1.0)
    d, prof = m.pairwise_offset_profile(R)
    # offset 1: R[0,1], R[1,2], R[2,0] = 1, 5, 6 → 4
    assert prof[1] == pytest.approx(4.0)
