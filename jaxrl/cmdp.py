"""Exact solution of a tabular constrained MDP: occupancy-measure LP, policy evaluation, Lagrangian dual.

The CMDP (Altman 1999, "Constrained Markov Decision Processes", ch. 3) is

    maximize_π  V_r(π) = E_π[Σ_t γ^t r(s_t, a_t)]   subject to   V_c(π) = E_π[Σ_t γ^t c(s_t, a_t)] ≤ d,

with s_0 ~ μ0. Over discounted occupancy measures ρ(s, a) = Σ_t γ^t Pr_π(s_t = s, a_t = a) it is the
linear program (Altman 1999, Theorem 3.3)

    maximize_ρ≥0  Σ ρ r   s.t.  Σ_a ρ(s', a) − γ Σ_{s,a} P(s'|s, a) ρ(s, a) = μ0(s')  for every s',
                               Σ ρ c ≤ d,

whose solution gives the optimal (possibly stochastic) policy π(a|s) = ρ(s, a) / Σ_a' ρ(s, a').
A basic (vertex) solution randomizes in at most one state (one constraint; Altman 1999, Thm 3.8).

The Lagrangian dual, D(λ) = max_π [V_r(π) − λ (V_c(π) − d)] = V*_{r − λc} + λ d, is convex in λ;
min_{λ≥0} D(λ) equals the LP value (strong duality; Altman 1999, Thm 3.6), and the minimizing λ is
the LP's shadow price of the cost constraint. ``dual`` computes it with exact policy iteration
for the inner maximum, as an independent check of ``solve``.

Everything here is numpy/scipy on the host (a ground truth for tests and scripts, not for jit).
scipy (the ``test`` extra) is imported only when ``solve`` or ``dual`` runs.
``from_params`` reads the arrays of ``envs.safe.tabular_cmdp`` params.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CMDP", "Solution", "DualSolution", "CMDPInfeasibleError", "from_params", "evaluate",
           "optimal_policy", "min_cost", "solve", "dual"]


class CMDPInfeasibleError(ValueError):
    """No policy meets the cost limit."""


@dataclasses.dataclass(frozen=True)
class CMDP:
    transitions: np.ndarray    # (S, A, S)
    rewards: np.ndarray        # (S, A)
    costs: np.ndarray          # (S, A)
    initial: np.ndarray        # (S,)
    gamma: float

    def __post_init__(self):
        S, A, S2 = np.shape(self.transitions)
        if S != S2 or np.shape(self.rewards) != (S, A) or np.shape(self.costs) != (S, A) or np.shape(self.initial) != (S,):
            raise ValueError(f"inconsistent CMDP shapes: transitions {np.shape(self.transitions)} (want (S, A, S)), "
                             f"rewards {np.shape(self.rewards)}, costs {np.shape(self.costs)} (want (S, A)), "
                             f"initial {np.shape(self.initial)} (want (S,))")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        if not np.allclose(np.sum(self.transitions, -1), 1.0, atol=1e-5) or not np.isclose(np.sum(self.initial), 1.0, atol=1e-5):
            raise ValueError("transitions[s, a] and initial must each sum to 1")

    @property
    def num_states(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_actions(self) -> int:
        return self.rewards.shape[1]


@dataclasses.dataclass(frozen=True)
class Solution:
    value: float               # optimal constrained discounted return V_r(π*)
    cost: float                # its discounted cost V_c(π*) (≤ limit; = limit when the constraint binds)
    policy: np.ndarray         # (S, A) π*(a|s); uniform in states π* never visits
    occupancy: np.ndarray      # (S, A) discounted occupancy ρ*
    multiplier: float          # the LP's shadow price of the cost constraint (optimal λ)


@dataclasses.dataclass(frozen=True)
class DualSolution:
    value: float               # min_{λ≥0} D(λ)
    multiplier: float          # the minimizing λ


def from_params(params, gamma: float | None = None) -> CMDP:
    """A ``CMDP`` from ``TabularCMDPParams`` (or anything with the same fields), in float64."""
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    transitions = f64(params.transitions)
    transitions = transitions / transitions.sum(-1, keepdims=True)   # float32 rounding
    initial = f64(params.initial)
    return CMDP(transitions, f64(params.rewards), f64(params.costs), initial / initial.sum(),
                float(params.gamma if gamma is None else gamma))


def _scipy_optimize():
    try:
        from scipy import optimize
    except ImportError:
        raise ImportError("jaxrl.cmdp.solve and dual need scipy >= 1.11 (pip install 'scipy>=1.11', "
                          "or the project's test extra: pip install -e .[test])") from None
    return optimize


def _policy_matrices(cmdp: CMDP, policy: np.ndarray):
    policy = np.asarray(policy, np.float64)
    if policy.shape != (cmdp.num_states, cmdp.num_actions):
        raise ValueError(f"policy must have shape (S, A) = {(cmdp.num_states, cmdp.num_actions)}, got {policy.shape}")
    p_pi = np.einsum("sa,sat->st", policy, cmdp.transitions)
    return p_pi, (policy * cmdp.rewards).sum(1), (policy * cmdp.costs).sum(1)


def state_values(cmdp: CMDP, policy: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """V^π(s) for a per-(s, a) ``signal`` by the linear solve (I − γ P_π) V = signal_π."""
    p_pi, _, _ = _policy_matrices(cmdp, policy)
    signal_pi = (np.asarray(policy, np.float64) * signal).sum(1)
    return np.linalg.solve(np.eye(cmdp.num_states) - cmdp.gamma * p_pi, signal_pi)


def evaluate(cmdp: CMDP, policy: np.ndarray, horizon: int | None = None) -> tuple[float, float]:
    """(V_r, V_c) of ``policy`` from μ0: exact linear solve, or the H-step discounted sums if ``horizon``."""
    p_pi, r_pi, c_pi = _policy_matrices(cmdp, policy)
    if horizon is None:
        v = np.linalg.solve(np.eye(cmdp.num_states) - cmdp.gamma * p_pi, np.stack([r_pi, c_pi], 1))
        return float(cmdp.initial @ v[:, 0]), float(cmdp.initial @ v[:, 1])
    dist, total = cmdp.initial.copy(), np.zeros(2)
    for t in range(int(horizon)):
        total += cmdp.gamma**t * np.array([dist @ r_pi, dist @ c_pi])
        dist = dist @ p_pi
    return float(total[0]), float(total[1])


def optimal_policy(cmdp: CMDP, signal: np.ndarray) -> tuple[np.ndarray, float]:
    """(deterministic optimal policy, its value from μ0) for maximizing ``signal`` (exact policy iteration)."""
    S, A = cmdp.num_states, cmdp.num_actions
    actions = np.zeros(S, int)
    for _ in range(10 * S * A + 100):
        policy = np.eye(A)[actions]
        v = state_values(cmdp, policy, signal)
        q = signal + cmdp.gamma * cmdp.transitions @ v
        improved = np.where(q.max(1) > q[np.arange(S), actions] + 1e-12 * (1 + np.abs(q).max()), q.argmax(1), actions)
        if np.array_equal(improved, actions):
            return policy, float(cmdp.initial @ v)
        actions = improved
    raise RuntimeError("policy iteration did not converge")  # cannot happen for a finite MDP


def min_cost(cmdp: CMDP) -> float:
    """The smallest achievable discounted cost V_c: every limit below it is infeasible."""
    return -optimal_policy(cmdp, -cmdp.costs)[1]


def solve(cmdp: CMDP, limit: float) -> Solution:
    """Optimal constrained policy by the occupancy-measure LP (HiGHS dual simplex: a vertex solution).

    Raises ``CMDPInfeasibleError`` when ``limit`` is below the smallest achievable discounted cost.
    """
    S, A, g = cmdp.num_states, cmdp.num_actions, cmdp.gamma
    # Flow constraints: Σ_a ρ(s', a) − γ Σ_{s,a} P(s'|s,a) ρ(s,a) = μ0(s'), variables ordered (s, a).
    a_eq = np.repeat(np.eye(S), A, axis=1) - g * cmdp.transitions.reshape(S * A, S).T
    result = _scipy_optimize().linprog(-cmdp.rewards.reshape(-1), A_ub=cmdp.costs.reshape(1, -1), b_ub=[limit], A_eq=a_eq,
                     b_eq=cmdp.initial, bounds=(0, None), method="highs-ds")
    if result.status == 2:
        raise CMDPInfeasibleError(
            f"cost limit {limit:g} is infeasible: the smallest achievable discounted cost of this CMDP is "
            f"{min_cost(cmdp):.6g} (γ = {g}); choose a limit >= that")
    if result.status != 0:
        raise RuntimeError(f"the occupancy LP failed: {result.message}")
    occupancy = np.maximum(result.x.reshape(S, A), 0.0)
    visits = occupancy.sum(1, keepdims=True)
    policy = np.where(visits > 1e-12, occupancy / np.maximum(visits, 1e-300), 1.0 / A)
    return Solution(value=float(-result.fun), cost=float((occupancy * cmdp.costs).sum()), policy=policy,
                    occupancy=occupancy, multiplier=float(-result.ineqlin.marginals[0]))


def dual_function(cmdp: CMDP, limit: float, multiplier: float) -> float:
    """D(λ) = max_π V_{r − λc}(π) + λ d."""
    return optimal_policy(cmdp, cmdp.rewards - multiplier * cmdp.costs)[1] + multiplier * limit


def dual(cmdp: CMDP, limit: float, tol: float = 1e-10) -> DualSolution:
    """min_{λ≥0} D(λ) by bounded scalar minimization of the convex piecewise-linear D.

    The search interval comes from a Slater point: the min-cost policy π_s (when V_c(π_s) < d) gives
    λ* ≤ (V*_r − V_r(π_s)) / (d − V_c(π_s)).
    """
    safe_policy, _ = optimal_policy(cmdp, -cmdp.costs)
    safe_value, safe_cost = evaluate(cmdp, safe_policy)
    if safe_cost > limit + 1e-9:
        raise CMDPInfeasibleError(f"cost limit {limit:g} is infeasible: the smallest achievable discounted cost is "
                                  f"{safe_cost:.6g}")
    best = optimal_policy(cmdp, cmdp.rewards)[1]
    slack = limit - safe_cost
    upper = (best - safe_value) / slack + 1.0 if slack > 1e-9 else 1e6
    fn = lambda lam: dual_function(cmdp, limit, lam)  # noqa: E731
    result = _scipy_optimize().minimize_scalar(fn, bounds=(0.0, upper), method="bounded", options={"xatol": tol})
    lam, value = float(result.x), float(result.fun)
    if fn(0.0) <= value:   # the constraint is inactive: λ* = 0
        lam, value = 0.0, fn(0.0)
    return DualSolution(value=value, multiplier=lam)
