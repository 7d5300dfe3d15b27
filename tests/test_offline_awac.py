"""Tests of agents/offline/awac.py: the Gaussian log-density, config/dataset/action-space errors,
probe datasets with known values (all probes x seeds in one compiled program), determinism and
save/load through the CLI, and a learning check on the scripted Pendulum expert data (seeds vmapped)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.offline import awac
from jaxrl import checkpoint, cli
from jaxrl import data as data_lib
from jaxrl.config import ConfigError
import offline_checks
from offline_checks import cartpole_like_dataset, eval_returns, probe_dataset, train_seeds, trees_equal
from offline_data import pendulum_dataset


@pytest.fixture(scope="module")
def pendulum_expert():
    return pendulum_dataset("expert")


# ---------------------------------------------------------------------------------------------
# Pieces and configuration
# ---------------------------------------------------------------------------------------------
def test_gaussian_log_prob_matches_closed_form():
    mean, log_std, a = jnp.array([0.2, -0.4]), jnp.array([-0.5, 0.3]), jnp.array([0.7, 0.1])
    std = np.exp(np.asarray(log_std, np.float64))
    expected = np.sum(-0.5 * ((np.asarray(a) - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))
    assert float(awac.gaussian_log_prob(mean, log_std, a)) == pytest.approx(expected, abs=1e-5)
    samples = awac.sample_action(jax.random.PRNGKey(0), jnp.zeros((1000, 1)), jnp.full((1000, 1), 1.0))
    assert float(samples.min()) >= -1.0 and float(samples.max()) <= 1.0


def test_discrete_env_raises_clear_config_error():
    cartpole = cartpole_like_dataset()
    with pytest.raises(ConfigError, match=r"AWAC supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        awac.make_train(awac.Config(env="CartPole-v1"), cartpole)


def test_dataset_of_another_env_raises_clear_error(pendulum_expert):
    with pytest.raises(data_lib.DatasetError, match="Pendulum-v1.*MountainCarContinuous-v0"):
        awac.make_train(awac.Config(env="MountainCarContinuous-v0"), pendulum_expert)


@pytest.mark.parametrize("override, message", [
    (dict(awac_lambda=0.0), "awac_lambda"),
    (dict(tau=0.0), "tau"),
    (dict(gamma=1.5), "gamma"),
    (dict(batch_size=0), "batch_size"),
    (dict(num_layers=0), "num_layers"),
])
def test_bad_config_raises_before_compiling(pendulum_expert, override, message):
    with pytest.raises(ConfigError, match=message):
        awac.make_train(awac.Config(**override), pendulum_expert)


# ---------------------------------------------------------------------------------------------
# Probes: uniform-random-action datasets of the five continuous probes (envs/probes.py), written
# from the probes' definitions, stacked, and trained as one program (probe x seed).
# ---------------------------------------------------------------------------------------------
PROBE_GAMMA = 0.8
PROBES = ("constant", "obs_reward", "two_step", "action", "obs_action")
# λ = 0.1: sharp advantage weights, so the weighted likelihood of uniform data peaks at the best action.
PROBE_CONFIG = awac.Config(env="Probe-Action", num_updates=3_000, batch_size=64, hidden_size=64, num_layers=2,
                           actor_lr=3e-3, critic_lr=3e-3, gamma=PROBE_GAMMA, tau=0.05, awac_lambda=0.1,
                           normalize_observations=False)


@pytest.fixture(scope="module")
def probe_runs():
    rng = np.random.default_rng(0)
    parts = [probe_dataset(kind, 2_000, rng) for kind in PROBES]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *parts)
    trainer = awac.make_train(PROBE_CONFIG, parts[0])
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
    per_probe = jax.vmap(trainer, in_axes=(0, None))
    states, metrics = jax.jit(jax.vmap(per_probe, in_axes=(None, 0)))(keys, stacked)  # (probe, seed)
    return trainer, states, metrics


def probe_q(states, probe: int, obs: float):
    """Both critics' Q(obs, a) for a in {-0.8, 0, 0.8}, every seed of ``probe``: (seeds, 2, 3)."""
    critic = awac.QNetwork(PROBE_CONFIG.hidden_size, PROBE_CONFIG.num_layers)
    o, a = jnp.full((3, 1), obs), jnp.array([[-0.8], [0.0], [0.8]])
    params = jax.tree.map(lambda x: x[probe], states.critic_params)
    return np.asarray(jax.vmap(jax.vmap(lambda p: critic.apply(p, o, a)))(params))


