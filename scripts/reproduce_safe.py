"""``safe-tabular``: constrained PPO agents on random tabular CMDPs, scored exactly against the LP optimum.

    python scripts/reproduce.py safe-tabular                 # 4 CMDPs x 3 limits x 4 seeds, writes scripts/results/
    python scripts/reproduce_safe.py safe-tabular --quick --out /tmp/smoke

The CMDPs. ``--cmdps`` K random CMDPs of ``envs/safe/tabular_cmdp.py`` (S = 8 states, A = 4
actions, γ = 0.9, Dirichlet(1) transitions, rewards and costs ~ U[0, 1]); CMDP k is the one
``TabularCMDP-Geometric-v0`` builds with ``seed=k`` (``--cmdp-seed`` shifts k). The agents train on
the geometric variant (each step ends the episode with probability 1 − γ, horizon cap 100, so
γ^100/(1 − γ) ≈ 3e-4 of truncation error), with discount 1: the expected undiscounted episode
return and cost they optimize and constrain are the LP's discounted value V_r and cost V_c from μ0.

The limits. Per CMDP, one limit d = c_min + f · (c_unc − c_min) for every f of
``--limit-fractions`` (0.25, 0.5, 0.75): c_min is the smallest achievable discounted cost
(``jaxrl.cmdp.min_cost``), c_unc the cost of the reward-optimal policy
(``jaxrl.cmdp.optimal_policy``). Any f in (0, 1) makes the constraint bind when c_unc > c_min
(then the constrained optimum spends exactly d); ``jaxrl.cmdp.solve`` gives the optimum V*, its
cost and the multiplier λ* of each (CMDP, limit) pair, a "problem".

The agents. PPO-Lag (``agents/safe/ppo_lag.py``), PPO-PID-Lag (``agents/safe/ppo_pid_lag.py``),
CPO (``cpo.py``), FOCOPS (``focops.py``), P3O (``p3o.py``), Sauté PPO (``saute_ppo.py``) and
unconstrained PPO (``ppo_lag`` with ``lambda_init=0, lambda_lr=0``: λ stays 0), all with their
defaults (their papers' / OmniSafe's) except discount 1 for reward and cost (see above). Sauté PPO's
policy also sees the remaining budget z, so it is not a stationary policy of the CMDP's states: its
table is read at a full budget (z = 1) and the exact score is that of this stationary policy, an
approximation of what Sauté plays (its training-curve columns are its actual episodes). Not here:
SAC-Lag (continuous actions only). For each agent file ONE
compiled program trains every (agent variant x CMDP x cost limit x seed) run: the runs are one
``jax.vmap`` axis over the CMDP arrays (``EnvParams``), the cost limit (a float ``Config`` field,
traced), the variant's float hyperparameters (λ0 and the λ learning rate, so PPO-Lag and
unconstrained PPO share a program) and the key.
To give each run its own CMDP, ``make_train`` is called inside the vmapped function with the run's
(traced) CMDP arrays: ``make_train(config, env=..., env_params=...)`` (``make_trainer``).
Everything else is the agent's own code.

The score. No sampling: after training, the policy of every run is read off its actor by feeding
the S one-hot observations through the network (softmax of the logits = π(a|s), the stochastic
policy PPO trains), and ``jaxrl.cmdp.evaluate`` computes its exact V_r and V_c. Per agent and
problem the table gives the value gap 100·(V* − V_r)/V* and V_c/d, mean and 95% bootstrap CI over
seeds, and how many seeds meet the limit (V_c ≤ d); the aggregate rows (per limit fraction and
over all) average each seed over the CMDPs first. The training curve's own estimate (mean episode
return/cost of the last 10% of the iterations, sampled) is given beside it.

Output: ``RESULTS/safe-tabular.md`` and ``.png`` (``scripts/results`` for a full run, else the
``--out`` folder; ``--results`` overrides) and ``OUT/safe-tabular.json`` with every run's numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
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

NAME = "safe-tabular"
TITLE = "PPO-Lag, PPO-PID-Lag, CPO, FOCOPS, P3O, Sauté PPO and unconstrained PPO on random tabular CMDPs vs the exact LP optimum"
ENV_ID = "TabularCMDP-Geometric-v0"


@dataclasses.dataclass(frozen=True)
class Agent:
    label: str
    module: str
    overrides: dict = dataclasses.field(default_factory=dict)
    """Float ``Config`` fields of this variant (traced: variants of one module share a program)."""


AGENTS = (
    Agent("PPO-Lag", "agents.safe.ppo_lag"),
    Agent("PPO-PID-Lag", "agents.safe.ppo_pid_lag"),
    Agent("PPO (unconstrained)", "agents.safe.ppo_lag", {"lambda_init": 0.0, "lambda_lr": 0.0}),
    Agent("CPO", "agents.safe.cpo"),
    Agent("FOCOPS", "agents.safe.focops"),
    Agent("P3O", "agents.safe.p3o"),
    Agent("Sauté PPO", "agents.safe.saute_ppo"),
)
COMMON = {"env": ENV_ID, "gamma": 1.0, "cost_gamma": 1.0}
"""Discount 1: the geometric env's termination supplies γ (see the module docstring)."""
QUICK = {"total_timesteps": 2 * 4 * 32, "num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 1,
         "hidden_size": 16}


