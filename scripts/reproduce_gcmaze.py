#!/usr/bin/env python
"""Reproduce the goal-conditioned family on the point maze: success rate per layout, online and
offline agents, mean ± 95% CI over seeds, and the mazes with each agent's rollouts drawn on them
(issue 4, entry ``gc-pointmaze``).

What is trained (every case: all its seeds in ONE compiled program, ``jax.jit(jax.vmap(train))``
over the seed keys, through the agent's own ``make_train``):

* **Offline** (``gcbc``, ``gciql``, ``gcivl``, ``qrl``, ``hiql``, ``hilp``; whichever of them exist in
  ``agents/goal_conditioned/``): on the ``navigate`` (and, with ``--kinds navigate,stitch``, the
  ``stitch``) dataset of each layout, built once by ``scripts/make_dataset.py``'s point-maze recipe
  (OGBench-style noisy oracle; ``--dataset-size`` transitions, seed 0) and kept in
  ``<out>/datasets/``. Budget: ``OFFLINE_OVERRIDES`` (10,000 updates of batch 256, two hidden layers
  of 128, lr 1e-3, τ 0.02: the small-CPU budget of the agents' docstrings; OGBench trains 1e6
  updates of batch 1024 with 3 × 512 layers), each override applied where the agent has that field.
* **Online** (``sac_her``, ``crl``): on the open maze with the learning checks' short horizon
  (50 steps, max speed 0.2; ``ONLINE_SETTINGS``) and on the U-maze at the budgets their
  docstrings report. The medium maze and larger are not trained online by default (both agents
  measured 0.00 on Medium at the budgets a 2-core CPU allows); pass ``--online-layouts`` to try.

Success: the agent's ``Trainer.report``: greedy policy, 10 episodes on each of the layout's five
evaluation tasks (``envs/goal_conditioned/point_maze.py`` ``TASKS``: OGBench's for medium and larger),
averaged over tasks, per seed. A uniformly random policy's success on the same tasks and env settings
(10 episodes per task) heads each table, one row per env setting used. The figure draws, per layout,
one greedy episode per task of each agent's first seed (start o, goal *, one colour per task) on the
maze.

Outputs (``--out``, default ``scripts/results/``): ``gc-pointmaze.md`` (tables, findings, setup),
``gc-pointmaze.png`` (the rollouts) and ``gc-pointmaze.json`` (every case's per-seed, per-task
success and its seed-0 rollouts; compact JSON, positions rounded to 1e-3). A case already in the JSON with the same settings is reused, so an
interrupted run continues where it stopped and ``--layouts``/``--agents`` can add cases piecewise.

Usage::

    python scripts/reproduce.py gc-pointmaze                                   # defaults below
    python scripts/reproduce.py gc-pointmaze --layouts open,umaze --agents gciql,hiql --seeds 4
    python scripts/reproduce.py gc-pointmaze --quick --out /tmp/smoke          # pipeline smoke test

``--quick`` trains tiny budgets with 2 seeds on the open maze (numbers mean nothing).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # running as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from jaxrl.io import save_figure_atomic, write_json_atomic, write_text_atomic  # noqa: E402

NAME = "gc-pointmaze"
TITLE = "point maze success per layout: online (SAC+HER, CRL) and offline GC agents, with rollouts"
RESULTS_DIR = Path(__file__).resolve().with_name("results")

OFFLINE_AGENTS = {"gcbc": "GCBC", "gciql": "GCIQL", "gcivl": "GCIVL", "qrl": "QRL", "hiql": "HIQL", "hilp": "HILP"}
ONLINE_AGENTS = {"sac_her": "SAC+HER", "crl": "CRL"}
LAYOUTS = ("open", "umaze", "medium", "large", "giant")
KINDS = ("navigate", "stitch")

OFFLINE_OVERRIDES = {"num_updates": 10_000, "batch_size": 256, "hidden_size": 128, "num_layers": 2, "lr": 1e-3,
                     "tau": 0.02}
OFFLINE_QUICK = {"num_updates": 100, "batch_size": 32, "hidden_size": 16, "num_layers": 1}
OPEN_SHORT_HORIZON = {"max_steps_in_episode": 50, "max_speed": 0.2}
ONLINE_SETTINGS = {
    # (env params, config overrides); the open-maze settings are the learning checks' (tests/test_*.py).
    ("sac_her", "open"): (OPEN_SHORT_HORIZON, {"total_timesteps": 40 * 16 * 50, "hidden_sizes": "64,64"}),
    ("crl", "open"): (OPEN_SHORT_HORIZON, {"total_timesteps": 20 * 16 * 50, "batch_size": 128, "init_alpha": 0.1,
                                           "hidden_sizes": "64,64"}),
    # U-maze: sac_her.py's docstring (polyak 0.5, 300 cycles: 0.83); crl.py's defaults (200 cycles: 0.52).
    ("sac_her", "umaze"): ({}, {"total_timesteps": 300 * 16 * 300, "polyak": 0.5}),
    ("crl", "umaze"): ({}, {}),
}
ONLINE_QUICK = {"total_timesteps": 2 * 4 * 50, "num_envs": 4, "num_optim_steps": 2, "batch_size": 32,
                "hidden_sizes": "16,16"}


@dataclasses.dataclass(frozen=True)
class Case:
    agent: str
    layout: str
    kind: str | None  # the dataset kind (offline) or None (online)

    @property
    def online(self) -> bool:
        return self.kind is None

    @property
    def label(self) -> str:
        name = {**OFFLINE_AGENTS, **ONLINE_AGENTS}[self.agent]
        return name if self.online else f"{name} ({self.kind})"


def env_id(layout: str) -> str:
    from envs.goal_conditioned.point_maze import ENV_IDS

    return ENV_IDS[layout]


def available_agents() -> list[str]:
    """The entry's agents whose files exist in this checkout."""
    folder = ROOT / "agents" / "goal_conditioned"
    return [a for a in [*ONLINE_AGENTS, *OFFLINE_AGENTS] if (folder / f"{a}.py").exists()]


