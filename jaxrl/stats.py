"""Small statistics helpers for reporting RL results.

Everything here is plain numpy (no scipy / pandas / rliable needed), so the
module is cheap to import from scripts and tests.

The aggregate metrics follow the recommendations of Agarwal et al. (2021),
"Deep Reinforcement Learning at the Edge of the Statistical Precipice":

* :func:`iqm` -- interquartile mean (25% trimmed mean), robust to outlier runs.
* :func:`bootstrap_ci` -- percentile bootstrap interval over runs (1-D data).
* :func:`stratified_bootstrap_ci` -- percentile bootstrap over a
  ``(num_runs, num_tasks)`` score matrix that resamples runs independently
  within each task.
* :func:`performance_profile` / :func:`performance_profile_ci` -- run-score
  distributions (fraction of runs whose score exceeds each threshold).
* :func:`summarize` -- a JSON-serialisable summary of a set of per-run values.

All randomness goes through ``np.random.default_rng(seed)``, so results are
deterministic for a fixed seed.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "iqm",
    "bootstrap_ci",
    "stratified_bootstrap_ci",
    "performance_profile",
    "performance_profile_ci",
    "summarize",
]

Interval = tuple[Any, Any]
"""A ``(lo, hi)`` pair: floats for scalar statistics, arrays otherwise."""

Statistic = Callable[[np.ndarray], Union[float, np.ndarray]]


def _as_float_array(x: ArrayLike, name: str = "x") -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric array-like: {e}") from None


def _to_python(value: Any) -> Any:
    """0-d arrays / numpy scalars -> Python float; larger arrays unchanged."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return float(arr)
    return arr


def _check_confidence(confidence: float, num_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(num_resamples) < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples!r}")


def _percentile_interval(samples: np.ndarray, confidence: float) -> Interval:
    """Percentile interval along axis 0 of the bootstrap replicates."""
    alpha = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(samples, [alpha, 100.0 - alpha], axis=0)
    return _to_python(lo), _to_python(hi)


def iqm(x: ArrayLike, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50% of the values.

    Identical to ``scipy.stats.trim_mean(x, 0.25, axis=axis)``: the values are
    sorted and ``floor(0.25 * n)`` of them are dropped from *each* end before
    averaging. For ``n < 4`` nothing is dropped (plain mean).

    Args:
      x: Array of values.
      axis: Axis along which to compute the IQM. ``None`` (default) pools all
        entries, e.g. all runs and tasks of a ``(num_runs, num_tasks)`` matrix.

    Returns:
      A Python float when the result is a scalar, otherwise an ndarray with
      ``axis`` removed.

    Raises:
      ValueError: if there are no values along ``axis``.
    """
    a = _as_float_array(x)
    if axis is None:
        a = a.ravel()
        axis = 0
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    if n == 0:
        raise ValueError("iqm() of an empty array is undefined")
    cut = int(0.25 * n)
    middle = np.sort(a, axis=-1)[..., cut : n - cut]
    return _to_python(middle.mean(axis=-1))


# Reducers that accept ``axis=`` and can therefore be applied to all bootstrap
# replicates at once (a large speed-up for e.g. per-point CIs in plots).
_ROW_REDUCERS: dict[Any, Callable[[np.ndarray], np.ndarray]] = {
    np.mean: lambda s: np.mean(s, axis=1),
    np.median: lambda s: np.median(s, axis=1),
    iqm: lambda s: np.asarray(iqm(s, axis=1)),
}


def bootstrap_ci(
    x: ArrayLike,
    statistic: Statistic = np.mean,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap confidence interval of ``statistic`` over runs.

    Args:
      x: 1-D array with one value per run (e.g. final return of each seed).
      statistic: Function mapping a 1-D array to a scalar (default: mean).
      num_resamples: Number of bootstrap replicates.
      confidence: Coverage of the interval, e.g. 0.95.
      seed: Seed for ``np.random.default_rng``; same seed -> same interval.

    Returns:
      ``(lo, hi)`` as Python floats (arrays if ``statistic`` returns arrays).
      With a single value ``v`` the interval is ``(v, v)``.
    """
    a = _as_float_array(x)
    if a.ndim != 1:
        raise ValueError(f"bootstrap_ci expects a 1-D array of runs, got shape {a.shape}")
    if a.size == 0:
        raise ValueError("bootstrap_ci() needs at least one value, got an empty array")
    _check_confidence(confidence, num_resamples)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(int(num_resamples), a.size))
    resampled = a[idx]
    reducer = _ROW_REDUCERS.get(statistic)
    if reducer is not None:
        reps = reducer(resampled)
    else:
        reps = np.stack([np.asarray(statistic(row), dtype=np.float64) for row in resampled])
    return _percentile_interval(reps, confidence)


