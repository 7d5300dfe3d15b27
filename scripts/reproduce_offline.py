"""Offline entries of ``scripts/reproduce.py``: every offline agent x dataset kind x env, normalized scores.

``python scripts/reproduce.py offline-gymnax`` builds (or reuses) the datasets with
``scripts/make_dataset.py``, trains every offline agent that supports the env's action space on
every dataset (all seeds in one vmapped program per cell, through ``jaxrl.cli.train_and_evaluate``),
and writes

* ``RESULTS/offline-gymnax.md``: final and best normalized scores (mean and 95% bootstrap CI over
  seeds) per env x dataset kind x agent, the machine, versions and budgets, and a check of the
  classic D4RL findings on our data (offline RL >= BC on medium-replay and medium-expert; every
  method near expert on expert data), each marked holds / does not hold with the numbers;
* ``RESULTS/offline-gymnax.png``: one panel per env, bars per kind and agent with their CIs.

Run folders go to ``--out`` (default ``runs/reproduce-offline-gymnax-<time>``); a finished cell is
reused when the same command runs again, so an interrupted reproduction only trains what is missing.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = ROOT / "datasets"


@dataclasses.dataclass(frozen=True)
class OfflineEntry:
    title: str
    agents: tuple[str, ...]
    """Modules of the offline agents, e.g. "agents.offline.td3_bc"."""
    envs: tuple[str, ...]
    kinds: tuple[str, ...]
    seeds: int
    num_updates: int
    """Gradient updates per run (the same for every agent)."""
    dataset_size: int
    """Transitions per dataset (``make_dataset.py --size``)."""
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Per agent module: ``Config`` fields that differ from its defaults (for the CPU budget)."""
    differences: tuple[str, ...] = ()


AGENTS = ("bc", "td3_bc", "iql", "cql", "rebrac", "awac", "dt", "cql_discrete", "prdc")

ENTRIES: dict[str, OfflineEntry] = {
    "offline-gymnax": OfflineEntry(
        title="Offline agents on our own D4RL-style datasets (gymnax classic control), normalized scores",
        agents=tuple(f"agents.offline.{a}" for a in AGENTS),
        envs=("Pendulum-v1", "MountainCarContinuous-v0", "CartPole-v1", "Acrobot-v1"),
        kinds=("random", "medium", "medium-replay", "medium-expert", "expert"),
        seeds=5,
        num_updates=5_000,
        dataset_size=100_000,
        overrides={
            **{f"agents.offline.{a}": {"hidden_size": 64} for a in ("bc", "td3_bc", "iql", "rebrac", "awac", "prdc")},
            # CORL's CQL learning rates (policy 3e-5) are for 1e6 updates; 1e4 needs faster ones.
            "agents.offline.cql": {"hidden_size": 64, "num_layers": 2, "policy_lr": 3e-4, "alpha_lr": 3e-4,
                                   "num_sampled_actions": 4},
            "agents.offline.cql_discrete": {"hidden_sizes": "64,64"},
            # the paper's 1e4 warm-up steps would be the whole budget here
            "agents.offline.dt": {"embed_dim": 64, "warmup_steps": 1_000},
        },
        differences=(
            "D4RL's tables are for MuJoCo locomotion; these datasets are built by this project's online agents on "
            "classic-control envs (scripts/make_dataset.py, docs/datasets.md), so only the qualitative findings "
            "are comparable, not the numbers.",
            "Budgets are sized for a 2-core CPU: 5e3 gradient updates per run instead of the papers' 1e6 (DT: 1e5), "
            "and 64-unit hidden layers instead of 256 (DT: 64-dimensional embeddings instead of 128); the other "
            "hyperparameters are each agent's defaults except CQL's policy and entropy learning rates (3e-4 instead "
            "of CORL's 3e-5, which is tuned for 1e6 updates), its 4 instead of 10 sampled actions per source in the "
            "logsumexp, and DT's warm-up (1e3 steps instead of 1e4).",
            "Normalized score = 100 (return - random) / (expert - random) with the random and expert returns "
            "measured when the dataset was built (recorded in the dataset's metadata).",
            "The committed table (scripts/results/offline-gymnax.md) covers Pendulum-v1 and CartPole-v1 with the "
            "medium, medium-replay, medium-expert and expert datasets and seven agents; the random kind, "
            "MountainCarContinuous-v0 and Acrobot-v1 (datasets built) and the PRDC and DT columns were not run on "
            "this 2-core CPU: one PRDC cell (exact nearest-neighbour search over 1e5 transitions every update, 5 "
            "seeds x 5e3 updates) did not finish in 10 minutes, nor did one DT cell in 6 minutes, with the machine "
            "shared. `python scripts/reproduce.py offline-gymnax` runs the whole grid.",
        ),
    ),
}


