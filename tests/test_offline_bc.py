"""Tests of agents/offline/bc.py: the top-fraction episode selection against a hand-worked answer,
clear errors, probe datasets (discrete BC-10% on random data, continuous BC on noisy expert data,
seeds and probes vmapped), determinism, save -> load through the CLI, and learning checks on the
scripted CartPole and Pendulum datasets."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.offline import bc
from jaxrl import cli, envs
from jaxrl import data as data_lib
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer
from offline_data import cartpole_dataset, pendulum_dataset

SMALL = dict(hidden_size=64)
SEEDS = range(4)


def trees_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y, equal_nan=True)), a, b)))


def train_seeds(trainer, seeds):
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, trainer.data)


def eval_returns(trainer, states, num_seeds, episodes=8):
    keys = jax.random.split(jax.random.PRNGKey(1234), num_seeds)
    result = jax.jit(jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, episodes)))(states, keys)
    return np.asarray(result["return"]).mean(axis=1)


def hand_dataset(obs, actions, rewards, terminations, truncations, env_id):
    n = len(rewards)
    f32 = lambda x: jnp.asarray(np.asarray(x, np.float32))  # noqa: E731
    obs = f32(obs).reshape((n, -1))
    return data_lib.Dataset(obs, jnp.asarray(actions), f32(rewards), obs, f32(terminations), f32(truncations),
                            info=data_lib.DatasetInfo(env_id=env_id, size=n))


@pytest.fixture(scope="module")
def cartpole_expert():
    return cartpole_dataset("expert")


@pytest.fixture(scope="module")
def pendulum_expert():
    return pendulum_dataset("expert")


# ---------------------------------------------------------------------------------------------
# BC-x%: which transitions are cloned
# ---------------------------------------------------------------------------------------------
def test_top_episode_indices_by_hand():
    # episodes (ends at terminated | truncated): [0,1] return 3, [2] return -1, [3,4,5] return 6, [6,7] return 0
    rewards = [1, 2, -1, 2, 2, 2, 0, 0]
    term = [0, 1, 1, 0, 0, 0, 0, 0]
    trunc = [0, 0, 0, 0, 0, 1, 0, 1]
    np.testing.assert_array_equal(bc.episode_ids(term, trunc), [0, 0, 1, 2, 2, 2, 3, 3])
    np.testing.assert_array_equal(bc.top_episode_indices(rewards, term, trunc, 0.25), [3, 4, 5])
    np.testing.assert_array_equal(bc.top_episode_indices(rewards, term, trunc, 0.5), [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(bc.top_episode_indices(rewards, term, trunc, 0.1), [3, 4, 5])  # at least one
    np.testing.assert_array_equal(bc.top_episode_indices(rewards, term, trunc, 1.0), np.arange(8))


def test_top_fraction_puts_the_cloned_indices_in_the_data(cartpole_expert):
    trainer = bc.make_train(bc.Config(env="CartPole-v1", top_fraction=0.1), cartpole_expert)
    index = np.asarray(trainer.data.extras[bc.INDEX_KEY])
    assert index.shape == (cartpole_expert.size,)
    expected = bc.top_episode_indices(cartpole_expert.rewards, cartpole_expert.terminations,
                                      cartpole_expert.truncations, 0.1)
    np.testing.assert_array_equal(index[:len(expected)], expected)
    assert set(index[len(expected):]) <= set(expected)
    # plain BC trains on the dataset as it is
    assert bc.make_train(bc.Config(env="CartPole-v1"), cartpole_expert).data is cartpole_expert


# ---------------------------------------------------------------------------------------------
# Clear errors before compiling
# ---------------------------------------------------------------------------------------------
def test_dataset_of_another_env_raises_clear_error(cartpole_expert):
    with pytest.raises(data_lib.DatasetError, match=r"collected on 'CartPole-v1'.*'Acrobot-v1'"):
        bc.make_train(bc.Config(env="Acrobot-v1"), cartpole_expert)


@pytest.mark.parametrize("override, message", [
    (dict(top_fraction=0.0), "top_fraction"), (dict(top_fraction=1.5), "top_fraction"),
    (dict(batch_size=0), "batch_size"), (dict(lr=-1.0), "lr"), (dict(num_layers=0), "num_layers"),
])
def test_bad_config_raises_before_compiling(cartpole_expert, override, message):
    with pytest.raises(ConfigError, match=message):
        bc.make_train(bc.Config(env="CartPole-v1", **override), cartpole_expert)


def test_top_fraction_needs_the_trainers_data(cartpole_expert):
    trainer = bc.make_train(bc.Config(env="CartPole-v1", num_updates=2, top_fraction=0.5), cartpole_expert)
    with pytest.raises(ValueError, match="trainer.data"):
        jax.eval_shape(trainer, jax.random.PRNGKey(0), cartpole_expert)


# ---------------------------------------------------------------------------------------------
# Probes (one-step episodes, written down from envs/probes.py)
# ---------------------------------------------------------------------------------------------
def test_bc10_finds_the_rewarded_actions_in_random_data():
    # Uniform-random actions: half the episodes earn 1. Cloning everything gives no preference;
    # cloning the top 10% of episodes (all successes) gives the optimal action. Both discrete probes
    # (action: a = 1; obs_action: a = [obs > 0]) x 2 seeds in one program.
    n = 2_000
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, n).astype(np.int32)
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    ones = np.ones(n)
    probes = [(np.zeros(n), (actions == 1).astype(float)), (sign, (actions == (sign > 0)).astype(float))]
    config = bc.Config(env="Probe-Action", num_updates=300, batch_size=64, hidden_size=32, lr=1e-3,
                       normalize_states=False, top_fraction=0.1)
    env, env_params = envs.make("Probe-Action")
    trainers = [bc.make_train(config, hand_dataset(obs, actions, r, ones, 0 * ones, "Probe-Action"), env, env_params)
                for obs, r in probes]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[t.data for t in trainers])  # same cloned count: 200 each
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
    states, metrics = jax.jit(jax.vmap(jax.vmap(trainers[0], in_axes=(0, None)), in_axes=(None, 0)))(keys, stacked)
    obs = jnp.array([[1.0], [-1.0]])
    greedy = np.asarray(jax.vmap(jax.vmap(lambda s: trainers[0].act(s, obs, None)))(states))  # (probe, seed, obs)
    np.testing.assert_array_equal(greedy[0], 1)
    np.testing.assert_array_equal(greedy[1], np.broadcast_to([1, 0], greedy[1].shape))
    assert np.all(np.asarray(metrics["accuracy"])[:, :, -20:] == 1.0)


def test_continuous_bc_recovers_the_demonstrated_action():
    # obs_action probe with demonstrations a = obs / 2 + N(0, 0.1²): the clone's action is obs / 2.
    n = 2_000
    rng = np.random.default_rng(1)
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    actions = np.clip(0.5 * sign + 0.1 * rng.normal(size=n), -1, 1).astype(np.float32)[:, None]
    rewards = 1 - np.abs(actions[:, 0] - 0.5 * sign)
    env, env_params = envs.make("Probe-ObsAction", continuous=True)
    dataset = hand_dataset(sign, jnp.asarray(actions), rewards, np.ones(n), np.zeros(n), "Probe-ObsAction")
    trainer = bc.make_train(bc.Config(env="Probe-ObsAction", num_updates=500, batch_size=64, hidden_size=32, lr=1e-3),
                            dataset, env, env_params)
    states, _ = train_seeds(trainer, range(2))
    act = np.asarray(jax.vmap(lambda s: trainer.act(s, jnp.array([[1.0], [-1.0]]), None))(states))[..., 0]
    np.testing.assert_allclose(act, np.broadcast_to([0.5, -0.5], act.shape), atol=0.05)


# ---------------------------------------------------------------------------------------------
# Determinism and the CLI
# ---------------------------------------------------------------------------------------------
CLI_CONFIG = bc.Config(env="CartPole-v1", num_updates=60, batch_size=32, hidden_size=32)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, cartpole_expert):
    """The same command twice (2 seeds each; the second compile is served by the persistent cache)."""
    outs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp("bc") / name
        options = cli.RunOptions(num_seeds=2, out=str(out), log_points=2, eval_episodes=2, quiet=True, plot=False)
        summary = cli.train_and_evaluate(CLI_CONFIG, bc.make_train, options, "bc", dataset=cartpole_expert)
        assert summary["updates_per_run"] == 60 and np.isfinite(summary["normalized_score"]["mean"])
        outs.append(out)
    return outs


def test_same_key_same_params(cli_runs, cartpole_expert):
    first, second = (cli.load_run(out, bc.Config, bc.make_train, "bc", dataset=cartpole_expert) for out in cli_runs)
    assert trees_equal(first.state, second.state)  # seeds 0 and 1, trained twice: bitwise the same
    seed0, seed1 = (jax.tree.map(lambda x: x[i], first.state) for i in range(2))
    assert not trees_equal(seed0.params, seed1.params)


def test_cli_save_load_gives_identical_actions(cli_runs, cartpole_expert):
    loaded = cli.load_run(cli_runs[0], bc.Config, bc.make_train, "bc", dataset=cartpole_expert)
    assert loaded.config == CLI_CONFIG and loaded.update == 60
    obs = cartpole_expert.observations[:64]
    trainer = bc.make_train(CLI_CONFIG, cartpole_expert)
    for run in range(2):
        state = jax.tree.map(lambda x: x[run], loaded.state)
        np.testing.assert_array_equal(np.asarray(loaded.act(run, obs)), np.asarray(trainer.act(state, obs, None)))


# ---------------------------------------------------------------------------------------------
# Learning checks (4 seeds in one program each)
# ---------------------------------------------------------------------------------------------
@pytest.mark.learning
def test_discrete_bc_reaches_the_expert_on_cartpole(cartpole_expert):
    trainer = bc.make_train(bc.Config(env="CartPole-v1", num_updates=2_000, **SMALL), cartpole_expert)
    states, metrics = train_seeds(trainer, SEEDS)
    returns = eval_returns(trainer, states, len(SEEDS))
    assert np.asarray(metrics["accuracy"])[:, -100:].mean() > 0.9
    assert returns.mean() > 450, returns  # the scripted expert balances for all 500 steps


@pytest.mark.learning
def test_continuous_bc_recovers_the_expert_on_pendulum(pendulum_expert):
    trainer = bc.make_train(bc.Config(num_updates=2_000, **SMALL), pendulum_expert)
    states, _ = train_seeds(trainer, SEEDS)
    scores = data_lib.normalized_score("Pendulum-v1", eval_returns(trainer, states, len(SEEDS)), pendulum_expert.info)
    assert scores.mean() > 80, scores
