"""recovery_jax.stats: mean ± std over seeds, formatting, grouping, against hand-computed values."""

import math

import pytest

from recovery_jax import stats

from .test_sweep import fake_summary


def test_mean_std_is_population_std_over_finite_values():
    st = stats.mean_std([1.0, 2.0, 3.0, None, float("nan")])
    assert st["mean"] == pytest.approx(2.0) and st["std"] == pytest.approx(math.sqrt(2 / 3)) and st["n"] == 3
    assert st["values"] == [1.0, 2.0, 3.0, None, None]
    assert stats.mean_std([None])["mean"] is None and stats.mean_std([])["n"] == 0
    assert stats.mean_std([0.5])["std"] == 0.0


def test_stats_helpers_against_hand_computed_values():
    # values 0.2, 0.5 (None and inf skipped): mean 0.35, population std 0.15
    st = stats.mean_std([0.2, None, 0.5, float("inf")])
    assert st["n"] == 2 and st["mean"] == pytest.approx(0.35) and st["std"] == pytest.approx(0.15)
    assert stats.pm(st) == "0.350 ± 0.150" and stats.pm(st, nd=1) == "0.3 ± 0.1"
    assert stats.pm(stats.mean_std([0.25])) == "0.250"  # one seed: no spread to show
    assert stats.pm(stats.mean_std([None, float("nan")])) == "—"
    assert [stats.fmt(v) for v in (None, float("nan"), True, 3, 0.12345, "x")] == ["—", "—", "yes", "3", "0.123", "x"]
    assert stats.fmt(0.12345, 4) == "0.1235"
    assert stats.group_indices(["a", "b", "a", "c", "b"]) == {"a": [0, 2], "b": [1, 4], "c": [3]}
    assert list(stats.group_indices(["b", "a"])) == ["b", "a"]  # first-appearance order
    assert stats.get({"a": {"b": 1}}, "a", "b") == 1 and stats.get({"a": None}, "a", "b", default=7) == 7
    # cycle 2 has one run only: its n says so, and pm prints it without a spread
    agg = stats.seed_stats([fake_summary([0.1, 0.4]), fake_summary([0.3])])
    assert stats.cycle_stat(agg, 0) == {"mean": pytest.approx(0.2), "std": pytest.approx(0.1), "n": 2}
    assert stats.pm(stats.cycle_stat(agg, 1)) == "0.400"
    assert stats.cycle_stat(agg, 5)["mean"] is None


def test_aggregate_synthetic_summaries():
    runs = [fake_summary([0.1, 0.4], online=2.0, drop=0.30),
            fake_summary([0.3, 0.6], online=3.0, drop=0.10, pt=True),
            fake_summary([0.2], online=None, drop=None)]
    agg = stats.seed_stats(runs)
    assert agg["n"] == 3
    assert agg["rs_last"]["mean"] == pytest.approx((0.4 + 0.6 + 0.2) / 3)
    assert agg["rs_last"]["std"] == pytest.approx(0.16329931618554522)
    assert agg["rs_per_cycle"]["mean"] == pytest.approx([0.2, 0.5])  # cycle 2: runs 1-2 only
    assert agg["rs_per_cycle"]["std"][0] == pytest.approx(math.sqrt(2 / 3) * 0.1)
    assert agg["online_loss"]["mean"] == pytest.approx(2.5) and agg["online_loss"]["std"] == pytest.approx(0.5)
    assert agg["doc1_revisit_drop"]["mean"] == pytest.approx(0.2) and agg["doc1_revisit_drop"]["n"] == 2
    assert agg["positive_transfer_last"] == 1