def applied_overrides(config_cls, overrides: dict) -> dict:
    """The overrides whose field the agent's Config has (each agent names its own knobs)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in overrides.items() if k in fields}


def case_settings(case: Case, quick: bool) -> tuple[dict, dict]:
    """(env params, config overrides) of a case."""
    module = importlib.import_module(f"agents.goal_conditioned.{case.agent}")
    if case.online:
        env_params, overrides = ONLINE_SETTINGS.get((case.agent, case.layout), ({}, {}))
        if quick:
            env_params, overrides = OPEN_SHORT_HORIZON, ONLINE_QUICK
    else:
        env_params, overrides = {}, (OFFLINE_QUICK if quick else OFFLINE_OVERRIDES)
    return dict(env_params), applied_overrides(module.Config, overrides)


def case_key(case: Case, seeds: int, quick: bool, dataset_size: int) -> str:
    env_params, overrides = case_settings(case, quick)
    return json.dumps([NAME, case.agent, case.layout, case.kind, seeds, quick, env_params, overrides,
                       None if case.online else dataset_size], sort_keys=True)


# ----------------------------------------------------------------------------------------------
# Data, training, rollouts
# ----------------------------------------------------------------------------------------------
def dataset_for(layout: str, kind: str, size: int, folder: Path):
    """The layout's ``kind`` dataset: loaded from ``folder`` if built before with this size, else built."""
    from jaxrl import data as data_lib
    from scripts import make_dataset

    path = folder / f"{env_id(layout)}-{kind}-{size}.npz"
    if path.exists():
        return data_lib.load(path), path
    folder.mkdir(parents=True, exist_ok=True)
    return make_dataset.build_maze(env_id(layout), kind, size, seed=0, out=path)


