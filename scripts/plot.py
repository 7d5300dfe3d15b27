#!/usr/bin/env python
"""Plot learning curves (mean over seeds with a 95% bootstrap CI band) from run folders.

    python scripts/plot.py RUN_DIR [RUN_DIR ...] [--metric episode_return] [--x env_steps]
        [--out FILE.png] [--title TITLE]

The logic lives in ``jaxrl.plotting.plot_runs`` (importable; also re-exported here).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

try:
    from jaxrl.plotting import PlotError, plot_runs
except ImportError:  # running as a plain script from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from jaxrl.plotting import PlotError, plot_runs

__all__ = ["plot_runs", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Plot learning curves (mean and 95% bootstrap CI over seeds) "
        "from jaxrl run folders.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run folder(s) containing config.json and metrics.jsonl")
    parser.add_argument("--metric", default="episode_return",
                        help="metric to plot on the y axis (default: %(default)s)")
    parser.add_argument("--x", default="env_steps",
                        help="key for the x axis (default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="output PNG (default: RUN_DIR/curves.png for one folder, "
                        "else ./curves.png)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--front", action="store_true",
                        help="draw the Pareto front each seed found beside the true one (multi-objective runs; "
                        "one RUN_DIR; default output RUN_DIR/front.png)")
    args = parser.parse_args(argv)
    try:
        if args.front:
            if len(args.run_dirs) != 1:
                raise PlotError("--front takes one run folder")
            from jaxrl.plotting import plot_front

            path = plot_front(args.run_dirs[0], out=args.out)
        else:
            path = plot_runs(args.run_dirs, metric=args.metric, x=args.x, out=args.out, title=args.title)
    except PlotError as err:
        raise SystemExit(f"error: {err}") from None
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
