"""Tests of envs/model_based/cartpole_swingup.py: PETS' reward (maximal upright), the hanging start, gymnax's
CartPole equations, no termination and truncation at 200 steps, determinism."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.cartpole import CartPole
from gymnax.environments.classic_control.cartpole import EnvState as CartPoleState

from envs.model_based.cartpole_swingup import CartPoleSwingUp, SwingUpState, swingup_reward, tip_position

ENV = CartPoleSwingUp()
PARAMS = ENV.default_params


def test_reward_is_maximal_upright_and_small_hanging():
    zero = jnp.zeros(1)
    assert float(swingup_reward(0.0, 0.0, zero, PARAMS)) == pytest.approx(1.0)
    assert float(swingup_reward(0.0, jnp.pi, zero, PARAMS)) == pytest.approx(np.exp(-4.0), rel=1e-5)
    # hand case: x = 0.3, θ = 0.5, a = 0.5 with a 1 m pole: tip (0.3 + sin .5, cos .5)
    tip = np.array([0.3 + np.sin(0.5), np.cos(0.5)])
    expected = np.exp(-np.sum((tip - [0.0, 1.0]) ** 2)) - 0.01 * 0.25
    assert float(swingup_reward(0.3, 0.5, jnp.array([0.5]), PARAMS)) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(tip_position(0.3, 0.5, PARAMS), tip, rtol=1e-6)
    # no state or action scores above the upright, centred, force-free state
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.uniform(k[0], (10_000,), minval=-3, maxval=3)
    theta = jax.random.uniform(k[1], (10_000,), minval=-4, maxval=4)
    a = jax.random.uniform(k[2], (10_000, 1), minval=-1, maxval=1)
    assert float(jax.vmap(lambda *s: swingup_reward(*s, PARAMS))(x, theta, a).max()) < 1.0


def test_pole_starts_down_with_small_noise():
    obs, state = jax.vmap(ENV.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), 512), PARAMS)
    assert obs.shape == (512, 5)
    assert np.all(np.abs(np.asarray(state.theta) - np.pi) <= 0.05)
    assert np.all(np.asarray(obs[:, 3]) < -0.998)                      # cos θ ≈ −1: hanging
    for leaf in (state.x, state.x_dot, state.theta_dot):
        assert np.all(np.abs(np.asarray(leaf)) <= 0.05)
    assert np.asarray(state.theta).std() > 0.01                         # the noise is there


def test_dynamics_are_gymnax_cartpole_with_a_continuous_force():
    # gymnax's discrete action 1 is a +10 N push, action 0 is −10 N: our a = +1 / −1
    gym_env, gym_params = CartPole(), CartPole().default_params.replace(tau=PARAMS.tau)
    s = dict(x=jnp.float32(0.1), x_dot=jnp.float32(-0.2), theta=jnp.float32(0.05), theta_dot=jnp.float32(0.3))
    for ours, theirs in ((1.0, 1), (-1.0, 0)):
        _, new, *_ = ENV.step_env(jax.random.PRNGKey(0), SwingUpState(**s, time=0), jnp.array([ours]), PARAMS)
        _, ref, *_ = gym_env.step_env(jax.random.PRNGKey(0), CartPoleState(**s, time=0), theirs, gym_params)
        # the same accelerations: the velocities after the step are gymnax's ...
        for f in ("x_dot", "theta_dot"):
            assert float(getattr(new, f)) == pytest.approx(float(getattr(ref, f)), rel=1e-6, abs=1e-7)
        # ... and the positions move with the new velocities (semi-implicit Euler)
        assert float(new.x) == pytest.approx(0.1 + PARAMS.tau * float(ref.x_dot), rel=1e-6)
        assert float(new.theta) == pytest.approx(0.05 + PARAMS.tau * float(ref.theta_dot), rel=1e-6)
    # actions beyond the bounds are clipped
    _, a5, *_ = ENV.step_env(jax.random.PRNGKey(0), SwingUpState(**s, time=0), jnp.array([5.0]), PARAMS)
    _, a1, *_ = ENV.step_env(jax.random.PRNGKey(0), SwingUpState(**s, time=0), jnp.array([1.0]), PARAMS)
    assert float(a5.x_dot) == float(a1.x_dot)


def test_cart_stops_at_the_ends_of_the_track():
    state = SwingUpState(x=jnp.float32(2.39), x_dot=jnp.float32(3.0), theta=jnp.float32(np.pi),
                         theta_dot=jnp.float32(0.0), time=0)
    _, new, *_ = ENV.step_env(jax.random.PRNGKey(0), state, jnp.array([1.0]), PARAMS)
    assert float(new.x) == pytest.approx(2.4) and float(new.x_dot) == 0.0
    # random forces never push the cart off the track
    obs = jax.jit(_episode)(jax.random.PRNGKey(2))[0]
    assert float(jnp.abs(obs[:, 0]).max()) <= np.float32(2.4)


def test_free_swing_keeps_its_energy():
    # no force, pole released at 90°: the pendulum energy stays near its start over 1000 steps
    # (explicit Euler would let it grow without bound)
    state = SwingUpState(x=jnp.float32(0), x_dot=jnp.float32(0), theta=jnp.float32(np.pi / 2),
                         theta_dot=jnp.float32(0), time=0)

    def body(s, _):
        _, s, *_ = ENV.step_env(jax.random.PRNGKey(0), s, jnp.zeros(1), PARAMS)
        return s.replace(time=0), jnp.cos(s.theta)

    _, heights = jax.lax.scan(body, state, None, length=1000)
    assert float(jnp.max(heights)) < 0.05                      # never rises above its release height


def _episode(key, steps=201):
    obs, state = ENV.reset(key, PARAMS)

    def body(carry, k):
        obs, state = carry
        action = jax.random.uniform(k, (1,), minval=-1, maxval=1)
        obs, state, reward, terminated, truncated, info = ENV.step(k, state, action, PARAMS)
        return (obs, state), (obs, reward, terminated, truncated, info["final_observation"])

    return jax.lax.scan(body, (obs, state), jax.random.split(key, steps))[1]


def test_no_termination_and_truncation_after_200_steps():
    obs, reward, terminated, truncated, final = jax.jit(_episode)(jax.random.PRNGKey(1))
    assert not np.any(np.asarray(terminated))
    assert np.flatnonzero(np.asarray(truncated)).tolist() == [199]
    # at the truncation the env resets (pole down again) and final_observation is the pre-reset state
    assert float(obs[199, 3]) < -0.998
    assert not np.allclose(np.asarray(final[199]), np.asarray(obs[199]))
    assert np.all(np.asarray(reward) <= 1.0)


def test_same_key_same_episode():
    a = jax.jit(_episode)(jax.random.PRNGKey(3))
    b = jax.jit(_episode)(jax.random.PRNGKey(3))
    c = jax.jit(_episode)(jax.random.PRNGKey(4))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_spaces():
    assert PARAMS.tau == 0.05
    assert ENV.action_space(PARAMS).shape == (1,)
    assert float(ENV.action_space(PARAMS).low) == -1.0 and float(ENV.action_space(PARAMS).high) == 1.0
    assert ENV.observation_space(PARAMS).shape == (5,)
    assert PARAMS.max_steps_in_episode == 200 and ENV.name == "CartPoleSwingUp-v0"
