"""jaxrl.mo_metrics against hand-computed answers (and moocore where it is installed)."""
import numpy as np
import pytest

from jaxrl import mo_metrics as mo


# ----------------------------------------------------------------------------------------------
# Pareto filter and cardinality
# ----------------------------------------------------------------------------------------------
def test_pareto_filter_keeps_non_dominated_once_in_first_order():
    points = [[1, 2], [0, 0], [2, 1], [1, 2], [1, 1], [2, 0]]
    # (0,0), (1,1), (2,0) are dominated; the duplicate (1,2) is kept once.
    np.testing.assert_array_equal(mo.pareto_filter(points), [[1, 2], [2, 1]])
    assert mo.cardinality(points) == 2


def test_pareto_filter_weak_dominance_and_3d():
    # (3,1,1) dominates (3,1,0) (equal in two objectives, better in one); (1,1,3) and (1,3,1) survive
    points = [[3, 1, 0], [1, 1, 3], [1, 3, 1], [3, 1, 1]]
    np.testing.assert_array_equal(mo.pareto_filter(points), [[1, 1, 3], [1, 3, 1], [3, 1, 1]])
    assert mo.cardinality([[5.0, 5.0, 5.0]]) == 1
    assert mo.pareto_filter(np.zeros((0, 3))).shape == (0, 3)


# ----------------------------------------------------------------------------------------------
# Hypervolume
# ----------------------------------------------------------------------------------------------
def test_hypervolume_2d_staircase():
    # boxes from (0,0): strips 3x1 + 2x1 + 1x1 = 6; (1,1) is inside, (5,0) is not above the ref
    points = [[1, 3], [2, 2], [3, 1], [1, 1], [5, 0]]
    assert mo.hypervolume(points, [0, 0]) == pytest.approx(6.0)
    assert mo.hypervolume(points, [1, 1]) == pytest.approx(1.0)   # only the (2,2) box; (3,1) and (1,3) touch the ref
    assert mo.hypervolume([[-1.0, -1.0]], [-3.0, -2.0]) == pytest.approx(2.0)  # negative values are fine
    assert mo.hypervolume(np.zeros((0, 2)), [0, 0]) == 0.0


def test_hypervolume_3d_inclusion_exclusion():
    assert mo.hypervolume([[1, 2, 3]], [0, 0, 0]) == pytest.approx(6.0)
    # two boxes of volume 2 overlapping in a unit cube: 2 + 2 - 1
    assert mo.hypervolume([[2, 1, 1], [1, 1, 2]], [0, 0, 0]) == pytest.approx(3.0)
    # three boxes of volume 3, pairwise and triple overlaps of 1: 9 - 3 + 1
    assert mo.hypervolume([[1, 1, 3], [1, 3, 1], [3, 1, 1]], [0, 0, 0]) == pytest.approx(7.0)
    # a shifted reference point: (2,2,2) box from (1,1,1) is 1; (1,1,3) touches the ref, adds 0
    assert mo.hypervolume([[2, 2, 2], [1, 1, 3]], [1, 1, 1]) == pytest.approx(1.0)


def test_hypervolume_many_objectives_uses_moocore():
    pytest.importorskip("moocore")
    assert mo.hypervolume([[1, 2, 3, 4]], [0, 0, 0, 0]) == pytest.approx(24.0)
    assert mo.hypervolume([[2, 1, 1, 1], [1, 2, 1, 1]], [0, 0, 0, 0]) == pytest.approx(3.0)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_moocore_on_random_sets(m):
    moocore = pytest.importorskip("moocore")
    rng = np.random.default_rng(m)
    for _ in range(20):
        points = rng.uniform(0, 10, size=(rng.integers(1, 30), m)).round(1)   # ties included
        ref = rng.uniform(-1, 3, size=m)
        expected = moocore.hypervolume(points, ref=ref, maximise=True)
        assert mo.hypervolume(points, ref) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_hypervolume_rejects_bad_inputs():
    with pytest.raises(ValueError, match="reference point has 3 values but the points have 2 objectives"):
        mo.hypervolume([[1, 2]], [0, 0, 0])
    with pytest.raises(ValueError, match="finite"):
        mo.hypervolume([[1, np.nan]], [0, 0])
    with pytest.raises(ValueError, match="ref must be finite"):
        mo.hypervolume([[1, 2]], [0, np.inf])
    with pytest.raises(ValueError, match="shape"):
        mo.hypervolume(np.ones((2, 2, 2)), [0, 0])
    with pytest.raises(ValueError, match="ragged"):
        mo.hypervolume([[1, 2], [3]], [0, 0])


# ----------------------------------------------------------------------------------------------
# Weights and utility metrics
# ----------------------------------------------------------------------------------------------
def test_equally_spaced_weights():
    np.testing.assert_allclose(mo.equally_spaced_weights(2, 4), [[0, 1], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1, 0]])
    np.testing.assert_allclose(
        mo.equally_spaced_weights(3, 2),
        [[0, 0, 1], [0, 0.5, 0.5], [0, 1, 0], [0.5, 0, 0.5], [0.5, 0.5, 0], [1, 0, 0]])
    w = mo.equally_spaced_weights(6, 3)
    assert w.shape == (56, 6)                       # C(3 + 5, 5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="num_objectives"):
        mo.equally_spaced_weights(0, 3)
    with pytest.raises(ValueError, match="divisions"):
        mo.equally_spaced_weights(2, 0)


def test_expected_utility_and_maximum_utility_loss():
    weights = mo.equally_spaced_weights(2, 2)       # (0,1), (.5,.5), (1,0)
    front = [[1.0, 0.0], [0.0, 1.0]]
    # best utilities 1, 0.5, 1 -> mean 5/6
    assert mo.expected_utility(front, weights) == pytest.approx(5 / 6)
    # only (1,0): utilities 0, 0.5, 1 against 1, 0.5, 1 -> worst loss 1 (at w = (0,1))
    assert mo.maximum_utility_loss([[1.0, 0.0]], front, weights) == pytest.approx(1.0)
    assert mo.maximum_utility_loss(front, front, weights) == pytest.approx(0.0)
    assert mo.expected_utility([[2.0, 4.0]], [[0.25, 0.75]]) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="weights have 3 components but the points have 2 objectives"):
        mo.expected_utility(front, [[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="front has 2 objectives but true_front has 3"):
        mo.maximum_utility_loss(front, [[1, 1, 1]], weights)
    with pytest.raises(ValueError, match="empty"):
        mo.expected_utility(np.zeros((0, 2)), weights)


def test_igd():
    # distances from (3,4) and (0,1) to (0,0): 5 and 1 -> mean 3
    assert mo.igd([[0.0, 0.0]], [[3.0, 4.0], [0.0, 1.0]]) == pytest.approx(3.0)
    # the nearest point is taken: (3,4) is covered exactly, (0,1) is 1 away from (0,0)
    assert mo.igd([[0.0, 0.0], [3.0, 4.0]], [[3.0, 4.0], [0.0, 1.0]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="finite"):
        mo.igd([[np.inf, 0.0]], [[0.0, 0.0]])


def test_reference_point_not_dominated_by_the_front_is_an_error_when_strict():
    front = [[1.0, 2.0], [2.0, 1.0]]
    assert mo.hypervolume(front, [3.0, 3.0]) == 0.0  # an agent's poor front may score 0
    with pytest.raises(ValueError, match="not dominated by the front"):
        mo.hypervolume(front, [3.0, 3.0], strict=True)
    assert mo.hypervolume(front, [0.0, 0.0], strict=True) == 3.0
