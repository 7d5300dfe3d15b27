#!/usr/bin/env python
"""Reproduce the model-based family's sample-efficiency claim (issue 7, entry ``mb-sample-efficiency``):
return vs env steps for PETS, MBPO, VaGraM, COPlanner and SINDy-RL against our SAC and PPO on
Pendulum-v1, and for MuZero against our DQN and PPO on CartPole-v1, mean ± 95% CI over seeds, and
per env a table of the env steps each needs to reach a return threshold (−200 on Pendulum, 475 on
CartPole: gymnasium's "solved"), with the ratio to the env's model-free baseline (SAC; DQN).

The published claim tested: model-based methods need several times fewer env samples than model-free
ones (Chua et al. 2018, Fig. 3; Janner et al. 2019, Fig. 2: MBPO reaches SAC's asymptote with about an
order of magnitude fewer samples on MuJoCo; Zolman et al. 2024 report 1-2 orders of magnitude fewer
samples than model-free PPO for SINDy-RL).

Every agent trains all its seeds in ONE compiled program (``jax.jit(jax.vmap(train))`` over the seed
keys, through the agent's own ``make_train``); no agent file is imported by another. The curve is the
agent's own per-iteration ``episode_return`` metric (the return of the most recent *training*
episode, averaged over the agent's parallel envs; exploration noise included), at the env-step count
of that iteration. "Steps to threshold" is, per seed, the first env step at which the seed's own curve
reaches the threshold (``--threshold``); the table gives their median over seeds (the ratios and the
findings use it) and the first step at which the mean-over-seeds curve reaches it (one seed's late
dip moves that one a lot). The final return is the greedy policy's over 16 evaluation episodes per seed.

Budgets (``CASES``): the model-based agents at the small CPU settings of their docstrings and learning
checks, SAC at its 2 × 64 test network, PPO with the ``gymnax-classic`` entry's Pendulum config; on
CartPole MuZero, DQN and PPO at their defaults, for 200k, 500k and 500k env steps.

Outputs (``--out``, default ``scripts/results/``): ``mb-sample-efficiency.md`` (the table and setup),
``.png`` (the curves) and ``.json`` (every case's curves and per-seed numbers; a case already there with
the same settings is reused, so an interrupted run continues where it stopped).

Usage::

    python scripts/reproduce.py mb-sample-efficiency                       # every agent, 3 seeds
    python scripts/reproduce.py mb-sample-efficiency --agents mbpo,sac --seeds 4
    python scripts/reproduce.py mb-sample-efficiency --envs CartPole-v1 --threshold CartPole-v1=400
    python scripts/reproduce.py mb-sample-efficiency --quick --out /tmp/smoke
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

NAME = "mb-sample-efficiency"
TITLE = "model-based vs model-free sample efficiency: return vs env steps, steps to a return threshold"
RESULTS_DIR = Path(__file__).resolve().with_name("results")


@dataclasses.dataclass(frozen=True)
class EnvSetting:
    threshold: float      # the return to reach (default; --threshold ENV=VALUE overrides)
    baseline: str         # the model-free agent the ratios are taken against
    zoom: int             # x-range of the figure's linear panel, env steps
    caveats: tuple = ()   # (agent, text): printed under the env's findings when that agent is in the table


ENVS = {"Pendulum-v1": EnvSetting(
            -200.0, "online.sac", 16_000,
            (("model_based.pets", "PETS's final greedy return comes from its `act`, which plans every step from "
              "scratch (the action range's centre, no warm start from the previous step's plan, as a stateless "
              "policy must), so it scores below PETS's own warm-started training episodes (the curve's end)."),)),
        "CartPole-v1": EnvSetting(
            475.0, "online.dqn", 200_000,
            (("online.dqn", "the curve is the training episodes' return, exploration included: DQN's ε decays from "
              "1 to 0.05 over half its 500k budget, so when its training return can reach 475 depends on that "
              "schedule, not only on how fast it learns; MuZero acts by sampling from its search's improved "
              "policy."),))}


@dataclasses.dataclass(frozen=True)
class Case:
    agent: str            # module under agents/
    label: str
    model_based: bool
    overrides: dict
    source: str
    env: str = "Pendulum-v1"


_SMALL_ENSEMBLE = {"ensemble_size": 5, "hidden_size": 64, "num_layers": 2}
CASES = (
    Case("model_based.pets", "PETS (CEM)", True,
         {"total_timesteps": 3_000, **_SMALL_ENSEMBLE, "population": 100, "num_elites": 10, "iterations": 2,
          "num_particles": 5},
         "pets.py's docstring small settings (2 x 64 ensemble, population 100, 10 elites, 2 CEM iterations, "
         "5 particles, horizon 25)"),
    Case("model_based.mbpo", "MBPO", True,
         {"total_timesteps": 5_000, **_SMALL_ENSEMBLE, "model_batch_size": 64, "rollouts_per_step": 100,
          "updates_per_step": 20, "batch_size": 128, "sac_hidden_size": 64},
         "tests/test_mbpo.py's learning-check config (G = 20, M = 100, 5% real data, SAC 2 x 64)"),
    Case("model_based.vagram", "VaGraM", True,
         {"total_timesteps": 5_000, **_SMALL_ENSEMBLE, "model_batch_size": 64, "rollouts_per_step": 100,
          "updates_per_step": 20, "batch_size": 128, "sac_hidden_size": 64},
         "MBPO's case with the value-gradient weighted model loss"),
    Case("model_based.coplanner", "COPlanner", True,
         {"total_timesteps": 5_000, **_SMALL_ENSEMBLE, "model_batch_size": 64, "rollouts_per_step": 100,
          "updates_per_step": 20, "batch_size": 128, "sac_hidden_size": 64},
         "MBPO's case plus UP-MPC at the paper code's defaults (K 5, H 5, α_o 1, α_c 2), as coplanner.py measures it"),
    Case("model_based.sindy_rl", "SINDy-RL", True, {"total_timesteps": 5_000, "hidden_size": 64},
         "sindy_rl.py's defaults with a 2 x 64 SAC"),
    Case("online.sac", "SAC", False,
         {"total_timesteps": 15_000, "hidden_size": 64, "batch_size": 128, "learning_starts": 200},
         "sac.py (Haarnoja et al. 2018) with tests' 2 x 64 networks, batch 128, 200 random steps, one update "
         "per env step"),
    Case("online.ppo", "PPO", False,
         {"total_timesteps": 1_000_000, "anneal_lr": True, "lr": 1e-3, "max_grad_norm": 1.0, "activation": "relu",
          "num_envs": 32, "num_steps": 16, "gamma": 0.9, "ent_coef": 0.0},
         "the gymnax-classic entry's Pendulum-v1 config (32 envs x 16 steps, γ 0.9, lr 1e-3 annealed)"),
    Case("model_based.muzero", "MuZero (Gumbel)", True, {"total_timesteps": 200_000},
         "muzero.py's defaults (Gumbel MuZero through mctx, 16 simulations, K 5, n 10; its docstring's 200k budget)",
         env="CartPole-v1"),
    Case("online.dqn", "DQN", False, {"total_timesteps": 500_000},
         "dqn.py's defaults (CleanRL's CartPole config: ε 1 → 0.05 over half the budget, 10k random steps)",
         env="CartPole-v1"),
    Case("online.ppo", "PPO", False, {"total_timesteps": 500_000}, "ppo.py's defaults (PureJaxRL's CartPole config)",
         env="CartPole-v1"),
)
QUICK = {"model_based.pets": {"total_timesteps": 400, "population": 16, "num_elites": 4, "iterations": 1,
                              "horizon": 5},
         "model_based.sindy_rl": {"total_timesteps": 400, "random_steps": 200},
         "model_based.coplanner": {"total_timesteps": 400, "rollouts_per_step": 8, "num_candidates": 2,
                                   "planning_horizon": 2},
         "model_based.muzero": {"total_timesteps": 2_048, "learning_starts": 256},
         "online.dqn": {"total_timesteps": 2_000, "learning_starts": 500},
         "online.ppo": {"total_timesteps": 2_048}, "online.sac": {"total_timesteps": 400}}
QUICK_DEFAULT = {"total_timesteps": 400}


def available_cases() -> list[Case]:
    return [c for c in CASES if (ROOT / "agents" / (c.agent.replace(".", "/") + ".py")).exists()]


def case_config(case: Case, quick: bool):
    module = importlib.import_module(f"agents.{case.agent}")
    overrides = dict(case.overrides)
    if quick:
        overrides.update(QUICK.get(case.agent, QUICK_DEFAULT))
    fields = {f.name for f in dataclasses.fields(module.Config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{case.agent}.Config has no field(s) {unknown}; fix CASES in {__file__}")
    return module, module.Config(env=case.env, **overrides), overrides


def case_key(case: Case, seeds: int, quick: bool) -> str:
    _, _, overrides = case_config(case, quick)
    return json.dumps([NAME, case.env, case.agent, seeds, quick, overrides], sort_keys=True)


def train_case(case: Case, seeds: int, quick: bool) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxrl.evaluation import evaluate_trainer

    module, config, overrides = case_config(case, quick)
    trainer = module.make_train(config)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])

    def train_and_evaluate(key):
        state, metrics = trainer(key)
        final = evaluate_trainer(trainer, state, jax.random.fold_in(key, 0xE7), 16)["return"].mean()
        return metrics["episode_return"], final

    t0 = time.perf_counter()
    program = jax.jit(jax.vmap(train_and_evaluate)).lower(keys).compile()
    compiled = time.perf_counter() - t0
    curves, finals = jax.block_until_ready(program(keys))
    trained = time.perf_counter() - t0 - compiled
    curves = np.asarray(curves, np.float64)                       # (seeds, iterations)
    steps = (np.arange(curves.shape[1]) + 1) * int(trainer.env_steps_per_update)
    stride = max(1, curves.shape[1] // 400)                       # keep ~400 points per curve
    return {"agent": case.agent, "label": case.label, "model_based": case.model_based, "env": case.env, "seeds": seeds,
            "quick": quick, "overrides": overrides, "source": case.source, "total_env_steps": int(steps[-1]),
            "steps": steps[::stride].tolist(), "curves": np.round(curves[:, ::stride], 2).tolist(),
            "finals": np.asarray(finals).round(1).tolist(),
            "first_reach": first_reach(steps, curves, ENVS[case.env].threshold), "compile_s": compiled,
            "train_s": trained}


def first_reach(steps: np.ndarray, curves: np.ndarray, threshold: float = -200.0) -> dict:
    """First env step at which the seed-mean curve, and each seed's curve, reaches ``threshold`` (None: never)."""
    def first(curve):
        hit = np.flatnonzero(np.nan_to_num(curve, nan=-np.inf) >= threshold)
        return int(steps[hit[0]]) if hit.size else None

    finite = np.where(np.isfinite(curves).all(axis=0))[0]
    mean = np.full(curves.shape[1], np.nan)
    mean[finite] = curves[:, finite].mean(axis=0)
    return {"threshold": threshold, "mean": first(mean), "per_seed": [first(c) for c in curves]}


