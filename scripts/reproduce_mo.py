#!/usr/bin/env python
"""Reproduce the multi-objective family's fronts beside the true fronts of the envs (issue 5).

Entries (each: a list of (agent, env, config) cases and the hypervolume reference point):

* ``mo-dst``: Deep Sea Treasure, both maps (Vamplew et al. 2011; the convex map of Yang et al. 2019 and
  the original concave one), γ = 0.99, reference point (0, -25) (``jaxrl.mo_evaluation.REFERENCE_POINTS``,
  morl-baselines' examples). Envelope Q-learning, MORL/D (PPO, linear weights), PCN and GPI-LS.
  On the concave map 8 of the 10 points of the true front (γ = 0.99) lie strictly inside its convex
  hull: no linear utility prefers them, so the methods that optimize linear scalarizations (Envelope,
  MORL/D with linear weights, GPI-LS) can return them only as policies that are not optimal for their
  weight (unconverged), while PCN (conditioned on returns) can aim at them. The table counts them
  ("non-convex-hull points found").
* ``mo-fruit-tree``: Fruit Tree of depth 6 (Yang et al. 2019), γ = 1, reference point 0⁶ (as the issue
  asks). Envelope, MORL/D, PCN (GPI-LS here is two-objective only).
* ``mo-resource-gathering``: Resource Gathering (Barrett & Narayanan 2008), γ = 0.99, exact front by
  backward induction (``envs/multi_objective/resource_gathering.py``); reference point: the true
  front's worst value minus 1 in every objective (no published one; fixed per env, so comparable
  across agents and seeds).
* ``mo-mountaincar``: MO Mountain Car [time, reverse, forward] (Vamplew et al. 2011), γ = 0.99, no
  known front (no IGD, no "true front" row); reference point (-100, -100, -100), below every
  discounted return (each objective is at least -1 per step and -1/(1-γ) = -100 in all).

Every (agent, env) case trains all its seeds in ONE compiled program (``jax.jit(jax.vmap(train))``
over the seed keys, through the agent's ``make_train``), then calls the agent's ``Trainer.report``
for each seed (its greedy policies rolled out, the approximate front) and scores the front here with
the entry's reference point and γ (``jaxrl.mo_evaluation.front_metrics``). It writes

* ``RESULTS/<entry>.md``: per env, agent x {hypervolume, expected utility, IGD, cardinality, points
  of the true front found, non-convex-hull points found}, mean over seeds [95% bootstrap CI], under
  a first row with the exact values of the true front; findings in plain sentences; command, date,
  machine, versions, budgets and run times;
* ``RESULTS/<entry>.png``: each agent's union-of-seeds front beside the true front (2 objectives:
  scatter; more: parallel coordinates);
* ``RESULTS/<entry>.json``: every case's per-seed fronts and metrics. A case already there with the
  same settings is reused, so an interrupted run continues where it stopped.

Usage::

    python scripts/reproduce_mo.py mo-dst                          # 4 seeds, all applicable agents
    python scripts/reproduce_mo.py mo-dst --agents pcn,envelope_q --seeds 8
    python scripts/reproduce_mo.py mo-fruit-tree --quick --out /tmp/smoke   # pipeline smoke test

``--quick`` trains tiny budgets with 2 seeds (numbers mean nothing).
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

RESULTS_DIR = Path(__file__).resolve().with_name("results")

AGENT_NAMES = {"envelope_q": "Envelope Q", "morld_ppo": "MORL/D (PPO, linear)", "pcn": "PCN", "gpi_ls": "GPI-LS",
               "cmorl": "C-MORL (PPO + IPO)"}
LINEAR = {"envelope_q": True, "morld_ppo": True, "pcn": False, "gpi_ls": True, "cmorl": False}
"""Whether the agent only ever optimizes linear scalarizations w · r (so only convex-hull points)."""
REACHES_OFF_HULL = {"pcn": "is conditioned on returns, so it can aim at them",
                    "cmorl": "its constrained extension steps maximize one objective with the others bounded, "
                             "which can end at points no linear weight prefers"}
"""Why an agent that is not LINEAR can return points off the convex hull."""


# ----------------------------------------------------------------------------------------------
# Entries
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    agent: str                      # module name under agents/multi_objective/
    env: str
    overrides: dict                 # Config fields for the real run
    quick: dict                     # Config fields for --quick (tiny budget)


@dataclasses.dataclass(frozen=True)
class Entry:
    title: str
    cases: tuple[Case, ...]
    gamma: float                    # γ of the fronts scored (the agents' front γ must equal it)
    ref_point: tuple | None         # None: the true front's worst value - 1 per objective
    note: str = ""


# Budgets of the agents' DST learning checks (tests/test_<agent>.py), PCN 1.5x.
_ENVELOPE = dict(total_timesteps=15_000, batch_size=32, num_sample_w=4, hidden_sizes="32,32", buffer_size=15_000,
                 learning_starts=100, start_e=1.0, exploration_fraction=0.5)
_MORLD = dict(total_timesteps=100 * 6 * 512, hidden_size=32, adapt_every=20)
_PCN = dict(total_timesteps=3_000)
_CMORL = dict(total_timesteps=(80 + 2 * 20) * 6 * 512, init_timesteps=80 * 6 * 512, extension_rounds=2, hidden_size=32,
              beta=0.5)
_GPI = dict(total_timesteps=15_000, steps_per_iteration=3_000, lr=1e-3, batch_size=32, gradient_updates=1,
            hidden_sizes="64,64", buffer_size=15_000, target_update_interval=200, ls_episodes=1, front_divisions=20)

_Q_ENVELOPE = dict(total_timesteps=512, batch_size=16, num_sample_w=2, hidden_sizes="16", buffer_size=512,
                   learning_starts=64, target_update_interval=64, front_divisions=4)
_Q_MORLD = dict(num_weights=3, total_timesteps=4 * 3 * 32, num_envs=2, num_steps=16, num_minibatches=2,
                update_epochs=1, hidden_size=8, adapt_every=2, adapt_eval_episodes=1)
_Q_CMORL = dict(num_init_policies=2, num_select=1, extension_rounds=1, total_timesteps=4 * 2 * 32,
                init_timesteps=2 * 2 * 32, num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1, hidden_size=8)
_Q_PCN = dict(total_timesteps=300, num_er_episodes=5, num_model_updates=5, hidden_dim=16, batch_size=32)
_Q_GPI = dict(total_timesteps=400, steps_per_iteration=200, batch_size=16, gradient_updates=1, hidden_sizes="16",
              buffer_size=400, learning_starts=50, target_update_interval=50, ls_episodes=1, front_divisions=4)


def _dst_cases(env: str, pcn_max_return: str) -> list[Case]:
    return [Case("envelope_q", env, _ENVELOPE, _Q_ENVELOPE), Case("morld_ppo", env, _MORLD, _Q_MORLD),
            Case("pcn", env, {**_PCN, "max_return": pcn_max_return}, {**_Q_PCN, "max_return": pcn_max_return}),
            Case("gpi_ls", env, _GPI, _Q_GPI), Case("cmorl", env, _CMORL, _Q_CMORL)]


def _gamma_one(agent: str) -> dict:
    return {"front_gamma": 1.0} if agent == "pcn" else {"gamma": 1.0}


ENTRIES: dict[str, Entry] = {
    "mo-dst": Entry(
        "Deep Sea Treasure (convex and concave maps), γ = 0.99",
        tuple(_dst_cases("DeepSeaTreasure-v0", "100,0") + _dst_cases("DeepSeaTreasureConcave-v0", "124,0")),
        gamma=0.99, ref_point=(0.0, -25.0),
        note="Budgets: the agents' DST learning checks (tests/test_<agent>.py): Envelope 15,000 env steps, "
             "MORL/D 100 updates of 6 members x 512 steps, GPI-LS 15,000 steps, PCN 3,000 steps (max_return = "
             "the largest treasure, 0), C-MORL 6 initial policies x 80 updates x 512 steps then 2 extension rounds "
             "of 3 selected policies x 2 objectives x 20 updates (β = 0.5)."),
    "mo-fruit-tree": Entry(
        "Fruit Tree, depth 6, γ = 1",
        tuple(Case(a, "FruitTree-v0", {**o, **_gamma_one(a)}, {**q, **_gamma_one(a)}) for a, o, q in (
            ("envelope_q", {**_ENVELOPE, "total_timesteps": 30_000, "buffer_size": 30_000, "front_divisions": 8},
             {**_Q_ENVELOPE, "front_divisions": 2}),
            ("morld_ppo", {**_MORLD, "num_weights": 21, "total_timesteps": 100 * 21 * 512}, {**_Q_MORLD, "num_weights": 6}),
            ("pcn", {**_PCN, "total_timesteps": 20_000, "max_return": "10,10,10,10,10,10"},
             {**_Q_PCN, "max_return": "10,10,10,10,10,10"}),
            ("cmorl", {**_CMORL, "total_timesteps": (40 + 3 * 20) * 18 * 512, "init_timesteps": 40 * 18 * 512,
                       "extension_rounds": 3, "num_select": 3},
             {**_Q_CMORL, "num_init_policies": 6, "init_timesteps": 2 * 6 * 32, "total_timesteps": 4 * 6 * 32}))),
        gamma=1.0, ref_point=(0.0,) * 6,
        note="Budgets: first choices, not tuned: Envelope 30,000 env steps (front over the 792-weight lattice with "
             "5 divisions), MORL/D 21 members (the 2-division lattice) x 100 updates x 512 steps, PCN 20,000 steps "
             "(max_return 10 per objective), C-MORL 6 initial policies x 40 updates then 3 extension rounds of 3 "
             "selected policies x 6 objectives x 20 updates (18 working members of 512 steps per update). Read the "
             "hypervolumes with care: every one of the 64 leaves is on the true front, so the hypervolume counts the "
             "distinct leaves a front reaches, not whether each preference gets its best leaf; an untrained Envelope "
             "network (32x32) already scores 0.59 of the true front's (0.20-0.74 over 20 seeds) on this lattice. "
             "tests/test_envelope_q.py checks the per-preference utility instead."),
    "mo-resource-gathering": Entry(
        "Resource Gathering, γ = 0.99",
        tuple(Case(a, "ResourceGathering-v0", o, q) for a, o, q in (
            ("envelope_q", {**_ENVELOPE, "total_timesteps": 50_000, "buffer_size": 50_000, "front_divisions": 10},
             {**_Q_ENVELOPE, "front_divisions": 2}),
            ("morld_ppo", {**_MORLD, "num_weights": 10}, {**_Q_MORLD}),
            ("pcn", {**_PCN, "total_timesteps": 20_000, "max_return": "1,1,1"}, {**_Q_PCN, "max_return": "1,1,1"}))),
        gamma=0.99, ref_point=None,
        note="Budgets: first choices, not tuned: Envelope 50,000 env steps (front over the 66-weight lattice), "
             "MORL/D 10 members (the 3-division lattice) x 60 updates x 512 steps, PCN 20,000 steps (max_return 1 "
             "per objective)."),
    "mo-mountaincar": Entry(
        "MO Mountain Car [time, reverse, forward], γ = 0.99",
        tuple(Case(a, "MOMountainCar-v0", o, q) for a, o, q in (
            ("envelope_q", {**_ENVELOPE, "total_timesteps": 100_000, "buffer_size": 100_000, "hidden_sizes": "64,64",
                            "front_divisions": 10}, {**_Q_ENVELOPE, "front_divisions": 2}),
            ("morld_ppo", {**_MORLD, "num_weights": 10, "hidden_size": 64}, {**_Q_MORLD}),
            ("pcn", {**_PCN, "total_timesteps": 50_000, "max_return": "0,0,0"}, {**_Q_PCN, "max_return": "0,0,0"}))),
        gamma=0.99, ref_point=(-100.0, -100.0, -100.0),
        note="Budgets: first choices, not tuned: Envelope 100,000 env steps, 64x64 network (front over the "
             "66-weight lattice), MORL/D 10 members x 60 updates x 512 steps with 64-unit layers, PCN 50,000 steps "
             "(max_return 0 per objective)."),
}


def make_env(env_id: str, entry: Entry):
    from jaxrl import envs

    env, _ = envs.make(env_id)    # registered defaults (FruitTree-v0: depth 6)
    return env


def true_front(env, gamma: float):
    """The env's exact front at ``gamma`` (``(k, m)`` float64), or None when it has none."""
    return np.asarray(env.pareto_front(gamma), np.float64) if hasattr(env, "pareto_front") else None


