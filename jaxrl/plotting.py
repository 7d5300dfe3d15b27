"""Learning curves from run folders: mean over seeds with a 95% bootstrap CI band (PNG).

``scripts/plot.py`` is the command line; the runner draws ``OUT/curves.png`` at the end of a run.

Each RUN_DIR holds ``config.json`` (a JSON object with at least "algorithm"
and "env") and ``metrics.jsonl`` with one JSON object per (logging step, run)::

    {"run": 0, "seed": 0, "sweep": {"lr": 0.001}, "update": 10,
     "env_steps": 5120, "episode_return": 21.3, "loss": 0.5}

One curve is drawn per (RUN_DIR, distinct "sweep" dict); the runs of a sweep
point are treated as seeds. Runs that logged at different x values are
linearly interpolated onto the union of their x values; at each x only the
runs whose logged range covers it contribute (no extrapolation).

"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from jaxrl import stats
from jaxrl.io import save_figure_atomic

__all__ = ["plot_runs", "PlotError"]


class PlotError(ValueError):
    """A run folder or metric that cannot be plotted; the message says what is wrong."""

# Bookkeeping keys of a metrics line that are not plottable metrics.
_NON_METRIC_KEYS = {"run", "seed", "sweep"}


@dataclass
class _Curve:
    run_dir: Path
    config: dict[str, Any]
    sweep: dict[str, Any]
    # run id -> list of (x, y)
    runs: dict[Any, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _format_value(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        print(f"warning: {path} not found; labelling curves by folder name", file=sys.stderr)
        return {}
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PlotError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise PlotError(f"{path} must contain a JSON object")
    return config


def _read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"no metrics.jsonl in run folder {run_dir}")
    rows = []
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PlotError(f"{path}:{lineno}: invalid JSON: {e}") from None
            if not isinstance(row, dict):
                raise PlotError(f"{path}:{lineno}: expected a JSON object")
            rows.append(row)
    if not rows:
        raise PlotError(f"{path} is empty")
    return rows


def _load_curves(run_dirs: Sequence[Path], metric: str, x: str) -> list[_Curve]:
    curves: list[_Curve] = []
    available: set[str] = set()
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise PlotError(f"run folder not found: {run_dir}")
        config = _read_config(run_dir)
        by_sweep: dict[str, _Curve] = {}
        for row in _read_metrics(run_dir):
            available.update(k for k, v in row.items()
                             if k not in _NON_METRIC_KEYS and _is_number(v))
            xv, yv = row.get(x), row.get(metric)
            if not (_is_number(xv) and _is_number(yv)):
                continue
            if not (math.isfinite(xv) and math.isfinite(yv)):
                continue
            sweep = row.get("sweep") or {}
            if not isinstance(sweep, dict):
                sweep = {"sweep": sweep}
            key = json.dumps(sweep, sort_keys=True)
            curve = by_sweep.get(key)
            if curve is None:
                curve = by_sweep[key] = _Curve(run_dir, config, sweep)
            curve.runs[(row.get("run"), row.get("seed"))].append((float(xv), float(yv)))
        curves.extend(by_sweep.values())  # first-appearance order

    def known() -> str:
        return ", ".join(sorted(available)) or "(none)"

    if metric not in available:
        raise PlotError(f"unknown metric {metric!r}; available metrics: {known()}")
    if x not in available:
        raise PlotError(f"unknown x key {x!r}; available keys: {known()}")
    if not curves:
        raise PlotError(f"no line has finite values for both {x!r} and {metric!r}")
    return curves


def _label(curve: _Curve) -> str:
    algo = curve.config.get("algorithm")
    env = curve.config.get("env")
    parts = [str(p) for p in (algo, env) if p is not None] or [curve.run_dir.name]
    parts += [f"{k}={_format_value(v)}" for k, v in sorted(curve.sweep.items())]
    return " ".join(parts)


def _aggregate(runs: Iterable[list[tuple[float, float]]]):
    """Mean and 95% bootstrap CI over runs on the union of their x values."""
    series = []
    for points in runs:
        pts = np.asarray(sorted(points), dtype=np.float64)
        # If a run logged the same x twice, keep the last value.
        xs, last = np.unique(pts[::-1, 0], return_index=True)
        series.append((xs, pts[::-1, 1][last]))
    grid = np.unique(np.concatenate([xs for xs, _ in series]))
    mean, lo, hi = (np.empty_like(grid) for _ in range(3))
    for i, gx in enumerate(grid):
        vals = np.array([np.interp(gx, xs, ys) for xs, ys in series
                         if xs[0] <= gx <= xs[-1]])
        mean[i] = vals.mean()
        lo[i], hi[i] = stats.bootstrap_ci(vals, np.mean, seed=i)
    return grid, mean, lo, hi


def _default_out(run_dirs: Sequence[Path]) -> Path:
    if len(run_dirs) == 1:
        return run_dirs[0] / "curves.png"
    return Path.cwd() / "curves.png"


def plot_runs(
    run_dirs: Sequence[str | os.PathLike],
    metric: str = "episode_return",
    x: str = "env_steps",
    out: str | os.PathLike | None = None,
    title: str | None = None,
) -> Path:
    """Draw learning curves for ``run_dirs`` into a PNG file and return its path.

    Args:
      run_dirs: Run folders, each with ``config.json`` and ``metrics.jsonl``.
      metric: Metric key to plot on the y axis.
      x: Key to use for the x axis (e.g. "env_steps" or "update").
      out: Output PNG path. Default: ``RUN_DIR/curves.png`` for a single
        folder, otherwise ``curves.png`` in the current directory.
      title: Figure title (default: "<metric> vs <x>").

    Returns:
      The path of the written PNG (written atomically).

    Raises:
      PlotError: with a message for a missing folder / metrics.jsonl or an
        unknown metric or x key.
    """
    # Object-oriented API with the Agg canvas: no pyplot global state, and it
    # works without a display whatever backend the caller configured.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise PlotError(f"no run folders given")
    curves = _load_curves(dirs, metric, x)
    labels = [_label(c) for c in curves]
    if len(set(labels)) < len(labels):  # same algo/env/sweep in two folders
        labels = [f"{lab} [{c.run_dir.name}]" for lab, c in zip(labels, curves)]

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for curve, label in zip(curves, labels):
        xs, mean, lo, hi = _aggregate(curve.runs.values())
        n = len(curve.runs)
        (line,) = ax.plot(xs, mean, label=f"{label} (n={n})", lw=1.8)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.set_title(title if title is not None else f"{metric} vs {x} (mean, 95% bootstrap CI over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()

    out_path = Path(out) if out is not None else _default_out(dirs)
    save_figure_atomic(fig, out_path)
    return out_path


def plot_front(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw the Pareto front each seed found beside the env's true front, and return the PNG's path.

    The data come from the ``report`` that a multi-objective agent writes for every run in
    ``summary.json``: ``front`` (the non-dominated evaluated returns), and ``true_front`` when the env
    knows its front. Two objectives are drawn as a scatter. With more objectives each point is a
    line across the objective axes (parallel coordinates).

    Raises:
      PlotError: when the folder has no ``summary.json`` or its runs have no front.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.exists():
        raise PlotError(f"{run_dir} has no summary.json (is it a finished run folder?)")
    summary = json.loads(path.read_text())
    runs = [r for r in summary.get("runs", []) if (r.get("report") or {}).get("front")]
    if not runs:
        raise PlotError(f"{path} has no Pareto front: only multi-objective agents write one (runs[*].report.front)")
    true_front = np.asarray(runs[0]["report"].get("true_front") or [], float)
    fig = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    m = len(runs[0]["report"]["front"][0])
    for r in runs:
        front = np.asarray(r["report"]["front"], float)
        label = f"seed {r['seed']}" + (f" (HV ratio {r['report']['hypervolume_ratio']:.2f})"
                                        if r["report"].get("hypervolume_ratio") is not None else "")
        if m == 2:
            ax.scatter(front[:, 0], front[:, 1], s=28, alpha=0.7, label=label)
        else:
            ax.plot(np.arange(m), front.T, alpha=0.5, lw=1)
    if true_front.size:
        if m == 2:
            order = np.argsort(true_front[:, 0])
            ax.plot(true_front[order, 0], true_front[order, 1], "k--", marker="x", lw=1, label="true front")
        else:
            ax.plot(np.arange(m), true_front.T, "k--", lw=0.8, alpha=0.6)
    if m == 2:
        ax.set_xlabel("objective 0")
        ax.set_ylabel("objective 1")
        ax.legend(loc="best", fontsize="small")
    else:
        ax.set_xticks(range(m), [f"objective {i}" for i in range(m)])
        ax.set_ylabel("return (dashed black: true front)")
    ax.set_title(f"{summary.get('algorithm', '')} {summary.get('env', '')}: found fronts"
                 + (f" (γ = {runs[0]['report'].get('front_gamma')})" if runs[0]["report"].get("front_gamma") else ""))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out_path = Path(out) if out is not None else run_dir / "front.png"
    save_figure_atomic(fig, out_path)
    return out_path
