"""``safe-pointgoal``: the constrained agents against unconstrained PPO on PointGoal, and a cost-limit sweep.

    python scripts/reproduce.py safe-pointgoal                  # levels 1 and 2, every agent, writes scripts/results/
    python scripts/reproduce.py safe-pointgoal --agents PPO,PPO-Lag --levels 1 --total-timesteps 200000
    python scripts/reproduce_pointgoal.py safe-pointgoal --quick --out /tmp/smoke

The task. ``PointGoal{1,2}-v0`` (``envs/safe/point_goal.py``), our JAX re-implementation of Safety
Gym's SafetyPointGoal1/2: a point robot drives to goals that respawn when reached, hazards cost 1
per step inside them (and, at level 2, touching a vase costs too), 1000-step episodes, cost limit
25 per episode (OmniSafe's default).

The agents. Unconstrained PPO (``agents/safe/ppo_lag.py`` with λ0 = 0 and λ lr 0, so λ stays 0
and it reports the same metrics), PPO-Lag, PPO-PID-Lag, CPO, FOCOPS, P3O, Sauté PPO and SAC-Lag,
each with its file's defaults (its paper's / OmniSafe's) except the settings ``AGENTS`` names (CPO's
batch size, SAC-Lag's width, envs, α tuning, reward scale and budget; see there why). For every (agent file, setting, level) ONE compiled program trains all of
its runs: a ``jax.vmap`` axis over (variant x cost limit x seed), the variant's float overrides and the
cost limit being traced ``Config`` fields. At level 1 the PPO-Lag
program also holds the cost-limit sweep (limits 10, 25 and 50): the sweep trains in the same program
as the main comparison.

The score. An agent's metrics are per iteration over the episodes that completed in it; the final
numbers are the mean of its last 10% of iterations that completed an episode, per seed, then mean and
95% percentile-bootstrap CI over seeds. The table gives episode return, episode cost, cost / limit and
the fraction of finished episodes over the limit, beside OmniSafe's published numbers for
SafetyPointGoal1 (MuJoCo, 1e7 steps): the shape to compare is the same (PPO far over the limit;
constrained methods near it with a lower return), the magnitudes are not (a different simulator, and
far fewer env steps here).

Output: ``RESULTS/safe-pointgoal.md`` and ``.png`` (``scripts/results`` for a full run, else the
``--out`` folder) and ``OUT/safe-pointgoal.json`` with every run's curves.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.reproduce_safe import _ci as _safe_ci, _mean_finite, _summary  # noqa: E402  (NaN-aware formatters)

NAME = "safe-pointgoal"
TITLE = "Constrained agents vs unconstrained PPO on PointGoal levels 1 and 2 at cost limit 25, and a cost-limit sweep"
LIMIT = 25.0
SWEEP_LIMITS = (10.0, 25.0, 50.0)
SWEEP_AGENT = "PPO-Lag"
SWEEP_LEVEL = 1
KEEP = ("episode_return", "episode_cost", "over_limit", "lambda")
"""Per-iteration metrics kept from every run (``over_limit`` and ``lambda`` where an agent reports them)."""
QUICK = {"num_envs": 2, "num_steps": 64, "num_minibatches": 2, "update_epochs": 1, "hidden_size": 16,
         "batch_size": 32, "learning_starts": 128, "buffer_size": 2048}
"""--quick overrides, each applied to the agents whose ``Config`` has that field."""
REFERENCE = ("safe", "omnisafe-pointgoal1", "SafetyPointGoal1-v0")


@dataclasses.dataclass(frozen=True)
class Agent:
    label: str
    module: str
    overrides: dict = dataclasses.field(default_factory=dict)
    """Float ``Config`` fields of this variant (traced: variants of one file share a program)."""
    max_timesteps: int | None = None
    """A cap on this agent's env steps per run (below ``--total-timesteps``), for agents too slow on CPU."""
    setting: tuple = ()
    """(field, value) pairs of non-float ``Config`` fields (shapes, modes): each setting is its own program."""
    note: str = ""
    """What the findings should say about this agent beside its numbers (e.g. a failure others report too)."""

    @property
    def setting_text(self) -> str:
        """The setting as the report writes it, e.g. "num_envs=32"."""
        return ", ".join(f"{k}={v!r}" for k, v in self.setting)

    @property
    def changes_text(self) -> str:
        """Every field this agent changes from its file's defaults (setting, then float overrides)."""
        return ", ".join([*(f"{k}={v!r}" for k, v in self.setting), *(f"{k}={v!r}" for k, v in self.overrides.items())])

    @property
    def program(self) -> tuple:
        """Runs with the same program key train in one compiled program."""
        return (self.module, self.setting)