def rollout_paths(trainer, state, key) -> list[dict]:
    """One greedy episode per evaluation task: the agent's positions from reset until the episode ends
    (goal reached, when the env terminates there, or the time limit), and whether it succeeded."""
    import jax
    import jax.numpy as jnp

    from envs.goal_conditioned.point_maze import NUM_TASKS

    env, params = trainer.env, trainer.env_params
    steps = int(params.max_steps_in_episode)

    def episode(task_id, k):
        p = params.replace(task_id=task_id)
        reset_key, run_key = jax.random.split(k)
        obs, env_state = env.reset(reset_key, p)

        def body(carry, step_key):
            obs, env_state, done, success, length = carry
            act_key, env_key = jax.random.split(step_key)
            action = trainer.act(state, jax.tree.map(lambda x: x[None], obs), act_key)[0]
            # step_env: no auto-reset, so the last position is the one the episode ended at
            next_obs, next_state, _, terminated, info = env.step_env(env_key, env_state, action, p)
            keep = lambda old, new: jax.tree.map(lambda a, b: jnp.where(done, a, b), old, new)  # noqa: E731
            obs, env_state = keep(obs, next_obs), keep(env_state, next_state)
            success = success | (~done & info["success"])
            length = length + (~done).astype(jnp.int32)
            done = done | terminated | (env_state.time >= steps)
            return (obs, env_state, done, success, length), obs["achieved_goal"]

        carry = (obs, env_state, jnp.bool_(False), jnp.bool_(False), jnp.int32(0))
        (_, _, _, success, length), path = jax.lax.scan(body, carry, jax.random.split(run_key, steps))
        return jnp.concatenate([obs["achieved_goal"][None], path]), success, length, obs["desired_goal"]

    tasks = jnp.arange(NUM_TASKS) + 1
    paths, success, lengths, goals = jax.jit(jax.vmap(episode))(tasks, jax.random.split(key, NUM_TASKS))
    return [{"task": t + 1, "path": np.round(np.asarray(paths[t][:int(lengths[t]) + 1]), 3).tolist(),
             "success": bool(success[t]), "goal": np.round(np.asarray(goals[t]), 3).tolist()}
            for t in range(NUM_TASKS)]


def make_trainer(case: Case, quick: bool, dataset_size: int, data_dir: Path):
    from jaxrl import envs

    module = importlib.import_module(f"agents.goal_conditioned.{case.agent}")
    env_params, overrides = case_settings(case, quick)
    config = module.Config(env=env_id(case.layout), **overrides)
    if case.online:
        env, params = envs.make(env_id(case.layout), **env_params)
        return module.make_train(config, env, params), config
    dataset, _ = dataset_for(case.layout, case.kind, dataset_size, data_dir)
    return module.make_train(config, dataset), config


def train_case(case: Case, seeds: int, quick: bool, dataset_size: int, data_dir: Path) -> dict:
    import jax
    import jax.numpy as jnp

    trainer, config = make_trainer(case, quick, dataset_size, data_dir)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    t0 = time.perf_counter()
    if case.online:
        program = jax.jit(jax.vmap(lambda k: trainer(k)[0])).lower(keys).compile()
        compiled = time.perf_counter() - t0
        states = jax.block_until_ready(program(keys))
    else:
        program = jax.jit(jax.vmap(lambda k, d: trainer(k, d)[0], in_axes=(0, None))).lower(keys, trainer.data).compile()
        compiled = time.perf_counter() - t0
        states = jax.block_until_ready(program(keys, trainer.data))
    trained = time.perf_counter() - t0 - compiled
    runs = []
    for s in range(seeds):
        state = jax.tree.map(lambda x, s=s: x[s], states)
        report = trainer.report(state, jax.random.fold_in(keys[s], 0x6C))
        run = {"seed": s, "task_success": report["task_success"], "success": report["success"]}
        if s == 0:
            run["rollouts"] = rollout_paths(trainer, state, jax.random.fold_in(keys[s], 0x7A))
        runs.append(run)
    env_params, overrides = case_settings(case, quick)
    return {"agent": case.agent, "layout": case.layout, "kind": case.kind, "seeds": seeds, "quick": quick,
            "env_params": env_params, "overrides": overrides,
            "updates": int(trainer.num_updates),
            "env_steps": None if not case.online else int(trainer.num_updates * trainer.env_steps_per_update),
            "dataset_size": None if case.online else dataset_size, "runs": runs,
            "compile_s": compiled, "train_s": trained, "report_s": time.perf_counter() - t0 - compiled - trained}


def random_key(layout: str, env_params: dict) -> str:
    return json.dumps([layout, env_params], sort_keys=True)


