"""Tests of agents/goal_conditioned/qrl.py: the interval quasimetric embedding (hand cases, a
brute-force union length, the quasimetric axioms on random points), the QRL losses (exact values and
gradients), config and dataset errors before compiling, determinism and save -> load -> identical
actions through the CLI, and a learning check on a small PointMaze-Open-v0 navigate dataset."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.goal_conditioned import qrl
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
    path = tmp_path_factory.mktemp("qrl_data") / "open-navigate.npz"
    dataset, _ = make_dataset.build(ENV, "navigate", 30_000, 0, path, quiet=True)
    return dataset, path


# ---------------------------------------------------------------------------------------------
# IQE
# ---------------------------------------------------------------------------------------------
def test_iqe_by_hand():
    # two components of two coordinates: intervals [x_j, max(x_j, y_j)]
    x = jnp.array([0.0, 2.0, 0.0, 0.5])
    y = jnp.array([1.0, 3.0, 1.0, 3.0])
    # component 1: [0, 1] ∪ [2, 3] = 2; component 2: [0, 1] ∪ [0.5, 3] = [0, 3] = 3
    np.testing.assert_allclose(np.asarray(qrl.iqe_components(x, y, 2)), [2.0, 3.0])
    np.testing.assert_allclose(float(qrl.iqe(x, y, 2, 0.5)), 0.5 * 3.0 + 0.5 * 2.5)     # maxmean
    np.testing.assert_allclose(float(qrl.iqe(x, y, 2, 0.0)), 2.5)                       # mean
    np.testing.assert_allclose(float(qrl.iqe(x, y, 2, 1.0)), 3.0)                       # max
    # backwards every interval is empty: the distance is asymmetric
    np.testing.assert_allclose(np.asarray(qrl.iqe_components(y, x, 2)), [0.0, 0.0])
    # component 1: equal starts (ties) and nested intervals [0, 1], [0, 1] in [0, 3] -> 3;
    # component 2: [0.2, 1] and two empty intervals ([1, 1] since y < x, and [5, 5]) -> 0.8
    np.testing.assert_allclose(np.asarray(qrl.iqe_components(jnp.array([0.0, 0.0, 0.0, 0.2, 1.0, 5.0]),
                                                             jnp.array([1.0, 1.0, 3.0, 1.0, 0.0, 5.0]), 3)),
                               [3.0, 0.8], rtol=1e-6)


def union_length(starts, ends) -> float:
    """Length of a union of intervals, by sorting on the host (the textbook sweep)."""
    total, reach = 0.0, -np.inf
    for a, b in sorted(zip(starts, ends)):
        total += max(0.0, b - max(a, reach))
        reach = max(reach, b)
    return total


def test_iqe_components_match_a_sorted_sweep():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 16)).astype(np.float32), rng.normal(size=(20, 16)).astype(np.float32)
    got = np.asarray(qrl.iqe_components(jnp.asarray(x), jnp.asarray(y), 8))
    expected = [[union_length(x[n, 8 * i:8 * i + 8], np.maximum(x, y)[n, 8 * i:8 * i + 8]) for i in range(2)]
                for n in range(20)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_iqe_is_a_quasimetric_on_random_points():
    kx, ky, kz = jax.random.split(jax.random.PRNGKey(0), 3)
    x, y, z = (jax.random.normal(k, (2000, 32)) for k in (kx, ky, kz))
    d = lambda a, b: np.asarray(qrl.iqe(a, b, 8, 0.3))       # noqa: E731
    np.testing.assert_array_equal(d(x, x), 0.0)
    assert np.all(d(x, y) >= 0)
    assert np.all(d(x, z) <= d(x, y) + d(y, z) + 1e-5)
    assert np.abs(d(x, y) - d(y, x)).max() > 0.1             # not a metric: asymmetric


# ---------------------------------------------------------------------------------------------
# Losses and configuration
# ---------------------------------------------------------------------------------------------
def test_step_constraint_and_dual_ascent_by_hand():
    d_step = jnp.array([0.5, 1.0, 3.0, 2.0])
    np.testing.assert_allclose(float(qrl.step_constraint(d_step)), (0 + 0 + 4 + 1) / 4)
    d_random = jnp.array([0.0, 500.0])
    expected_random = (100 * np.log1p(np.exp(5.0)) + 100 * np.log(2.0)) / 2     # 100 softplus(5 − d / 100)
    np.testing.assert_allclose(float(qrl.random_goal_loss(d_random)), expected_random, rtol=1e-6)
    lam, eps_sq = 2.0, 0.05
    loss, constraint = qrl.qrl_value_loss(d_random, d_step, lam, eps_sq)
    np.testing.assert_allclose(float(loss), expected_random + lam * 1.25 + lam * (eps_sq - 1.25), rtol=1e-6)
    # gradients: λ sees ε² − C (< 0 while violated, so descent raises λ); d(s, s') sees λ ∂C/∂d
    g_step, g_lam = jax.grad(lambda d, l: qrl.qrl_value_loss(d_random, d, l, eps_sq)[0], argnums=(0, 1))(d_step, lam)
    np.testing.assert_allclose(float(g_lam), eps_sq - 1.25, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_step), lam * 2 * np.array([0.0, 0.0, 2.0, 1.0]) / 4, rtol=1e-6)


def test_ddpgbc_loss_normalizes_q_by_its_mean_magnitude():
    q = jnp.array([-2.0, -4.0])
    mean, action = jnp.zeros((2, 2)), jnp.ones((2, 2))
    expected = 3.0 / 3.0 - 0.5 * (-1.0 - np.log(2 * np.pi))     # −mean(q)/mean|q| − α mean log π, α = 0.5
    np.testing.assert_allclose(float(qrl.ddpgbc_actor_loss(q, mean, action, 0.5)), expected, rtol=1e-6)


@pytest.mark.parametrize("override, message", [
    (dict(actor_loss="sac"), "actor_loss must be one of ddpgbc, awr"),
    (dict(latent_dim=20), "latent_dim=20 must be divisible by dim_per_component=8"),
    (dict(epsilon_sq=0.0), "epsilon_sq"),
    (dict(alpha=-1.0), "alpha"),
    (dict(value_p_randomgoal=0.5), "value goal probabilities"),
    (dict(actor_p_trajgoal=0.5), "actor goal probabilities"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_config_raises_before_compiling(navigate, override, message):
    with pytest.raises(ConfigError, match=message):
        qrl.make_train(qrl.Config(**override), navigate[0])


def test_dataset_of_another_env_raises_clear_error(navigate):
    with pytest.raises(data_lib.DatasetError, match="PointMaze-Open-v0.*PointMaze-UMaze-v0"):
        qrl.make_train(qrl.Config(env="PointMaze-UMaze-v0"), navigate[0])
    with pytest.raises(ConfigError, match="goal-conditioned"):
        qrl.make_train(qrl.Config(env="Pendulum-v1"), navigate[0].replace(
            info=data_lib.DatasetInfo(env_id="Pendulum-v1")))


# ---------------------------------------------------------------------------------------------
# Determinism and the CLI
# ---------------------------------------------------------------------------------------------
TINY = qrl.Config(num_updates=30, batch_size=32, hidden_size=16, num_layers=1, latent_dim=16)


def test_awr_variant_trains_without_dynamics(navigate):
    config = dataclasses.replace(TINY, actor_loss="awr", alpha=1.0, num_updates=5)
    trainer = qrl.make_train(config, navigate[0])
    state, metrics = jax.jit(trainer)(jax.random.PRNGKey(0), trainer.data)
    assert "dynamics_loss" not in metrics and np.all(np.isfinite(np.asarray(metrics["actor_loss"])))
    assert np.all(np.asarray(metrics["d_random_mean"]) >= 0)


@pytest.fixture(scope="module")
def cli_runs(navigate, tmp_path_factory):
    dataset, path = navigate
    return offline_checks.cli_runs(tmp_path_factory, qrl.make_train, TINY, dataset, "qrl", 30,
                                   dataset_file=str(path), eval_episodes=5, scored=False)


def test_summary_reports_success_per_task(cli_runs):
    offline_checks.check_task_report(cli_runs[0])


def test_same_seed_same_params(cli_runs, navigate):
    offline_checks.check_same_seed_same_params(qrl, "qrl", cli_runs, navigate[0])


def test_cli_save_load_gives_identical_actions(cli_runs, navigate):
    offline_checks.check_save_load_identical_actions(qrl, "qrl", "gciql", TINY, cli_runs[0], navigate[0], 30)


# ---------------------------------------------------------------------------------------------
# Learning check
# ---------------------------------------------------------------------------------------------
SEEDS = range(4)
EPISODES = 50                     # 10 per evaluation task
LEARN = qrl.Config(num_updates=1_500, batch_size=128, hidden_size=64, num_layers=2, latent_dim=32, lr=1e-3)


@pytest.mark.learning
def test_qrl_reaches_the_open_maze_goals(navigate):
    # Budget: 1,500 updates of batch 128 with 64x64 networks, a 32-dimensional latent (4 IQE components
    # of 8) and lr 1e-3 (OGBench: 512-wide, latent 512, lr 3e-4, batch 1024, 1M steps), the default
    # DDPG+BC actor (α = 0.003) on the latent dynamics. Measured (50 episodes per seed, 10 per task):
    # mean success 0.71 over seeds 0-3 (1.0, 1.0, 0.8, 0.04) and 0.995 over seeds 4-7; a uniform-random
    # policy reaches 0.00 of 200 episodes (two keys). GCBC on this data: 0.00.
    dataset = navigate[0]
    trainer = qrl.make_train(LEARN, dataset)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in SEEDS])

    def run(keys, data):
        states, metrics = jax.vmap(trainer, in_axes=(0, None))(keys, data)
        evaluation = jax.vmap(lambda s, k: trainer.evaluate(s, jax.random.fold_in(k, 7), EPISODES))(states, keys)
        return metrics, evaluation["success"]

    metrics, success = jax.jit(run)(keys, trainer.data)
    assert np.all(np.isfinite(np.asarray(metrics["value_loss"])))
    # dual ascent: the one-step constraint is violated at this budget, so λ only grows
    lam = np.asarray(metrics["lambda"])
    assert np.all(lam[:, -1] > lam[:, 0])
    success = np.asarray(success, np.float64).mean(axis=1)
    baseline = random_policy_success(ENV, keys[:2])
    assert baseline.max() < 0.05, baseline
    assert success.mean() > 0.4, success
