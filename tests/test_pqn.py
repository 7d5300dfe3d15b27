"""Tests of agents/online/pqn.py: Q(λ) returns by hand, probe envs, config errors, a CartPole learning check."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.online import pqn
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer

NUM_SEEDS = 4


def seed_keys(n=NUM_SEEDS):
    return jnp.stack([jax.random.PRNGKey(s) for s in range(n)])


# ----------------------------------------------------------------------------------------------
# Q(λ) returns against hand-computed values
# ----------------------------------------------------------------------------------------------
def returns(rewards, q_next, terminated, truncated, gamma, lam):
    """Call ``q_lambda_returns`` on one env's trajectory given as Python lists."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)[:, None]  # noqa: E731  (time, env=1)
    done = np.logical_or(terminated, truncated)
    out = pqn.q_lambda_returns(f32(rewards), f32(q_next), f32(terminated), f32(done), gamma, lam)
    return np.asarray(out[:, 0])


def test_q_lambda_hand_computed_with_termination_and_truncation():
    # Steps 0-1: one episode that terminates at step 1; steps 2-3: an episode truncated at step 3;
    # step 4: the rollout ends mid-episode.
    r = [1.0, 2.0, 3.0, 4.0, 5.0]
    q = [10.0, 20.0, 30.0, 40.0, 50.0]
    term = [0, 1, 0, 0, 0]
    trunc = [0, 0, 0, 1, 0]
    g, lam = 0.5, 0.5
    g4 = 5 + g * 50                                  # end of rollout: one-step bootstrap = 30
    g3 = 4 + g * 40                                  # truncation: bootstrap from Q(final_obs) = 24
    g2 = 3 + g * (lam * g3 + (1 - lam) * 30)         # = 3 + 0.5 * (12 + 15) = 16.5
    g1 = 2.0                                         # termination: no bootstrap
    g0 = 1 + g * (lam * g1 + (1 - lam) * 10)         # = 1 + 0.5 * (1 + 5) = 4
    expected = [g0, g1, g2, g3, g4]
    assert expected == [4.0, 2.0, 16.5, 24.0, 30.0]
    np.testing.assert_allclose(returns(r, q, term, trunc, g, lam), expected, rtol=1e-6)


def test_q_lambda_terminated_and_truncated_together_is_a_termination():
    out = returns([1.0, 2.0], [5.0, 7.0], [1, 0], [1, 0], 0.9, 0.8)
    assert out[0] == pytest.approx(1.0)


def test_q_lambda_zero_is_one_step_q_learning():
    rng = np.random.default_rng(0)
    r, q = rng.normal(size=12), rng.normal(size=12)
    term = rng.random(12) < 0.2
    trunc = (rng.random(12) < 0.2) & ~term
    expected = r + 0.9 * (1 - term) * q
    np.testing.assert_allclose(returns(r, q, term, trunc, 0.9, 0.0), expected, rtol=1e-5, atol=1e-6)


def test_q_lambda_one_is_monte_carlo_with_bootstrap_at_truncation():
    rng = np.random.default_rng(1)
    T, gamma = 15, 0.9
    r, q = rng.normal(size=T), rng.normal(size=T)
    term = np.zeros(T, bool)
    trunc = np.zeros(T, bool)
    term[[3, 9]] = True
    trunc[6] = True
    expected = np.zeros(T)
    for t in range(T):  # discounted sum to the episode's end, plus γ^k Q at a truncation / rollout end
        total, discount = 0.0, 1.0
        for k in range(t, T):
            total += discount * r[k]
            discount *= gamma
            if term[k]:
                break
            if trunc[k] or k == T - 1:
                total += discount * q[k]
                break
        expected[t] = total
    np.testing.assert_allclose(returns(r, q, term, trunc, gamma, 1.0), expected, rtol=1e-5, atol=1e-5)


def test_epsilon_schedule():
    eps = pqn.epsilon_schedule(jnp.arange(101), 100, 1.0, 0.1, 0.5)
    np.testing.assert_allclose(np.asarray(eps)[[0, 25, 50, 100]], [1.0, 0.55, 0.1, 0.1], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Config errors
# ----------------------------------------------------------------------------------------------
def test_continuous_env_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"PQN supports only discrete.*Pendulum-v1.*Box"):
        pqn.make_train(pqn.Config(env="Pendulum-v1"))


def test_bad_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="num_minibatches"):
        pqn.make_train(pqn.Config(num_minibatches=7))
    with pytest.raises(ConfigError, match="q_lambda"):
        pqn.make_train(pqn.Config(q_lambda=1.5))


