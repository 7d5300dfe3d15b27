"""The env registry and the wrappers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.config import ConfigError
from jaxrl.wrappers import (ClipAction, EpisodeStatistics, NormalizeObservation, RescaleAction, RunningStats,
                            VectorEnv, episode_metrics, normalize)


def test_unknown_env_lists_closest_ids():
    with pytest.raises(envs.UnknownEnvError, match="CartPole-v1"):
        envs.make("Cartpole-v1")
    with pytest.raises(envs.UnknownEnvError, match="Valid ids"):
        envs.make("NoSuchEnv-v9")


def test_registry_serves_gymnax_and_project_envs():
    ids = envs.registered_ids()
    assert "CartPole-v1" in ids and "Breakout-MinAtar" in ids and "Probe-Constant" in ids
    env, params = envs.make("CartPole-v1", max_steps_in_episode=200)
    assert params.max_steps_in_episode == 200
    env, params = envs.make("Probe-Action", continuous=True)
    assert env.continuous and not envs.is_discrete(env, params)
    with pytest.raises(ValueError, match="unknown override"):
        envs.make("CartPole-v1", not_a_param=3)


def test_require_action_space_message():
    env, params = envs.make("Pendulum-v1")
    with pytest.raises(ConfigError, match="discrete action spaces.*Pendulum-v1 has Box"):
        envs.require_action_space("Pendulum-v1", env, params, "discrete", "DQN")
    envs.require_action_space("Pendulum-v1", env, params, "continuous", "SAC")


def _rollout(env, params, num_steps, action, key=jax.random.PRNGKey(0)):
    obs, state = env.reset(key, params)

    def body(carry, k):
        obs, state = carry
        obs, state, r, term, trunc, info = env.step(k, state, action, params)
        return (obs, state), (r, term, trunc, info)

    return jax.lax.scan(body, (obs, state), jax.random.split(key, num_steps))[1]


def test_episode_statistics_counts_truncated_episodes():
    env, params = envs.make("Probe-Constant", max_steps_in_episode=7)
    r, term, trunc, info = _rollout(EpisodeStatistics(env), params, 21, 0)
    assert not term.any()
    np.testing.assert_array_equal(np.flatnonzero(trunc), [6, 13, 20])
    np.testing.assert_array_equal(np.flatnonzero(info["episode_done"]), [6, 13, 20])
    assert float(info["episode_return"][-1]) == 7.0 and int(info["episode_length"][-1]) == 7
    assert int(info["episodes_completed"][-1]) == 3
    # Before any episode ends, the mean statistics are NaN (never a made-up zero).
    assert np.isnan(episode_metrics(jax.tree.map(lambda x: x[0], info))["episode_return"])
    assert float(episode_metrics(jax.tree.map(lambda x: x[-1], info))["episode_return"]) == 7.0


def test_final_observation_is_pre_reset_observation():
    env, params = envs.make("CartPole-v1")
    _, term, trunc, info = _rollout(env, params, 200, 1)  # always push right: falls over quickly
    done_steps = np.flatnonzero(np.asarray(term | trunc))
    assert done_steps.size > 0
    final = np.asarray(info["final_observation"][done_steps[0]])
    assert abs(final[2]) > 0.2 or abs(final[0]) > 2.4  # the terminal state, not a fresh reset


def test_action_wrappers():
    env, params = envs.make("Probe-Action", continuous=True)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    r_clip = ClipAction(env).step(jax.random.PRNGKey(1), state, jnp.array([5.0]), params)[2]
    assert float(r_clip) == pytest.approx(1.0 - abs(1.0 - 0.5))
    pend, pparams = envs.make("Pendulum-v1")
    rescaled = RescaleAction(pend)
    assert float(rescaled.action_space(pparams).high) == 1.0
    _, pstate = pend.reset(jax.random.PRNGKey(0), pparams)
    a = rescaled.step(jax.random.PRNGKey(1), pstate, jnp.array([1.0]), pparams)
    b = pend.step(jax.random.PRNGKey(1), pstate, jnp.array([2.0]), pparams)
    np.testing.assert_allclose(a[0], b[0])


def test_running_stats_match_numpy():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4, 3)).astype(np.float32)
    stats = RunningStats.create((3,))
    for batch in data:
        stats = stats.update(jnp.asarray(batch))
    flat = data.reshape(-1, 3)
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, flat.var(0), rtol=1e-3)
    z = normalize(jnp.asarray(flat), stats)
    np.testing.assert_allclose(np.asarray(z).mean(0), 0, atol=1e-3)


def test_normalize_observation_vector_env():
    env, params = envs.make("CartPole-v1")
    venv = NormalizeObservation(VectorEnv(env, 8))
    obs, state = venv.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (8, 4)
    obs, state, r, term, trunc, info = venv.step(jax.random.PRNGKey(1), state, jnp.zeros(8, jnp.int32), params)
    assert obs.shape == (8, 4) and info["final_observation"].shape == (8, 4)
    assert float(state.stats.count) > 15


def test_evaluate_counts_each_episode_once():
    from jaxrl.evaluation import evaluate

    env, params = envs.make("Probe-Constant", max_steps_in_episode=7)
    result = jax.jit(lambda k: evaluate(env, params, lambda obs, _: jnp.zeros(obs.shape[0], jnp.int32), k, 5, max_steps=20))(
        jax.random.PRNGKey(0))
    np.testing.assert_array_equal(result["return"], [7.0] * 5)  # not 20 (later auto-reset episodes are ignored)
    np.testing.assert_array_equal(result["length"], [7] * 5)
    env, params = envs.make("Probe-ObsAction")
    good = evaluate(env, params, lambda obs, _: (obs[:, 0] > 0).astype(jnp.int32), jax.random.PRNGKey(1), 8)
    bad = evaluate(env, params, lambda obs, _: (obs[:, 0] < 0).astype(jnp.int32), jax.random.PRNGKey(1), 8)
    np.testing.assert_array_equal(good["return"], [1.0] * 8)
    np.testing.assert_array_equal(bad["return"], [0.0] * 8)