AGENTS = (
    Agent("PPO", "agents.safe.ppo_lag", {"lambda_init": 0.0, "lambda_lr": 0.0}),
    Agent("PPO-Lag", "agents.safe.ppo_lag"),
    Agent("PPO-PID-Lag", "agents.safe.ppo_pid_lag"),
    Agent("CPO", "agents.safe.cpo", setting=(("num_envs", 32),)),
    Agent("FOCOPS", "agents.safe.focops"),
    Agent("P3O", "agents.safe.p3o"),
    Agent("Sauté PPO", "agents.safe.saute_ppo"),
    Agent("SAC-Lag", "agents.safe.sac_lag", {"reward_scale": 10.0}, max_timesteps=400_000,
          setting=(("num_envs", 4), ("autotune", True), ("hidden_size", 64), ("buffer_size", 100_000)),
          note="Off-policy Lagrangian SAC is a known failure on Safety Gym's PointGoal1: the Safety Gym paper and "
               "OmniSafe's benchmark report no off-policy agent on it, and users of both code bases report costs that "
               "do not come down (openai/safety-starter-agents#4, PKU-Alignment/omnisafe#378), blamed on inaccurate, "
               "volatile cost Q-estimates that the multiplier then chases."),
)
"""CPO runs with batches of 32 envs x 256 steps (its default is OmniSafe's 8 x 256): its step is sized by
in-sample estimates of the reward and cost gradients, which at 2048 samples (fewer than the actor's ~6 800
parameters) are mostly noise; the paper used 50 000-sample batches. Measured on level 1 (1e6 steps, 2 seeds):
with 2048-sample batches the episode cost swung between 26 and 63 to the end; with 8192 it settled at 18-44.
With the paper's units (``constraint_units="per_step"``) the cost stayed at ~58 (8192) and ~77 (2048):
see ``agents/safe/cpo.py``.

SAC-Lag: OmniSafe's update ratio (one gradient step per env step) with its 256x256 networks ran at ~45
env steps/s for 2 seeds on this shared 2-core CPU, so here it has 64-unit layers, 4 envs with one gradient
step per vector step (1e5 gradient steps in its 4e5 env steps) and a 1e5 buffer. Its file's fixed α = 0.2
(OmniSafe's) drowns PointGoal's reward (at most ~0.03 per step): the policy stayed uniform (entropy 1.35,
return 0 after 1.8e5 steps), so here α is tuned (Haarnoja et al. 2018b) and the reward scaled by 10
(SAC's reward scale, Haarnoja et al. 2018a). Measured on level 1 (2 seeds, λ held at 0): return 23.7 after
2e5 env steps, PPO's final return, at a cost of 51-75. With λ learned the cost did not settle (0 to 290
per episode from one checkpoint to the next up to 3.2e5 steps, λ still rising at 1.2-1.5): see ``Agent.note``."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One row of a program: an agent variant at one cost limit (trained for every seed)."""

    agent: Agent
    limit: float

    @property
    def label(self) -> str:
        return self.agent.label if self.limit == LIMIT else f"{self.agent.label} (d = {self.limit:g})"


def env_id(level: int) -> str:
    return f"PointGoal{level}-v0"


def runs_of(agents: Sequence[Agent], level: int, sweep: bool) -> list[Run]:
    runs = []
    for a in agents:
        limits = SWEEP_LIMITS if sweep and a.label == SWEEP_AGENT and level == SWEEP_LEVEL else (LIMIT,)
        runs += [Run(a, limit) for limit in limits]
    return runs