def reference_point(entry: Entry, front) -> np.ndarray:
    if entry.ref_point is not None:
        return np.asarray(entry.ref_point, np.float64)
    if front is None:
        raise ValueError("an entry without a true front needs an explicit reference point")
    return np.asarray(front, np.float64).min(axis=0) - 1.0


# ----------------------------------------------------------------------------------------------
# Convex hull membership and matching against the true front
# ----------------------------------------------------------------------------------------------
def _supported_2d(front: np.ndarray, i: int, tol: float) -> bool:
    """Whether ``front[i]`` maximizes ``w · v`` over ``front`` for some ``w = (x, 1 − x)``, x in [0, 1].

    ``g(x) = u_i(x) − max_j u_j(x)`` (``u_j(x) = x v_j0 + (1 − x) v_j1``) is concave and piecewise
    linear, so its maximum is at x = 0, x = 1 or where two lines cross: checking those x is exact.
    """
    a = front[:, 0] - front[:, 1]           # u_j(x) = b_j + a_j x
    b = front[:, 1]
    xs = [0.0, 1.0]
    for j in range(len(front)):
        for k in range(j + 1, len(front)):
            if a[j] != a[k]:
                x = (b[k] - b[j]) / (a[j] - a[k])
                if 0.0 < x < 1.0:
                    xs.append(float(x))
    xs = np.asarray(xs)
    utilities = b[None, :] + xs[:, None] * a[None, :]
    gap = utilities[:, i] - utilities.max(axis=1)
    return bool(gap.max() >= -tol)