# ----------------------------------------------------------------------------------------------
# Probe envs: learned Q-values against their analytic values, greedy actions
# ----------------------------------------------------------------------------------------------
# An observation of 0 (Probe-Constant, Probe-Action) gives a hidden layer of exactly 0 under LayerNorm
# (the normalized constant vector is 0 and relu'(0) = 0), so only the output bias can learn there; Adam
# moves it by about lr per step, hence the high lr and a few hundred updates (the run is cheap; the
# compile is what costs). γ = 0.8 keeps Q(Probe-Constant) = 5 reachable.
PROBE = pqn.Config(
    total_timesteps=16 * 16 * 300, num_envs=16, num_steps=16, update_epochs=2, num_minibatches=8,
    lr=1e-2, optimizer="adam", anneal_lr=True, gamma=0.8, q_lambda=0.65, eps_start=1.0, eps_finish=0.3,
    eps_decay=0.3, reward_scale=1.0, hidden_size=32,
)
PROBE_OBS = {"Probe-Constant": [0.0], "Probe-ObsReward": [-1.0, 1.0], "Probe-TwoStep": [0.0, 1.0],
             "Probe-Action": [0.0], "Probe-ObsAction": [-1.0, 1.0]}


@pytest.fixture(scope="module")
def probes():
    """Per probe: Q-values (seeds, observations, actions) and greedy actions (seeds, observations).

    All five probes x 4 seeds are trained in one compiled program.
    """
    network = pqn.QNetwork(2, PROBE.hidden_size, PROBE.num_layers, PROBE.norm)
    trainers = {env_id: pqn.make_train(dataclasses.replace(PROBE, env=env_id)) for env_id in PROBE_OBS}

    def train_all(keys):
        out = {}
        for env_id, values in PROBE_OBS.items():
            trainer, obs = trainers[env_id], jnp.asarray(values, jnp.float32)[:, None]

            def train(key):
                state, _ = trainer(key)
                return network.apply(state.params, obs), trainer.act(state, obs, key)

            out[env_id] = jax.vmap(train)(keys)
        return out

    return jax.tree.map(np.asarray, jax.jit(train_all)(seed_keys()))


def test_probe_constant_bootstraps_through_truncation(probes):
    # Reward 1 forever, truncated every 10 steps: Q = 1 / (1 - γ) = 5 for both actions. Treating the
    # truncation as a termination instead gives about 3.45 (measured), outside the tolerance.
    q, _ = probes["Probe-Constant"]
    np.testing.assert_allclose(q, 1 / (1 - PROBE.gamma), rtol=0.1)


def test_probe_obs_reward(probes):
    q, _ = probes["Probe-ObsReward"]  # one step, reward = obs, for either action
    np.testing.assert_allclose(q[:, 0], -1.0, atol=0.15)
    np.testing.assert_allclose(q[:, 1], 1.0, atol=0.15)


def test_probe_two_step_discounts(probes):
    q, _ = probes["Probe-TwoStep"]  # obs 0 -> obs 1 -> reward 1 and end: Q(0) = γ, Q(1) = 1
    np.testing.assert_allclose(q[:, 0], PROBE.gamma, atol=0.15)
    np.testing.assert_allclose(q[:, 1], 1.0, atol=0.15)


def test_probe_action_greedy(probes):
    q, greedy = probes["Probe-Action"]  # reward 1 for action 1, 0 for action 0
    np.testing.assert_array_equal(greedy, 1)
    np.testing.assert_allclose(q[:, 0], np.broadcast_to([0.0, 1.0], q[:, 0].shape), atol=0.15)


def test_probe_obs_action_greedy(probes):
    q, greedy = probes["Probe-ObsAction"]  # reward 1 for action 1 when obs = +1, action 0 when obs = -1
    np.testing.assert_array_equal(greedy, np.broadcast_to([0, 1], greedy.shape))
    np.testing.assert_allclose(q, np.broadcast_to([[1.0, 0.0], [0.0, 1.0]], q.shape), atol=0.15)


# ----------------------------------------------------------------------------------------------
# Learning check
# ----------------------------------------------------------------------------------------------
# The default (reference CartPole) config with a tenth of its budget: 24 updates of 32 envs x 64 steps.
CARTPOLE = pqn.Config(env="CartPole-v1", total_timesteps=50_000)


@pytest.mark.learning
def test_learns_cartpole():
    trainer = pqn.make_train(CARTPOLE)

    def train_and_eval(key):
        state, metrics = trainer(key)
        result = evaluate_trainer(trainer, state, jax.random.fold_in(key, 1), 16)
        return result["return"].mean(), metrics["td_loss"]

    eval_return, td_loss = jax.jit(jax.vmap(train_and_eval))(seed_keys())
    eval_return = np.asarray(eval_return)
    assert np.isfinite(np.asarray(td_loss)).all()
    # A random policy scores about 22. Measured (CPU): these 4 seeds 423 (448, 255, 491, 500);
    # 16 seeds 371 ± 97 (min 179), so a 4-seed mean has a std of about 50 and 150 is 4+ std below.
    assert eval_return.mean() > 150, eval_return
