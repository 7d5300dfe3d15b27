"""Tests of agents/offline/cql.py (continuous CQL): the regularizer's pieces against direct formulas,
clear errors, probe datasets with known answers plus a one-action dataset where CQL must push the
unseen actions down (all in ONE compiled program, probes x seeds vmapped), the Lagrangian α', save ->
load -> identical actions and determinism through the CLI, and a learning check on the scripted
Pendulum expert data."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.offline import cql
from jaxrl import cli
from jaxrl import data as data_lib
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer
from offline_data import pendulum_dataset


def seed_keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


@pytest.fixture(scope="module")
def pendulum_expert():
    return pendulum_dataset("expert", n=10_000)


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------
def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = jnp.array([[0.3, -1.2]]), jnp.array([[-0.5, 0.2]])
    a, logp = cql.tanh_gaussian_sample(jax.random.PRNGKey(3), mean, log_std)
    u = np.arctanh(np.asarray(a, np.float64))
    std = np.exp(np.asarray(log_std, np.float64))
    normal = -0.5 * ((u - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = (normal - np.log(1 - np.tanh(u) ** 2)).sum(-1)
    np.testing.assert_allclose(np.asarray(logp), expected, rtol=1e-4, atol=1e-3)


def test_importance_sampled_logsumexp_matches_direct_formula():
    rng = np.random.default_rng(0)
    qr, qc, qn, lc, ln = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(5))
    qd = rng.normal(size=3).astype(np.float32)
    got = cql.cql_logsumexp(qr, qc, lc, qn, ln, qd, action_dim=2, temp=0.5, importance_sample=True)
    cat = np.concatenate([qr + 2 * np.log(2), qn - ln, qc - lc], -1) / 0.5
    expected = 0.5 * np.log(np.exp(cat).sum(-1))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    plain = cql.cql_logsumexp(qr, qc, lc, qn, ln, qd, action_dim=2, temp=1.0, importance_sample=False)
    expected = np.log(np.exp(np.concatenate([qr, qd[:, None], qn, qc], -1)).sum(-1))
    np.testing.assert_allclose(np.asarray(plain), expected, rtol=1e-5)


def test_lagrange_dual_gradient_sign():
    """d loss / d log α' < 0 (α' rises) when the gap exceeds τ, > 0 (α' falls) when it is below."""
    grad = jax.grad(cql.lagrange_alpha_prime_loss)
    assert float(grad(jnp.float32(0.0), jnp.array([3.0, 3.0]), 1.0)) < 0
    assert float(grad(jnp.float32(0.0), jnp.array([0.5, 0.5]), 1.0)) > 0


# ---------------------------------------------------------------------------------------------
# Clear errors before compiling
# ---------------------------------------------------------------------------------------------
def small_dataset(env_id, obs_dim, actions):
    n = actions.shape[0]
    z = jnp.zeros(n, jnp.float32)
    return data_lib.Dataset(jnp.zeros((n, obs_dim)), actions, z, jnp.zeros((n, obs_dim)), z, z,
                            info=data_lib.DatasetInfo(env_id=env_id, size=n))


def test_discrete_env_raises_clear_config_error():
    data = small_dataset("CartPole-v1", 4, jnp.zeros(8, jnp.int32))
    with pytest.raises(ConfigError, match=r"CQL supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        cql.make_train(cql.Config(env="CartPole-v1"), data)


def test_dataset_of_another_env_raises_clear_error(pendulum_expert):
    with pytest.raises(data_lib.DatasetError, match=r"collected on 'Pendulum-v1'.*'MountainCarContinuous-v0'"):
        cql.make_train(cql.Config(env="MountainCarContinuous-v0"), pendulum_expert)
    wrong_shape = small_dataset("Pendulum-v1", 3, jnp.zeros((8, 2)))
    with pytest.raises(data_lib.DatasetError, match="actions"):
        cql.make_train(cql.Config(), wrong_shape)


@pytest.mark.parametrize("override, message", [
    (dict(tau=0.0), "tau"), (dict(gamma=1.5), "gamma"), (dict(cql_alpha=-1.0), "cql_alpha"),
    (dict(num_sampled_actions=0), "num_sampled_actions"), (dict(batch_size=0), "batch_size"),
    (dict(cql_temp=0.0), "cql_temp"), (dict(num_layers=0), "num_layers"),
])
def test_bad_config_raises_before_compiling(pendulum_expert, override, message):
    with pytest.raises(ConfigError, match=message):
        cql.make_train(cql.Config(**override), pendulum_expert)


# ---------------------------------------------------------------------------------------------
# Probes: uniform-random-action datasets on every continuous probe, plus "one action": Probe-Action
# data where the action is always -0.5 (reward 0.0; the unseen +0.5 would earn 1.0). All datasets
# have the same shapes, so they are stacked and vmapped with the seeds: ONE compiled program.
# ---------------------------------------------------------------------------------------------
PROBE_GAMMA = 0.9
PROBE_SEEDS = 2
PROBE_N = 2_000
PROBES = ("Probe-Constant", "Probe-ObsReward", "Probe-TwoStep", "Probe-Action", "Probe-ObsAction", "one-action")
# CQL's α per probe (a float field, so it is vmapped with the datasets): with uniform data the
# regularizer flattens Q across actions in proportion to α, so the action probes, which need the
# shape of Q over actions, use a small one; the one-action dataset uses the default 10.
PROBE_CQL_ALPHA = {"Probe-Action": 0.5, "Probe-ObsAction": 0.5}
PROBE_CONFIG = cql.Config(
    env="Probe-Constant-Continuous", num_updates=1_000, batch_size=64, policy_lr=1e-3, q_lr=3e-3, gamma=PROBE_GAMMA,
    tau=0.1, num_sampled_actions=4, hidden_size=32, num_layers=2, normalize_observations=False,
    autotune=False, alpha=0.02,  # a small fixed temperature: the greedy action sits at the argmax of Q
)
OBS = jnp.array([[0.0], [1.0], [-1.0]])      # every probe observation
ACTIONS = jnp.array([-1.0, -0.5, 0.0, 0.5, 1.0])
INTERIOR = slice(1, 4)                       # actions -0.5, 0, 0.5 (the data is thinnest at the bounds)


def probe_data(name):
    if name == "one-action":
        policy, env_id = (lambda obs, key: jnp.full(obs.shape[:-1] + (1,), -0.5)), "Probe-Action-Continuous"
    else:
        policy = lambda obs, key: jax.random.uniform(key, obs.shape[:-1] + (1,), minval=-1.0, maxval=1.0)  # noqa: E731
        env_id = name + "-Continuous"
    return data_lib.collect(env_id, policy, PROBE_N, jax.random.PRNGKey(7), num_envs=4)


@pytest.fixture(scope="module")
def probes():
    """Per probe: Q (seeds, critic, obs, action) on OBS x ACTIONS and greedy actions (seeds, obs)."""
    info = data_lib.DatasetInfo(env_id=PROBE_CONFIG.env, size=PROBE_N)
    datasets = [probe_data(p).replace(info=info) for p in PROBES]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *datasets)
    alphas = jnp.array([PROBE_CQL_ALPHA.get(p, PROBE_CONFIG.cql_alpha) for p in PROBES])
    critic = cql.Critic(PROBE_CONFIG.hidden_size, PROBE_CONFIG.num_layers, PROBE_CONFIG.orthogonal_init)

    def one(key, cql_alpha, data):
        trainer = cql.make_train(dataclasses.replace(PROBE_CONFIG, cql_alpha=cql_alpha), datasets[0])
        state, _ = trainer(key, data)
        obs, act = jnp.repeat(OBS, len(ACTIONS), 0), jnp.tile(ACTIONS, len(OBS))[:, None]
        q = jax.vmap(critic.apply, in_axes=(0, None, None))(state.q_params, obs, act).reshape(2, len(OBS), -1)
        return q, trainer.act(state, OBS, key)[:, 0]

    run = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None, None)), in_axes=(None, 0, 0)))
    q, greedy = run(seed_keys(range(PROBE_SEEDS)), alphas, stacked)
    return {name: (np.asarray(q[i]), np.asarray(greedy[i])) for i, name in enumerate(PROBES)}