# ----------------------------------------------------------------------------------------------
# Training: one program per (agent file, setting, level)
# ----------------------------------------------------------------------------------------------
def base_config(module, level: int, quick: bool, total_timesteps: int, setting: dict | None = None):
    """The agent's defaults on ``PointGoal{level}-v0``, with the agent's ``setting`` (plus the --quick
    overrides its Config has, which win)."""
    fields = {f.name for f in dataclasses.fields(module.Config)}
    overrides = {**(setting or {}), **({k: v for k, v in QUICK.items() if k in fields} if quick else {})}
    return module.Config(env=env_id(level), total_timesteps=total_timesteps, cost_limit=LIMIT, **overrides)


def train_program(module_name: str, runs: Sequence[Run], level: int, seeds: int, total_timesteps: int, quick: bool,
                  quiet: bool) -> dict:
    """Train every (run, seed) of one agent file at one level in one ``jit(vmap)`` program.

    Returns the per-iteration metrics with a leading (runs, seeds) shape, the env steps per iteration,
    and the compile and train times.
    """
    import jax

    module = importlib.import_module(module_name)
    caps = [r.agent.max_timesteps for r in runs if r.agent.max_timesteps is not None]
    base = base_config(module, level, quick, min([total_timesteps, *caps]), dict(runs[0].agent.setting))
    swept = sorted({k for r in runs for k in r.agent.overrides})
    for name in swept:
        if not isinstance(getattr(base, name), float):
            raise ValueError(f"{name} differs between the variants of {module_name} but is not a float field")
    configs = [dataclasses.replace(base, cost_limit=r.limit, **r.agent.overrides) for r in runs]
    trainer = module.make_train(configs[0])  # concrete validation (clear errors before compiling)
    for c in configs[1:]:
        module.make_train(c)
    R, N = len(runs), seeds
    flat = lambda x: np.repeat(np.asarray(x, np.float32), N)  # noqa: E731  (run-major, seed-minor)
    limits = flat([r.limit for r in runs])
    hp = {n: flat([getattr(c, n) for c in configs]) for n in swept}
    keys = np.tile(np.stack([np.asarray(jax.random.PRNGKey(s)) for s in range(N)]), (R, 1))

    def one(limit, hp, key):
        _, metrics = module.make_train(dataclasses.replace(base, cost_limit=limit, **hp))(key)
        return {k: metrics[k] for k in KEEP if k in metrics}

    program = jax.jit(jax.vmap(one))
    label = f"{module_name.rsplit('.', 1)[-1]} on {env_id(level)} ({', '.join(r.label for r in runs)})"
    if not quiet:
        print(f"[{NAME}] {label}: {R * N} runs ({R} variants/limits x {N} seeds) x {base.total_timesteps:,} env steps "
              "in one program", flush=True)
    t0 = time.perf_counter()
    compiled = program.lower(limits, hp, keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = jax.block_until_ready(compiled(limits, hp, keys))
    train_s = time.perf_counter() - t0
    steps = trainer.num_updates * trainer.env_steps_per_update
    if not quiet:
        print(f"[{NAME}] {label}: compile {compile_s:.1f} s, train {train_s:.1f} s "
              f"({R * N * steps / train_s:,.0f} env steps/s)", flush=True)
    return {"runs": list(runs), "level": level, "module": module_name, "config": base,
            "metrics": {k: np.asarray(v, np.float64).reshape((R, N) + v.shape[1:]) for k, v in metrics.items()},
            "steps_per_iteration": trainer.env_steps_per_update, "env_steps": steps,
            "compile_s": compile_s, "train_s": train_s}


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def final_value(curve: np.ndarray, tail: float = 0.1) -> float:
    """Mean over the last ``tail`` share of the iterations that completed an episode (NaN: none did)."""
    finite = curve[np.isfinite(curve)]
    if finite.size == 0:
        return float("nan")
    return float(finite[-max(1, int(np.ceil(tail * finite.size))):].mean())


def score(trained: list[dict]) -> list[dict]:
    """One row per (level, run, seed) with its final return, cost, cost/limit and share of episodes over it."""
    rows = []
    for t in trained:
        for i, run in enumerate(t["runs"]):
            for s in range(next(iter(t["metrics"].values())).shape[1]):
                m = {k: v[i, s] for k, v in t["metrics"].items()}
                ret, cost = final_value(m["episode_return"]), final_value(m["episode_cost"])
                rows.append({"level": t["level"], "agent": run.agent.label, "label": run.label, "limit": run.limit,
                             "seed": s, "return": ret, "cost": cost, "cost_ratio": cost / run.limit,
                             "over_limit": final_value(m["over_limit"]) if "over_limit" in m else float("nan"),
                             "final_lambda": float(m["lambda"][-1]) if "lambda" in m else float("nan")})
    return rows


def _ci(values, digits: int = 1, bold: bool = False) -> str:
    return _safe_ci(values, digits, bold, empty="n/a (no episode completed)")


def select(rows: list[dict], level: int, label: str) -> list[dict]:
    return [r for r in rows if r["level"] == level and r["label"] == label]


def findings(rows: list[dict], levels: Sequence[int]) -> list[str]:
    """Plain statements: does PPO violate the limit, where do the constrained agents end, what do they give up."""
    out = []
    for level in levels:
        ppo = select(rows, level, "PPO")
        ppo_cost = _summary([r["cost"] for r in ppo])["mean"] if ppo else float("nan")
        ppo_ret = _summary([r["return"] for r in ppo])["mean"] if ppo else float("nan")
        if ppo:
            verdict = "violates" if ppo_cost > LIMIT else "does not violate"
            out.append(f"- Level {level}: unconstrained PPO {verdict} the limit (episode cost {ppo_cost:.1f} vs "
                       f"d = {LIMIT:g}, return {ppo_ret:.1f}).")
        for label in dict.fromkeys(r["label"] for r in rows if r["level"] == level and r["agent"] != "PPO"
                                   and r["limit"] == LIMIT):
            mine = select(rows, level, label)
            cost, ret = _summary([r["cost"] for r in mine]), _summary([r["return"] for r in mine])
            where = ("within" if cost["mean"] <= LIMIT else
                     "near (≤ 1.2 d)" if cost["mean"] <= 1.2 * LIMIT else "over")
            lower = (f", return {ret['mean']:.1f} ({ret['mean'] - ppo_ret:+.1f} vs PPO)" if ppo else
                     f", return {ret['mean']:.1f}")
            out.append(f"  - {label}: cost {cost['mean']:.1f} [{cost['ci95'][0]:.1f}, {cost['ci95'][1]:.1f}], "
                       f"{where} the limit{lower}.")
            note = next((a.note for a in AGENTS if a.label == mine[0]["agent"] and a.note), "")
            if note and where == "over":
                out.append(f"    {note}")
    sweep = [r for r in rows if r["agent"] == SWEEP_AGENT and r["level"] == SWEEP_LEVEL]
    if len({r["limit"] for r in sweep}) > 1:
        costs = [(lim, _summary([r["cost"] for r in sweep if r["limit"] == lim])["mean"]) for lim in SWEEP_LIMITS]
        ordered = all(a[1] < b[1] for a, b in zip(costs, costs[1:]))
        out.append(f"- Sweep ({SWEEP_AGENT}, level {SWEEP_LEVEL}): final cost "
                   + ", ".join(f"{c:.1f} at d = {lim:g}" for lim, c in costs)
                   + (": the cost rises with the limit." if ordered else ": the cost does not rise with the limit."))
    return out


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def render(trained: list[dict], rows: list[dict], levels: Sequence[int], references: dict, *, command: str,
           machine: dict, machine_end: dict, versions: dict, revision: str, started: _dt.datetime, elapsed: float,
           seeds: int, quick: bool, plot_name: str) -> str:
    ref = references.get(REFERENCE[0], {}).get(REFERENCE[1], {})
    ref_values = ref.get("values", {}).get(REFERENCE[2], {})
    budgets = sorted({t["env_steps"] for t in trained})
    budget = " / ".join(f"{b:,}" for b in budgets)
    lines = [f"# Reproduction `{NAME}`: {TITLE}" + (" (--quick smoke test: numbers mean nothing)" if quick else ""), "",
             f"- Command: `{command}`",
             f"- Date: {started.isoformat(timespec='seconds')} (total run time {elapsed / 60:.1f} min)",
             f"- Machine: `{machine['host']}`, CPU {machine['cpu']}, {machine['cores']} cores ({machine['usable']} usable), "
             f"{machine['platform']}; load average (1/5/15 min) at start {machine['load']}, at end {machine_end['load']}",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- Code: git {revision}",
             f"- Task: `PointGoal{{{','.join(map(str, levels))}}}-v0` (`envs/safe/point_goal.py`), 1000-step episodes, "
             f"cost limit d = {LIMIT:g} per episode",
             f"- Training: {seeds} seeds per run, {budget} env steps per run (per agent file: see the run-time table); "
             "per (agent file, setting, level) ONE "
             "compiled program (`jax.vmap` over variant x cost limit x seed); every agent with its file's defaults"
             + "".join(f"; {label} with {text}" for label, text in dict.fromkeys(
                 (r.agent.label, r.agent.changes_text) for t in trained for r in t["runs"]) if text)
             + (f" and the --quick overrides where a Config has the field: {QUICK}" if quick else ""),
             "- Score: per seed, the mean over the last 10% of the iterations that completed an episode (the agents' "
             "own per-iteration episode statistics); mean and 95% percentile-bootstrap CI over seeds.",
             f"- Published: {ref.get('source', 'n/a')}; on MuJoCo and at 1e7 env steps, so compare the shape, "
             "not the magnitudes.", ""]
    for level in levels:
        lines += [f"## Level {level}, cost limit {LIMIT:g}", "",
                  "| agent | episode return | episode cost | cost / d | episodes over d | final λ | "
                  "OmniSafe PointGoal1: return / cost |", "|---|---|---|---|---|---|---|"]
        for label in dict.fromkeys(r["label"] for r in rows if r["level"] == level and r["limit"] == LIMIT):
            mine = select(rows, level, label)
            col = lambda key: [r[key] for r in mine]  # noqa: E731
            published = ref_values.get(label)
            pub = f"{published['return']:g} / {published['cost']:g}" if published and level == 1 else ""
            lam = np.nanmean(col("final_lambda")) if np.isfinite(col("final_lambda")).any() else float("nan")
            lines.append(f"| {label} | {_ci(col('return'), bold=True)} | {_ci(col('cost'), bold=True)} | "
                         f"{_ci(col('cost_ratio'), 2)} | {_ci(col('over_limit'), 2)} | "
                         f"{'' if np.isnan(lam) else f'{lam:.3f}'} | {pub} |")
        lines.append("")
    sweep = [r for r in rows if r["agent"] == SWEEP_AGENT and r["level"] == SWEEP_LEVEL]
    if len({r["limit"] for r in sweep}) > 1:
        lines += [f"## Cost-limit sweep: {SWEEP_AGENT} on level {SWEEP_LEVEL}, trained in the same program", "",
                  "| limit d | episode return | episode cost | cost / d | final λ |", "|---|---|---|---|---|"]
        for lim in SWEEP_LIMITS:
            mine = [r for r in sweep if r["limit"] == lim]
            col = lambda key: [r[key] for r in mine]  # noqa: E731
            lines.append(f"| {lim:g} | {_ci(col('return'), bold=True)} | {_ci(col('cost'), bold=True)} | "
                         f"{_ci(col('cost_ratio'), 2)} | {_mean_finite(col('final_lambda'))} |")
        lines.append("")
    lines += ["## Findings", ""] + findings(rows, levels)
    lines += ["", "## Run time", "", "| agent file | level | runs in the program | env steps per run | compile (s) | "
              "train (s) | env steps/s (all runs) |", "|---|---|---|---|---|---|---|"]
    for t in trained:
        n = len(t["runs"]) * seeds
        setting = t["runs"][0].agent.setting_text
        lines.append(f"| `{t['module'].replace('.', '/')}.py`{f' ({setting})' if setting else ''} | {t['level']} | {n} | {t['env_steps']:,} | "
                     f"{t['compile_s']:.1f} | {t['train_s']:.1f} | {n * t['env_steps'] / t['train_s']:,.0f} |")
    lines += ["", f"![return and cost curves]({plot_name})", ""]
    return "\n".join(lines)


def smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """NaN-aware moving average over the last ``window`` iterations (NaN until one episode completed)."""
    out = np.full(curve.shape, np.nan)
    for i in range(curve.shape[-1]):
        chunk = curve[..., max(0, i + 1 - window): i + 1]
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(chunk)
            count = finite.sum(-1)
            out[..., i] = np.where(count > 0, np.where(finite, chunk, 0.0).sum(-1) / np.maximum(count, 1), np.nan)
    return out


def plot(trained: list[dict], levels: Sequence[int], path: Path, quick: bool) -> Path:
    """Per level: return and cost curves (mean over seeds, smoothed) per agent; last column: the sweep's costs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxrl.io import save_figure_atomic

    has_sweep = any(len({r.limit for r in t["runs"]}) > 1 for t in trained)
    cols = 2 + has_sweep
    fig = Figure(figsize=(5.0 * cols, 3.6 * len(levels)))
    FigureCanvasAgg(fig)
    for row, level in enumerate(levels):
        axes = [fig.add_subplot(len(levels), cols, row * cols + c + 1) for c in range(cols)]
        for t in (t for t in trained if t["level"] == level):
            iters = next(iter(t["metrics"].values())).shape[-1]
            x = (np.arange(iters) + 1) * t["steps_per_iteration"]
            window = max(1, iters // 20)
            for i, run in enumerate(t["runs"]):
                curves = {k: smooth(t["metrics"][k][i], window).mean(0) for k in ("episode_return", "episode_cost")}
                if run.limit == LIMIT:
                    axes[0].plot(x, curves["episode_return"], label=run.label)
                    axes[1].plot(x, curves["episode_cost"], label=run.label)
                if has_sweep and run.agent.label == SWEEP_AGENT and len({r.limit for r in t["runs"]}) > 1:
                    line, = axes[2].plot(x, curves["episode_cost"], label=f"d = {run.limit:g}")
                    axes[2].axhline(run.limit, color=line.get_color(), ls="--", lw=0.8)
        axes[0].set_ylabel(f"level {level}\nepisode return")
        axes[1].set_ylabel("episode cost")
        axes[1].axhline(LIMIT, color="black", ls="--", lw=1, label=f"limit {LIMIT:g}")
        for ax in axes:
            ax.set_xlabel("env steps")
            ax.grid(True, alpha=0.3)
        axes[1].legend(fontsize="x-small")
        if has_sweep and level == SWEEP_LEVEL:
            axes[2].set_title(f"{SWEEP_AGENT}: cost-limit sweep (one program)", fontsize="small")
            axes[2].set_ylabel("episode cost")
            axes[2].legend(fontsize="x-small")
        elif has_sweep:
            axes[2].set_visible(False)
    fig.suptitle(f"{NAME}{' (--quick: meaningless)' if quick else ''}: mean over seeds, moving average over 5% of "
                 "the iterations", fontsize="medium")
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: Sequence[str]):
    parser = argparse.ArgumentParser(prog=f"scripts/reproduce.py {NAME}", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    labels = [a.label for a in AGENTS]
    parser.add_argument("--agents", default=None, help=f"comma-separated subset of: {', '.join(labels)} (default: all)")
    parser.add_argument("--levels", default="1,2", help="comma-separated PointGoal levels (0, 1, 2; default 1,2)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per run (default 4; 2 with --quick)")
    parser.add_argument("--total-timesteps", type=int, default=None,
                        help="env steps per run (default 1,000,000; 2,048 with --quick)")
    parser.add_argument("--no-sweep", action="store_true", help=f"skip the {SWEEP_AGENT} cost-limit sweep")
    parser.add_argument("--quick", action="store_true", help="tiny budgets and networks: a smoke test")
    parser.add_argument("--out", default=None, help=f"folder for {NAME}.json (default: runs/reproduce-{NAME}-TIME)")
    parser.add_argument("--results", default=None,
                        help=f"folder for {NAME}.md/.png (default: scripts/results, or the --out folder with --quick)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    chosen = _csv(args.agents) if args.agents else labels
    unknown = [c for c in chosen if c not in labels]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        parser.error(f"--agents must be distinct names from {labels}, got {args.agents!r}")
    args.agents = [a for a in AGENTS if a.label in chosen]
    try:
        args.levels = [int(v) for v in _csv(args.levels)]
    except ValueError:
        parser.error(f"--levels must be comma-separated integers, got {args.levels!r}")
    if not args.levels or len(set(args.levels)) != len(args.levels) or not set(args.levels) <= {0, 1, 2}:
        parser.error(f"--levels must be distinct levels among 0, 1, 2, got {args.levels}")
    args.seeds = args.seeds if args.seeds is not None else (2 if args.quick else 4)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.total_timesteps is None:
        args.total_timesteps = 2_048 if args.quick else 1_000_000
    if args.total_timesteps < 1:
        parser.error(f"--total-timesteps must be >= 1, got {args.total_timesteps}")
    return args


def main(argv: Sequence[str] | None = None, helpers=None) -> int:
    """Entry point; ``scripts/reproduce.py`` passes the arguments after the entry name and itself as ``helpers``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == NAME:  # `python scripts/reproduce_pointgoal.py safe-pointgoal ...`
        argv = argv[1:]
    args = parse_args(argv)
    if helpers is None:
        from scripts import reproduce as helpers
    from jaxrl.config import ConfigError
    from jaxrl.io import write_json_atomic, write_text_atomic

    started = _dt.datetime.now(_dt.timezone.utc)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else ROOT / "runs" / f"reproduce-{NAME}-{stamp}"
    results_dir = Path(args.results) if args.results else (out if args.quick else ROOT / "scripts" / "results")
    out.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    machine = helpers.machine_info()
    t0 = time.perf_counter()
    trained = []
    try:
        for level in args.levels:
            runs = runs_of(args.agents, level, sweep=not args.no_sweep)
            for program in dict.fromkeys(r.agent.program for r in runs):
                mine = [r for r in runs if r.agent.program == program]
                trained.append(train_program(program[0], mine, level, args.seeds, args.total_timesteps, args.quick,
                                             args.quiet))
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    rows = score(trained)
    elapsed = time.perf_counter() - t0
    command = "python scripts/reproduce.py " + shlex.join([NAME, *argv])
    write_json_atomic(out / f"{NAME}.json", {
        "command": command, "levels": args.levels, "seeds": args.seeds, "limit": LIMIT, "rows": rows,
        "curves": [{"module": t["module"], "level": t["level"], "runs": [r.label for r in t["runs"]],
                    "steps_per_iteration": t["steps_per_iteration"],
                    "config": dataclasses.asdict(t["config"]),
                    "metrics": {k: np.where(np.isfinite(v), v, None).tolist() for k, v in t["metrics"].items()}}
                   for t in trained]})
    plot_path = plot(trained, args.levels, results_dir / f"{NAME}.png", args.quick)
    text = render(trained, rows, args.levels, helpers.load_references(), command=command, machine=machine,
                  machine_end=helpers.machine_info(), versions=helpers.versions(), revision=helpers.git_revision(),
                  started=started, elapsed=elapsed, seeds=args.seeds, quick=args.quick, plot_name=plot_path.name)
    write_text_atomic(results_dir / f"{NAME}.md", text)
    if not args.quiet:
        print(text)
        print(f"[{NAME}] wrote {results_dir / f'{NAME}.md'}, {plot_path} and {out / f'{NAME}.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
