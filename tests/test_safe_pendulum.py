"""SafePendulum (envs/safe/safe_pendulum.py): Sauté's cost on hand-set angles, the cost of the pre-step
state, and gymnax's Pendulum-v1 reproduced exactly (observations, rewards, episode ends) on a seeded
action sequence."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.pendulum import EnvState, Pendulum

from envs.safe.safe_pendulum import SafePendulum, cost_of
from jaxrl import envs

ENV = SafePendulum()
PARAMS = ENV.default_params


def deg(d):
    return jnp.float32(np.deg2rad(d))


@pytest.mark.parametrize("angle, cost", [
    (25.0, 1.0), (0.0, 0.5), (50.0, 0.5), (-20.0, 0.1), (70.0, 0.1),   # c = 1 − |θ − 25°| / 50°
    (-25.0, 0.0), (75.0, 0.0),                                          # the region's edges
    (-26.0, 0.0), (76.0, 0.0), (180.0, 0.0), (-90.0, 0.0), (120.0, 0.0),  # outside
    (25.0 + 360.0, 1.0), (-335.0, 1.0), (360.0, 0.5),                   # angles wrap around
])
def test_saute_cost_on_hand_set_angles(angle, cost):
    assert float(cost_of(deg(angle), PARAMS)) == pytest.approx(cost, abs=1e-5)


@pytest.mark.parametrize("angle, cost", [(0.0, 1.0), (-24.0, 1.0), (74.0, 1.0),
                                         (-26.0, 0.0), (76.0, 0.0), (180.0, 0.0)])
def test_indicator_cost_is_one_in_the_whole_region(angle, cost):
    params = envs.make("SafePendulum-v0", indicator_cost=True)[1]
    assert float(cost_of(deg(angle), params)) == cost


def test_cost_is_that_of_the_state_the_action_is_taken_in():
    """At θ̇ = 8 rad/s (the speed limit) a step turns the pole by 0.4 rad ≈ 22.9°: from 25° (cost 1) it
    ends at 47.9° (cost 0.54), from 74° (cost 0.02) outside the region at 96.9°; each step costs its
    start state's cost, as the reward does."""
    for start, expected in [(25.0, 1.0), (74.0, 1 - 49 / 50)]:
        state = EnvState(theta=deg(start), theta_dot=jnp.float32(8.0), last_u=jnp.float32(0.0), time=0)
        *_, info = ENV.step(jax.random.PRNGKey(0), state, jnp.array([2.0]), PARAMS)
        assert float(info["cost"]) == pytest.approx(expected, abs=1e-5)
        assert info["cost"].dtype == jnp.float32 and info["cost"].shape == ()


def test_reward_dynamics_and_resets_are_gymnax_pendulum():
    """300 steps of a seeded random torque sequence (crossing the time limit at 200 and gymnax's auto-reset)
    give bit-identical observations, rewards and episode ends in SafePendulum and gymnax's Pendulum-v1."""
    reference, ref_params = Pendulum(), Pendulum().default_params

    def rollout(env, params):
        def body(state, key):
            k_a, k_s = jax.random.split(key)
            action = jax.random.uniform(k_a, (1,), minval=-2.5, maxval=2.5)   # some beyond the bounds
            obs, state, reward, terminated, truncated, info = env.step(k_s, state, action, params)
            return state, (obs, reward, terminated, truncated)

        _, state = env.reset(jax.random.PRNGKey(3), params)
        return jax.lax.scan(body, state, jax.random.split(jax.random.PRNGKey(4), 300))[1]

    ours = jax.jit(lambda: rollout(ENV, PARAMS))()
    theirs = jax.jit(lambda: rollout(reference, ref_params))()
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    truncated = np.asarray(ours[3])
    assert truncated.sum() == 1 and truncated[199] and not np.asarray(ours[2]).any()


def test_registered_with_gymnax_spaces():
    env, params = envs.make("SafePendulum-v0")
    assert params.max_steps_in_episode == 200 and env.action_space(params).shape == (1,)
    assert float(env.action_space(params).high) == 2.0
    obs, _ = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (3,)


def test_balancing_upright_costs_and_hanging_does_not():
    """The reward-optimal upright pole pays 0.5 per step; a hanging pole pays nothing (the constraint binds
    only where the reward is high)."""
    def cost_at_rest(angle):
        state = EnvState(theta=deg(angle), theta_dot=jnp.float32(0.0), last_u=jnp.float32(0.0), time=0)
        return float(ENV.step(jax.random.PRNGKey(0), state, jnp.array([0.0]), PARAMS)[-1]["cost"])

    assert cost_at_rest(0.0) == pytest.approx(0.5) and cost_at_rest(180.0) == 0.0
