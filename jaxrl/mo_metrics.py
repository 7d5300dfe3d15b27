"""Multi-objective metrics on sets of value vectors (every objective is maximized).

All functions take NumPy-compatible arrays of shape ``(num_points, num_objectives)`` and run in
NumPy, outside compiled code (they evaluate a finished set of policies, not a training step).

* ``pareto_filter``: the non-dominated points of a set (duplicates kept once).
* ``cardinality``: how many distinct non-dominated points a set has.
* ``hypervolume``: the volume dominated by a set and bounded below by a reference point
  (Zitzler & Thiele 1999); exact in NumPy for 2 and 3 objectives, through ``moocore`` beyond.
* ``equally_spaced_weights``: the simplex lattice of weight vectors (Das & Dennis 1998).
* ``expected_utility``: mean over weights of the best linear utility of the set
  (Zintgraf et al. 2015, "Quality assessment of MORL algorithms: A utility-based approach").
* ``maximum_utility_loss``: worst-case loss of linear utility against a known front (ibid.).
* ``igd``: inverted generational distance to a known front (Coello & Reyes Sierra 2004).

Differences from morl-baselines (Felten et al. 2023), whose definitions ``STYLE.md`` follows:
its ``equally_spaced_weights(dim, n)`` draws pymoo's "energy" reference directions (n near-uniform
points, seed 42) where this module uses the exact simplex lattice, so expected utility over "equally
spaced" weights can differ slightly between the two for 3+ objectives (identical for 2 objectives
when the lattice has the same points). Its ``cardinality`` is the length of the set it is given;
here duplicates and dominated points are removed first. Hypervolume, IGD, EU and MUL are the same
definitions.

Bad inputs (non-finite values, a reference point or weights of the wrong size, ragged arrays)
raise ``ValueError`` naming the argument and what is allowed.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "pareto_filter", "cardinality", "hypervolume", "equally_spaced_weights", "expected_utility",
    "maximum_utility_loss", "igd",
]


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------
def _as_points(points, name: str = "points", allow_empty: bool = True) -> np.ndarray:
    """``points`` as a float64 array ``(n, m)``; a single vector ``(m,)`` counts as one point."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape (num_points, num_objectives); "
                         "got a ragged or non-numeric sequence") from None
    if arr.ndim == 1 and arr.size > 0:
        arr = arr[None, :]
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (num_points, num_objectives), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; found NaN or inf at rows "
                         f"{sorted(set(np.argwhere(~np.isfinite(arr))[:, 0].tolist()))}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty; it needs at least one point")
    return arr


def _same_objectives(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] and b.shape[0] and a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} has {a.shape[1]} objectives but {name_b} has {b.shape[1]}")


def _as_weights(weights, num_objectives: int) -> np.ndarray:
    w = _as_points(weights, "weights", allow_empty=False)
    if w.shape[1] != num_objectives:
        raise ValueError(f"weights have {w.shape[1]} components but the points have {num_objectives} objectives")
    return w


# ----------------------------------------------------------------------------------------------
# Pareto filtering
# ----------------------------------------------------------------------------------------------
def pareto_filter(points) -> np.ndarray:
    """The non-dominated points of ``points`` (maximization), each distinct point once.

    ``a`` dominates ``b`` when ``a >= b`` in every objective and ``a > b`` in at least one. The
    result keeps the order of first occurrence. Shape ``(k, num_objectives)``.
    """
    pts = _as_points(points)
    if pts.shape[0] == 0:
        return pts
    _, first = np.unique(pts, axis=0, return_index=True)
    unique = pts[np.sort(first)]
    geq = np.all(unique[:, None, :] >= unique[None, :, :], axis=-1)   # geq[i, j]: i >= j everywhere
    gt = np.any(unique[:, None, :] > unique[None, :, :], axis=-1)
    dominated = np.any(geq & gt, axis=0)                                # some i dominates j
    return unique[~dominated]


def cardinality(points) -> int:
    """Number of distinct non-dominated points in ``points``."""
    return int(pareto_filter(points).shape[0])


