#!/usr/bin/env python
"""Reproduce the model-based family's sample-efficiency claim (issue 7, entry ``mb-sample-efficiency``):
return vs env steps for PETS, MBPO, VaGraM, COPlanner and SINDy-RL against our SAC and PPO on
Pendulum-v1, mean ± 95% CI over seeds, and a table of the env steps each needs to reach a return
threshold (−200 on Pendulum), with the ratio to SAC.

The published claim tested: model-based methods need several times fewer env samples than model-free
ones (Chua et al. 2018, Fig. 3; Janner et al. 2019, Fig. 2: MBPO reaches SAC's asymptote with about an
order of magnitude fewer samples on MuJoCo; Zolman et al. 2024 report 1-2 orders of magnitude fewer
samples than model-free PPO for SINDy-RL).

Every agent trains all its seeds in ONE compiled program (``jax.jit(jax.vmap(train))`` over the seed
keys, through the agent's own ``make_train``); no agent file is imported by another. The curve is the
agent's own per-iteration ``episode_return`` metric (the return of the most recent *training*
episode, averaged over the agent's parallel envs; exploration noise included), at the env-step count
of that iteration. "Steps to threshold" is the first env step at which the mean over seeds of that
curve reaches the threshold (``--threshold``), and per seed the first step at which the seed's own
curve does; the final return is the greedy policy's over 16 evaluation episodes per seed.

Budgets (``CASES``): the model-based agents at the small CPU settings of their docstrings and learning
checks, SAC at its 2 × 64 test network, PPO with the ``gymnax-classic`` entry's Pendulum config.

Outputs (``--out``, default ``scripts/results/``): ``mb-sample-efficiency.md`` (the table and setup),
``.png`` (the curves) and ``.json`` (every case's curves and per-seed numbers; a case already there with
the same settings is reused, so an interrupted run continues where it stopped).

Usage::

    python scripts/reproduce.py mb-sample-efficiency                       # every agent, 3 seeds
    python scripts/reproduce.py mb-sample-efficiency --agents mbpo,sac --seeds 4
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
TITLE = "model-based vs model-free sample efficiency on Pendulum-v1: return vs env steps, steps to -200"
RESULTS_DIR = Path(__file__).resolve().with_name("results")
ENV = "Pendulum-v1"


@dataclasses.dataclass(frozen=True)
class Case:
    agent: str            # module under agents/
    label: str
    model_based: bool
    overrides: dict
    source: str


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
)
QUICK = {"model_based.pets": {"total_timesteps": 400, "population": 16, "num_elites": 4, "iterations": 1,
                              "horizon": 5},
         "model_based.sindy_rl": {"total_timesteps": 400, "random_steps": 200},
         "model_based.coplanner": {"total_timesteps": 400, "rollouts_per_step": 8, "num_candidates": 2,
                                   "planning_horizon": 2},
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
    return module, module.Config(env=ENV, **overrides), overrides


def case_key(case: Case, seeds: int, quick: bool) -> str:
    _, _, overrides = case_config(case, quick)
    return json.dumps([NAME, case.agent, seeds, quick, overrides], sort_keys=True)


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
    return {"agent": case.agent, "label": case.label, "model_based": case.model_based, "seeds": seeds,
            "quick": quick, "overrides": overrides, "source": case.source, "total_env_steps": int(steps[-1]),
            "steps": steps[::stride].tolist(), "curves": np.round(curves[:, ::stride], 2).tolist(),
            "finals": np.asarray(finals).round(1).tolist(),
            "first_reach": first_reach(steps, curves), "compile_s": compiled, "train_s": trained}


def first_reach(steps: np.ndarray, curves: np.ndarray, threshold: float = -200.0) -> dict:
    """First env step at which the seed-mean curve, and each seed's curve, reaches ``threshold`` (None: never)."""
    def first(curve):
        hit = np.flatnonzero(np.nan_to_num(curve, nan=-np.inf) >= threshold)
        return int(steps[hit[0]]) if hit.size else None

    finite = np.where(np.isfinite(curves).all(axis=0))[0]
    mean = np.full(curves.shape[1], np.nan)
    mean[finite] = curves[:, finite].mean(axis=0)
    return {"threshold": threshold, "mean": first(mean), "per_seed": [first(c) for c in curves]}


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