def random_success(layout: str, env_params: dict, episodes_per_task: int = 10) -> list[float]:
    """A uniformly random policy's success per task on the layout with ``env_params`` (as the agents:
    10 episodes per task)."""
    import jax

    from jaxrl import envs, gc_data

    env, params = envs.make(env_id(layout), **env_params)
    policy = lambda obs, k: jax.random.uniform(k, (obs["observation"].shape[0], 2), minval=-1.0, maxval=1.0)  # noqa: E731
    per_task = jax.jit(lambda k: gc_data.task_success(env, params, policy, k, episodes_per_task))(jax.random.PRNGKey(0))
    return [float(x) for x in np.asarray(per_task)]


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _ci(values) -> str:
    from jaxrl import stats

    v = np.asarray(values, np.float64)
    if v.size == 1:
        return f"{v[0]:.2f}"
    s = stats.summarize(v)
    return f"{s['mean']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def _per_task(cell: dict) -> str:
    per_task = np.mean([r["task_success"] for r in cell["runs"]], axis=0)
    return " / ".join(f"{x:.1f}" for x in per_task)


def _env_text(env_params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in env_params.items()) or "the layout's defaults"


def table_lines(layout: str, cells: list[dict], randoms: dict) -> list[str]:
    lines = ["| agent | data | success | per task (1-5) | budget |", "| :--- | :--- | :--- | :--- | :--- |"]
    for env_params in {json.dumps(c["env_params"], sort_keys=True): c["env_params"] for c in cells}.values():
        random = randoms[random_key(layout, env_params)]
        lines.append(f"| random policy | - | {np.mean(random):.2f} | {' / '.join(f'{x:.1f}' for x in random)} | "
                     f"env: {_env_text(env_params)} |")
    for c in cells:
        case = Case(c["agent"], c["layout"], c["kind"])
        budget = (f"{c['env_steps']:,} env steps" if case.online else f"{c['updates']:,} updates")
        if c["env_params"]:
            budget += ", " + ", ".join(f"{k}={v}" for k, v in c["env_params"].items())
        data = "online" if case.online else f"{c['kind']} ({c['dataset_size']:,})"
        lines.append(f"| {case.label.split(' (')[0]} | {data} | {_ci([r['success'] for r in c['runs']])} | "
                     f"{_per_task(c)} | {budget} |")
    return lines


def findings(layout: str, cells: list[dict], randoms: dict) -> list[str]:
    if not cells:
        return []
    means = {Case(c["agent"], c["layout"], c["kind"]).label: float(np.mean([r["success"] for r in c["runs"]]))
             for c in cells}
    chance = {Case(c["agent"], c["layout"], c["kind"]).label: float(np.mean(randoms[random_key(layout, c["env_params"])]))
              for c in cells}
    best = max(means, key=means.get)
    above = [k for k, v in means.items() if v > chance[k] + 0.1]
    lines = [f"- {layout}: best {best} ({means[best]:.2f}); clearly above the random policy on the same env "
             f"(by > 0.1): {', '.join(above) if above else 'none'}."]
    unsolved = [k for k, v in means.items() if v < 0.05]
    if unsolved:
        lines.append(f"  - at or near zero: {', '.join(unsolved)}")
    return lines


def write_plot(path: Path, per_layout: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from envs.goal_conditioned.point_maze import draw_maze

    layouts = [layout for layout, (cells, _) in per_layout.items() if cells]
    cols = max(len(cells) for cells, _ in per_layout.values())
    fig, axes = plt.subplots(len(layouts), cols, figsize=(2.8 * cols, 2.6 * len(layouts)), squeeze=False)
    for i, layout in enumerate(layouts):
        cells, _ = per_layout[layout]
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(cells):
                ax.axis("off")
                continue
            cell = cells[j]
            draw_maze(ax, layout)
            for roll in cell["runs"][0]["rollouts"]:
                p = np.asarray(roll["path"])
                color = f"C{roll['task'] - 1}"
                # positions are (x, y) = (column, row), the axes of draw_maze
                ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=1.0, alpha=0.9)
                ax.plot(p[0, 0], p[0, 1], "o", color=color, ms=4)
                ax.plot(roll["goal"][0], roll["goal"][1], "*", color=color, ms=8, mec="k", mew=0.4)
            label = Case(cell["agent"], cell["layout"], cell["kind"]).label
            mean = np.mean([r["success"] for r in cell["runs"]])
            ax.set_title(f"{label}\n{layout}: success {mean:.2f}", fontsize=8)
    fig.suptitle("Greedy rollouts of seed 0, one per evaluation task (o start, * goal)", fontsize=10)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


