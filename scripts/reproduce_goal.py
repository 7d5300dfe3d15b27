#!/usr/bin/env python
"""Reproduce the goal-conditioned family's published results beside the paper's numbers.

Entry ``her-bitflip`` (Andrychowicz et al. 2017, "Hindsight Experience Replay", Fig. 1): the greedy
success rate of DQN with and without HER on bit flipping after training, for several numbers of
bits n. The paper's finding: "DQN without HER can only solve the task for n <= 13 while DQN with
HER easily solves the task for n up to 50."

Every (n, her) cell trains all its seeds in one vmapped, compiled program
(``agents/goal_conditioned/dqn_her.py``, the paper's hyperparameters) and then evaluates every
seed's greedy policy on ``--eval-episodes`` fresh episodes (one key per seed). It writes

* ``RESULTS/her-bitflip.md``: n x {DQN, DQN+HER} success rate (mean over seeds and 95% bootstrap CI),
  the paper's finding beside it, the command, date, machine, versions, budget and run times;
* ``RESULTS/her-bitflip.png``: success rate against n, both agents, with the paper's threshold;
* ``RESULTS/her-bitflip.json``: every cell's per-seed numbers. A cell already there with the same
  settings is reused, so an interrupted run continues where it stopped.

Usage::

    python scripts/reproduce_goal.py her-bitflip                       # n in 5..50, 3 seeds, 1000 cycles
    python scripts/reproduce_goal.py her-bitflip --ns 5,10,15 --seeds 3
    python scripts/reproduce_goal.py her-bitflip --quick --out /tmp/smoke  # pipeline smoke test

``--quick`` trains n in {5, 8} for 20 cycles with 2 seeds (numbers mean nothing).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # running as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from jaxrl.io import save_figure_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from scripts.reproduce import git_revision, machine_info, versions  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().with_name("results")
PAPER_NS = (5, 10, 15, 20, 30, 40, 50)
PAPER_DQN_LIMIT = 13
PAPER_SOURCE = ("Andrychowicz et al. 2017, Hindsight Experience Replay, Sec. 3.1 and Fig. 1: \"DQN without HER "
                "can only solve the task for n <= 13 while DQN with HER easily solves the task for n up to 50\"")


def paper_finding(n: int, her: bool) -> str:
    """What Fig. 1 of the paper shows for this cell (read from the paper's text, not its pixels)."""
    if her:
        return "solved" if n <= 50 else "not tested"
    return "solved" if n <= PAPER_DQN_LIMIT else "fails"


# ----------------------------------------------------------------------------------------------
# Training one cell: all seeds of one (n, her) in one program
# ----------------------------------------------------------------------------------------------
def train_cell(n: int, her: bool, seeds: int, cycles: int, eval_episodes: int, overrides: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from agents.goal_conditioned import dqn_her
    from jaxrl.evaluation import evaluate_trainer

    config = dataclasses.replace(dqn_her.Config(), env=f"BitFlipping-{n}-v0", her=her, **overrides)
    # A buffer as large as everything the run collects never overwrites, so it replays exactly what
    # the paper's 10^6-transition buffer would while it holds fewer than 10^6 (and saves memory).
    collected = cycles * config.num_envs * n
    buffer_size = overrides.get("buffer_size", min(config.buffer_size, collected))
    config = dataclasses.replace(config, total_timesteps=collected, buffer_size=buffer_size)
    trainer = dqn_her.make_train(config)

    def train_and_eval(key):
        state, metrics = trainer(key)
        result = evaluate_trainer(trainer, state, jax.random.fold_in(key, 0x5EED), eval_episodes)
        return result["success"].mean(), metrics["success_rate"]

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    t0 = time.perf_counter()
    program = jax.jit(jax.vmap(train_and_eval)).lower(keys).compile()
    compiled = time.perf_counter() - t0
    success, curve = jax.device_get(program(keys))
    seconds = time.perf_counter() - t0 - compiled
    return {"n": n, "her": her, "seeds": seeds, "cycles": cycles, "eval_episodes": eval_episodes,
            "overrides": overrides, "eval_success": np.asarray(success).tolist(),
            "train_success_curve": np.asarray(curve).mean(0).tolist(),
            "compile_s": compiled, "train_s": seconds, "config": dataclasses.asdict(config)}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _cell_key(n, her, seeds, cycles, eval_episodes, overrides) -> str:
    return json.dumps([n, her, seeds, cycles, eval_episodes, overrides], sort_keys=True)


def _summary(cell: dict) -> dict:
    from jaxrl import stats

    return stats.summarize(cell["eval_success"])


def write_markdown(path: Path, cells: dict, args, ns, started: str, machine: dict, machine_end: dict,
                   wall: float, png: Path) -> Path:
    lines = [
        "# HER bit flipping: success rate vs number of bits, DQN with and without HER",
        "",
        f"Reference: {PAPER_SOURCE}.",
        "",
        f"Ours: `agents/goal_conditioned/dqn_her.py` with the paper's hyperparameters (one hidden layer of 256, Adam 1e-3, "
        f"γ 0.98, batch 128, 40 optimization steps and a Polyak-0.95 target update per cycle of 16 episodes, "
        f"ε = 0.2, `future` strategy with k = 4, targets clipped to [-1/(1-γ), 0]), "
        f"{args.cycles} cycles per run ({args.cycles * 16:,} episodes, {args.cycles * 16} x n env steps), "
        f"{args.seeds} seeds per cell trained in one vmapped program; success = the greedy policy reaches the goal at "
        f"some step of an n-step episode, over {args.eval_episodes} evaluation episodes per seed. "
        "Cell: mean over seeds [95% bootstrap CI].",
        "",
        "| n | DQN | DQN+HER | paper: DQN | paper: DQN+HER |",
        "| ---: | :--- | :--- | :--- | :--- |",
    ]
    for n in ns:
        row = [str(n)]
        for her in (False, True):
            cell = cells.get(_cell_key(n, her, args.seeds, args.cycles, args.eval_episodes, args.overrides))
            if cell is None:
                row.append("not run")
                continue
            s = _summary(cell)
            row.append(f"{s['mean']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]")
        row += [paper_finding(n, False), paper_finding(n, True)]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Where ours agrees and differs", "", *verdict(cells, args, ns), ""]
    used = [c for c in cells.values() if c["key"] in {_cell_key(n, her, args.seeds, args.cycles, args.eval_episodes,
                                                                 args.overrides) for n in ns for her in (False, True)}]
    times = [f"n={c['n']} {'HER' if c['her'] else 'DQN'}: compile {c['compile_s']:.0f}s, train {c['train_s']:.0f}s"
             for c in used]
    loads = sorted({str(c.get("load_at_end", "?")) for c in used})
    lines += [
        "## Setup",
        "",
        f"- Command: `{' '.join(['python scripts/reproduce_goal.py'] + sys.argv[1:])}`",
        f"- Date: table written {started} (UTC) by an invocation of {wall:.0f}s wall time; cells trained "
        f"{', '.join(sorted({c.get('date', '?') for c in used}))} (UTC); revision {git_revision()}",
        f"- Machine: {machine['cpu']}, {machine['usable']} usable cores; {machine['platform']}; load average "
        f"(1/5/15 min) when this table was written {machine['load']} -> {machine_end['load']}; after each trained cell: "
        f"{'; '.join(loads)} (the machine was shared with other jobs)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"- Config overrides: {args.overrides or 'none'}",
        "- Times per cell: " + "; ".join(times),
        "- Differences from the paper's setup: see the module docstring of `agents/goal_conditioned/dqn_her.py` "
        "(16 parallel envs instead of 8 MPI workers, ε-greedy, sampled relabeling, no observation normalization, "
        "greedy evaluation with the online network). The paper does not state its bit-flipping budget; ours is "
        "the same number of cycles for every n.",
        "",
        f"![success rate vs n]({png.name})",
        "",
    ]
    return write_text_atomic(path, "\n".join(lines))


def verdict(cells: dict, args, ns) -> list[str]:
    """Plain sentences comparing each agent's curve with the paper's finding (threshold 0.9 = solved)."""
    out = []
    for her in (False, True):
        name = "DQN+HER" if her else "DQN"
        solved, failed = [], []
        for n in ns:
            cell = cells.get(_cell_key(n, her, args.seeds, args.cycles, args.eval_episodes, args.overrides))
            if cell is None:
                continue
            (solved if _summary(cell)["mean"] >= 0.9 else failed).append(n)
        expected_solved = [n for n in solved + failed if paper_finding(n, her) == "solved"]
        agree = sorted(solved) == sorted(expected_solved)
        out.append(f"- {name}: solved (mean success >= 0.9) for n in {sorted(solved) or 'none'}, not for "
                   f"{sorted(failed) or 'none'}; the paper: solved for n in {expected_solved or 'none'} of these. "
                   + ("Agrees." if agree else "Differs."))
        for n in failed:
            trend = _trend(cells.get(_cell_key(n, her, args.seeds, args.cycles, args.eval_episodes, args.overrides)))
            if trend:
                out.append(f"  - n={n}: {trend}")
    return out


def _trend(cell: dict) -> str:
    """Whether an unsolved cell was still improving: exploration-episode success over the last two tenths."""
    curve = cell.get("train_success_curve") if cell else None
    if not curve or len(curve) < 10:
        return ""
    tenth = len(curve) // 10
    before, last = sum(curve[-2 * tenth:-tenth]) / tenth, sum(curve[-tenth:]) / tenth
    if last > 0.01 and last > 1.2 * before:
        return (f"still improving when training stopped (success of the ε-greedy training episodes {before:.2f} -> "
                f"{last:.2f} over the last two tenths of the cycles): a budget limit, not a plateau")
    if last <= 0.01:
        return "no training episode reached its goal in the last tenth of the cycles"
    return f"training success flat at about {last:.2f} at the end"


def write_plot(path: Path, cells: dict, args, ns) -> Path:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for her, color in ((False, "tab:blue"), (True, "tab:orange")):
        xs, mean, lo, hi = [], [], [], []
        for n in ns:
            cell = cells.get(_cell_key(n, her, args.seeds, args.cycles, args.eval_episodes, args.overrides))
            if cell is None:
                continue
            s = _summary(cell)
            xs.append(n), mean.append(s["mean"]), lo.append(s["ci95"][0]), hi.append(s["ci95"][1])
        if xs:
            label = "DQN+HER" if her else "DQN"
            ax.plot(xs, mean, "o-", color=color, label=f"{label} (ours, {args.seeds} seeds)")
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2)
    ax.axvline(PAPER_DQN_LIMIT, color="tab:blue", ls="--", lw=1, label=f"paper: DQN solves only n <= {PAPER_DQN_LIMIT}")
    ax.plot([min(ns), 50], [1.0, 1.0], color="tab:orange", ls=":", lw=1.5, label="paper: DQN+HER solves n <= 50")
    ax.set_xlabel("number of bits n")
    ax.set_ylabel("greedy success rate")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xticks(np.asarray(ns))
    ax.set_title(f"Bit flipping after {args.cycles} cycles ({args.cycles * 16:,} episodes)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------
def run(args) -> Path:
    """The ``her-bitflip`` entry: train every missing (n, her) cell, then write the table and plot.

    Returns the path of the markdown table.
    """
    ns = tuple(args.ns)
    out = Path(args.out) if args.out else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    store = out / "her-bitflip.json"
    cells = {}
    if store.exists():
        cells = {c["key"]: c for c in json.loads(store.read_text())["cells"]}
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    machine, t0 = machine_info(), time.perf_counter()
    for n in ns:
        for her in (False, True):
            key = _cell_key(n, her, args.seeds, args.cycles, args.eval_episodes, args.overrides)
            if key in cells:
                print(f"[her-bitflip] n={n} her={her}: reused", flush=True)
                continue
            cell = train_cell(n, her, args.seeds, args.cycles, args.eval_episodes, args.overrides)
            cell["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
            cell["load_at_end"] = machine_info()["load"]
            cells[key] = {"key": key, **cell}
            write_json_atomic(store, {"cells": list(cells.values())})
            s = _summary(cell)
            print(f"[her-bitflip] n={n} her={her}: success {s['mean']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] "
                  f"(compile {cell['compile_s']:.0f}s, train {cell['train_s']:.0f}s)", flush=True)
    png = write_plot(out / "her-bitflip.png", cells, args, ns)
    md = write_markdown(out / "her-bitflip.md", cells, args, ns, started, machine, machine_info(),
                        time.perf_counter() - t0, png)
    print(f"[her-bitflip] wrote {md} and {png}", flush=True)
    return md


ENTRIES = {"her-bitflip": run}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10,15, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("entry", choices=sorted(ENTRIES), help="which result to reproduce")
    parser.add_argument("--ns", type=_ints, default=PAPER_NS, help="numbers of bits (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell, trained in one program (default: 3)")
    parser.add_argument("--cycles", type=int, default=1000, help="training cycles of 16 episodes per run (default: 1000)")
    parser.add_argument("--eval-episodes", type=int, default=64, help="greedy evaluation episodes per seed (default: 64)")
    parser.add_argument("--buffer-size", type=int, default=None, help="replay capacity in transitions (default: the agent's)")
    parser.add_argument("--quick", action="store_true", help="smoke test: n in {5, 8}, 20 cycles, 2 seeds")
    parser.add_argument("--out", default=None, help="results folder (default: scripts/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.ns, args.cycles, args.seeds, args.eval_episodes = (5, 8), 20, 2, 16
        args.out = args.out or str(ROOT / "runs" / "reproduce-her-bitflip-quick")
    unregistered = [n for n in args.ns if n not in (5, 8, 10, 15, 20, 30, 40, 50)]
    if unregistered:
        parser.error(f"--ns: no registered BitFlipping-<n>-v0 id for n in {unregistered}; "
                     "allowed: 5, 8, 10, 15, 20, 30, 40, 50")
    if args.seeds < 1 or args.cycles < 1 or args.eval_episodes < 1:
        parser.error("--seeds, --cycles and --eval-episodes must be >= 1")
    args.overrides = {} if args.buffer_size is None else {"buffer_size": args.buffer_size}
    return args


def main(argv=None) -> Path:
    args = parse_args(argv)
    return ENTRIES[args.entry](args)


if __name__ == "__main__":
    main()