@dataclasses.dataclass(frozen=True)
class Setup:
    num_cmdps: int = 4
    num_states: int = 8
    num_actions: int = 4
    gamma: float = 0.9
    concentration: float = 1.0
    horizon: int = 100
    limit_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    cmdp_seed: int = 0


# ----------------------------------------------------------------------------------------------
# The CMDPs and their exact solutions
# ----------------------------------------------------------------------------------------------
def make_env(setup: Setup):
    from envs.safe.tabular_cmdp import TabularCMDP

    return TabularCMDP(setup.num_states, setup.num_actions, seed=setup.cmdp_seed, concentration=setup.concentration,
                       gamma=setup.gamma, max_steps_in_episode=setup.horizon, geometric=True)


def make_cmdps(setup: Setup):
    """(params stacked over K CMDPs, their ``jaxrl.cmdp.CMDP``s): CMDP k is ``TabularCMDP(seed=cmdp_seed + k)``."""
    import jax

    from envs.safe.tabular_cmdp import generate
    from jaxrl import cmdp as cmdp_lib

    params = [generate(jax.random.PRNGKey(setup.cmdp_seed + k), setup.num_states, setup.num_actions,
                       setup.concentration, setup.gamma, setup.horizon) for k in range(setup.num_cmdps)]
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *params)
    return stacked, [cmdp_lib.from_params(p) for p in params]


def cost_limit(cmdp, fraction: float) -> dict:
    """d = c_min + fraction · (c_unc − c_min), with the numbers it comes from."""
    from jaxrl import cmdp as cmdp_lib

    unc_policy, unc_value = cmdp_lib.optimal_policy(cmdp, cmdp.rewards)
    _, unc_cost = cmdp_lib.evaluate(cmdp, unc_policy)
    c_min = cmdp_lib.min_cost(cmdp)
    return {"min_cost": c_min, "unconstrained_value": unc_value, "unconstrained_cost": unc_cost,
            "limit": c_min + fraction * (unc_cost - c_min)}


def solve_all(cmdps, fractions: Sequence[float]) -> list[dict]:
    """One problem per (CMDP, limit fraction), CMDP-major: its limit and the LP optimum under it."""
    from jaxrl import cmdp as cmdp_lib

    out = []
    for k, cmdp in enumerate(cmdps):
        for fraction in fractions:
            info = cost_limit(cmdp, fraction)
            sol = cmdp_lib.solve(cmdp, info["limit"])
            out.append({"cmdp": k, "fraction": float(fraction), **info, "value": sol.value, "cost": sol.cost,
                        "multiplier": sol.multiplier})
    return out


# ----------------------------------------------------------------------------------------------
# Training: every (variant, CMDP, cost limit, seed) of one agent file in one program
# ----------------------------------------------------------------------------------------------
def make_trainer(module, config, env, env_params):
    """``module.make_train(config)`` on ``env`` with ``env_params`` (a run's own CMDP, possibly traced)."""
    return module.make_train(config, env=env, env_params=env_params)