def write_markdown(path: Path, per_layout: dict, used: list[dict], args, started: str, machine: dict,
                   machine_end: dict, wall: float, png: Path, not_run: Sequence[Case] = ()) -> Path:
    from scripts.reproduce import git_revision, versions

    lines = [f"# {NAME}: {TITLE}", "",
             "Success rate on each layout's five evaluation tasks (greedy policy, 10 episodes per task per seed; "
             "`envs/goal_conditioned/point_maze.py` `TASKS`, OGBench's for Medium and larger). Cell: mean over seeds "
             "[95% bootstrap CI]; per task: the mean over seeds. Offline agents train on datasets from "
             "`scripts/make_dataset.py` (OGBench-style noisy oracle; `navigate`: 1000-step episodes between random "
             "goals; `stitch`: 200-step episodes to a cell 4 steps away), online agents in the env. No published "
             "table uses these mazes at this budget: OGBench (Park et al. 2025, Table 2) reports its pointmaze "
             "navigate/stitch success after 1e6 updates of batch 1024 with 3 x 512 networks on 1e6-transition "
             "MuJoCo datasets, so compare the ranking of the agents, not the numbers.", ""]
    if args.quick:
        lines += ["**--quick run: tiny budgets, the numbers mean nothing.**", ""]
    for layout, (cells, randoms) in per_layout.items():
        if cells:
            lines += [f"## {env_id(layout)}", "", *table_lines(layout, cells, randoms), ""]
    lines += ["## Findings", ""]
    for layout, (cells, randoms) in per_layout.items():
        lines += findings(layout, cells, randoms)
    if not_run:
        lines += ["", "Not run yet (asked for, no stored result; `--no-train` wrote the table without them): "
                  + ", ".join(f"{c.label} on {c.layout}" for c in not_run) + "."]
    times = [f"{Case(c['agent'], c['layout'], c['kind']).label} on {c['layout']}: compile {c['compile_s']:.0f}s, "
             f"train {c['train_s']:.0f}s" for c in used]
    command = " ".join(["python scripts/reproduce.py", NAME, *args.argv])
    lines += ["", "## Setup", "",
              f"- Command: `{command}`",
              f"- Date: this table's invocation started {started} (UTC) and took {wall:.0f}s; cases trained "
              f"{', '.join(sorted({c.get('date', '?') for c in used}))} (UTC); revision {git_revision()}",
              f"- Machine: {machine['cpu']}, {machine['usable']} usable cores; {machine['platform']}; load average "
              f"(1/5/15 min) {machine['load']} -> {machine_end['load']} (the machine may have been shared)",
              "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
              f"- Seeds per case: {args.seeds}, in one compiled program per case",
              f"- Offline budget (each override where the agent has the field; the rest its defaults, OGBench's): "
              f"{OFFLINE_QUICK if args.quick else OFFLINE_OVERRIDES}; datasets of {args.dataset_size:,} transitions, seed 0",
              "- Online settings per case: " + "; ".join(
                  f"{Case(c['agent'], c['layout'], None).label} on {c['layout']}: {c['overrides']}, env {c['env_params']}"
                  for c in used if c["kind"] is None),
              "- Times per case: " + "; ".join(times),
              "", f"![rollouts]({png.name})", ""]
    return write_text_atomic(path, "\n".join(lines))


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------
def select_cases(args) -> list[Case]:
    cases = []
    for layout in args.layouts:
        cases += [Case(a, layout, None) for a in args.agents if a in ONLINE_AGENTS and layout in args.online_layouts]
        cases += [Case(a, layout, k) for a in args.agents if a in OFFLINE_AGENTS for k in args.kinds]
    return cases