def table_lines(cells: list[dict], threshold: float) -> list[str]:
    sac = next((c for c in cells if c["agent"] == "online.sac"), None)
    sac_steps = sac["first_reach"]["mean"] if sac else None
    lines = [f"| agent | model-based | env steps to {threshold:g} (seed mean) | per seed | × fewer than SAC | "
             "final greedy return | env steps trained |",
             "| :--- | :---: | ---: | :--- | ---: | :--- | ---: |"]
    for c in cells:
        reach = c["first_reach"]
        m = reach["mean"]
        if sac_steps is not None and m is not None:
            ratio = f"{sac_steps / m:.1f}"
        elif m is not None and sac is not None:
            ratio = f"≥ {sac['total_env_steps'] / m:.1f} (SAC never reached)"
        elif m is None and sac_steps is not None:
            ratio = f"≤ {sac_steps / c['total_env_steps']:.2f} (never reached)"
        else:
            ratio = "-"
        per_seed = ", ".join(_steps(x) for x in reach["per_seed"])
        lines.append(f"| {c['label']} | {'yes' if c['model_based'] else 'no'} | {_steps(reach['mean'])} | {per_seed} | "
                     f"{ratio} | {_ci(c['finals'])} | {c['total_env_steps']:,} |")
    return lines


def findings(cells: list[dict]) -> list[str]:
    sac = next((c for c in cells if c["agent"] == "online.sac"), None)
    if sac is None or sac["first_reach"]["mean"] is None:
        return ["- SAC did not reach the threshold in its budget, so no ratio to SAC is defined."]
    s = sac["first_reach"]["mean"]
    lines = []
    for c in cells:
        if not c["model_based"]:
            continue
        m = c["first_reach"]["mean"]
        if m is None:
            lines.append(f"- {c['label']} did not reach the threshold within {c['total_env_steps']:,} env steps "
                         f"(SAC: {s:,}).")
        else:
            verdict = "several times fewer" if s / m >= 3 else ("fewer" if s / m > 1 else "not fewer")
            lines.append(f"- {c['label']}: {m:,} env steps vs SAC's {s:,} ({s / m:.1f}×): {verdict} samples.")
    return lines