def seed_median(per_seed: list) -> int | None:
    """The median over seeds of the first env step at the threshold, a seed that never reaches it counted
    as later than any that does; None when that median seed never reaches it. Robust to one seed's late
    dip, which moves the seed-mean curve's crossing a lot."""
    ranked = sorted(per_seed, key=lambda x: np.inf if x is None else x)
    if not ranked:
        return None
    lo, hi = ranked[(len(ranked) - 1) // 2], ranked[len(ranked) // 2]
    return None if lo is None or hi is None else int(round((lo + hi) / 2))


def report_reach(cell: dict, threshold: float) -> dict:
    """``first_reach`` at ``threshold``: the exact one computed at training time (full-resolution curves) when
    the threshold is the one it was computed at, else recomputed from the stored (thinned) curves and marked
    ``approximate`` (then each step can be late by up to the stored curves' spacing)."""
    stored = cell["first_reach"]
    if stored["threshold"] == threshold:
        return stored
    reach = first_reach(np.asarray(cell["steps"]), np.asarray(cell["curves"], float), threshold)
    reach["approximate"] = True
    return reach


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _ci(values) -> str:
    from jaxrl import stats

    v = np.asarray(values, np.float64)
    if v.size == 1:
        return f"{v[0]:.0f}"
    s = stats.summarize(v)
    return f"{s['mean']:.0f} [{s['ci95'][0]:.0f}, {s['ci95'][1]:.0f}]"


def _steps(n) -> str:
    return "not reached" if n is None else f"{n:,}"


def _ratio(r: float) -> str:
    """The baseline's steps / the agent's; below 1 also as "N× more" so that 0.013 does not print as 0.0."""
    return f"{r:.1f}" if r >= 0.95 else f"{r:.2g} ({1 / r:.0f}× more)"


def _baseline(cells: list[dict], env: str) -> dict | None:
    return next((c for c in cells if c["agent"] == ENVS[env].baseline), None)


def _baseline_name(base: dict | None, env: str) -> str:
    if base is not None:
        return base["label"]
    return next((c.label for c in CASES if c.agent == ENVS[env].baseline and c.env == env), ENVS[env].baseline)


def table_lines(cells: list[dict], env: str, threshold: float) -> list[str]:
    """One env's table; ``cells`` are that env's cases (their ``first_reach`` at ``threshold``)."""
    base = _baseline(cells, env)
    base_steps = seed_median(base["first_reach"]["per_seed"]) if base else None
    name = _baseline_name(base, env)
    lines = [f"| agent | model-based | env steps to {threshold:g}: seed median | per seed | seed-mean curve | "
             f"× fewer than {name} (medians) | final greedy return | env steps trained |",
             "| :--- | :---: | ---: | :--- | ---: | ---: | :--- | ---: |"]
    for c in cells:
        reach = c["first_reach"]
        m = seed_median(reach["per_seed"])
        if base_steps is not None and m is not None:
            ratio = _ratio(base_steps / m)
        elif m is not None and base is not None:
            ratio = f"≥ {base['total_env_steps'] / m:.1f} ({name} never reached)"
        elif m is None and base_steps is not None:
            ratio = f"≤ {base_steps / c['total_env_steps']:.2f} (never reached)"
        else:
            ratio = "-"
        per_seed = ", ".join(_steps(x) for x in reach["per_seed"])
        approx = "≈ " if reach.get("approximate") else ""
        lines.append(f"| {c['label']} | {'yes' if c['model_based'] else 'no'} | {approx}{_steps(m)} | {per_seed} | "
                     f"{approx}{_steps(reach['mean'])} | {ratio} | {_ci(c['finals'])} | {c['total_env_steps']:,} |")
    if any(c["first_reach"].get("approximate") for c in cells):
        lines += ["", f"≈: {threshold:g} is not the threshold these runs were scored at when trained, so the steps come "
                      "from the stored curves (about 400 points per run) and can be late by up to their spacing."]
    return lines


def _times(r: float) -> str:
    """``r`` = baseline steps / agent steps, in words: "3.8× fewer" or "1.3× more"."""
    return f"{r:.1f}× fewer" if r >= 1 else f"{1 / r:.1f}× more"


def findings(cells: list[dict], env: str) -> list[str]:
    """One env's findings on the seed-median steps: each agent against the env's model-free baseline, then
    the claim's verdict."""
    base = _baseline(cells, env)
    name = _baseline_name(base, env)
    s = seed_median(base["first_reach"]["per_seed"]) if base else None
    if s is None:
        return [f"- {name} did not reach the threshold in most seeds within its budget (or was not run), so no "
                "ratio to it is defined."]
    lines, ratios, model_based = [], [], [c for c in cells if c["model_based"]]
    for c in cells:
        if c is base:
            continue
        m = seed_median(c["first_reach"]["per_seed"])
        if m is None:
            lines.append(f"- {c['label']}: most seeds did not reach the threshold within {c['total_env_steps']:,} env "
                         f"steps ({name}: {s:,}).")
        elif c["model_based"]:
            ratios.append(s / m)
            verdict = "several times fewer" if s / m >= 3 else ("fewer" if s / m > 1 else "not fewer")
            lines.append(f"- {c['label']}: {m:,} env steps vs {name}'s {s:,} ({_times(s / m)}): {verdict} samples.")
        else:
            lines.append(f"- {c['label']} (model-free): {m:,} env steps vs {name}'s {s:,} ({_times(s / m)}).")
    if ratios:
        threshold = base["first_reach"]["threshold"]
        slowest = max(m for m in (seed_median(c["first_reach"]["per_seed"]) for c in model_based) if m is not None)
        span = f"{_times(min(ratios))} to {_times(max(ratios))}" if len(ratios) > 1 else _times(ratios[0])
        claim = (f"- The claim, on this task and budget (seed medians): the model-based agents that reach {threshold:g} "
                 f"need {span} env steps than {name}")
        for c in cells:
            m = seed_median(c["first_reach"]["per_seed"])
            if not c["model_based"] and c is not base and m is not None:
                claim += f", and the slowest of them {_times(m / slowest)} than {c['label']}"
        several = sum(r >= 3 for r in ratios)
        lines.append(claim + f"; 'several times fewer' (3× or more) than {name} holds for {several} of the "
                     f"{len(model_based)} model-based agents.")
    present = {c["agent"] for c in cells}
    lines += [f"- Caveat: {text}" for agent, text in ENVS[env].caveats if agent in present]
    return lines


def write_plot(path: Path, by_env: dict[str, list[dict]], thresholds: dict[str, float]) -> Path:
    """One row per env: the first ``zoom`` env steps (linear) and everything (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from jaxrl import stats

    fig, axes = plt.subplots(len(by_env), 2, figsize=(11, 4 * len(by_env)), squeeze=False)
    for row, (env, cells) in zip(axes, by_env.items()):
        for ax, log in zip(row, (False, True)):
            for i, c in enumerate(cells):
                steps, curves = np.asarray(c["steps"], float), np.asarray(c["curves"], float)
                ok = np.isfinite(curves).all(axis=0)
                if not ok.any():
                    continue
                mean = curves[:, ok].mean(axis=0)
                lo, hi = zip(*(stats.bootstrap_ci(curves[:, j]) if curves.shape[0] > 1 else (curves[0, j],) * 2
                               for j in np.flatnonzero(ok)))
                style = "-" if c["model_based"] else "--"
                ax.plot(steps[ok], mean, style, color=f"C{i}", label=c["label"])
                ax.fill_between(steps[ok], lo, hi, color=f"C{i}", alpha=0.15)
            ax.axhline(thresholds[env], color="k", lw=0.8, ls=":")
            ax.set_xlabel("env steps" + (" (log)" if log else ""))
            ax.set_ylabel("training episode return")
            if log:
                ax.set_xscale("log")
        row[0].set_xlim(0, ENVS[env].zoom)
        row[0].xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        row[0].set_title(f"{env}: first {ENVS[env].zoom // 1000}k env steps")
        row[1].set_title(f"{env}: all (log scale)")
        row[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("mean over seeds, 95% bootstrap CI (solid: model-based; dashed: model-free)", fontsize=10)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


def write_markdown(path: Path, by_env: dict[str, list[dict]], thresholds: dict[str, float], args, started: str,
                   machine: dict, machine_end: dict, wall: float, png: Path) -> Path:
    from scripts.reproduce import git_revision, versions

    cells = [c for env_cells in by_env.values() for c in env_cells]
    lines = [f"# {NAME}: {TITLE}", "",
             "The claim tested: model-based RL needs several times fewer env samples than model-free RL "
             "(PETS: Chua et al. 2018, Fig. 3; MBPO: Janner et al. 2019, Fig. 2; SINDy-RL: Zolman et al. 2024). "
             "MuZero (Schrittwieser et al. 2020) makes no such small-budget claim; it is here as the family's "
             "discrete-action agent, on CartPole. "
             "Curve: the return of the most recent training episode (exploration included) at each env step. "
             "Steps to the threshold: per seed, the first env step at which the seed's curve reaches it; the "
             "table gives their median over seeds (a seed that never reaches it counts as later than any that "
             "does) and the first step at which the mean-over-seeds curve reaches it. × fewer: the env's "
             "model-free baseline's seed median / the agent's (SAC on Pendulum, DQN on CartPole). Final: the "
             "greedy policy's return, 16 episodes per seed, mean [95% bootstrap CI].", ""]
    if args.quick:
        lines += ["**--quick run: tiny budgets, the numbers mean nothing.**", ""]
    for env, env_cells in by_env.items():
        lines += [f"## {env}", "", *table_lines(env_cells, env, thresholds[env]), "", "### Findings", "",
                  *findings(env_cells, env), ""]
    lines += ["## Setup", "",
              f"- Command: `{' '.join(['python scripts/reproduce.py', NAME, *args.argv])}`",
              f"- Date: this table's invocation started {started} (UTC) and took {wall:.0f}s; cases trained "
              f"{', '.join(sorted({c.get('date', '?') for c in cells}))} (UTC); revision {git_revision()}",
              f"- Machine: {machine['cpu']}, {machine['usable']} usable cores; {machine['platform']}; load average "
              f"(1/5/15 min) {machine['load']} -> {machine_end['load']} (the machine may have been shared)",
              "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
              f"- Seeds per case: {args.seeds}, in one compiled program per case",
              "- Thresholds: " + ", ".join(f"{env} {thresholds[env]:g}" for env in by_env),
              "- Configs (everything else: the agent's defaults): " + "; ".join(
                  f"{c['label']} on {c.get('env', 'Pendulum-v1')}: {c['source']}, overrides {c['overrides']}"
                  for c in cells),
              "- Times per case: " + "; ".join(
                  f"{c['label']} on {c.get('env', 'Pendulum-v1')}: compile {c['compile_s']:.0f}s, train {c['train_s']:.0f}s"
                  for c in cells),
              "", f"![curves]({png.name})", ""]
    return write_text_atomic(path, "\n".join(lines))


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------
def run(args) -> Path:
    from scripts.reproduce import machine_info

    out = Path(args.out) if args.out else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    store = out / f"{NAME}.json"
    cells = {c["key"]: c for c in (json.loads(store.read_text())["cases"] if store.exists() else [])}
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    machine, t0 = machine_info(), time.perf_counter()
    cases = [c for c in available_cases() if c.agent.split(".")[-1] in args.agents and c.env in args.envs]
    for n, case in enumerate(cases, 1):
        key = case_key(case, args.seeds, args.quick)
        label = f"{case.label} on {case.env}"
        if key in cells:
            print(f"[{NAME}] ({n}/{len(cases)}) {label}: reused", flush=True)
            continue
        print(f"[{NAME}] ({n}/{len(cases)}) {label}: training {args.seeds} seeds", flush=True)
        cell = train_case(case, args.seeds, args.quick)
        cell.update(key=key, date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    load_at_end=machine_info()["load"])
        cells[key] = cell
        write_json_atomic(store, {"entry": NAME, "cases": list(cells.values())})
        print(f"[{NAME}] {label}: {ENVS[case.env].threshold:g} reached at {_steps(cell['first_reach']['mean'])} env "
              f"steps, final {_ci(cell['finals'])} (compile {cell['compile_s']:.0f}s, train {cell['train_s']:.0f}s)",
              flush=True)
    by_env: dict[str, list[dict]] = {}
    for case in cases:
        cell = dict(cells[case_key(case, args.seeds, args.quick)])   # a copy: the store keeps the exact reach
        cell["first_reach"] = report_reach(cell, args.thresholds[case.env])
        by_env.setdefault(case.env, []).append(cell)
    png = write_plot(out / f"{NAME}.png", by_env, args.thresholds)
    md = write_markdown(out / f"{NAME}.md", by_env, args.thresholds, args, started, machine, machine_info(),
                        time.perf_counter() - t0, png)
    print(f"[{NAME}] wrote {md}, {png} and {store}", flush=True)
    return md


def parse_args(argv: Sequence[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    names = list(dict.fromkeys(c.agent.split(".")[-1] for c in CASES))
    parser = argparse.ArgumentParser(prog=f"scripts/reproduce.py {NAME}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default=None, help=f"comma-separated subset of {', '.join(names)} (default: all "
                                                       "whose file exists)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case, one program (default 3; 2 with --quick)")
    parser.add_argument("--envs", default=None, help=f"comma-separated subset of {', '.join(ENVS)} (default: all)")
    parser.add_argument("--threshold", action="append", default=[], metavar="ENV=RETURN",
                        help="the return to reach on ENV (repeatable; defaults: "
                             + ", ".join(f"{e}={s.threshold:g}" for e, s in ENVS.items()) + ")")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny budgets (numbers mean nothing)")
    parser.add_argument("--out", default=None, help="results folder (default: scripts/results/)")
    args = parser.parse_args(argv)
    present = list(dict.fromkeys(c.agent.split(".")[-1] for c in available_cases()))
    if args.agents is None:
        args.agents = present
    else:
        chosen = [a.strip() for a in args.agents.split(",") if a.strip()]
        bad = [a for a in chosen if a not in present]
        if not chosen or bad:
            parser.error(f"--agents must name agents from {', '.join(present)}, got {args.agents!r}")
        args.agents = chosen
    args.envs = list(ENVS) if args.envs is None else [e.strip() for e in args.envs.split(",") if e.strip()]
    if not args.envs or any(e not in ENVS for e in args.envs):
        parser.error(f"--envs must name envs from {', '.join(ENVS)}, got {','.join(args.envs)!r}")
    args.thresholds = {env: setting.threshold for env, setting in ENVS.items()}
    for item in args.threshold:
        env, sep, value = item.partition("=")
        try:
            if not sep or env not in ENVS:
                raise ValueError
            args.thresholds[env] = float(value)
        except ValueError:
            parser.error(f"--threshold takes ENV=RETURN with ENV one of {', '.join(ENVS)}, got {item!r}")
    if not [c for c in available_cases() if c.agent.split(".")[-1] in args.agents and c.env in args.envs]:
        parser.error(f"no case has an agent in {args.agents} on an env in {args.envs}: "
                     + ", ".join(f"{c.agent.split('.')[-1]} on {c.env}" for c in available_cases()))
    if args.quick and args.out is None:
        parser.error("--quick writes meaningless numbers: give --out (e.g. /tmp/smoke), not scripts/results/")
    args.seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    args.argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