@pytest.mark.parametrize("probe, obs, expected", [
    (0, 0.0, 1.0 / (1.0 - PROBE_GAMMA)),   # bootstrapped through truncation: 1 / (1 - γ)
    (1, 1.0, 1.0), (1, -1.0, -1.0),        # one step, reward = obs
    (2, 0.0, PROBE_GAMMA), (2, 1.0, 1.0),  # two steps: γ, then 1
])
def test_probe_values_match_the_analytic_answer(probe_runs, probe, obs, expected):
    _, states, metrics = probe_runs
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    np.testing.assert_allclose(probe_q(states, probe, obs), expected, atol=0.1 * max(1.0, abs(expected)))


def test_probe_greedy_action_is_optimal(probe_runs):
    # Uniform-random data: cloning it would give a ≈ 0; the advantage weights move the mean to the best action.
    trainer, states, _ = probe_runs
    obs = jnp.array([[0.0], [1.0], [-1.0]])
    act = np.asarray(jax.vmap(jax.vmap(lambda s: trainer.act(s, obs, None)))(states))[..., 0]  # (probe, seed, obs)
    np.testing.assert_allclose(act[3, :, 0], 0.5, atol=0.15)
    np.testing.assert_allclose(act[4, :, 1], 0.5, atol=0.15)
    np.testing.assert_allclose(act[4, :, 2], -0.5, atol=0.15)


# ---------------------------------------------------------------------------------------------
# Determinism and the CLI
# ---------------------------------------------------------------------------------------------
CLI_CONFIG = awac.Config(num_updates=40, batch_size=32, hidden_size=32)


@pytest.fixture(scope="module")
def direct_run(pendulum_expert):
    return offline_checks.direct_run(awac.make_train, CLI_CONFIG, pendulum_expert)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, pendulum_expert):
    return offline_checks.cli_runs(tmp_path_factory, awac.make_train, CLI_CONFIG, pendulum_expert, "awac", 40)


def test_same_seed_same_params(cli_runs, pendulum_expert):
    first, second = (cli.load_run(out, awac.Config, awac.make_train, "awac", dataset=pendulum_expert)
                     for out in cli_runs)
    assert trees_equal(first.state, second.state)
    assert not trees_equal(*(jax.tree.map(lambda x: x[i], first.state.actor_params) for i in range(2)))


def test_cli_save_load_gives_identical_actions(cli_runs, direct_run, pendulum_expert):
    loaded = cli.load_run(cli_runs[0], awac.Config, awac.make_train, "awac", dataset=pendulum_expert)
    assert loaded.config == CLI_CONFIG and loaded.update == 40
    trainer, _, _, states, _ = direct_run
    obs = pendulum_expert.observations[:32]
    for run in range(2):
        direct = trainer.act(jax.tree.map(lambda x: x[run], states), obs, None)
        np.testing.assert_allclose(np.asarray(loaded.act(run, obs)), np.asarray(direct), atol=1e-5)
    with pytest.raises(checkpoint.CheckpointError, match="awac"):
        cli.load_run(cli_runs[0], awac.Config, awac.make_train, "iql", dataset=pendulum_expert)

def test_update_reads_the_dataset_argument_not_the_closure(direct_run, pendulum_expert):
    # Same compiled program and keys, another dataset of the same shapes (rewards negated): the
    # update reads the argument, so the critics differ.
    _, run, keys, states, _ = direct_run
    other, _ = run(keys, pendulum_expert.replace(rewards=-pendulum_expert.rewards))
    assert not trees_equal(states.critic_params, other.critic_params)


# ---------------------------------------------------------------------------------------------
# Learning check (seeds vmapped in one program)
# ---------------------------------------------------------------------------------------------
SEEDS = range(4)


@pytest.mark.learning
def test_recovers_the_expert_on_expert_data(pendulum_expert):
    # Measured with this budget (3 layers of 64 units, 3000 updates): 100.9 ± 1.0 over 4 seeds.
    trainer = awac.make_train(awac.Config(num_updates=3_000, hidden_size=64), pendulum_expert)
    states, metrics = train_seeds(trainer, pendulum_expert, SEEDS)
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    scores = data_lib.normalized_score("Pendulum-v1", eval_returns(trainer, states, len(SEEDS)), pendulum_expert.info)
    assert scores.mean() > 70, scores
