"""Constraint handlers: hand-computed updates, completed-episode masking, λ ≥ 0, jit/vmap."""
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import constraints

LIMIT = 25.0


def run(handler, steps, limit=LIMIT):
    """Apply ``handler.update`` to a list of (costs, completed) pairs; return the penalties."""
    state = handler.init()
    penalties = []
    for costs, completed in steps:
        state, penalty = handler.update(state, jnp.array(costs, jnp.float32), jnp.array(completed), limit)
        penalties.append(float(penalty))
    return state, penalties


def test_completed_mean_ignores_unfinished_entries():
    mean, any_done = constraints.completed_mean(jnp.array([30.0, 1000.0, 20.0]), jnp.array([True, False, True]))
    assert float(mean) == 25.0 and bool(any_done)
    mean, any_done = constraints.completed_mean(jnp.array([30.0, 1000.0]), jnp.array([False, False]))
    assert float(mean) == 0.0 and not bool(any_done)


# ----------------------------------------------------------------------------------------------
# Lagrangian (Adam on λ)
# ----------------------------------------------------------------------------------------------
def test_lagrangian_two_adam_steps_by_hand():
    # Step 1: J_c = 30 (the unfinished 500 is ignored), gradient of −λ(J_c − 25) is −5.
    # Adam's first step is lr · sign: λ = 0.001 + 0.035.
    # Step 2: J_c = 20, gradient +5: m = 0.9·(−0.5) + 0.1·5 = 0.05, v = 0.999·0.025 + 0.001·25,
    # bias-corrected m̂ = 0.05 / 0.19, v̂ = v / (1 − 0.999²).
    _, penalties = run(constraints.lagrangian(), [([30.0, 500.0], [True, False]), ([20.0], [True])])
    m_hat = 0.05 / (1 - 0.9**2)
    v_hat = (0.999 * 0.025 + 0.001 * 25) / (1 - 0.999**2)
    expected_2 = 0.036 - 0.035 * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(penalties, [0.001 + 0.035, expected_2], rtol=1e-5)