def run(args) -> Path:
    """Train every missing case, then write the table, plot and JSON."""
    from scripts.reproduce import machine_info

    out = Path(args.out) if args.out else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    store = out / f"{NAME}.json"
    saved = json.loads(store.read_text()) if store.exists() else {}
    cells = {c["key"]: c for c in saved.get("cases", [])}
    randoms = saved.get("random", {})
    data_dir = Path(args.data_dir) if args.data_dir else ROOT / "datasets" / NAME
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    machine, t0 = machine_info(), time.perf_counter()
    cases = select_cases(args)
    not_run = []
    for n, case in enumerate(cases, 1):
        key = case_key(case, args.seeds, args.quick, args.dataset_size)
        if key in cells:
            print(f"[{NAME}] ({n}/{len(cases)}) {case.label} on {case.layout}: reused", flush=True)
            continue
        if args.no_train:
            print(f"[{NAME}] ({n}/{len(cases)}) {case.label} on {case.layout}: no stored result (--no-train)", flush=True)
            not_run.append(case)
            continue
        print(f"[{NAME}] ({n}/{len(cases)}) {case.label} on {case.layout}: training {args.seeds} seeds", flush=True)
        cell = train_case(case, args.seeds, args.quick, args.dataset_size, data_dir)
        cell.update(key=key, date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    load_at_end=machine_info()["load"])
        cells[key] = cell
        write_json_atomic(store, {"entry": NAME, "random": randoms, "cases": list(cells.values())}, indent=None)
        print(f"[{NAME}] {case.label} on {case.layout}: success {_ci([r['success'] for r in cell['runs']])} "
              f"(compile {cell['compile_s']:.0f}s, train {cell['train_s']:.0f}s)", flush=True)
    used = [cells[case_key(c, args.seeds, args.quick, args.dataset_size)] for c in cases if c not in not_run]
    per_layout = {}
    for layout in args.layouts:
        cells_here = [c for c in used if c["layout"] == layout]
        for c in cells_here:
            key = random_key(layout, c["env_params"])
            if key not in randoms:
                randoms[key] = random_success(layout, c["env_params"])
        per_layout[layout] = (cells_here, randoms)
    write_json_atomic(store, {"entry": NAME, "random": randoms, "cases": list(cells.values())}, indent=None)
    png = write_plot(out / f"{NAME}.png", per_layout)
    md = write_markdown(out / f"{NAME}.md", per_layout, used, args, started, machine, machine_info(),
                        time.perf_counter() - t0, png, not_run)
    print(f"[{NAME}] wrote {md}, {png} and {store}", flush=True)
    return md


def _names(text: str, allowed: Sequence[str], flag: str, parser) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in allowed]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        parser.error(f"{flag} must be distinct names from {', '.join(allowed)}, got {text!r}")
    return chosen


def parse_args(argv: Sequence[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"scripts/reproduce.py {NAME}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default="open,umaze,medium", help=f"comma-separated subset of {', '.join(LAYOUTS)}")
    parser.add_argument("--online-layouts", default="open,umaze",
                        help="the layouts on which the online agents train (of --layouts)")
    parser.add_argument("--agents", default=None, help="comma-separated subset of "
                        f"{', '.join([*ONLINE_AGENTS, *OFFLINE_AGENTS])} (default: all that exist in this checkout)")
    parser.add_argument("--kinds", default="navigate", help=f"offline dataset kinds, subset of {', '.join(KINDS)}")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case, in one program (default 3; 2 with --quick)")
    parser.add_argument("--dataset-size", type=int, default=None,
                        help="transitions per offline dataset (default 200000; 20000 with --quick)")
    parser.add_argument("--data-dir", default=None, help=f"where the datasets are kept (default datasets/{NAME}/)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny budgets, 2 seeds, open maze only")
    parser.add_argument("--no-train", action="store_true",
                        help="write the table from the stored cases only, listing the missing ones as not run")
    parser.add_argument("--out", default=None, help="results folder (default: scripts/results/)")
    args = parser.parse_args(argv)
    args.layouts = _names(args.layouts, LAYOUTS, "--layouts", parser)
    args.online_layouts = _names(args.online_layouts, LAYOUTS, "--online-layouts", parser)
    args.kinds = _names(args.kinds, KINDS, "--kinds", parser)
    present = available_agents()
    if args.agents is None:
        args.agents = present
    else:
        args.agents = _names(args.agents, [*ONLINE_AGENTS, *OFFLINE_AGENTS], "--agents", parser)
        missing = [a for a in args.agents if a not in present]
        if missing:
            parser.error(f"--agents: {', '.join(missing)} not in agents/goal_conditioned/ of this checkout")
    if args.quick:
        args.layouts, args.online_layouts = ["open"], ["open"]
        if args.out is None:
            parser.error("--quick writes meaningless numbers: give --out (e.g. /tmp/smoke), not scripts/results/")
    args.seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)
    args.dataset_size = args.dataset_size if args.dataset_size is not None else (20_000 if args.quick else 200_000)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.dataset_size < 1000:
        parser.error(f"--dataset-size must be at least one navigate episode (1000 transitions), got {args.dataset_size}")
    args.argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
