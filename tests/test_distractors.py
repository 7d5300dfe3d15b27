"""Tests of envs/model_based/distractors.py: the base env's observation, reward and episode are
unchanged under the same keys and actions, the distractors follow their rule exactly (hand-computed
update, the switching reset, action independence), registration, and jit/vmap."""
from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.model_based import distractors
from jaxrl import envs


def _rollout(env, params, key, actions):
    """Step ``env`` with ``actions`` (T, ...) from a reset with ``key``; returns the stacked outputs."""
    reset_key, step_key = jax.random.split(key)
    obs, state = env.reset(reset_key, params)

    def step(state, inputs):
        k, a = inputs
        obs, state, reward, terminated, truncated, info = env.step(k, state, a, params)
        return state, (obs, reward, terminated, truncated, info["final_observation"])

    _, out = jax.lax.scan(step, state, (jax.random.split(step_key, actions.shape[0]), actions))
    return obs, out


def test_registered_ids_and_shapes():
    for n in distractors.DISTRACTOR_COUNTS:
        env, params = envs.make(f"Pendulum-Distract{n}-v0")
        assert env.name == f"Pendulum-Distract{n}-v0"
        assert env.observation_space(params).shape == (3 + n,)
        assert env.action_space(params).shape == (1,)
        assert params.max_steps_in_episode == 200
        assert params.transition.shape == (n, n) and params.reset_values.shape == (n,)


def test_base_observation_reward_and_episode_unchanged():
    """Same keys and actions: the first 3 numbers, the reward, terminations and truncations (205 steps,
    across the 200-step time limit and its auto-reset) are exactly gymnax Pendulum-v1's."""
    env, params = envs.make("Pendulum-Distract10-v0")
    base, base_params = gymnax.make("Pendulum-v1")
    actions = jax.random.uniform(jax.random.PRNGKey(1), (205, 1), minval=-2.0, maxval=2.0)
    key = jax.random.PRNGKey(7)
    # The wrapper splits its keys once more for the distractors; the base env gets the first half.
    obs0, (obs, reward, term, trunc, final) = jax.jit(lambda k: _rollout(env, params, k, actions))(key)
    reset_key, step_key = jax.random.split(key)
    base_obs0, base_state = base.reset_env(jax.random.split(reset_key)[0], base_params)
    np.testing.assert_array_equal(obs0[:3], base_obs0)
    # step by step with the base env, using the same sub-keys the wrapper hands it
    steps = jax.random.split(step_key, 205)
    expected_obs, expected_reward, expected_trunc = [], [], []
    for t in range(205):
        k_step, k_reset = jax.random.split(steps[t])
        o, base_state, r, _, _ = base.step_env(k_step, base_state, actions[t], base_params)
        truncated = base.is_truncated(base_state, base_params)
        if truncated:
            o_reset, base_state = base.reset_env(jax.random.split(k_reset)[0], base_params)
        expected_obs.append(o_reset if truncated else o)
        expected_reward.append(r)
        expected_trunc.append(bool(truncated))
    # (a jitted scan against eager steps: float rounding only, measured up to 6e-6 over 250 steps)
    np.testing.assert_allclose(obs[:, :3], np.stack(expected_obs), atol=1e-4)
    np.testing.assert_allclose(reward, np.stack(expected_reward), rtol=1e-4, atol=1e-4)
    assert not np.asarray(term).any()                                  # Pendulum never terminates
    assert np.flatnonzero(np.asarray(trunc)).tolist() == [199] == np.flatnonzero(expected_trunc).tolist()
    assert np.all(np.abs(np.asarray(obs[:, 3:])) <= distractors.RESET_BOUND)


def test_distractors_follow_their_rule_and_ignore_the_actions():
    env, params = envs.make("Pendulum-Distract5-v0")
    actions_a = jnp.full((30, 1), -2.0)
    actions_b = jax.random.uniform(jax.random.PRNGKey(3), (30, 1), minval=-2.0, maxval=2.0)
    obs0, (obs_a, *_) = jax.jit(lambda k: _rollout(env, params, k, actions_a))(jax.random.PRNGKey(0))
    _, (obs_b, *_) = jax.jit(lambda k: _rollout(env, params, k, actions_b))(jax.random.PRNGKey(0))
    d_a, d_b = np.asarray(obs_a[:, 3:]), np.asarray(obs_b[:, 3:])
    np.testing.assert_array_equal(d_a, d_b)                         # independent of the actions
    assert not np.array_equal(np.asarray(obs_a[:, :3]), np.asarray(obs_b[:, :3]))
    # every step is d' = A d + 0.1 sin(P d), then |d'_i| > 20 -> b_i (numpy, float64)
    A, P, b = (np.asarray(x, np.float64) for x in (params.transition, params.frequencies, params.reset_values))
    previous = np.concatenate([np.asarray(obs0)[None, 3:], d_a[:-1]])
    for d, nxt in zip(previous, d_a):
        raw = A @ d + 0.1 * np.sin(P @ d)
        expected = np.where(np.abs(raw) > 20.0, b, raw)
        np.testing.assert_allclose(nxt, expected, rtol=1e-3, atol=1e-3 * (1 + np.abs(P @ d).max()))
    # the process does switch: some dimension was reset to its b_i within 30 steps
    assert np.isclose(d_a, b[None]).any()


def test_hand_computed_update():
    """Two distractors, A = [[2, 0], [0, 0.5]], P = 0: d = (15, 4) -> (30 > 20 -> b_0, 2)."""
    params = distractors.DistractorParams(transition=jnp.array([[2.0, 0.0], [0.0, 0.5]]),
                                          frequencies=jnp.zeros((2, 2)), reset_values=jnp.array([-1.0, 7.0]))
    np.testing.assert_allclose(distractors.distractor_step(jnp.array([15.0, 4.0]), params), [-1.0, 2.0])
    params = params.replace(frequencies=jnp.array([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(distractors.distractor_step(jnp.array([1.0, 4.0]), params),
                               [2.0 + 0.1 * np.sin(1.0), 2.0], rtol=1e-6)


def test_vmap_over_keys_and_over_distractor_params():
    env, params = envs.make("Pendulum-Distract5-v0")
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    assert obs.shape == (4, 8)
    obs, state, reward, *_ = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))(keys, state, jnp.zeros((4, 1)), params)
    assert obs.shape == (4, 8) and reward.shape == (4,)
    # Params of two seeds of the distractor process, stacked: vmapped over params as well.
    other = distractors.Distractors(num_distractors=5, distractor_seed=1).default_params
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    obs2, _ = jax.vmap(env.reset)(keys[:2], stacked)
    assert obs2.shape == (2, 8) and not np.allclose(obs2[0, 3:], obs2[1, 3:])


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="num_distractors must be an integer >= 1"):
        distractors.Distractors(num_distractors=0)
    with pytest.raises(ValueError, match="not one of"):
        distractors.Distractors(base_id="Nope-v0")