def agent_config(module, agent: Agent, quick: bool, total_timesteps: int | None):
    fields = {f.name for f in dataclasses.fields(module.Config)}
    quick_overrides = {k: v for k, v in QUICK.items() if k in fields} if quick else {}
    overrides = {**COMMON, **agent.overrides, **quick_overrides}
    if total_timesteps is not None:
        overrides["total_timesteps"] = total_timesteps
    return module.Config(**overrides)


def train_module(module_name: str, agents: Sequence[Agent], setup: Setup, env, params, problems: list[dict],
                 seeds: int, quick: bool, total_timesteps: int | None, quiet: bool) -> dict:
    """Train every (agent variant, problem, seed) of one agent file in one jit(vmap) program.

    A problem is a CMDP (index ``"cmdp"`` into the stacked ``params``) with a cost limit ``"limit"``.
    Returns the final policies and per-iteration metrics with a leading (variants, problems, seeds) shape.
    """
    import jax

    module = importlib.import_module(module_name)
    configs = [agent_config(module, a, quick, total_timesteps) for a in agents]
    base = configs[0]
    swept = sorted({k for a in agents for k in a.overrides})
    for name in swept:
        if not isinstance(getattr(base, name), float):
            raise ValueError(f"{name} differs between the variants of {module_name} but is not a float field")
    for c in configs:
        if dataclasses.replace(c, **{n: getattr(base, n) for n in swept}) != base:
            raise ValueError(f"the variants of {module_name} may differ only in their float overrides {swept}")
    for c in configs:  # concrete validation of every variant and limit before compiling
        for prob in problems:
            make_trainer(module, dataclasses.replace(c, cost_limit=float(prob["limit"])), env,
                         jax.tree.map(lambda x: x[prob["cmdp"]], params))
    G, P, N = len(agents), len(problems), seeds
    grid = lambda x: np.broadcast_to(x, (G, P, N) + np.shape(x)[3:]).reshape((G * P * N,) + np.shape(x)[3:])  # noqa: E731
    which = np.array([prob["cmdp"] for prob in problems])
    run_params = jax.tree.map(lambda x: grid(np.asarray(x)[which][None, :, None]), params)
    run_limits = grid(np.array([prob["limit"] for prob in problems], np.float32)[None, :, None])
    run_hp = {n: grid(np.array([getattr(c, n) for c in configs], np.float32)[:, None, None]) for n in swept}
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in range(N)])
    run_keys = grid(keys[None, None])

    def one(env_params, limit, hp, key):
        config = dataclasses.replace(base, cost_limit=limit, **hp)
        state, metrics = make_trainer(module, config, env, env_params)(key)
        keep = ("episode_return", "episode_cost", "lambda")
        return state.params, {k: metrics[k] for k in keep}

    program = jax.jit(jax.vmap(one))
    label = f"{module_name.rsplit('.', 1)[-1]} ({', '.join(a.label for a in agents)})"
    if not quiet:
        print(f"[{NAME}] {label}: {G * P * N} runs ({G} variants x {P} CMDP-limit pairs x {N} seeds) x "
              f"{base.total_timesteps:,} env steps in one program", flush=True)
    t0 = time.perf_counter()
    compiled = program.lower(run_params, run_limits, run_hp, run_keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out_params, metrics = jax.block_until_ready(compiled(run_params, run_limits, run_hp, run_keys))
    train_s = time.perf_counter() - t0
    if not quiet:
        print(f"[{NAME}] {label}: compile {compile_s:.1f} s, train {train_s:.1f} s "
              f"({G * P * N * base.total_timesteps / train_s:,.0f} env steps/s)", flush=True)
    logits_fn = functools.partial(module.policy_logits, base)
    probs = jax.jit(jax.vmap(lambda p: policy_table(logits_fn, p, setup.num_states)))(out_params)
    shape = (G, P, N)
    return {"configs": configs, "probs": np.asarray(probs, np.float64).reshape(shape + probs.shape[1:]),
            "metrics": {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in metrics.items()},
            "compile_s": compile_s, "train_s": train_s, "env_steps": base.total_timesteps}


# ----------------------------------------------------------------------------------------------
# Exact scoring
# ----------------------------------------------------------------------------------------------
def policy_table(logits_fn, params, num_states: int):
    """π(a|s) for every state: softmax of ``logits_fn(params, obs)`` on the one-hot observations, (S, A).

    ``logits_fn`` is an agent module's ``policy_logits`` with its config bound.
    """
    import jax
    import jax.numpy as jnp

    logits = logits_fn(params, jnp.eye(num_states, dtype=jnp.float32))
    return jax.nn.softmax(logits, axis=-1)


def exact_score(cmdp, policy) -> tuple[float, float]:
    """(V_r, V_c) of a (S, A) policy table from μ0, by ``jaxrl.cmdp.evaluate`` (rows renormalized in float64)."""
    from jaxrl import cmdp as cmdp_lib

    policy = np.asarray(policy, np.float64)
    return cmdp_lib.evaluate(cmdp, policy / policy.sum(-1, keepdims=True))


def tail_mean(x: np.ndarray, fraction: float = 0.1) -> float:
    """Mean over the last ``fraction`` of the iterations, ignoring iterations without a finished episode."""
    n = max(1, int(round(len(x) * fraction)))
    tail = x[-n:]
    return float(np.nanmean(tail)) if np.isfinite(tail).any() else float("nan")


def score_runs(agents: Sequence[Agent], trained: dict, cmdps, optima: list[dict]) -> list[dict]:
    """One row per (agent, problem, seed) with its exact value and cost and the training-curve estimate."""
    rows = []
    for module_name, result in trained.items():
        group = [a for a in agents if a.module == module_name]
        for g, agent in enumerate(group):
            for p, opt in enumerate(optima):
                for s in range(result["probs"].shape[2]):
                    value, cost = exact_score(cmdps[opt["cmdp"]], result["probs"][g, p, s])
                    m = {name: v[g, p, s] for name, v in result["metrics"].items()}
                    rows.append({"agent": agent.label, "problem": p, "cmdp": opt["cmdp"], "fraction": opt["fraction"],
                                 "seed": s, "value": value, "cost": cost,
                                 "gap_pct": 100.0 * (opt["value"] - value) / opt["value"],
                                 "unconstrained_gap_pct": 100.0 * (opt["unconstrained_value"] - value)
                                 / opt["unconstrained_value"],
                                 "cost_ratio": cost / opt["limit"], "met": bool(cost <= opt["limit"]),
                                 "train_return": tail_mean(m["episode_return"]),
                                 "train_cost": tail_mean(m["episode_cost"]),
                                 "final_lambda": float(m["lambda"][-1])})
    return rows


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _summary(values) -> dict:
    """``jaxrl.stats.summarize`` of the finite values (mean and CI NaN, n 0, when there is none)."""
    from jaxrl import stats

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    return stats.summarize(v)


def _ci(values, digits: int = 2, bold: bool = False, empty: str = "n/a") -> str:
    """"mean [lo, hi]" over the finite values (the mean in bold if asked); ``empty`` when there is none."""
    s = _summary(values)
    if s["n"] == 0:
        return empty
    mean = f"{s['mean']:.{digits}f}"
    return f"{'**' + mean + '**' if bold else mean} [{s['ci95'][0]:.{digits}f}, {s['ci95'][1]:.{digits}f}]"


def _mean_finite(values, digits: int = 3) -> str:
    """Mean of the finite values ("n/a" if none: e.g. CPO's ν is NaN after a recovery step)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return f"{v.mean():.{digits}f}" if v.size else "n/a"


def aggregate(rows: list[dict], agent: str, key: str, fraction: float | None = None) -> np.ndarray:
    """Per seed, the mean of ``key`` over the problems (of one limit fraction, if given)."""
    mine = [r for r in rows if r["agent"] == agent and (fraction is None or r["fraction"] == fraction)]
    seeds = sorted({r["seed"] for r in mine})
    return np.array([np.mean([r[key] for r in mine if r["seed"] == s]) for s in seeds])


def findings(agents: Sequence[Agent], rows: list[dict]) -> list[str]:
    """Plain statements of what the numbers say, one per agent, then the training-curve check."""
    out = []
    for a in agents:
        mine = [r for r in rows if r["agent"] == a.label]
        met = sum(r["met"] for r in mine)
        gap, ratio = _summary(aggregate(rows, a.label, "gap_pct")), _summary(aggregate(rows, a.label, "cost_ratio"))
        worst = max(r["cost_ratio"] for r in mine)
        out.append(f"- **{a.label}**: meets the limit in {met} of {len(mine)} runs (V_c ≤ d); mean V_c/d "
                   f"{ratio['mean']:.3f} [{ratio['ci95'][0]:.3f}, {ratio['ci95'][1]:.3f}] (worst run {worst:.3f}); "
                   f"mean value gap to the LP optimum {gap['mean']:.1f}% [{gap['ci95'][0]:.1f}, {gap['ci95'][1]:.1f}] "
                   "(negative: above V*, possible only by spending more than d).")
    ret = np.array([r["train_return"] - r["value"] for r in rows])
    cost = np.array([r["train_cost"] - r["cost"] for r in rows])
    out.append(f"- The training curves' own estimates (sampled episodes of the last 10% of the iterations) differ from "
               f"the exact values of the final policies by {np.nanmean(np.abs(ret)):.2f} (return) and "
               f"{np.nanmean(np.abs(cost)):.2f} (cost) on average over all runs (mean signed difference "
               f"{np.nanmean(ret):+.2f} / {np.nanmean(cost):+.2f}): the estimates average over still-changing policies "
               "and over a few hundred sampled episodes, the exact numbers are those of the final policy.")
    return out


def render(agents: Sequence[Agent], setup: Setup, optima: list[dict], trained: dict, rows: list[dict], *,
           command: str, machine: dict, machine_end: dict, versions: dict, revision: str, started: _dt.datetime,
           elapsed: float, seeds: int, quick: bool, plot_name: str) -> str:
    first = next(iter(trained.values()))["configs"][0]
    fractions = ", ".join(f"{f:g}" for f in setup.limit_fractions)
    runs = sum(int(np.prod(t["probs"].shape[:3])) for t in trained.values())
    lines = [f"# Reproduction `{NAME}`: {TITLE}" + (" (--quick smoke test: numbers mean nothing)" if quick else ""), "",
             f"- Command: `{command}`",
             f"- Date: {started.isoformat(timespec='seconds')} (total run time {elapsed / 60:.1f} min)",
             f"- Machine: `{machine['host']}`, CPU {machine['cpu']}, {machine['cores']} cores ({machine['usable']} usable), "
             f"{machine['platform']}; load average (1/5/15 min) at start {machine['load']}, at end {machine_end['load']}",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"- Code: git {revision}",
             f"- CMDPs: {setup.num_cmdps} random CMDPs of `envs/safe/tabular_cmdp.py` (CMDP k = `{ENV_ID}` with "
             f"`seed={setup.cmdp_seed}+k`), S = {setup.num_states} states, A = {setup.num_actions} actions, "
             f"γ = {setup.gamma}, Dirichlet({setup.concentration:g}) transitions, r, c ~ U[0, 1]; episodes end with "
             f"probability 1 − γ per step (cap {setup.horizon} steps), so episode return/cost estimate V_r/V_c",
             f"- Cost limits: d = c_min + f · (c_unc − c_min) for f in ({fractions}) (c_min: the smallest achievable "
             "discounted cost; c_unc: the cost of the reward-optimal policy), so every limit binds",
             f"- Training: {seeds} seeds (0..{seeds - 1}) per (agent, CMDP, limit), {first.total_timesteps:,} env "
             f"steps per run ({first.num_envs} envs x {first.num_steps} steps per iteration), {runs} runs; per agent "
             "file ONE compiled program (`jax.vmap` over variant x CMDP arrays x cost limit x key); the agents' "
             "defaults (OmniSafe's) except discount 1 for reward and cost"
             + (f" and the --quick overrides {QUICK} (where an agent's Config has the field)" if quick else ""),
             "- Score: exact V_r and V_c (`jaxrl.cmdp.evaluate`) of each run's final stochastic policy, read off the "
             "actor on the S one-hot observations; no sampling. Value gap = 100·(V* − V_r)/V* with V* the LP "
             "optimum under the same limit. Mean and 95% percentile-bootstrap CI over seeds.",
             "", "## The CMDPs and their LP optimum", "",
             "| CMDP | c_min | reward-optimal V_r / V_c | f | limit d | LP optimum V* | its cost | λ* |",
             "|---|---|---|---|---|---|---|---|"]
    for o in optima:
        lines.append(f"| {o['cmdp']} | {o['min_cost']:.3f} | {o['unconstrained_value']:.3f} / "
                     f"{o['unconstrained_cost']:.3f} | {o['fraction']:g} | {o['limit']:.3f} | {o['value']:.3f} | "
                     f"{o['cost']:.3f} | {o['multiplier']:.3f} |")
    lines += ["", "Aggregate over the CMDPs (each seed's mean over the CMDPs, then mean and 95% CI over seeds):", "",
              "| agent | limits f | value gap % | V_c / d | runs meeting d | gap to the reward-optimal value % |",
              "|---|---|---|---|---|---|"]
    for a in agents:
        for fraction in (*setup.limit_fractions, None):
            mine = [r for r in rows if r["agent"] == a.label and (fraction is None or r["fraction"] == fraction)]
            agg = lambda key: aggregate(rows, a.label, key, fraction)  # noqa: E731
            lines.append(f"| {a.label} | {'all' if fraction is None else f'{fraction:g}'} | "
                         f"{_ci(agg('gap_pct'), 1, bold=True)} | {_ci(agg('cost_ratio'), 3, bold=True)} | "
                         f"{sum(r['met'] for r in mine)}/{len(mine)} | {_ci(agg('unconstrained_gap_pct'), 1)} |")
    lines += ["", "## Findings", ""]
    lines += findings(agents, rows)
    lines += ["", "## Results per CMDP and limit (exact evaluation)", "",
              "| CMDP | f | agent | V_r | value gap % | V_c | V_c / d | seeds meeting d | training-curve return / cost "
              "| final λ |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p, o in enumerate(optima):
        for a in agents:
            mine = [r for r in rows if r["agent"] == a.label and r["problem"] == p]
            col = lambda key: [r[key] for r in mine]  # noqa: E731
            lines.append(f"| {o['cmdp']} | {o['fraction']:g} | {a.label} | {_ci(col('value'))} | "
                         f"{_ci(col('gap_pct'), 1, bold=True)} | {_ci(col('cost'))} | "
                         f"{_ci(col('cost_ratio'), 3, bold=True)} | {sum(col('met'))}/{len(mine)} | "
                         f"{np.nanmean(col('train_return')):.2f} / {np.nanmean(col('train_cost')):.2f} | "
                         f"{_mean_finite(col('final_lambda'))} |")
    lines += ["", "The training-curve column is the agents' own estimate: mean episode return/cost of the "
              "stochastic policy over the last 10% of the iterations (sampled episodes, so noisy).",
              "", "## Run time", "", "| agent file | runs in the program | compile (s) | train (s) | "
              "env steps/s (all runs) |", "|---|---|---|---|---|"]
    for module_name, t in trained.items():
        n = int(np.prod(t["probs"].shape[:3]))
        lines.append(f"| `{module_name.replace('.', '/')}.py` | {n} | {t['compile_s']:.1f} | {t['train_s']:.1f} | "
                     f"{n * t['env_steps'] / t['train_s']:,.0f} |")
    lines += ["", f"![value gap and cost / limit]({plot_name})", ""]
    return "\n".join(lines)


def plot(agents: Sequence[Agent], rows: list[dict], optima: list[dict], setup: Setup, path: Path, quick: bool) -> Path:
    """Two panels (value gap, V_c/d): a bar per agent for every (CMDP, limit) and the mean per limit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxrl.io import save_figure_atomic

    groups = [(f"{o['cmdp']}\nf={o['fraction']:g}", lambda r, p=p: r["problem"] == p, None) for p, o in enumerate(optima)]
    groups += [(f"mean\nf={f:g}", None, f) for f in setup.limit_fractions]
    fig = Figure(figsize=(max(11.0, 0.55 * len(groups) * 2 + 2), 7.5))
    FigureCanvasAgg(fig)
    panels = (("gap_pct", "value gap to the LP optimum (%)", 0.0), ("cost_ratio", "V_c / cost limit d", 1.0))
    width = 0.8 / len(agents)
    for i, (key, ylabel, ref) in enumerate(panels):
        ax = fig.add_subplot(2, 1, i + 1)
        for j, a in enumerate(agents):
            values = [[r[key] for r in rows if r["agent"] == a.label and keep(r)] if keep is not None
                      else list(aggregate(rows, a.label, key, fraction)) for _, keep, fraction in groups]
            stats = [_summary(v) for v in values]
            x = np.arange(len(groups)) + (j - (len(agents) - 1) / 2) * width
            mean = np.array([s["mean"] for s in stats])
            err = np.array([[s["mean"] - s["ci95"][0] for s in stats], [s["ci95"][1] - s["mean"] for s in stats]])
            ax.bar(x, mean, width, yerr=np.maximum(err, 0), capsize=2, label=a.label)
        ax.axhline(ref, color="black", lw=1, ls="--")
        ax.axvline(len(optima) - 0.5, color="gray", lw=0.8)
        ax.set_xticks(np.arange(len(groups)), [g[0] for g in groups], fontsize="small")
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        if i == 1:
            ax.set_xlabel("CMDP and limit fraction f (d = c_min + f (c_unc − c_min)); right: mean over CMDPs")
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.005, 1.0))
    fig.suptitle(f"{NAME}{' (--quick: meaningless)' if quick else ''}: exact evaluation of the final policies "
                 "(mean, 95% CI over seeds)", fontsize="medium")
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]):
    parser = argparse.ArgumentParser(prog=f"scripts/reproduce.py {NAME}", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Setup()
    labels = [a.label for a in AGENTS]
    parser.add_argument("--agents", default=None, help=f"comma-separated subset of: {', '.join(labels)} (default: all)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per agent, CMDP and limit (default 4; 2 with --quick)")
    parser.add_argument("--cmdps", type=int, default=None, help=f"random CMDPs (default {d.num_cmdps}; 2 with --quick)")
    parser.add_argument("--cmdp-seed", type=int, default=d.cmdp_seed, help="CMDP k is drawn with seed CMDP_SEED + k")
    parser.add_argument("--states", type=int, default=d.num_states, help="states per CMDP")
    parser.add_argument("--actions", type=int, default=d.num_actions, help="actions per CMDP")
    parser.add_argument("--gamma", type=float, default=d.gamma, help="discount of the CMDPs, in (0, 1)")
    parser.add_argument("--limit-fractions", default=None,
                        help="comma-separated f in (0, 1): one cost limit d = c_min + f (c_unc − c_min) per f and CMDP "
                             f"(default {','.join(f'{f:g}' for f in d.limit_fractions)}; 0.25,0.75 with --quick)")
    parser.add_argument("--total-timesteps", type=int, default=None,
                        help="env steps per run (default: 200,000; 256 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="2 CMDPs x 2 limits, 2 seeds, 2 tiny iterations, small networks: a smoke test")
    parser.add_argument("--out", default=None, help=f"folder for {NAME}.json (default: runs/reproduce-{NAME}-TIME)")
    parser.add_argument("--results", default=None,
                        help=f"folder for {NAME}.md/.png (default: scripts/results, or the --out folder with --quick)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    chosen = [t.strip() for t in args.agents.split(",") if t.strip()] if args.agents else labels
    if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(labels):
        parser.error(f"--agents must be distinct names from {labels}, got {args.agents!r}")
    args.agents = [a for a in AGENTS if a.label in chosen]
    args.seeds = args.seeds if args.seeds is not None else (2 if args.quick else 4)
    args.cmdps = args.cmdps if args.cmdps is not None else (2 if args.quick else d.num_cmdps)
    if args.total_timesteps is None and not args.quick:
        args.total_timesteps = 200_000
    for flag in ("seeds", "cmdps", "states", "actions"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.total_timesteps is not None and args.total_timesteps < 1:
        parser.error(f"--total-timesteps must be >= 1, got {args.total_timesteps}")
    if not 0 < args.gamma < 1:
        parser.error(f"--gamma must be in (0, 1), got {args.gamma}")
    text = args.limit_fractions or ("0.25,0.75" if args.quick else ",".join(f"{f:g}" for f in d.limit_fractions))
    try:
        fractions = tuple(float(f) for f in text.split(",") if f.strip())
    except ValueError:
        parser.error(f"--limit-fractions must be comma-separated numbers, got {text!r}")
    if not fractions or len(set(fractions)) != len(fractions) or not all(0 < f < 1 for f in fractions):
        parser.error(f"--limit-fractions must be distinct numbers in (0, 1) (0: the min-cost limit, 1: the "
                     f"reward-optimal policy's cost, where the constraint stops binding), got {text!r}")
    args.limit_fractions = fractions
    return args


def main(argv: Sequence[str] | None = None, helpers=None) -> int:
    """Entry point; ``scripts/reproduce.py`` passes the arguments after the entry name and itself as ``helpers``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == NAME:  # `python scripts/reproduce_safe.py safe-tabular ...`
        argv = argv[1:]
    args = parse_args(argv)
    if helpers is None:
        from scripts import reproduce as helpers
    from jaxrl.config import ConfigError
    from jaxrl.io import write_json_atomic, write_text_atomic

    started = _dt.datetime.now()
    out = Path(args.out or Path("runs") / f"reproduce-{NAME}-{started:%Y%m%d-%H%M%S}")
    results_dir = Path(args.results) if args.results else (out if args.quick else helpers.RESULTS_DIR)
    setup = Setup(num_cmdps=args.cmdps, num_states=args.states, num_actions=args.actions, gamma=args.gamma,
                  limit_fractions=args.limit_fractions, cmdp_seed=args.cmdp_seed)
    machine, t0 = helpers.machine_info(), time.perf_counter()
    params, cmdps = make_cmdps(setup)
    optima = solve_all(cmdps, setup.limit_fractions)
    env = make_env(setup)
    trained = {}
    try:
        for module_name in dict.fromkeys(a.module for a in args.agents):
            group = [a for a in args.agents if a.module == module_name]
            trained[module_name] = train_module(module_name, group, setup, env, params, optima, args.seeds,
                                                args.quick, args.total_timesteps, args.quiet)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    agents = [a for m in trained for a in args.agents if a.module == m]
    rows = score_runs(agents, trained, cmdps, optima)
    elapsed = time.perf_counter() - t0
    command = "python scripts/reproduce.py " + shlex.join([NAME, *argv])
    configs = {a.label: dataclasses.asdict(c) for m, t in trained.items()
               for a, c in zip([a for a in args.agents if a.module == m], t["configs"])}
    write_json_atomic(out / f"{NAME}.json", {"setup": dataclasses.asdict(setup), "seeds": args.seeds, "optima": optima,
                                              "runs": rows, "command": command, "configs": configs})
    plot_path = plot(agents, rows, optima, setup, results_dir / f"{NAME}.png", args.quick)
    text = render(agents, setup, optima, trained, rows, command=command, machine=machine,
                  machine_end=helpers.machine_info(), versions=helpers.versions(), revision=helpers.git_revision(),
                  started=started, elapsed=elapsed, seeds=args.seeds, quick=args.quick, plot_name=plot_path.name)
    table = write_text_atomic(results_dir / f"{NAME}.md", text)
    if not args.quiet:
        print("\n" + "\n".join(line for line in text.splitlines() if line.startswith("|")) + "\n")
    print(f"[{NAME}] wrote {table} and {plot_path} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
