"""Exact CMDP solver: hand-solved cases, LP vs evaluation vs Lagrangian dual (strong duality), errors."""
import itertools

import jax
import numpy as np
import pytest

from envs.safe.tabular_cmdp import generate
from jaxrl import cmdp

GAMMA = 0.9


def two_state_cmdp(gamma=GAMMA):
    """s0 (start): action 0 is risky (reward 1, cost 1), action 1 safe (0, 0); both lead to s1.
    s1 is absorbing with reward 1 and cost 0 for either action.

    With p = π(risky | s0): V_r = p + γ/(1−γ), V_c = p. For a limit d < 1 the optimum randomizes,
    p = d, V_r = d + γ/(1−γ); D(λ) = max(1 − λ, 0) + γ/(1−γ) + λ d is minimized at λ* = 1.
    """
    transitions = np.zeros((2, 2, 2))
    transitions[:, :, 1] = 1.0
    rewards = np.array([[1.0, 0.0], [1.0, 1.0]])
    costs = np.array([[1.0, 0.0], [0.0, 0.0]])
    return cmdp.CMDP(transitions, rewards, costs, np.array([1.0, 0.0]), gamma)


def test_two_state_binding_constraint_by_hand():
    m = two_state_cmdp()
    sol = cmdp.solve(m, 0.3)
    np.testing.assert_allclose(sol.value, 0.3 + GAMMA / (1 - GAMMA), rtol=1e-9)
    np.testing.assert_allclose(sol.cost, 0.3, rtol=1e-9)
    np.testing.assert_allclose(sol.policy[0], [0.3, 0.7], atol=1e-9)
    np.testing.assert_allclose(sol.multiplier, 1.0, rtol=1e-6)
    d = cmdp.dual(m, 0.3)
    np.testing.assert_allclose(d.value, sol.value, rtol=1e-8)
    np.testing.assert_allclose(d.multiplier, 1.0, atol=1e-5)


def test_two_state_inactive_constraint_by_hand():
    m = two_state_cmdp()
    sol = cmdp.solve(m, 2.0)
    np.testing.assert_allclose([sol.value, sol.cost, sol.multiplier], [1 + GAMMA / (1 - GAMMA), 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(sol.policy[0], [1.0, 0.0])
    d = cmdp.dual(m, 2.0)
    assert d.multiplier == 0.0 and np.isclose(d.value, sol.value)


def test_policy_evaluation_by_hand():
    m = two_state_cmdp()
    value, cost = cmdp.evaluate(m, np.array([[0.5, 0.5], [1.0, 0.0]]))
    np.testing.assert_allclose([value, cost], [0.5 + 9.0, 0.5])
    value, cost = cmdp.evaluate(m, np.array([[0.5, 0.5], [1.0, 0.0]]), horizon=3)   # 0.5 + γ + γ²
    np.testing.assert_allclose([value, cost], [0.5 + 0.9 + 0.81, 0.5])


def test_infeasible_limit_is_a_clear_error():
    m = two_state_cmdp()
    m = cmdp.CMDP(m.transitions, m.rewards, m.costs + 0.1, m.initial, m.gamma)   # min cost 0.1 / (1 − γ) = 1
    with pytest.raises(cmdp.CMDPInfeasibleError, match=r"limit 0\.5 is infeasible.*smallest achievable discounted cost of this CMDP is 1"):
        cmdp.solve(m, 0.5)
    with pytest.raises(cmdp.CMDPInfeasibleError, match="infeasible"):
        cmdp.dual(m, 0.5)


def test_malformed_cmdp_is_a_clear_error():
    m = two_state_cmdp()
    with pytest.raises(ValueError, match="inconsistent CMDP shapes"):
        cmdp.CMDP(m.transitions, m.rewards[:1], m.costs, m.initial, GAMMA)
    with pytest.raises(ValueError, match="sum to 1"):
        cmdp.CMDP(m.transitions * 2, m.rewards, m.costs, m.initial, GAMMA)
    with pytest.raises(ValueError, match="gamma"):
        cmdp.CMDP(m.transitions, m.rewards, m.costs, m.initial, 1.0)


def random_cmdp(seed, num_states=6, num_actions=3):
    return cmdp.from_params(generate(jax.random.PRNGKey(seed), num_states, num_actions, gamma=GAMMA))


def binding_limit(m, frac=0.5):
    """A limit between the smallest cost and the cost of the unconstrained optimum."""
    best, _ = cmdp.optimal_policy(m, m.rewards)
    return cmdp.min_cost(m) + frac * (cmdp.evaluate(m, best)[1] - cmdp.min_cost(m))


@pytest.mark.parametrize("seed", range(5))
def test_lp_matches_evaluation_and_dual_on_random_cmdps(seed):
    m = random_cmdp(seed)
    limit = binding_limit(m)
    sol = cmdp.solve(m, limit)
    # the LP's policy, evaluated by the linear solve, has the LP's value and cost
    np.testing.assert_allclose(cmdp.evaluate(m, sol.policy), (sol.value, sol.cost), rtol=1e-7)
    np.testing.assert_allclose(sol.cost, limit, rtol=1e-7)                    # the constraint binds
    assert sol.value < cmdp.optimal_policy(m, m.rewards)[1]
    # strong duality: min_λ D(λ) = LP value, at the LP's shadow price
    d = cmdp.dual(m, limit)
    np.testing.assert_allclose(d.value, sol.value, rtol=1e-7)
    np.testing.assert_allclose(d.multiplier, sol.multiplier, rtol=1e-4)
    assert sol.multiplier > 0
    # a vertex solution randomizes in at most one (visited) state
    visited = sol.occupancy.sum(1) > 1e-9
    assert ((sol.policy[visited] > 1e-9).sum(1) > 1).sum() <= 1
    np.testing.assert_allclose(sol.policy.sum(1), 1.0)


@pytest.mark.parametrize("seed", range(3))
def test_lp_beats_every_feasible_deterministic_policy(seed):
    m = random_cmdp(100 + seed, num_states=3, num_actions=2)
    limit = binding_limit(m, 0.3)
    sol = cmdp.solve(m, limit)
    feasible = []
    for actions in itertools.product(range(2), repeat=3):
        value, cost = cmdp.evaluate(m, np.eye(2)[list(actions)])
        if cost <= limit + 1e-9:
            feasible.append(value)
    assert feasible and sol.value >= max(feasible) - 1e-9


def test_limit_sweep_value_is_concave_and_nondecreasing():
    m = random_cmdp(7)
    best, best_value = cmdp.optimal_policy(m, m.rewards)
    limits = np.linspace(cmdp.min_cost(m) + 1e-3, cmdp.evaluate(m, best)[1] + 1.0, 9)
    values = np.array([cmdp.solve(m, d).value for d in limits])
    assert (np.diff(values) >= -1e-9).all()
    assert (np.diff(values, 2) <= 1e-7).all()
    np.testing.assert_allclose(values[-1], best_value, rtol=1e-9)
