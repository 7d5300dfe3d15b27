"""PPO: GAE against hand-computed values, truncation bootstrapping, probe envs, and a learning check."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.online import ppo
from jaxrl.evaluation import evaluate_trainer


def _traj(rewards, values, next_values, terminated, truncated):
    f = lambda x: jnp.asarray(x, jnp.float32)[:, None]  # (time, 1 env)
    done = np.logical_or(terminated, truncated)
    return ppo.Transition(obs=None, action=None, log_prob=None, value=f(values), reward=f(rewards),
                          terminated=f(terminated), done=f(done), next_value=f(next_values))


def test_gae_matches_hand_computation():
    g, lam = 0.9, 0.5
    # step 0 -> 1 continues; step 1 is truncated (bootstrap from V(final obs)=4); step 2 terminates.
    traj = _traj(rewards=[1, 2, 3], values=[0.5, 1.0, 2.0], next_values=[1.0, 4.0, 7.0],
                 terminated=[0, 0, 1], truncated=[0, 1, 0])
    adv, targets = ppo.gae_advantages(traj, g, lam)
    d2 = 3 - 2.0                      # terminal: no bootstrap
    d1 = 2 + g * 4.0 - 1.0            # truncated: bootstrap from the final observation
    d0 = 1 + g * 1.0 - 0.5
    expected = [d0 + g * lam * d1, d1, d2]  # the truncation cuts the trace between steps 1 and 2
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(targets[:, 0], np.array(expected) + [0.5, 1.0, 2.0], rtol=1e-6)


def test_gae_lambda_one_is_discounted_return_minus_value():
    traj = _traj(rewards=[1, 1, 1, 1], values=[0, 0, 0, 0], next_values=[0, 0, 0, 5.0],
                 terminated=[0, 0, 0, 0], truncated=[0, 0, 0, 0])
    adv, _ = ppo.gae_advantages(traj, 0.5, 1.0)
    np.testing.assert_allclose(adv[0, 0], 1 + 0.5 + 0.25 + 0.125 + 0.0625 * 5.0, rtol=1e-6)


PROBE = dict(total_timesteps=16 * 16 * 120, num_envs=16, num_steps=16, num_minibatches=2, update_epochs=4,
             hidden_size=32, lr=3e-3, anneal_lr=False, ent_coef=0.0, gae_lambda=0.95)


def _train(config, seeds=3):
    trainer = ppo.make_train(config)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    state, metrics = jax.jit(jax.vmap(trainer))(keys)
    return trainer, state


def _values_and_actor(config, state, obs):
    env_trainer = ppo.make_train(config)
    space = env_trainer.env.action_space(env_trainer.env_params)
    discrete = not hasattr(space, "low")
    action_dim = space.n if discrete else 1
    net = ppo.ActorCritic(action_dim, discrete, config.hidden_size, config.activation)
    actor, _, value = jax.vmap(net.apply, in_axes=(0, None))(state.params, obs)
    return np.asarray(value), np.asarray(actor)


def test_value_bootstraps_through_truncation():
    """Reward 1 forever, truncated every 10 steps, γ = 0.9: V = 1/(1-γ) = 10 in every state.

    A learner that treated truncation as termination would learn the mean truncated return
    (about 6 here) instead.
    """
    config = ppo.Config(env="Probe-Constant", gamma=0.9, **PROBE)
    _, state = _train(config)
    value, _ = _values_and_actor(config, state, jnp.zeros((1, 1)))
    np.testing.assert_allclose(value, 10.0, rtol=0.1)


def test_value_depends_on_observation_and_discount():
    config = ppo.Config(env="Probe-ObsReward", **PROBE)
    _, state = _train(config)
    value, _ = _values_and_actor(config, state, jnp.array([[1.0], [-1.0]]))
    np.testing.assert_allclose(value, np.broadcast_to([1.0, -1.0], value.shape), atol=0.15)
    config = ppo.Config(env="Probe-TwoStep", gamma=0.5, **PROBE)
    _, state = _train(config)
    value, _ = _values_and_actor(config, state, jnp.array([[0.0], [1.0]]))
    np.testing.assert_allclose(value, np.broadcast_to([0.5, 1.0], value.shape), atol=0.15)


@pytest.mark.parametrize("env_id", ["Probe-ObsAction", "Probe-ObsAction-Continuous"])
def test_policy_learns_obs_dependent_action(env_id):
    trainer, state = _train(ppo.Config(env=env_id, **PROBE))
    obs = jnp.array([[1.0], [-1.0]])
    actions = np.asarray(jax.vmap(trainer.act, in_axes=(0, None, None))(state, obs, jax.random.PRNGKey(0)))
    if env_id.endswith("Continuous"):
        np.testing.assert_allclose(actions[..., 0], np.broadcast_to([0.5, -0.5], actions.shape[:2]), atol=0.15)
    else:
        np.testing.assert_array_equal(actions, np.broadcast_to([1, 0], actions.shape))


@pytest.mark.learning
def test_ppo_learns_cartpole():
    """4 seeds in one program, 1.5e5 steps (PureJaxRL defaults otherwise): clearly solves most of CartPole."""
    config = ppo.Config(total_timesteps=150_000)
    trainer, state = _train(config, seeds=4)
    keys = jnp.stack([jax.random.PRNGKey(100 + s) for s in range(4)])
    result = jax.jit(jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, 8)))(state, keys)
    mean_return = float(np.mean(result["return"]))
    print(f"PPO CartPole-v1 1.5e5 steps, 4 seeds: greedy return {mean_return:.1f} "
          f"(per seed {np.asarray(result['return']).mean(1).round(1).tolist()})")
    assert mean_return > 300, mean_return