def test_constant_reward_value_bootstraps_through_truncation(probes):
    q, _ = probes["Probe-Constant"]
    # Reward 1 forever, cut after 10 steps: Q = 1/(1-γ) = 10 for every action only if truncation
    # bootstraps (as termination it would be about 5.3).
    np.testing.assert_allclose(q[:, :, 0], 1.0 / (1.0 - PROBE_GAMMA), atol=1.0)


def test_obs_dependent_reward_value(probes):
    q, _ = probes["Probe-ObsReward"]
    np.testing.assert_allclose(q[:, :, 1, INTERIOR], 1.0, atol=0.15)
    np.testing.assert_allclose(q[:, :, 2, INTERIOR], -1.0, atol=0.15)


def test_two_step_discounting(probes):
    q, _ = probes["Probe-TwoStep"]
    np.testing.assert_allclose(q[:, :, 0, INTERIOR], PROBE_GAMMA, atol=0.15)  # reward 1 one step later
    np.testing.assert_allclose(q[:, :, 1, INTERIOR], 1.0, atol=0.15)


def test_greedy_action_on_action_probes(probes):
    _, greedy = probes["Probe-Action"]
    np.testing.assert_allclose(greedy[:, 0], 0.5, atol=0.2)
    _, greedy = probes["Probe-ObsAction"]
    np.testing.assert_allclose(greedy[:, 1], 0.5, atol=0.2)
    np.testing.assert_allclose(greedy[:, 2], -0.5, atol=0.2)


