"""Tests for jaxrl.stats against hand-computed values (and scipy/rliable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxrl import stats  # noqa: E402


# --------------------------------------------------------------------- iqm


def test_iqm_hand_computed():
    # Middle 50% of 1..8 is 3, 4, 5, 6.
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)
    # Order does not matter; an outlier at either end is trimmed away.
    assert stats.iqm([1000, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    assert stats.iqm([8, -1000, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    assert isinstance(stats.iqm([1.0, 2.0, 3.0, 4.0]), float)


def test_iqm_small_n_is_plain_mean():
    assert stats.iqm([5.0]) == 5.0
    assert stats.iqm([1.0, 4.0, 10.0]) == pytest.approx(5.0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 101])
def test_iqm_matches_scipy_trim_mean(n):
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(n).normal(size=n) ** 3
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_iqm_axis_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    m = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_allclose(stats.iqm(m, axis=0), scipy_stats.trim_mean(m, 0.25, axis=0))
    np.testing.assert_allclose(stats.iqm(m, axis=1), scipy_stats.trim_mean(m, 0.25, axis=1))
    # axis=None pools all entries.
    assert stats.iqm(m) == pytest.approx(scipy_stats.trim_mean(m.ravel(), 0.25))


def test_iqm_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        stats.iqm([])


# --------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_estimate_and_shrinks():
    rng = np.random.default_rng(123)
    small = rng.normal(10.0, 2.0, size=10)
    large = rng.normal(10.0, 2.0, size=1000)
    lo_s, hi_s = stats.bootstrap_ci(small)
    lo_l, hi_l = stats.bootstrap_ci(large)
    assert isinstance(lo_s, float) and isinstance(hi_s, float)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # ~sqrt(100) = 10x narrower in theory
    # Higher confidence -> wider interval.
    lo90, hi90 = stats.bootstrap_ci(small, confidence=0.90)
    assert lo_s <= lo90 and hi90 <= hi_s


def test_bootstrap_ci_deterministic_and_seed_dependent():
    x = np.random.default_rng(0).normal(size=20)
    assert stats.bootstrap_ci(x, seed=7) == stats.bootstrap_ci(x, seed=7)
    assert stats.bootstrap_ci(x, seed=7) != stats.bootstrap_ci(x, seed=8)


def test_bootstrap_ci_custom_statistic_matches_fast_path():
    x = np.random.default_rng(1).normal(size=15)
    # A lambda takes the generic (per-replicate) path; np.median the vectorised
    # one. Same seed -> same resamples -> same interval.
    slow = stats.bootstrap_ci(x, statistic=lambda v: float(np.median(v)), seed=3)
    fast = stats.bootstrap_ci(x, statistic=np.median, seed=3)
    np.testing.assert_allclose(slow, fast)
    slow_iqm = stats.bootstrap_ci(x, statistic=lambda v: stats.iqm(v), seed=3)
    fast_iqm = stats.bootstrap_ci(x, statistic=stats.iqm, seed=3)
    np.testing.assert_allclose(slow_iqm, fast_iqm)


def test_bootstrap_ci_single_value_and_constant():
    assert stats.bootstrap_ci([3.5]) == (3.5, 3.5)
    assert stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_bootstrap_ci_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        stats.bootstrap_ci([])
    with pytest.raises(ValueError, match="1-D"):
        stats.bootstrap_ci(np.ones((2, 2)))
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_stratified_bootstrap_ci():
    rng = np.random.default_rng(5)
    scores = rng.normal(loc=[0.0, 1.0, 5.0], scale=1.0, size=(10, 3))
    lo, hi = stats.stratified_bootstrap_ci(scores, stats.iqm, num_resamples=500, seed=0)
    assert lo <= stats.iqm(scores) <= hi
    assert (lo, hi) == stats.stratified_bootstrap_ci(scores, stats.iqm, num_resamples=500, seed=0)
    # More runs per task -> narrower interval.
    many = rng.normal(loc=[0.0, 1.0, 5.0], scale=1.0, size=(200, 3))
    lo_m, hi_m = stats.stratified_bootstrap_ci(many, stats.iqm, num_resamples=500, seed=0)
    assert hi_m - lo_m < hi - lo


def test_stratified_bootstrap_resamples_within_tasks():
    # Every task has a constant score, so any within-task resample gives the
    # same matrix: the interval collapses. Resampling across tasks would not.
    scores = np.tile([1.0, 2.0, 30.0], (4, 1))
    assert stats.stratified_bootstrap_ci(scores, np.mean, num_resamples=200) == (11.0, 11.0)


def test_stratified_bootstrap_ci_bad_shape():
    with pytest.raises(ValueError, match="num_runs, num_tasks"):
        stats.stratified_bootstrap_ci(np.ones(5), np.mean)


# ----------------------------------------------------- performance profile


def test_performance_profile_hand_computed():
    # 2 runs x 2 tasks.
    scores = np.array([[0.0, 2.0],
                       [1.0, 3.0]])
    taus = [-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]
    # task 0 fractions > tau: 1, 1/2, 1/2, 0, 0, 0
    # task 1 fractions > tau: 1, 1,   1,   1, 1/2, 0
    expected = [1.0, 0.75, 0.75, 0.5, 0.25, 0.0]
    np.testing.assert_allclose(stats.performance_profile(scores, taus), expected)
    # 1-D input is a single task.
    np.testing.assert_allclose(stats.performance_profile([0.0, 1.0], [0.5]), [0.5])


def test_performance_profile_ci():
    rng = np.random.default_rng(2)
    scores = rng.uniform(size=(8, 4))
    taus = np.linspace(0, 1, 11)
    point = stats.performance_profile(scores, taus)
    lo, hi = stats.performance_profile_ci(scores, taus, num_resamples=300, seed=0)
    assert lo.shape == hi.shape == taus.shape
    assert np.all(lo <= point + 1e-12) and np.all(point <= hi + 1e-12)
    assert np.all((0 <= lo) & (hi <= 1))


# --------------------------------------------------------------- summarize


def test_summarize_single_value():
    out = stats.summarize([4.0])
    assert out == {"mean": 4.0, "std": 0.0, "iqm": 4.0, "median": 4.0,
                   "ci95": [4.0, 4.0], "n": 1}
    json.dumps(out)


def test_summarize_values_are_plain_python():
    vals = np.array([1.0, 2.0, 3.0, 4.0, 100.0], dtype=np.float32)
    out = stats.summarize(vals)
    assert set(out) == {"mean", "std", "iqm", "median", "ci95", "n"}
    assert out["n"] == 5 and type(out["n"]) is int
    for key in ("mean", "std", "iqm", "median"):
        assert type(out[key]) is float
    assert all(type(v) is float for v in out["ci95"])
    assert out["mean"] == pytest.approx(22.0)
    assert out["median"] == pytest.approx(3.0)
    assert out["iqm"] == pytest.approx(3.0)  # trims 1 from each end
    assert out["std"] == pytest.approx(np.std(vals.astype(float), ddof=1))
    lo, hi = out["ci95"]
    assert lo <= out["mean"] <= hi
    json.dumps(out)


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ([], "empty"),
        ([1.0, float("nan"), 2.0], r"1 non-finite value\(s\) out of 3 \(1 NaN\)"),
        ([float("inf"), float("-inf"), float("nan")], r"3 non-finite.*1 NaN, 1 \+inf, 1 -inf"),
        (["a", "b"], "numeric"),
    ],
)
def test_summarize_bad_input(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        stats.summarize(bad)


# ------------------------------------------------------ rliable cross-check


def _import_or_skip(name: str):
    # rliable.library imports `arch`, which can fail with errors other than
    # ImportError on incompatible pandas versions; skip in that case too.
    pytest.importorskip("rliable")
    try:
        return __import__(name, fromlist=["_"])
    except Exception as e:  # pragma: no cover - depends on environment
        pytest.skip(f"cannot import {name}: {type(e).__name__}: {e}")


def test_iqm_matches_rliable():
    metrics = _import_or_skip("rliable.metrics")
    scores = np.random.default_rng(9).normal(size=(10, 7))
    assert stats.iqm(scores) == pytest.approx(metrics.aggregate_iqm(scores))


def test_performance_profile_matches_rliable():
    library = _import_or_skip("rliable.library")
    scores = np.random.default_rng(4).normal(size=(6, 5))
    taus = np.linspace(-2, 2, 9)
    expected = library.score_distributions(scores, taus)
    np.testing.assert_allclose(stats.performance_profile(scores, taus), expected)