def write_plot(path: Path, cells: list[dict], threshold: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxrl import stats

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, log in zip(axes, (False, True)):
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
        ax.axhline(threshold, color="k", lw=0.8, ls=":")
        ax.set_xlabel("env steps" + (" (log)" if log else ""))
        ax.set_ylabel("training episode return")
        if log:
            ax.set_xscale("log")
    axes[0].set_xlim(0, 16_000)
    axes[0].set_title("first 16k env steps")
    axes[1].set_title("all (log scale)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{ENV}: mean over seeds, 95% bootstrap CI (solid: model-based; dashed: model-free)", fontsize=10)
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


def write_markdown(path: Path, cells: list[dict], args, started: str, machine: dict, machine_end: dict, wall: float,
                   png: Path) -> Path:
    from scripts.reproduce import git_revision, versions

    lines = [f"# {NAME}: {TITLE}", "",
             "The claim tested: model-based RL needs several times fewer env samples than model-free RL "
             "(PETS: Chua et al. 2018, Fig. 3; MBPO: Janner et al. 2019, Fig. 2; SINDy-RL: Zolman et al. 2024). "
             "Curve: the return of the most recent training episode (exploration included) at each env step, "
             "mean over seeds; steps to the threshold: the first env step at which that mean reaches it "
             "(per seed: the seed's own curve); × fewer than SAC: SAC's steps / the agent's. Final: the greedy "
             "policy's return, 16 episodes per seed, mean [95% bootstrap CI].", ""]
    if args.quick:
        lines += ["**--quick run: tiny budgets, the numbers mean nothing.**", ""]
    lines += [f"## {ENV}", "", *table_lines(cells, args.threshold), "", "## Findings", "", *findings(cells)]
    lines += ["", "## Setup", "",
              f"- Command: `{' '.join(['python scripts/reproduce.py', NAME, *args.argv])}`",
              f"- Date: this table's invocation started {started} (UTC) and took {wall:.0f}s; cases trained "
              f"{', '.join(sorted({c.get('date', '?') for c in cells}))} (UTC); revision {git_revision()}",
              f"- Machine: {machine['cpu']}, {machine['usable']} usable cores; {machine['platform']}; load average "
              f"(1/5/15 min) {machine['load']} -> {machine_end['load']} (the machine may have been shared)",
              "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
              f"- Seeds per case: {args.seeds}, in one compiled program per case",
              "- Configs (everything else: the agent's defaults): " + "; ".join(
                  f"{c['label']}: {c['source']}, overrides {c['overrides']}" for c in cells),
              "- Times per case: " + "; ".join(f"{c['label']}: compile {c['compile_s']:.0f}s, train {c['train_s']:.0f}s"
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
    cases = [c for c in available_cases() if c.agent.split(".")[-1] in args.agents]
    for n, case in enumerate(cases, 1):
        key = case_key(case, args.seeds, args.quick)
        if key in cells:
            print(f"[{NAME}] ({n}/{len(cases)}) {case.label}: reused", flush=True)
            continue
        print(f"[{NAME}] ({n}/{len(cases)}) {case.label}: training {args.seeds} seeds", flush=True)
        cell = train_case(case, args.seeds, args.quick)
        cell.update(key=key, date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    load_at_end=machine_info()["load"])
        cells[key] = cell
        write_json_atomic(store, {"entry": NAME, "cases": list(cells.values())})
        print(f"[{NAME}] {case.label}: -200 reached at {_steps(cell['first_reach']['mean'])} env steps, final "
              f"{_ci(cell['finals'])} (compile {cell['compile_s']:.0f}s, train {cell['train_s']:.0f}s)", flush=True)
    used = [cells[case_key(c, args.seeds, args.quick)] for c in cases]
    for c in used:  # the threshold is a report setting: recompute from the stored curves
        c["first_reach"] = first_reach(np.asarray(c["steps"]), np.asarray(c["curves"], float), args.threshold)
    png = write_plot(out / f"{NAME}.png", used, args.threshold)
    md = write_markdown(out / f"{NAME}.md", used, args, started, machine, machine_info(), time.perf_counter() - t0, png)
    print(f"[{NAME}] wrote {md}, {png} and {store}", flush=True)
    return md


def parse_args(argv: Sequence[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    names = [c.agent.split(".")[-1] for c in CASES]
    parser = argparse.ArgumentParser(prog=f"scripts/reproduce.py {NAME}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default=None, help=f"comma-separated subset of {', '.join(names)} (default: all "
                                                       "whose file exists)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case, one program (default 3; 2 with --quick)")
    parser.add_argument("--threshold", type=float, default=-200.0, help="the return to reach (default -200)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny budgets (numbers mean nothing)")
    parser.add_argument("--out", default=None, help="results folder (default: scripts/results/)")
    args = parser.parse_args(argv)
    present = [c.agent.split(".")[-1] for c in available_cases()]
    if args.agents is None:
        args.agents = present
    else:
        chosen = [a.strip() for a in args.agents.split(",") if a.strip()]
        bad = [a for a in chosen if a not in present]
        if not chosen or bad:
            parser.error(f"--agents must name agents from {', '.join(present)}, got {args.agents!r}")
        args.agents = chosen
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