def test_cql_pushes_down_actions_outside_the_dataset(probes):
    q, greedy = probes["one-action"]
    q_obs0 = q[:, :, 0]                                  # (seeds, critics, ACTIONS) at obs 0
    data_q = q_obs0[..., 1]                              # the dataset's action -0.5 earns 0
    # Q at the data stays near its TD target 0 (the regularizer's push and pull balance there; the
    # estimate is noisy with only one action in the data) ...
    assert (np.abs(data_q) < 2.0).all(), data_q
    # ... while every other action is pushed clearly below it, also +0.5, whose true value (1.0)
    # is the best of all: nothing in the data says so.
    others = np.delete(q_obs0, 1, axis=-1)
    assert (others < data_q[..., None] - 1.0).all(), q_obs0
    # ... so the greedy policy stays with the data.
    np.testing.assert_allclose(greedy[:, 0], -0.5, atol=0.25)


# ---------------------------------------------------------------------------------------------
# The runner: Lagrangian α' (swept target gap), save -> load -> identical actions, determinism
# ---------------------------------------------------------------------------------------------
CLI_CONFIG = cql.Config(num_updates=60, batch_size=32, hidden_size=32, num_layers=2, num_sampled_actions=2,
                        lagrange=True, alpha_prime_lr=1e-2, init_log_alpha_prime=0.0)
GAPS = "target_action_gap=-1000,1000"


def cli_run(out, dataset):
    options = cli.RunOptions(num_seeds=1, out=str(out), log_points=3, eval_episodes=2, quiet=True, plot=False,
                             sweep=(GAPS,))
    summary = cli.train_and_evaluate(CLI_CONFIG, cql.make_train, options, "cql", dataset=dataset)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


@pytest.fixture(scope="module")
def two_runs(pendulum_expert, tmp_path_factory):
    root = tmp_path_factory.mktemp("cql")
    return [(root / name, *cli_run(root / name, pendulum_expert)) for name in ("a", "b")]


def test_lagrange_alpha_prime_is_nonnegative_and_moves_the_right_way(two_runs):
    _, summary, rows = two_runs[0]
    assert all(row["alpha_prime"] >= 0 for row in rows)
    last = {row["sweep"]["target_action_gap"]: row for row in rows if row["update"] == CLI_CONFIG.num_updates - 1}
    # τ = -1000: the gap is always above τ, so α' (started at 1) grows; τ = +1000: it shrinks towards 0.
    assert last[-1000.0]["alpha_prime"] > 1.5, last
    assert 0 < last[1000.0]["alpha_prime"] < 0.7, last


def test_save_load_identical_actions_and_determinism(two_runs, pendulum_expert):
    (out_a, summary_a, rows_a), (out_b, summary_b, rows_b) = two_runs
    keys = [k for k in rows_a[0] if k not in ("run", "seed", "sweep", "update")]
    for ra, rb in zip(rows_a, rows_b):
        assert all(ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]) for k in keys), (ra, rb)
    assert [r["eval_return"] for r in summary_a["runs"]] == [r["eval_return"] for r in summary_b["runs"]]
    a = cli.load_run(out_a, cql.Config, cql.make_train, "cql", dataset=pendulum_expert)
    b = cli.load_run(out_b, cql.Config, cql.make_train, "cql", dataset=pendulum_expert)
    assert a.update == CLI_CONFIG.num_updates
    obs = pendulum_expert.observations[:32]
    for run in range(2):
        np.testing.assert_array_equal(np.asarray(a.act(run, obs)), np.asarray(b.act(run, obs)))
    # The loaded policy is the one evaluated at the end of training.
    assert np.isfinite(np.asarray(a.act(0, obs))).all() and np.abs(np.asarray(a.act(0, obs))).max() <= 2.0


# ---------------------------------------------------------------------------------------------
# Learning: on expert data CQL recovers most of the expert return (4 seeds, one program)
# ---------------------------------------------------------------------------------------------
LEARN_SEEDS = 4
LEARN_CONFIG = cql.Config(num_updates=3_000, batch_size=128, hidden_size=64, num_layers=2, num_sampled_actions=4,
                          policy_lr=1e-3, alpha_lr=1e-3, q_lr=1e-3, tau=0.01)


@pytest.mark.learning
def test_recovers_expert_return_on_pendulum_expert(pendulum_expert):
    trainer = cql.make_train(LEARN_CONFIG, pendulum_expert)

    def train_and_eval(keys, data):
        states, metrics = jax.vmap(trainer, in_axes=(0, None))(keys, data)
        result = jax.vmap(lambda s, k: evaluate_trainer(trainer, s, jax.random.fold_in(k, 1), 16))(states, keys)
        return result["return"].mean(axis=1), metrics["cql_gap"][:, -100:].mean(axis=1)

    returns, gap = jax.jit(train_and_eval)(seed_keys(range(LEARN_SEEDS)), pendulum_expert)
    scores = data_lib.normalized_score("Pendulum-v1", np.asarray(returns), pendulum_expert.info)
    print(f"CQL Pendulum expert: normalized {scores.mean():.1f} ± {scores.std():.1f} (returns {np.asarray(returns)})")
    assert np.isfinite(np.asarray(gap)).all()
    assert scores.mean() > 70, scores