def test_lagrangian_is_projected_on_nonnegative_and_upper_bound():
    _, penalties = run(constraints.lagrangian(), [([0.0], [True])] * 3)
    assert penalties == [0.0, 0.0, 0.0]
    _, penalties = run(constraints.lagrangian(upper_bound=0.05), [([100.0], [True])] * 3)
    np.testing.assert_allclose(penalties, [0.036, 0.05, 0.05], rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# PID Lagrangian
# ----------------------------------------------------------------------------------------------
def test_pid_two_steps_by_hand():
    # Defaults: Kp 0.1, Ki 0.01, Kd 0.01, EMA α 0.95, λ0 0.001.
    # 1: e = 10: I = 0.101, P = 0.5, C = 1.75, D = 1.75 − 0 → λ = 0.05 + 0.101 + 0.0175.
    # 2: e = −10: I = 0.001, P = −0.025, C = 2.4125, D = 2.4125 − 0 → λ = −0.0025 + 0.001 + 0.024125.
    _, penalties = run(constraints.pid_lagrangian(), [([35.0], [True]), ([15.0, 99.0], [True, False])])
    np.testing.assert_allclose(penalties, [0.1685, 0.022625], rtol=1e-5)


def _reference_pid(costs, limit, kp, ki, kd, d_delay, a_p, a_d, penalty_max, init, sum_norm, diff_norm):
    """A plain-Python transcription of Stooke et al. 2020, Algorithm 2 with OmniSafe's EMAs and deque."""
    pid_i, delta_p, cost_d, history, out = init, 0.0, 0.0, deque([0.0], maxlen=d_delay), []
    for j in costs:
        delta = j - limit
        pid_i = max(0.0, pid_i + delta * ki)
        if diff_norm:
            pid_i = max(0.0, min(1.0, pid_i))
        delta_p = a_p * delta_p + (1 - a_p) * delta
        cost_d = a_d * cost_d + (1 - a_d) * j
        pid_d = max(0.0, cost_d - history[0])
        penalty = max(0.0, kp * delta_p + pid_i + kd * pid_d)
        if diff_norm:
            penalty = min(1.0, penalty)
        if not (diff_norm or sum_norm):
            penalty = min(penalty, penalty_max)
        history.append(cost_d)
        out.append(penalty)
    return out


@pytest.mark.parametrize("d_delay, sum_norm, diff_norm", [(10, True, False), (1, True, False), (3, False, False),
                                                          (4, False, True)])
def test_pid_matches_the_reference_trajectory(d_delay, sum_norm, diff_norm):
    rng = np.random.default_rng(0)
    costs = rng.uniform(0, 80, size=30).astype(np.float32)
    kw = dict(kp=1.0, ki=0.05, kd=2.0, d_delay=d_delay, delta_p_ema_alpha=0.9, delta_d_ema_alpha=0.8,
              penalty_max=1.5, init=0.001, sum_norm=sum_norm, diff_norm=diff_norm)
    _, penalties = run(constraints.pid_lagrangian(**kw), [([c], [True]) for c in costs])
    ref = _reference_pid(costs.tolist(), LIMIT, kw["kp"], kw["ki"], kw["kd"], d_delay, kw["delta_p_ema_alpha"],
                         kw["delta_d_ema_alpha"], kw["penalty_max"], kw["init"], sum_norm, diff_norm)
    np.testing.assert_allclose(penalties, ref, rtol=1e-4, atol=1e-5)
    assert min(penalties) >= 0.0
    if not sum_norm:
        assert max(penalties) <= 1.5


# ----------------------------------------------------------------------------------------------
# Augmented Lagrangian
# ----------------------------------------------------------------------------------------------
def test_augmented_lagrangian_by_hand():
    # λ ← max(0, λ + μ g): 0.001 + 0.05·10 = 0.501, then max(0, 0.501 + 0.05·(−25)) = 0.
    _, penalties = run(constraints.augmented_lagrangian(), [([35.0], [True]), ([0.0], [True])])
    np.testing.assert_allclose(penalties, [0.501, 0.0], rtol=1e-6)
    # μ grows by 2 per update: 0.001 + 0.1·10, then 1.001 + 0.2·10.
    state, penalties = run(constraints.augmented_lagrangian(mu=0.1, growth=2.0), [([35.0], [True])] * 2)
    np.testing.assert_allclose(penalties, [1.001, 3.001], rtol=1e-6)
    np.testing.assert_allclose(float(state.mu), 0.4)


def test_augmented_term_is_continuous_at_the_switch():
    lam, mu = 0.5, 2.0
    g = -lam / mu
    a = constraints.augmented_term(jnp.float32(g + 1e-4), lam, mu)
    b = constraints.augmented_term(jnp.float32(g - 1e-4), lam, mu)
    np.testing.assert_allclose(a, b, atol=1e-3)


# ----------------------------------------------------------------------------------------------
# Shared behaviour
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(constraints.HANDLERS))
def test_unfinished_episodes_do_not_move_lambda(name):
    handler = constraints.make_handler(name)
    state = handler.init()
    # first a real update, so that the state is not trivial
    state, _ = handler.update(state, jnp.array([40.0]), jnp.array([True]), LIMIT)
    new, penalty = handler.update(state, jnp.array([1e4, 1e4, 0.0]), jnp.array([False, False, False]), LIMIT)
    jax.tree.map(np.testing.assert_array_equal, new, state)
    assert float(penalty) == float(constraints.penalty_of(state))
    # the running costs of unfinished episodes never enter the mean
    a, _ = handler.update(state, jnp.array([30.0, 1e4]), jnp.array([True, False]), LIMIT)
    b, _ = handler.update(state, jnp.array([30.0]), jnp.array([True]), LIMIT)
    jax.tree.map(np.testing.assert_allclose, a, b)


@pytest.mark.parametrize("name", list(constraints.HANDLERS))
def test_penalty_nonnegative_jittable_and_vmappable_over_limits(name):
    handler = constraints.make_handler(name)
    costs = jax.random.uniform(jax.random.PRNGKey(0), (20, 8), maxval=60.0)
    done = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (20, 8))

    def trajectory(limit):
        def body(state, xs):
            return handler.update(state, *xs, limit)
        return jax.lax.scan(body, handler.init(), (costs, done))[1]

    penalties = np.asarray(jax.jit(jax.vmap(trajectory))(jnp.array([0.0, 25.0, 100.0])))
    assert (penalties >= 0).all() and np.isfinite(penalties).all()
    # a lower limit never gives a smaller final penalty
    assert penalties[0, -1] >= penalties[1, -1] >= penalties[2, -1]


def test_traced_hyperparameters():
    """Float hyperparameters may be traced (a swept Config field)."""
    def final(lr):
        handler = constraints.lagrangian(lr=lr)
        state, penalty = handler.update(handler.init(), jnp.array([30.0]), jnp.array([True]), LIMIT)
        return penalty

    np.testing.assert_allclose(jax.vmap(final)(jnp.array([0.035, 0.1])), [0.036, 0.101], rtol=1e-5)


def test_unknown_handler_is_a_clear_error():
    with pytest.raises(ValueError, match="allowed: lagrangian, pid, augmented"):
        constraints.make_handler("lagrange")
    with pytest.raises(ValueError, match="d_delay"):
        constraints.pid_lagrangian(d_delay=0)