# ----------------------------------------------------------------------------------------------
# Hypervolume
# ----------------------------------------------------------------------------------------------
def _hv2d(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume of points that all strictly dominate ``ref`` (sweep along x)."""
    order = np.argsort(-points[:, 0], kind="stable")
    volume, best_y = 0.0, ref[1]
    for x, y in points[order]:
        if y > best_y:
            volume += (x - ref[0]) * (y - best_y)
            best_y = y
    return float(volume)


def _hv3d(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact 3-D hypervolume by slicing along the last objective (HSO; While et al. 2006)."""
    levels = np.unique(points[:, 2])[::-1]                  # descending z levels
    bounds = np.append(levels[1:], ref[2])
    volume = 0.0
    for z, z_below in zip(levels, bounds):
        above = points[points[:, 2] >= z]
        volume += _hv2d(above[:, :2], ref[:2]) * (z - z_below)
    return float(volume)


def hypervolume(points, ref, strict: bool = False) -> float:
    """Volume of the objective space dominated by ``points`` and dominating ``ref`` (maximization).

    Zitzler & Thiele (1999). Points that do not strictly dominate ``ref`` add nothing. Exact
    NumPy code for 2 and 3 objectives; more objectives use ``moocore.hypervolume`` (install
    ``moocore``). An empty set has volume 0. With ``strict``, a reference point that no point
    strictly dominates is an error rather than a volume of 0. Use it for a known front, where that
    can only mean a wrong reference point. Without it, an untrained agent's front legitimately
    scores 0.
    """
    pts = _as_points(points)
    try:
        ref_arr = np.asarray(ref, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"ref must be a numeric vector, got {ref!r}") from None
    if ref_arr.ndim != 1:
        raise ValueError(f"ref must be a vector of shape (num_objectives,), got shape {ref_arr.shape}")
    if not np.all(np.isfinite(ref_arr)):
        raise ValueError(f"ref must be finite, got {ref_arr.tolist()}")
    if pts.shape[0] == 0:
        return 0.0
    m = pts.shape[1]
    if ref_arr.shape[0] != m:
        raise ValueError(f"reference point has {ref_arr.shape[0]} values but the points have {m} objectives")
    dominating = np.all(pts > ref_arr, axis=1)
    if strict and not dominating.any():
        raise ValueError(f"reference point {ref_arr.tolist()} is not dominated by the front: no point is better than it "
                         f"in every objective (the front's worst values are {pts.min(axis=0).tolist()}); "
                         "pick a reference point below all of them")
    pts = pareto_filter(pts[dominating])
    if pts.shape[0] == 0:
        return 0.0
    if m == 1:
        return float(pts.max() - ref_arr[0])
    if m == 2:
        return _hv2d(pts, ref_arr)
    if m == 3:
        return _hv3d(pts, ref_arr)
    try:
        import moocore
    except ImportError:
        raise ImportError(f"hypervolume with {m} > 3 objectives needs the moocore package "
                          "(pip install moocore); 2 and 3 objectives are computed in NumPy") from None
    return float(moocore.hypervolume(pts, ref=ref_arr, maximise=True))


# ----------------------------------------------------------------------------------------------
# Utility-based metrics
# ----------------------------------------------------------------------------------------------
def equally_spaced_weights(num_objectives: int, n: int) -> np.ndarray:
    """Every weight vector with entries in {0, 1/n, ..., 1} that sum to 1 (Das & Dennis 1998).

    There are C(n + m - 1, m - 1) of them for m objectives (n + 1 for two: 0, 1/n, ..., 1).
    Shape ``(num_weights, num_objectives)``, lexicographically ordered.
    """
    if not isinstance(num_objectives, (int, np.integer)) or num_objectives < 1:
        raise ValueError(f"num_objectives must be an integer >= 1, got {num_objectives!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (divisions of each weight) must be an integer >= 1, got {n!r}")
    m = int(num_objectives)
    rows = [c for c in itertools.product(range(n + 1), repeat=m - 1) if sum(c) <= n]
    counts = np.array([list(c) + [n - sum(c)] for c in rows], dtype=np.float64).reshape(-1, m)
    return counts / n


def _best_utilities(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """max over points of w . v, for every weight vector w: shape ``(num_weights,)``."""
    return (weights @ points.T).max(axis=1)


def expected_utility(front, weights) -> float:
    """Mean over ``weights`` of max over the front of the linear utility w . v.

    Zintgraf et al. (2015), eq. 3 (with a uniform distribution over the given weights).
    """
    pts = _as_points(front, "front", allow_empty=False)
    return float(_best_utilities(pts, _as_weights(weights, pts.shape[1])).mean())


def maximum_utility_loss(front, true_front, weights) -> float:
    """max over ``weights`` of (best utility on ``true_front`` − best utility on ``front``).

    Zintgraf et al. (2015), eq. 5 (maximum utility loss, MUL), linear utilities.
    """
    pts = _as_points(front, "front", allow_empty=False)
    true = _as_points(true_front, "true_front", allow_empty=False)
    _same_objectives(pts, true, "front", "true_front")
    w = _as_weights(weights, pts.shape[1])
    return float((_best_utilities(true, w) - _best_utilities(pts, w)).max())


def igd(front, true_front) -> float:
    """Inverted generational distance: mean over ``true_front`` of the Euclidean distance to the
    nearest point of ``front`` (Coello & Reyes Sierra 2004). 0 when ``front`` covers the true front."""
    pts = _as_points(front, "front", allow_empty=False)
    true = _as_points(true_front, "true_front", allow_empty=False)
    _same_objectives(pts, true, "front", "true_front")
    dist = np.linalg.norm(true[:, None, :] - pts[None, :, :], axis=-1)
    return float(dist.min(axis=1).mean())
