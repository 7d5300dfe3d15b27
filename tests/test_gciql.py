"""Tests of agents/goal_conditioned/gciql.py: the losses (exact values), config and dataset errors
before compiling, determinism and save -> load -> identical actions through the CLI, and a learning
check on a small PointMaze-Open-v0 navigate dataset (seeds vmapped in one program)."""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.goal_conditioned import gciql
from jaxrl import data as data_lib
from jaxrl.config import ConfigError
from offline_checks import random_policy_success
import offline_checks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_dataset  # noqa: E402

ENV = "PointMaze-Open-v0"


@pytest.fixture(scope="module")
def navigate(tmp_path_factory):
    """30 noisy-oracle navigate episodes of 1000 steps on the open maze (3e4 transitions), saved."""
    path = tmp_path_factory.mktemp("gciql_data") / "open-navigate.npz"
    dataset, _ = make_dataset.build(ENV, "navigate", 30_000, 0, path, quiet=True)
    return dataset, path


# ---------------------------------------------------------------------------------------------
# Losses and configuration
# ---------------------------------------------------------------------------------------------
def test_expectile_loss():
    diff = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(np.asarray(gciql.expectile_loss(diff, 0.9)), [0.1 * 4, 0.1 * 0.25, 0, 0.9 * 0.25, 0.9 * 4],
                               rtol=1e-6)


def test_awr_loss_weights_log_likelihood_by_clipped_exponentiated_advantage():
    mean = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    action = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    advantage = jnp.array([0.0, 1.0, 10.0])
    log_2pi = np.log(2 * np.pi)
    logp = np.array([-log_2pi, -0.5 - log_2pi, -1.0 - log_2pi])   # N(a; mean, I) in 2 dimensions
    weights = np.array([1.0, np.exp(2.0), 100.0])                   # α = 2; exp(20) is clipped at 100
    expected = -(weights * logp).mean()
    np.testing.assert_allclose(float(gciql.awr_actor_loss(mean, action, advantage, 2.0)), expected, rtol=1e-5)
    # no gradient flows into the advantage
    grad = jax.grad(lambda adv: gciql.awr_actor_loss(mean, action, adv, 2.0))(advantage)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_ddpgbc_loss_normalizes_q_by_its_mean_magnitude():
    q = jnp.array([-2.0, -4.0])
    mean, action = jnp.zeros((2, 2)), jnp.ones((2, 2))
    log_2pi = np.log(2 * np.pi)
    expected = 3.0 / 3.0 - 0.5 * (-1.0 - log_2pi)       # −mean(q)/mean|q| − α mean log π, α = 0.5
    np.testing.assert_allclose(float(gciql.ddpgbc_actor_loss(q, mean, action, 0.5)), expected, rtol=1e-6)


@pytest.mark.parametrize("override, message", [
    (dict(actor_loss="sac"), "actor_loss must be one of awr, ddpgbc"),
    (dict(expectile=1.0), "expectile"),
    (dict(tau=0.0), "tau"),
    (dict(alpha=-1.0), "alpha"),
    (dict(value_p_curgoal=0.5), "value goal probabilities"),
    (dict(actor_p_trajgoal=0.5), "actor goal probabilities"),
    (dict(batch_size=0), "batch_size"),
    (dict(success_radius=-0.1), "success_radius"),
])
def test_bad_config_raises_before_compiling(navigate, override, message):
    with pytest.raises(ConfigError, match=message):
        gciql.make_train(gciql.Config(**override), navigate[0])


def test_dataset_of_another_env_raises_clear_error(navigate):
    with pytest.raises(data_lib.DatasetError, match="PointMaze-Open-v0.*PointMaze-UMaze-v0"):
        gciql.make_train(gciql.Config(env="PointMaze-UMaze-v0"), navigate[0])
    with pytest.raises(ConfigError, match="goal-conditioned"):
        gciql.make_train(gciql.Config(env="Pendulum-v1"), navigate[0].replace(
            info=data_lib.DatasetInfo(env_id="Pendulum-v1")))


# ---------------------------------------------------------------------------------------------
# Determinism and the CLI
# ---------------------------------------------------------------------------------------------
TINY = gciql.Config(num_updates=30, batch_size=32, hidden_size=16, num_layers=1)


@pytest.fixture(scope="module")
def cli_runs(navigate, tmp_path_factory):
    dataset, path = navigate
    return offline_checks.cli_runs(tmp_path_factory, gciql.make_train, TINY, dataset, "gciql", 30,
                                   dataset_file=str(path), eval_episodes=5, scored=False)


def test_summary_reports_success_per_task(cli_runs):
    offline_checks.check_task_report(cli_runs[0])


def test_same_seed_same_params(cli_runs, navigate):
    offline_checks.check_same_seed_same_params(gciql, "gciql", cli_runs, navigate[0])


def test_cli_save_load_gives_identical_actions(cli_runs, navigate):
    offline_checks.check_save_load_identical_actions(gciql, "gciql", "gcbc", TINY, cli_runs[0], navigate[0], 30)


# ---------------------------------------------------------------------------------------------
# Learning check
# ---------------------------------------------------------------------------------------------
SEEDS = range(4)
EPISODES = 50                     # 10 per evaluation task
LEARN = gciql.Config(num_updates=3_000, batch_size=256, hidden_size=64, num_layers=2, lr=1e-3, tau=0.02)


@pytest.mark.learning
def test_gciql_reaches_the_open_maze_goals(navigate):
    # Budget: 3,000 updates of batch 256 with 64x64 networks, lr 1e-3 and τ 0.02 (faster than OGBench's
    # 3e-4 / 0.005 over 1M steps), the default AWR temperature 10. Measured (50 episodes per seed, 10
    # per task): mean success 0.79 over seeds 0-3 and 0.80 over seeds 4-7 (single seeds 0.28 to 1.0);
    # a uniform-random policy reaches 0.00 of 200 episodes (two keys). GCBC on this data: 0.00.
    dataset = navigate[0]
    trainer = gciql.make_train(LEARN, dataset)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in SEEDS])

    def run(keys, data):
        states, metrics = jax.vmap(trainer, in_axes=(0, None))(keys, data)
        evaluation = jax.vmap(lambda s, k: trainer.evaluate(s, jax.random.fold_in(k, 7), EPISODES))(states, keys)
        return metrics, evaluation["success"]

    metrics, success = jax.jit(run)(keys, trainer.data)
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    success = np.asarray(success, np.float64).mean(axis=1)
    baseline = random_policy_success(ENV, keys[:2])
    assert baseline.max() < 0.05, baseline
    assert success.mean() > 0.5, success
