"""Tests of agents/offline/cql_discrete.py (DQN-based CQL(H)): the regularizer and target against
direct formulas, clear errors, probe datasets with known answers plus a one-action dataset where CQL
must push the unseen action down (ONE compiled program, probes x seeds vmapped), save -> load ->
identical actions and determinism through the CLI, and learning checks on the scripted CartPole data
(expert and medium datasets x seeds in one program)."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.offline import cql_discrete as cqd
from jaxrl import cli
from jaxrl import data as data_lib
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer
from offline_data import cartpole_dataset


def seed_keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


@pytest.fixture(scope="module")
def cartpole():
    return {kind: cartpole_dataset(kind, n=10_000) for kind in ("expert", "medium")}


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------
def test_regularizer_is_cross_entropy_of_the_data_action():
    q = jnp.array([[1.0, 2.0, -0.5], [0.3, 0.3, 0.3]])
    action = jnp.array([2, 1])
    got = np.asarray(cqd.cql_regularizer(q, action))
    expected = -np.asarray(jax.nn.log_softmax(q))[[0, 1], [2, 1]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got[1], np.log(3.0), rtol=1e-6)   # flat Q: log |A|
    # Its gradient lowers every action by its softmax weight and raises the data action by 1.
    grad = np.asarray(jax.grad(lambda x: cqd.cql_regularizer(x, action).sum())(q))
    np.testing.assert_allclose(grad, np.asarray(jax.nn.softmax(q)) - np.eye(3)[[2, 1]], atol=1e-6)


def test_double_dqn_target():
    reward, terminated = jnp.array([1.0, 0.5]), jnp.array([0.0, 1.0])
    next_target, next_online = jnp.array([[1.0, 3.0], [5.0, 7.0]]), jnp.array([[4.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(cqd.td_target(reward, terminated, next_target, next_online, 0.5, False), [2.5, 0.5])
    np.testing.assert_allclose(cqd.td_target(reward, terminated, next_target, next_online, 0.5, True), [1.5, 0.5])


# ---------------------------------------------------------------------------------------------
# Clear errors before compiling
# ---------------------------------------------------------------------------------------------
def test_box_action_env_raises_clear_config_error():
    n = 8
    z = jnp.zeros(n)
    data = data_lib.Dataset(jnp.zeros((n, 3)), jnp.zeros((n, 1)), z, jnp.zeros((n, 3)), z, z,
                            info=data_lib.DatasetInfo(env_id="Pendulum-v1", size=n))
    with pytest.raises(ConfigError, match=r"CQL \(discrete\) supports only discrete.*Pendulum-v1.*Box"):
        cqd.make_train(cqd.Config(env="Pendulum-v1"), data)


def test_dataset_of_another_env_raises_clear_error(cartpole):
    with pytest.raises(data_lib.DatasetError, match=r"collected on 'CartPole-v1'.*'Acrobot-v1'"):
        cqd.make_train(cqd.Config(env="Acrobot-v1"), cartpole["expert"])


@pytest.mark.parametrize("override, message", [
    (dict(loss="l1"), "loss"), (dict(network="minatar_conv"), "image observations"),
    (dict(hidden_sizes="64,x"), "hidden_sizes"), (dict(tau=0.0), "tau"), (dict(cql_alpha=-1.0), "cql_alpha"),
    (dict(target_update_interval=0), "target_update_interval"), (dict(gamma=1.5), "gamma"),
])
def test_bad_config_raises_before_compiling(cartpole, override, message):
    with pytest.raises(ConfigError, match=message):
        cqd.make_train(cqd.Config(**override), cartpole["expert"])


# ---------------------------------------------------------------------------------------------
# Probes: uniform-random-action datasets on every discrete probe, plus "one action": Probe-Action
# data where the action is always 0 (reward 0; the unseen action 1 would earn 1). Datasets x seeds
# vmapped in ONE compiled program.
# ---------------------------------------------------------------------------------------------
PROBE_GAMMA = 0.9
PROBE_SEEDS = 3
PROBE_N = 2_000
PROBES = ("Probe-Constant", "Probe-ObsReward", "Probe-TwoStep", "Probe-Action", "Probe-ObsAction", "one-action")
# Adam at 1e-2 with a soft target update every step: a probe whose obs is 0 fits only through the
# output biases, so a slow optimizer would stop the constant probe's value well short of 1/(1-γ).
PROBE_CONFIG = cqd.Config(env="Probe-Constant", num_updates=2_000, batch_size=64, lr=1e-2, gamma=PROBE_GAMMA,
                          target_update_interval=1, tau=0.1, loss="mse", hidden_sizes="32,32")
OBS = jnp.array([[0.0], [1.0], [-1.0]])  # every probe observation


def probe_data(name):
    if name == "one-action":
        policy, env_id = (lambda obs, key: jnp.zeros(obs.shape[:-1], jnp.int32)), "Probe-Action"
    else:
        policy, env_id = (lambda obs, key: jax.random.randint(key, obs.shape[:-1], 0, 2)), name
    return data_lib.collect(env_id, policy, PROBE_N, jax.random.PRNGKey(7), num_envs=4)


@pytest.fixture(scope="module")
def probes():
    """Per probe: Q (seeds, obs, action) on OBS and greedy actions (seeds, obs)."""
    info = data_lib.DatasetInfo(env_id=PROBE_CONFIG.env, size=PROBE_N)
    datasets = [probe_data(p).replace(info=info) for p in PROBES]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *datasets)
    trainer = cqd.make_train(PROBE_CONFIG, datasets[0])
    network = cqd.make_network(PROBE_CONFIG, 2)

    def one(key, data):
        state, _ = trainer(key, data)
        return network.apply(state.params, OBS), trainer.act(state, OBS, key)

    q, greedy = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0)))(
        seed_keys(range(PROBE_SEEDS)), stacked)
    return {name: (np.asarray(q[i]), np.asarray(greedy[i])) for i, name in enumerate(PROBES)}


def test_constant_reward_value_bootstraps_through_truncation(probes):
    q, _ = probes["Probe-Constant"]
    # Q = 1/(1-γ) = 10 for both actions only if the time limit bootstraps (as termination: ≈ 5.3).
    np.testing.assert_allclose(q[:, 0], 1.0 / (1.0 - PROBE_GAMMA), atol=0.5)


def test_obs_dependent_reward_value(probes):
    q, _ = probes["Probe-ObsReward"]
    np.testing.assert_allclose(q[:, 1], 1.0, atol=0.15)
    np.testing.assert_allclose(q[:, 2], -1.0, atol=0.15)


def test_two_step_discounting(probes):
    q, _ = probes["Probe-TwoStep"]
    np.testing.assert_allclose(q[:, 0], PROBE_GAMMA, atol=0.15)
    np.testing.assert_allclose(q[:, 1], 1.0, atol=0.15)


def test_greedy_action_on_action_probes(probes):
    _, greedy = probes["Probe-Action"]
    assert (greedy[:, 0] == 1).all(), greedy
    _, greedy = probes["Probe-ObsAction"]
    assert (greedy[:, 1] == 1).all() and (greedy[:, 2] == 0).all(), greedy


def test_cql_pushes_down_the_action_outside_the_dataset(probes):
    q, greedy = probes["one-action"]
    # Only action 0 (reward 0) is in the data; action 1 truly earns 1 but CQL keeps it below.
    np.testing.assert_allclose(q[:, 0, 0], 0.0, atol=0.2)
    assert (q[:, 0, 1] < q[:, 0, 0] - 0.5).all(), q[:, 0]
    assert (greedy[:, 0] == 0).all(), greedy


# ---------------------------------------------------------------------------------------------
# The runner: save -> load -> identical actions, determinism (Double DQN, MSE)
# ---------------------------------------------------------------------------------------------
CLI_CONFIG = cqd.Config(num_updates=200, batch_size=32, lr=1e-3, target_update_interval=50, hidden_sizes="32",
                        double_dqn=True, loss="mse")


@pytest.fixture(scope="module")
def two_runs(cartpole, tmp_path_factory):
    root = tmp_path_factory.mktemp("cql_discrete")
    runs = []
    for name in ("a", "b"):
        options = cli.RunOptions(num_seeds=2, out=str(root / name), log_points=2, eval_episodes=2, quiet=True,
                                 plot=False)
        summary = cli.train_and_evaluate(CLI_CONFIG, cqd.make_train, options, "cql_discrete", dataset=cartpole["expert"])
        rows = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
        runs.append((root / name, summary, rows))
    return runs


def test_save_load_identical_actions_and_determinism(two_runs, cartpole):
    (out_a, summary_a, rows_a), (out_b, summary_b, rows_b) = two_runs
    assert {"loss", "td_loss", "cql_loss", "q_data", "episode_return", "normalized_score"} <= set(rows_a[0])
    keys = [k for k in rows_a[0] if k not in ("run", "seed", "sweep", "update")]
    for ra, rb in zip(rows_a, rows_b):
        assert all(ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]) for k in keys), (ra, rb)
    assert [r["eval_return"] for r in summary_a["runs"]] == [r["eval_return"] for r in summary_b["runs"]]
    a = cli.load_run(out_a, cqd.Config, cqd.make_train, "cql_discrete", dataset=cartpole["expert"])
    b = cli.load_run(out_b, cqd.Config, cqd.make_train, "cql_discrete", dataset=cartpole["expert"])
    assert a.update == CLI_CONFIG.num_updates and a.config == CLI_CONFIG
    obs = cartpole["expert"].observations[:64]
    for run in range(2):
        np.testing.assert_array_equal(np.asarray(a.act(run, obs)), np.asarray(b.act(run, obs)))


# ---------------------------------------------------------------------------------------------
# Learning: expert and medium CartPole data x 4 seeds in one program
# ---------------------------------------------------------------------------------------------
LEARN_SEEDS = 4
LEARN_CONFIG = cqd.Config(num_updates=1_500, batch_size=64, lr=1e-3, target_update_interval=100, hidden_sizes="64,64")


@pytest.fixture(scope="module")
def learned(cartpole):
    kinds = ("expert", "medium")
    info = cartpole["expert"].info
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[cartpole[k].replace(info=info) for k in kinds])
    trainer = cqd.make_train(LEARN_CONFIG, cartpole["expert"])

    def one(key, data):
        state, metrics = trainer(key, data)
        result = evaluate_trainer(trainer, state, jax.random.fold_in(key, 1), 16)
        return result["return"].mean(), metrics["data_action_agreement"][-100:].mean()

    returns, agreement = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0)))(
        seed_keys(range(LEARN_SEEDS)), stacked)
    out = {}
    for i, kind in enumerate(kinds):
        r = np.asarray(returns[i])
        score = data_lib.normalized_score("CartPole-v1", r, cartpole[kind].info)
        print(f"CQL-discrete CartPole {kind}: return {r.mean():.1f} ± {r.std():.1f}, "
              f"normalized {score.mean():.1f} ± {score.std():.1f}")
        out[kind] = (r, score, np.asarray(agreement[i]))
    return out


@pytest.mark.learning
def test_expert_data_reaches_near_500(learned):
    returns, _, agreement = learned["expert"]
    assert returns.mean() > 450, returns
    assert agreement.mean() > 0.7, agreement   # the greedy policy mostly agrees with the expert's actions


@pytest.mark.learning
def test_medium_data_beats_random_clearly(learned, cartpole):
    returns, scores, _ = learned["medium"]
    random_return = cartpole["medium"].info.random_return
    assert returns.mean() > 5 * random_return, (returns, random_return)
    assert scores.mean() > 40, scores