def stratified_bootstrap_ci(
    scores: ArrayLike,
    statistic: Statistic = iqm,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Stratified percentile bootstrap CI over a ``(num_runs, num_tasks)`` matrix.

    Each replicate resamples, with replacement and independently for every task
    (column), ``num_runs`` runs of that task; ``statistic`` is then applied to
    the resampled ``(num_runs, num_tasks)`` matrix.

    Args:
      scores: Score matrix of shape ``(num_runs, num_tasks)``.
      statistic: Function of the whole matrix, returning a scalar (e.g.
        :func:`iqm` over all entries, the default) or a fixed-shape array
        (e.g. a performance profile).
      num_resamples: Number of bootstrap replicates.
      confidence: Coverage of the interval, e.g. 0.95.
      seed: Seed for ``np.random.default_rng``; same seed -> same interval.

    Returns:
      ``(lo, hi)``: Python floats for a scalar statistic, else arrays with the
      statistic's shape.
    """
    s = _as_float_array(scores, "scores")
    if s.ndim != 2:
        raise ValueError(
            f"scores must have shape (num_runs, num_tasks), got shape {s.shape}"
        )
    num_runs, num_tasks = s.shape
    if num_runs == 0 or num_tasks == 0:
        raise ValueError(f"scores must be non-empty, got shape {s.shape}")
    _check_confidence(confidence, num_resamples)

    rng = np.random.default_rng(seed)
    cols = np.arange(num_tasks)
    reps = []
    for _ in range(int(num_resamples)):
        rows = rng.integers(0, num_runs, size=(num_runs, num_tasks))
        reps.append(np.asarray(statistic(s[rows, cols]), dtype=np.float64))
    return _percentile_interval(np.stack(reps), confidence)


def performance_profile(scores: ArrayLike, taus: ArrayLike) -> np.ndarray:
    """Run-score distribution: fraction of runs scoring above each threshold.

    For every ``tau`` this is the mean over tasks of the fraction of that
    task's runs with ``score > tau`` (equal to rliable's score distribution for
    a rectangular score matrix).

    Args:
      scores: ``(num_runs, num_tasks)`` matrix, or a 1-D array of runs of a
        single task.
      taus: 1-D array (or scalar) of thresholds.

    Returns:
      Float array with one entry per threshold, each in ``[0, 1]``.
    """
    s = _as_float_array(scores, "scores")
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.size == 0:
        raise ValueError(
            f"scores must be a non-empty (num_runs, num_tasks) matrix, got shape {s.shape}"
        )
    t = np.atleast_1d(_as_float_array(taus, "taus"))
    if t.ndim != 1:
        raise ValueError(f"taus must be 1-D, got shape {t.shape}")
    above = s[None, :, :] > t[:, None, None]  # (num_taus, num_runs, num_tasks)
    return above.mean(axis=1).mean(axis=1)


def performance_profile_ci(
    scores: ArrayLike,
    taus: ArrayLike,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise stratified-bootstrap CI of :func:`performance_profile`.

    Returns:
      ``(lo, hi)`` arrays with one entry per threshold.
    """
    s = _as_float_array(scores, "scores")
    if s.ndim == 1:
        s = s[:, None]
    t = np.atleast_1d(_as_float_array(taus, "taus"))
    lo, hi = stratified_bootstrap_ci(
        s,
        lambda m: performance_profile(m, t),
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
    )
    return np.atleast_1d(lo), np.atleast_1d(hi)


def summarize(
    values: ArrayLike, num_resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """JSON-serialisable summary of per-run values (e.g. one per seed).

    Args:
      values: Values to summarise; any shape, all entries are pooled.
      num_resamples: Bootstrap replicates for the confidence interval.
      seed: Bootstrap seed.

    Returns:
      ``{"mean", "std", "iqm", "median", "ci95": [lo, hi], "n"}`` with plain
      Python floats (``n`` is an int). ``std`` is the sample standard
      deviation (``ddof=1``), 0.0 for a single value. ``ci95`` is the 95%
      percentile-bootstrap interval of the mean; ``[v, v]`` for a single value.

    Raises:
      ValueError: on empty input or if any value is NaN or infinite.
    """
    a = _as_float_array(values, "values").ravel()
    n = int(a.size)
    if n == 0:
        raise ValueError("summarize() needs at least one value, got an empty input")
    bad = ~np.isfinite(a)
    if bad.any():
        parts = [
            f"{count} {label}"
            for count, label in (
                (int(np.isnan(a).sum()), "NaN"),
                (int(np.isposinf(a).sum()), "+inf"),
                (int(np.isneginf(a).sum()), "-inf"),
            )
            if count
        ]
        raise ValueError(
            f"summarize() got {int(bad.sum())} non-finite value(s) out of {n} "
            f"({', '.join(parts)}); first at index {int(np.flatnonzero(bad)[0])}"
        )

    mean = float(a.mean())
    if n == 1:
        lo = hi = float(a[0])
    else:
        lo, hi = bootstrap_ci(a, np.mean, num_resamples=num_resamples, seed=seed)
    return {
        "mean": mean,
        "std": float(a.std(ddof=1)) if n > 1 else 0.0,
        "iqm": float(iqm(a)),
        "median": float(np.median(a)),
        "ci95": [float(lo), float(hi)],
        "n": n,
    }
