import numpy as np
import pytest

from recovery_jax.schedule import FILLER, make_order


def rng(s=0):
    return np.random.default_rng(s)


def test_cyclic():
    o = make_order("cyclic", 4, 3, rng())
    assert o.docs_K.tolist() == [0, 1, 2, 3] * 3
    assert o.epoch_K.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert o.n_fillers == 0


def test_shuffled_keeps_first_and_reshuffles_every_epoch():
    T, E = 12, 6
    o = make_order("shuffled", T, E, rng(1))
    epochs = o.docs_K.reshape(E, T)
    assert (epochs[:, 0] == 0).all()
    for ep in epochs:
        assert sorted(ep.tolist()) == list(range(T))
    assert len({tuple(ep) for ep in epochs}) == E  # 11! orders: repeats would mean no reshuffle


def test_partial_shuffles_only_2_to_N():
    T, N, E = 10, 5, 8
    o = make_order("partial", T, E, rng(2), shuffle_n=N)
    epochs = o.docs_K.reshape(E, T)
    assert (epochs[:, 0] == 0).all()
    assert (epochs[:, N:] == np.arange(N, T)).all()
    for ep in epochs:
        assert sorted(ep[1:N].tolist()) == list(range(1, N))
    assert len({tuple(ep[1:N]) for ep in epochs}) > 1


def test_filler_counts_and_unique_fillers():
    o = make_order("filler", 5, 4, rng(3), filler_min=2, filler_max=6)
    fill = o.filler_K[o.docs_K == FILLER]
    assert fill.tolist() == list(range(len(fill)))  # every filler used once
    for e in range(4):
        ep = o.docs_K[o.epoch_K == e]
        assert ep[:5].tolist() == list(range(5))
        assert 2 <= (ep == FILLER).sum() <= 6


@pytest.mark.parametrize("kind", ["shuffled", "partial", "filler"])
def test_orders_are_deterministic_in_the_seed(kind):
    a = make_order(kind, 9, 4, rng(5), shuffle_n=6)
    b = make_order(kind, 9, 4, rng(5), shuffle_n=6)
    c = make_order(kind, 9, 4, rng(6), shuffle_n=6)
    assert (a.docs_K == b.docs_K).all()
    assert len(a.docs_K) != len(c.docs_K) or (a.docs_K != c.docs_K).any()


def test_unknown_order():
    with pytest.raises(ValueError, match="valid: cyclic"):
        make_order("zigzag", 3, 2, rng())