# ----------------------------------------------------------------------------------------------
# Datasets and cells
# ----------------------------------------------------------------------------------------------
def ensure_dataset(env: str, kind: str, size: int, quick: bool, folder: Path) -> Path:
    """The dataset file: make_dataset.py's default ``folder/<env>-<kind>.npz`` when it holds ``size``
    transitions, else ``folder/<env>-<kind>-<size>.npz``, built with scripts/make_dataset.py when
    missing (or, with --quick, from a uniform-random policy)."""
    from jaxrl import data as data_lib

    default = folder / f"{env}-{kind}.npz"
    if default.exists() and data_lib.load(default).size == size:
        return default
    path = folder / f"{env}-{kind}-{size}.npz"
    if path.exists():
        return path
    if quick:  # a few uniform-random transitions: enough to exercise the pipeline, meaningless numbers
        import jax
        from jaxrl import envs

        env_obj, params = envs.make(env)
        space = env_obj.action_space(params)
        ds = data_lib.collect(env, lambda obs, key: jax.vmap(lambda k: space.sample(k))(jax.random.split(key, obs.shape[0])),
                              size, jax.random.PRNGKey(0), kind=kind, policy="uniform random (--quick)",
                              random_return=0.0, expert_return=1.0)
        data_lib.save(ds, path)
        return path
    cmd = [sys.executable, str(ROOT / "scripts" / "make_dataset.py"), env, "--kind", kind, "--size", str(size),
           "--seed", "0", "--out", str(path)]
    print(f"[reproduce] building dataset: {shlex.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return path


@dataclasses.dataclass
class Cell:
    env: str
    kind: str
    agent: str
    summary: dict | None
    skipped: str = ""
    wall_s: float = 0.0
    reused: bool = False

    @property
    def algorithm(self) -> str:
        return self.agent.rsplit(".", 1)[-1]


def build_config(entry: OfflineEntry, agent: str, env: str, quick: bool):
    module = importlib.import_module(agent)
    overrides = dict(entry.overrides.get(agent, {}))
    num_updates = 4 if quick else entry.num_updates
    return module.Config(env=env, num_updates=num_updates, **overrides), module


def run_cell(entry: OfflineEntry, agent: str, env: str, kind: str, data_file: Path, dataset, out: Path, seeds: int,
             quick: bool, quiet: bool) -> Cell:
    from jaxrl.cli import RunOptions, train_and_evaluate
    from jaxrl.config import ConfigError

    config, module = build_config(entry, agent, env, quick)
    run_dir = out / env / kind / agent.rsplit(".", 1)[-1]
    try:
        module.make_train(config, dataset)  # action-space support, before anything compiles
    except ConfigError as err:
        return Cell(env, kind, agent, None, skipped=str(err).split(".")[0])
    if (run_dir / "summary.json").exists():
        saved = json.loads((run_dir / "config.json").read_text())
        if saved.get("config") == json.loads(json.dumps(dataclasses.asdict(config))) and saved["run"]["num_seeds"] == seeds:
            print(f"[reproduce] {env} {kind} {agent}: reusing {run_dir}", flush=True)
            summary = json.loads((run_dir / "summary.json").read_text())
            return Cell(env, kind, agent, summary, wall_s=summary.get("wall_time_s", 0.0), reused=True)
        raise SystemExit(f"error: {run_dir} holds a run of another config; choose another --out")
    print(f"[reproduce] {env} {kind} {agent}: {seeds} seeds x {config.num_updates:,} updates -> {run_dir}", flush=True)
    t0 = time.perf_counter()
    options = RunOptions(num_seeds=seeds, out=str(run_dir), quiet=quiet, dataset=str(data_file),
                         eval_episodes=2 if quick else 10, log_points=2 if quick else 20, plot=False)
    summary = train_and_evaluate(config, module.make_train, options, algorithm=agent.rsplit(".", 1)[-1],
                                 offline=True, dataset=dataset)
    return Cell(env, kind, agent, summary, wall_s=time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _score(cell: Cell, key: str = "normalized_score") -> dict | None:
    return None if cell.summary is None else cell.summary.get(key)


def _fmt_score(s: dict | None) -> str:
    if not s:
        return "—"
    return f"{s['mean']:.1f} [{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]"


def findings(cells: list[Cell]) -> list[str]:
    """The classic D4RL findings, checked on our numbers (final normalized score means)."""
    by = {(c.env, c.kind, c.algorithm): _score(c) for c in cells if _score(c)}
    lines = []
    for env in dict.fromkeys(c.env for c in cells):
        for kind in ("medium-replay", "medium-expert"):
            bc = by.get((env, kind, "bc"))
            others = {a: s for (e, k, a), s in by.items() if e == env and k == kind and a not in ("bc", "dt")}
            if bc and others:
                best_algo, best = max(others.items(), key=lambda kv: kv[1]["mean"])
                holds = best["mean"] >= bc["mean"]
                lines.append(f"{env} {kind}: best offline RL ({best_algo} {best['mean']:.1f}) "
                             f"{'>=' if holds else '<'} BC ({bc['mean']:.1f}): **{'holds' if holds else 'does not hold'}**")
        expert = {a: s for (e, k, a), s in by.items() if e == env and k == "expert"}
        if expert:
            low = {a: s["mean"] for a, s in expert.items() if s["mean"] < 80}
            lines.append(f"{env} expert: {'every method' if not low else 'not every method'} reaches >= 80 "
                         + (f"(below: {', '.join(f'{a} {v:.1f}' for a, v in low.items())})" if low else "")
                         + f": **{'holds' if not low else 'does not hold'}**")
    return lines


def render(name: str, entry: OfflineEntry, cells: list[Cell], *, command: str, started: _dt.datetime, elapsed: float,
           machine: dict, machine_end: dict, versions: dict, revision: str, seeds: int, quick: bool,
           plot_name: str) -> str:
    agents = list(dict.fromkeys(c.algorithm for c in cells))
    lines = [f"# Reproduction `{name}`: {entry.title}" + (" (--quick smoke test: numbers mean nothing)" if quick else ""), "",
             f"- Command: `{command}`",
             f"- Date: {started.isoformat(timespec='seconds')} (took {elapsed / 60:.1f} min)",
             f"- Machine: `{machine['host']}`, CPU {machine['cpu']}, {machine['usable']} usable cores; load average "
             f"at start {machine['load']}, at end {machine_end['load']}",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- Code: git {revision}",
             *([f"- {sum(c.reused for c in cells)} of {len(cells)} cells were trained by earlier invocations of this "
                "command with the same --out and reused here (marked * in the run-time table, with their own "
                "training time); 'took' above counts only this invocation"] if any(c.reused for c in cells) else []),
             f"- Seeds: {seeds} per cell, vmapped in one program; {4 if quick else entry.num_updates:,} gradient updates "
             "per run; metric: D4RL normalized score of the final greedy policy (10 episodes per seed), mean and 95% "
             "bootstrap CI over seeds; 'best' is the best of the 20 evaluations logged during training (CORL's second column)",
             "", "## Final normalized score", "",
             "| env | dataset | " + " | ".join(agents) + " |", "|---|---|" + "---|" * len(agents)]
    grid: dict[tuple[str, str], dict[str, Cell]] = {}
    for c in cells:
        grid.setdefault((c.env, c.kind), {})[c.algorithm] = c
    for (env, kind), row in grid.items():
        lines.append(f"| {env} | {kind} | " + " | ".join(
            _fmt_score(_score(row[a])) if a in row and row[a].summary else ("n/a" if a in row else "—") for a in agents) + " |")
    lines += ["", "## Best normalized score during training", "",
              "| env | dataset | " + " | ".join(agents) + " |", "|---|---|" + "---|" * len(agents)]
    for (env, kind), row in grid.items():
        lines.append(f"| {env} | {kind} | " + " | ".join(
            _fmt_score(_score(row[a], "best_normalized_score")) if a in row and row[a].summary else "—" for a in agents) + " |")
    lines += ["", "n/a: the agent does not support the env's action space.", "", "## D4RL findings on our data", ""]
    lines += [f"- {line}" for line in findings(cells)] or ["- (no cells to compare)"]
    lines += ["", "## Datasets", "", "| env | dataset | transitions | random return | expert return | collected by |",
              "|---|---|---|---|---|---|"]
    for (env, kind), row in grid.items():
        c = next((c for c in row.values() if c.summary), None)
        if c:
            d = c.summary["dataset"]
            lines.append(f"| {env} | {kind} | {d['size']:,} | {d['random_return']:.1f} | {d['expert_return']:.1f} | {d['policy']} |")
    lines += ["", "## Run time", "", "| env | dataset | agent | updates/s (all seeds) | total (s) |", "|---|---|---|---|---|"]
    for c in cells:
        if c.summary:
            lines.append(f"| {c.env} | {c.kind} | {c.algorithm}{'*' if c.reused else ''} | "
                         f"{c.summary.get('updates_per_second', 0):,.0f} | {c.wall_s:,.0f} |")
    lines += ["", "\\* reused from an earlier run of the same command.", "", "## Differences from the references", ""]
    lines += [f"- {d}" for d in entry.differences]
    lines += ["", f"![normalized scores]({plot_name})", ""]
    return "\n".join(lines)


def plot(name: str, cells: list[Cell], out: Path, quick: bool) -> Path:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxrl.io import save_figure_atomic

    envs_in_order = list(dict.fromkeys(c.env for c in cells))
    agents = list(dict.fromkeys(c.algorithm for c in cells))
    fig = Figure(figsize=(12, 3.6 * len(envs_in_order)))
    FigureCanvasAgg(fig)
    for i, env in enumerate(envs_in_order):
        ax = fig.add_subplot(len(envs_in_order), 1, i + 1)
        kinds = list(dict.fromkeys(c.kind for c in cells if c.env == env))
        width = 0.8 / max(len(agents), 1)
        for j, agent in enumerate(agents):
            xs, means, lo, hi = [], [], [], []
            for k, kind in enumerate(kinds):
                s = next((_score(c) for c in cells if c.env == env and c.kind == kind and c.algorithm == agent), None)
                if s:
                    xs.append(k + (j - (len(agents) - 1) / 2) * width)
                    means.append(s["mean"])
                    lo.append(s["mean"] - s["ci95"][0])
                    hi.append(s["ci95"][1] - s["mean"])
            if xs:
                ax.bar(xs, means, width, yerr=[lo, hi], capsize=2, label=agent, color=f"C{j % 10}")  # one color per agent
        ax.axhline(100, color="black", ls="--", lw=0.8)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(np.arange(len(kinds)), kinds)
        ax.set_ylabel("normalized score")
        ax.set_title(env)
        ax.legend(fontsize="small", ncol=min(len(agents), 5))
    fig.suptitle(f"{name}{' (--quick: meaningless)' if quick else ''}: final normalized score, mean and 95% CI over seeds")
    fig.tight_layout()
    return save_figure_atomic(fig, out / f"{name}.png", dpi=100)


def cell_filter(entry: OfflineEntry, cases: str | None):
    """``--cases`` names envs, dataset kinds and agents; a cell is kept when it matches every category named.

    ``--cases Pendulum-v1,expert`` keeps every agent on Pendulum's expert data; ``--cases td3_bc`` every
    env and kind for TD3+BC.
    """
    names = {n.strip() for n in (cases or "").split(",") if n.strip()}
    agents = {a.rsplit(".", 1)[-1] for a in entry.agents}
    unknown = names - set(entry.envs) - set(entry.kinds) - agents
    if unknown:
        raise SystemExit(f"error: --cases {', '.join(sorted(unknown))} matches nothing; envs: {', '.join(entry.envs)}; "
                         f"kinds: {', '.join(entry.kinds)}; agents: {', '.join(sorted(agents))}")
    envs, kinds, algos = names & set(entry.envs), names & set(entry.kinds), names & agents

    def select(env: str, kind: str, agent: str) -> bool:
        return ((not envs or env in envs) and (not kinds or kind in kinds)
                and (not algos or agent.rsplit(".", 1)[-1] in algos))

    return select


def run_entry(name: str, entry: OfflineEntry, args, argv: Sequence[str], helpers) -> int:
    """Run an offline entry (called by ``scripts/reproduce.py``'s main with its parsed arguments)."""
    select = cell_filter(entry, args.cases)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else entry.seeds)
    started = _dt.datetime.now()
    out = Path(args.out or Path("runs") / f"reproduce-{name}-{started.strftime('%Y%m%d-%H%M%S')}")
    partial = bool(args.cases)
    results_dir = Path(args.results) if args.results else (out if args.quick or partial else helpers.RESULTS_DIR)
    size = 2_000 if args.quick else entry.dataset_size
    machine = helpers.machine_info()
    t0 = time.perf_counter()
    cells = []
    from jaxrl import data as data_lib
    from jaxrl.config import ConfigError

    try:
        for env in entry.envs:
            for kind in entry.kinds:
                agents = [a for a in entry.agents if select(env, kind, a)]
                if not agents:
                    continue
                path = ensure_dataset(env, kind, size, args.quick, out / "datasets" if args.quick else DATASETS_DIR)
                dataset = data_lib.load(path)  # once per (env, kind): loading verifies the checksum
                for agent in agents:
                    cells.append(run_cell(entry, agent, env, kind, path, dataset, out, seeds, args.quick, args.quiet))
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    elapsed = time.perf_counter() - t0
    plot_path = plot(name, cells, results_dir, args.quick)
    text = render(name, entry, cells, command="python scripts/reproduce.py " + shlex.join(list(argv)), started=started,
                  elapsed=elapsed, machine=machine, machine_end=helpers.machine_info(), versions=helpers.versions(),
                  revision=helpers.git_revision(), seeds=seeds, quick=args.quick, plot_name=plot_path.name)
    from jaxrl.io import write_text_atomic

    table = write_text_atomic(results_dir / f"{name}.md", text)
    print("\n" + text.split("## Best")[0].split("## Final normalized score")[1].strip() + "\n")
    print(f"[reproduce] wrote {table} and {plot_path} ({elapsed / 60:.1f} min)")
    return 0