def _supported_lp(front: np.ndarray, i: int, tol: float) -> bool:
    """More than two objectives: max over the simplex of min_j w · (v_i − v_j), a linear program."""
    from scipy.optimize import linprog

    n, m = front.shape
    diff = front[i][None, :] - front                        # (n, m)
    # variables (w_1..w_m, t): maximize t  s.t.  t - w · diff_j <= 0,  sum w = 1,  w >= 0
    c = np.zeros(m + 1)
    c[-1] = -1.0
    a_ub = np.hstack([-diff, np.ones((n, 1))])
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), A_eq=np.append(np.ones(m), 0.0)[None, :], b_eq=[1.0],
                  bounds=[(0, None)] * m + [(None, None)], method="highs")
    if not res.success:
        raise RuntimeError(f"convex hull membership LP failed: {res.message}")
    return bool(-res.fun >= -tol)


def on_convex_hull(front, tol: float = 1e-9) -> np.ndarray:
    """For each point of ``front (k, m)``: whether some weight on the simplex makes it a maximizer of the
    linear utility ``w · v`` over the front (it is on the upper convex hull, the convex coverage set;
    ties count as on the hull). Exact enumeration for 2 objectives, a linear program beyond."""
    pts = np.asarray(front, np.float64)
    if pts.ndim != 2 or pts.shape[0] == 0:
        raise ValueError(f"front must be a non-empty array (num_points, num_objectives), got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("front must be finite")
    scale = max(1.0, float(np.abs(pts).max()))
    check = _supported_2d if pts.shape[1] == 2 else _supported_lp
    return np.array([check(pts, i, tol * scale) for i in range(len(pts))], bool)


def matched(found, front, atol: float = 1e-3, rtol: float = 1e-4) -> np.ndarray:
    """For each point of the true ``front``: whether some point of ``found`` equals it (within float32
    rollout error: ``|a − b| <= atol + rtol |b|`` in every objective)."""
    f = np.asarray(found, np.float64).reshape(-1, np.shape(front)[1])
    t = np.asarray(front, np.float64)
    if f.shape[0] == 0:
        return np.zeros(len(t), bool)
    close = np.abs(f[None, :, :] - t[:, None, :]) <= atol + rtol * np.abs(t[:, None, :])
    return close.all(axis=-1).any(axis=1)


# ----------------------------------------------------------------------------------------------
# Training one case: all seeds in one program, then each seed's report
# ----------------------------------------------------------------------------------------------
def case_config(case: Case, quick: bool):
    module = importlib.import_module(f"agents.multi_objective.{case.agent}")
    return module, dataclasses.replace(module.Config(), env=case.env, **(case.quick if quick else case.overrides))


def score(returns, env, entry: Entry) -> dict:
    """Front metrics of one seed's evaluated returns at the entry's γ and reference point, plus the true
    front points it found (all, and those off the convex hull)."""
    from jaxrl.mo_evaluation import front_metrics

    front = true_front(env, entry.gamma)
    ref = reference_point(entry, front)
    m = front_metrics(np.asarray(returns, np.float64), env, entry.gamma, ref_point=ref)
    out = {k: m.get(k) for k in ("front", "hypervolume", "expected_utility", "cardinality", "igd",
                                 "hypervolume_ratio", "maximum_utility_loss")}
    if front is not None:
        hit, hull = matched(returns, front), on_convex_hull(front)
        out.update(found=int(hit.sum()), found_off_hull=int((hit & ~hull).sum()))
    return out


def train_case(case: Case, entry: Entry, seeds: int, quick: bool) -> dict:
    import jax
    import jax.numpy as jnp

    module, config = case_config(case, quick)
    trainer = module.make_train(config)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    t0 = time.perf_counter()
    program = jax.jit(jax.vmap(lambda k: trainer(k)[0])).lower(keys).compile()
    compiled = time.perf_counter() - t0
    states = jax.block_until_ready(program(keys))
    trained = time.perf_counter() - t0 - compiled
    runs = []
    for s in range(seeds):
        state = jax.tree.map(lambda x, s=s: x[s], states)
        report = trainer.report(state, jax.random.fold_in(keys[s], 0x4E9))
        if abs(report["front_gamma"] - entry.gamma) > 1e-12:
            raise ValueError(f"{case.agent} evaluates its front at γ={report['front_gamma']} but {entry.title} "
                             f"scores γ={entry.gamma}; set the agent's γ in the entry's overrides")
        runs.append({"seed": s, "front_returns": report["front_returns"],
                     **score(report["front_returns"], trainer.env, entry)})
    reported = time.perf_counter() - t0 - compiled - trained
    return {"agent": case.agent, "env": case.env, "seeds": seeds, "quick": quick,
            "overrides": case.quick if quick else case.overrides, "config": dataclasses.asdict(config),
            "env_steps": int(trainer.total_env_steps), "runs": runs,
            "compile_s": compiled, "train_s": trained, "report_s": reported}


def case_key(entry_name: str, case: Case, seeds: int, quick: bool) -> str:
    return json.dumps([entry_name, case.agent, case.env, seeds, quick, case.quick if quick else case.overrides],
                      sort_keys=True)


# ----------------------------------------------------------------------------------------------
# Report: table, findings, plot
# ----------------------------------------------------------------------------------------------
def _ci(values, digits: int = 1) -> str:
    from jaxrl import stats

    v = np.asarray([x for x in values if x is not None], np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    s = stats.summarize(v)
    return f"{s['mean']:.{digits}f} [{s['ci95'][0]:.{digits}f}, {s['ci95'][1]:.{digits}f}]"


def true_front_row(env, entry: Entry) -> dict | None:
    """The exact values of the true front: HV, EU, cardinality, its size and off-hull count."""
    from jaxrl import mo_metrics
    from jaxrl.mo_evaluation import hypervolume_or_none, metric_weights

    front = true_front(env, entry.gamma)
    if front is None:
        return None
    hull = on_convex_hull(front)
    return {"front": front.tolist(), "on_hull": hull.tolist(),
            "hypervolume": hypervolume_or_none(front, reference_point(entry, front), strict=True),
            "expected_utility": mo_metrics.expected_utility(front, metric_weights(front.shape[1])),
            "cardinality": int(len(front)), "off_hull": int((~hull).sum())}


def table_lines(env_id: str, truth: dict | None, cells: Sequence[dict]) -> list[str]:
    """The markdown table of one env: the true front's exact values, then one row per agent (mean over
    seeds [95% bootstrap CI]); ``cells`` are ``train_case`` results (rows may be synthetic in tests)."""
    known = truth is not None
    head = ["agent", "seeds", "hypervolume", "expected utility"]
    if known:
        head += ["IGD", "cardinality", f"points found / {truth['cardinality']} on the true front",
                 f"non-convex-hull points found / {truth['off_hull']}"]
    else:
        head += ["cardinality"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join([":---"] + ["---:"] * (len(head) - 1)) + " |"]
    if known:
        hv = "n/a" if truth["hypervolume"] is None else f"{truth['hypervolume']:.1f}"
        lines.append(f"| true front | exact | {hv} | {truth['expected_utility']:.2f} | 0 | {truth['cardinality']} | "
                     f"{truth['cardinality']} | {truth['off_hull']} |")
    for cell in cells:
        runs = cell["runs"]
        row = [AGENT_NAMES.get(cell["agent"], cell["agent"]), str(len(runs)),
               _ci([r["hypervolume"] for r in runs]), _ci([r["expected_utility"] for r in runs], 2)]
        if known:
            row += [_ci([r["igd"] for r in runs], 2), _ci([r["cardinality"] for r in runs]),
                    _ci([r["found"] for r in runs]), _ci([r["found_off_hull"] for r in runs])]
        else:
            row += [_ci([r["cardinality"] for r in runs])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def findings(env_id: str, truth: dict | None, cells: Sequence[dict]) -> list[str]:
    """Plain sentences: who comes closest to the true front, and who finds the non-convex-hull points."""
    out = []
    if not cells:
        return out
    hv = {c["agent"]: np.mean([r["hypervolume"] or 0.0 for r in c["runs"]]) for c in cells}
    best = max(hv, key=hv.get)
    if truth is not None and truth["hypervolume"]:
        ratios = ", ".join(f"{AGENT_NAMES[a]} {v / truth['hypervolume']:.2f}" for a, v in hv.items())
        out.append(f"- {env_id}: highest mean hypervolume {AGENT_NAMES[best]}; mean hypervolume as a fraction of the "
                   f"true front's: {ratios}.")
    else:
        out.append(f"- {env_id}: highest mean hypervolume {AGENT_NAMES[best]} ({hv[best]:.1f}).")
    if truth is not None and truth["off_hull"]:
        for c in cells:
            off = [r["found_off_hull"] for r in c["runs"]]
            union = sum(1 for i, on in enumerate(truth["on_hull"]) if not on and any(
                matched(r["front_returns"], np.asarray(truth["front"])[i:i + 1])[0] for r in c["runs"]))
            kind = ("optimizes linear scalarizations only: the optimal policy of no weight reaches them, so any it "
                    "returns is a policy not (yet) optimal for its weight" if LINEAR.get(c["agent"])
                    else REACHES_OFF_HULL[c["agent"]])
            out.append(f"  - {AGENT_NAMES[c['agent']]} ({kind}): {np.mean(off):.1f} of the {truth['off_hull']} "
                       f"points off the convex hull per seed on average, {union} in the union of its seeds.")
    return out


def write_plot(path: Path, entry: Entry, per_env: dict) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    envs_ = list(per_env)
    fig = Figure(figsize=(5.2 * len(envs_), 4.4))
    FigureCanvasAgg(fig)
    markers = {"envelope_q": "s", "morld_ppo": "^", "pcn": "o", "gpi_ls": "D", "cmorl": "v"}
    colors = {"envelope_q": "tab:blue", "morld_ppo": "tab:green", "pcn": "tab:orange", "gpi_ls": "tab:purple",
              "cmorl": "tab:red"}
    for k, env_id in enumerate(envs_):
        truth, cells = per_env[env_id]
        ax = fig.add_subplot(1, len(envs_), k + 1)
        unions = {c["agent"]: np.asarray([p for r in c["runs"] for p in r["front"]], np.float64) for c in cells}
        m = next((u.shape[1] for u in unions.values() if u.size), len(truth["front"][0]) if truth else 2)
        if m == 2:
            if truth is not None:
                tf = np.asarray(truth["front"])
                hull = np.asarray(truth["on_hull"], bool)
                order = np.argsort(tf[:, 1])
                ax.plot(tf[order, 1], tf[order, 0], "-", color="0.6", lw=1, zorder=1)
                ax.scatter(tf[hull, 1], tf[hull, 0], s=110, facecolors="none", edgecolors="k",
                           label="true front (on convex hull)", zorder=2)
                if (~hull).any():
                    ax.scatter(tf[~hull, 1], tf[~hull, 0], s=110, facecolors="none", edgecolors="red",
                               linestyles="--", label="true front (off convex hull)", zorder=2)
            for agent, u in unions.items():
                if u.size:
                    ax.scatter(u[:, 1], u[:, 0], s=22, marker=markers.get(agent, "x"), color=colors.get(agent),
                               alpha=0.7, label=f"{AGENT_NAMES[agent]} (union of seeds)", zorder=3)
            ax.set_xlabel("objective 2 (time)")
            ax.set_ylabel("objective 1 (treasure)")
        else:
            xs = np.arange(m)
            if truth is not None:
                for i, p in enumerate(truth["front"]):
                    ax.plot(xs, p, color="0.7", lw=2.5, label="true front" if i == 0 else None, zorder=1)
            for agent, u in unions.items():
                for i, p in enumerate(u):
                    ax.plot(xs, p, color=colors.get(agent), lw=0.8, alpha=0.6,
                            label=f"{AGENT_NAMES[agent]} (union of seeds)" if i == 0 else None, zorder=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([f"obj {i + 1}" for i in xs])
            ax.set_ylabel("discounted return")
        ax.set_title(env_id, fontsize=10)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(entry.title, fontsize=11)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def write_markdown(path: Path, name: str, entry: Entry, per_env: dict, used: list[dict], args, started: str,
                   machine: dict, machine_end: dict, wall: float, png: Path) -> Path:
    from scripts.reproduce import git_revision, versions

    ref = "the true front's worst value minus 1 per objective" if entry.ref_point is None else str(tuple(entry.ref_point))
    lines = [f"# {name}: {entry.title}", "",
             "Each agent's approximate front (its greedy policies rolled out, `Trainer.report`) scored at "
             f"γ = {entry.gamma:g} with reference point {ref}, against the env's exact front "
             "(`pareto_front(gamma)`, computed from the env's own dynamics). Cell: mean over seeds [95% bootstrap CI]. "
             "Expected utility: mean over equally spaced linear weights of the best utility on the front "
             "(Zintgraf et al. 2015); IGD: mean distance from the true front's points to the nearest found point "
             "(lower is better); cardinality: distinct non-dominated points found. A point of the true front "
             "is *found* when a seed's front holds it (within 1e-3); *non-convex-hull* points are those no linear "
             "utility prefers (exact hull membership): the optimal policy of no linear weight reaches them, so a "
             "method optimizing linear scalarizations returns one only as a policy not (yet) optimal for its weight, "
             "while PCN can aim at them.",
             ""]
    if args.quick:
        lines += ["**--quick run: tiny budgets, the numbers mean nothing.**", ""]
    for env_id, (truth, cells) in per_env.items():
        lines += [f"## {env_id}", "", *table_lines(env_id, truth, cells), ""]
    lines += ["## Findings", ""]
    for env_id, (truth, cells) in per_env.items():
        lines += findings(env_id, truth, cells)
    times = [f"{c['agent']} on {c['env']}: {c['env_steps']:,} env steps, compile {c['compile_s']:.0f}s, "
             f"train {c['train_s']:.0f}s, report {c['report_s']:.0f}s" for c in used]
    loads = sorted({str(c.get("load_at_end", "?")) for c in used})
    lines += ["", "## Setup", "",
              f"- Command: `{' '.join(['python scripts/reproduce_mo.py'] + list(args.argv))}`",
              f"- Date: table written {started} (UTC) by an invocation of {wall:.0f}s wall time; cases trained "
              f"{', '.join(sorted({c.get('date', '?') for c in used}))} (UTC); revision {git_revision()}",
              f"- Machine: {machine['cpu']}, {machine['usable']} usable cores; {machine['platform']}; load average "
              f"(1/5/15 min) {machine['load']} -> {machine_end['load']}; after each case: {'; '.join(loads)} "
              "(the machine was shared with other jobs)",
              "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
              f"- {entry.note}",
              "- Config overrides per case (everything else: the agent's defaults): "
              + "; ".join(f"{c['agent']} on {c['env']}: {c['overrides']}" for c in used),
              "- Times per case (all seeds in one compiled program): " + "; ".join(times),
              "", f"![fronts]({png.name})", ""]
    return write_text_atomic(path, "\n".join(lines))


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------
def run(name: str, args) -> Path:
    """Train every missing case of entry ``name``, then write its table, plot and JSON."""
    from scripts.reproduce import machine_info

    entry = ENTRIES[name]
    cases = [c for c in entry.cases if c.agent in args.agents]
    out = Path(args.out) if args.out else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    store = out / f"{name}.json"
    cells = {}
    if store.exists():
        cells = {c["key"]: c for c in json.loads(store.read_text())["cases"]}
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    machine, t0 = machine_info(), time.perf_counter()
    for case in cases:
        key = case_key(name, case, args.seeds, args.quick)
        if key in cells:
            print(f"[{name}] {case.agent} on {case.env}: reused", flush=True)
            continue
        cell = train_case(case, entry, args.seeds, args.quick)
        cell.update(key=key, date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                    load_at_end=machine_info()["load"])
        cells[key] = cell
        write_json_atomic(store, {"entry": name, "cases": list(cells.values())})
        print(f"[{name}] {case.agent} on {case.env}: hypervolume {_ci([r['hypervolume'] for r in cell['runs']])} "
              f"(compile {cell['compile_s']:.0f}s, train {cell['train_s']:.0f}s)", flush=True)
    used = [cells[case_key(name, c, args.seeds, args.quick)] for c in cases]
    per_env = {}
    for env_id in dict.fromkeys(c.env for c in cases):
        truth = true_front_row(make_env(env_id, entry), entry)
        per_env[env_id] = (truth, [c for c in used if c["env"] == env_id])
    write_json_atomic(store, {"entry": name, "true_fronts": {e: t for e, (t, _) in per_env.items()},
                              "cases": list(cells.values())})
    png = write_plot(out / f"{name}.png", entry, per_env)
    md = write_markdown(out / f"{name}.md", name, entry, per_env, used, args, started, machine, machine_info(),
                        time.perf_counter() - t0, png)
    print(f"[{name}] wrote {md}, {png} and {store}", flush=True)
    return md


def parse_args(argv: Sequence[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="scripts/reproduce_mo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("entry", choices=sorted(ENTRIES), help="which result to reproduce")
    parser.add_argument("--agents", default=None,
                        help=f"comma-separated subset of {', '.join(AGENT_NAMES)} (default: all that apply to the entry)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case, in one program (default 4; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny budgets, 2 seeds (numbers mean nothing)")
    parser.add_argument("--out", default=None, help="results folder (default: scripts/results/, "
                                                    "runs/reproduce-<entry>-quick with --quick)")
    args = parser.parse_args(argv)
    applicable = list(dict.fromkeys(c.agent for c in ENTRIES[args.entry].cases))
    if args.agents is None:
        args.agents = applicable
    else:
        chosen = [a.strip() for a in args.agents.split(",") if a.strip()]
        unknown = [a for a in chosen if a not in AGENT_NAMES]
        if not chosen or unknown or len(set(chosen)) != len(chosen):
            parser.error(f"--agents must be distinct names from {', '.join(AGENT_NAMES)}, got {args.agents!r}")
        missing = [a for a in chosen if a not in applicable]
        if missing:
            parser.error(f"--agents: {', '.join(missing)} not applicable to {args.entry} (GPI-LS is two-objective "
                         f"only); allowed: {', '.join(applicable)}")
        args.agents = chosen
    args.seeds = args.seeds if args.seeds is not None else (2 if args.quick else 4)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.quick and args.out is None:
        args.out = str(ROOT / "runs" / f"reproduce-{args.entry}-quick")
    args.argv = argv
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    return run(args.entry, args)


if __name__ == "__main__":
    main()
