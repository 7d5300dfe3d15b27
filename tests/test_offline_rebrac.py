"""Tests of agents/offline/rebrac.py: clear errors, probe datasets with known answers (every probe x
seeds in one compiled program, including the critic's BC penalty on the two-step probe), determinism,
save -> load through the CLI, and learning checks on the scripted Pendulum datasets (expert:
recovers the expert; medium-replay: beats BC)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.offline import bc, rebrac
from jaxrl import checkpoint, cli, envs
from jaxrl import data as data_lib
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer
from offline_data import pendulum_dataset

SMALL = dict(hidden_size=64, batch_size=256)  # the paper's: 256 units, batch 1024 (a quarter of the compute here)


def trees_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y, equal_nan=True)), a, b)))


def train_seeds(trainer, seeds, data=None):
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, trainer.data if data is None else data)


def normalized_scores(trainer, states, dataset, num_seeds, episodes=8):
    keys = jax.random.split(jax.random.PRNGKey(1234), num_seeds)
    result = jax.jit(jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, episodes)))(states, keys)
    returns = np.asarray(result["return"]).mean(axis=1)
    return np.asarray(data_lib.normalized_score(dataset.info.env_id, returns, dataset.info))


@pytest.fixture(scope="module")
def cartpole_small():
    """A CartPole-shaped dataset (contents irrelevant: only the error checks use it)."""
    n = 64
    z = jnp.zeros(n, jnp.float32)
    return data_lib.Dataset(jnp.zeros((n, 4)), jnp.zeros(n, jnp.int32), z, jnp.zeros((n, 4)), z, z,
                            info=data_lib.DatasetInfo(env_id="CartPole-v1", size=n))


@pytest.fixture(scope="module")
def pendulum_expert():
    return pendulum_dataset("expert")


# ---------------------------------------------------------------------------------------------
# Clear errors before compiling
# ---------------------------------------------------------------------------------------------
def test_discrete_env_raises_clear_config_error(cartpole_small):
    with pytest.raises(ConfigError, match=r"ReBRAC supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        rebrac.make_train(rebrac.Config(env="CartPole-v1"), cartpole_small)


def test_dataset_of_another_env_raises_clear_error(cartpole_small):
    with pytest.raises(data_lib.DatasetError, match=r"collected on 'CartPole-v1'.*'Pendulum-v1'"):
        rebrac.make_train(rebrac.Config(env="Pendulum-v1"), cartpole_small)


@pytest.mark.parametrize("override, message", [
    (dict(tau=0.0), "tau"), (dict(gamma=1.5), "gamma"), (dict(policy_freq=0), "policy_freq"),
    (dict(batch_size=0), "batch_size"), (dict(actor_bc_coef=-1.0), "actor_bc_coef"),
    (dict(critic_bc_coef=-0.1), "critic_bc_coef"), (dict(critic_layers=0), "critic_layers"),
])
def test_bad_config_raises_before_compiling(pendulum_expert, override, message):
    with pytest.raises(ConfigError, match=message):
        rebrac.make_train(rebrac.Config(**override), pendulum_expert)


# ---------------------------------------------------------------------------------------------
# Probes: datasets of uniform-random actions on every continuous probe, all probes x seeds in ONE
# compiled program (the probe datasets have the same shapes, so they are stacked and vmapped).
# ---------------------------------------------------------------------------------------------
PROBES = ("Probe-Constant", "Probe-ObsReward", "Probe-TwoStep", "Probe-Action", "Probe-ObsAction")
PROBE_GAMMA = 0.9
PROBE_BETA = 0.5  # critic_bc_coef: visible in the two-step probe's first value
PROBE_CONFIG = rebrac.Config(env="Probe-Action", num_updates=3_000, batch_size=64, hidden_size=64, gamma=PROBE_GAMMA,
                             tau=0.05, critic_bc_coef=PROBE_BETA)


def smoothing_noise_second_moment(config, samples=1_000_000) -> float:
    """E[clip(ε, −c, c)²] for ε ~ N(0, σ²): the target-policy smoothing noise (σ = policy_noise, c = noise_clip)."""
    eps = config.policy_noise * np.random.default_rng(0).standard_normal(samples)
    return float(np.mean(np.clip(eps, -config.noise_clip, config.noise_clip) ** 2))


def probe_datasets(n=2_000, seed=0):
    """Uniform-random-action datasets of the five continuous probes (``envs/probes.py``), written
    down directly from their definitions (no env rollout to compile), stacked on a leading axis."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, (n, 1)).astype(np.float32)
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0).astype(np.float32)
    zeros, ones = np.zeros(n, np.float32), np.ones(n, np.float32)
    step = np.arange(n)
    first = (step % 2 == 0).astype(np.float32)  # two-step episodes: obs 0 then obs 1
    every_tenth = (step % 10 == 9).astype(np.float32)
    probes = [  # (obs, reward, next_obs, terminated, truncated)
        (zeros, ones, zeros, zeros, every_tenth),                          # constant, truncated at 10
        (sign, sign, sign, ones, zeros),                                   # obs_reward
        (1 - first, 1 - first, ones, 1 - first, zeros),                    # two_step
        (zeros, 1 - np.abs(a[:, 0] - 0.5), zeros, ones, zeros),            # action: best a = 0.5
        (sign, 1 - np.abs(a[:, 0] - 0.5 * sign), sign, ones, zeros),       # obs_action: best a = obs / 2
    ]
    info = data_lib.DatasetInfo(env_id=PROBE_CONFIG.env, size=n)
    parts = [data_lib.Dataset(jnp.asarray(o[:, None]), jnp.asarray(a), jnp.asarray(r), jnp.asarray(o2[:, None]),
                              jnp.asarray(term), jnp.asarray(trunc), info=info)
             for o, r, o2, term, trunc in probes]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *parts)


@pytest.fixture(scope="module")
def probe_runs():
    stacked = probe_datasets()
    first = jax.tree.map(lambda x: x[0], stacked)
    env, env_params = envs.make("Probe-Action", continuous=True)
    trainer = rebrac.make_train(PROBE_CONFIG, first, env, env_params)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
    per_probe = jax.vmap(trainer, in_axes=(0, None))                # seeds share a probe's dataset
    states, metrics = jax.jit(jax.vmap(per_probe, in_axes=(None, 0)))(keys, stacked)  # (probe, seed)
    return trainer, states, metrics


def probe_q(states, probe: int, obs: float, actions=(-0.8, 0.0, 0.8)):
    """Both critics' Q(obs, a) for a few actions, for every seed of ``probe``: shape (seeds, 2, actions)."""
    _, critic = rebrac.make_networks(PROBE_CONFIG, 1)
    a = jnp.asarray(actions, jnp.float32)[:, None]
    o = jnp.full((len(actions), 1), obs, jnp.float32)
    params = jax.tree.map(lambda x: x[probe], states.critic_params)
    return np.asarray(jax.vmap(lambda p: rebrac.q_values(critic, p, o, a))(params))


def target_action(states, probe: int, obs: float) -> np.ndarray:
    """π̄(obs) of the target actor, per seed of ``probe``, in [-1, 1] units."""
    actor, _ = rebrac.make_networks(PROBE_CONFIG, 1)
    params = jax.tree.map(lambda x: x[probe], states.actor_target)
    return np.asarray(jax.vmap(lambda p: actor.apply(p, jnp.full((1, 1), obs)))(params))[:, 0, 0]


def test_probe_values_match_the_analytic_answer(probe_runs):
    _, states, metrics = probe_runs
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    # The critic's BC penalty is β ‖ã' − a'‖², with a' the dataset's next action (uniform in [-1, 1],
    # independent of everything) and ã' = π̄(s') + clipped noise:
    # E‖ã' − a'‖² = π̄(s')² + E[clip(ε)²] + Var(U[-1, 1]).
    def penalty(probe, next_obs):
        m = target_action(states, probe, next_obs)[:, None, None]  # (seeds, 1, 1) against (seeds, critics, actions)
        return PROBE_BETA * (m ** 2 + smoothing_noise_second_moment(PROBE_CONFIG) + 1.0 / 3.0)

    # constant reward 1, truncated (bootstrapped, but no dataset next action: no penalty) every 10th
    # step and penalized on the other 9: Q = 1 + γ (Q − 0.9 penalty)
    constant = (1.0 - PROBE_GAMMA * 0.9 * penalty(0, 0.0)) / (1.0 - PROBE_GAMMA)
    np.testing.assert_allclose(probe_q(states, 0, 0.0), np.broadcast_to(constant, (2, 2, 3)), atol=0.8)
    # one step, reward = obs (terminated: no bootstrap, no penalty)
    np.testing.assert_allclose(probe_q(states, 1, 1.0), 1.0, atol=0.15)
    np.testing.assert_allclose(probe_q(states, 1, -1.0), -1.0, atol=0.15)
    # two steps, reward 1 at the end: Q(second) = 1, Q(first) = γ (1 − penalty) (γ = 0.9 without it)
    np.testing.assert_allclose(probe_q(states, 2, 1.0), 1.0, atol=0.15)
    # (averaged over critics and actions per seed: single estimates scatter by a few hundredths, and
    # the min over the twin target critics biases the target slightly down)
    first = PROBE_GAMMA * (1.0 - penalty(2, 1.0))[:, 0, 0]
    assert np.all(first < PROBE_GAMMA - 0.15)
    np.testing.assert_allclose(probe_q(states, 2, 0.0).mean(axis=(1, 2)), first, atol=0.07)


def test_probe_greedy_actions_improve_on_random_data(probe_runs):
    # Reward 1 - |a - target| with uniform-random data: the BC term alone would give a ≈ 0 (the data
    # mean); the Q term moves the greedy action to the target.
    trainer, states, _ = probe_runs
    obs = jnp.array([[0.0], [1.0], [-1.0]])
    act = np.asarray(jax.vmap(jax.vmap(lambda s: trainer.act(s, obs, None)))(states)[..., 0])  # (probe, seed, obs)
    np.testing.assert_allclose(act[3, :, 0], 0.5, atol=0.15)   # Probe-Action (obs is always 0)
    np.testing.assert_allclose(act[4, :, 1:], np.broadcast_to([0.5, -0.5], act[4, :, 1:].shape), atol=0.15)


# ---------------------------------------------------------------------------------------------
# Determinism and the CLI
# ---------------------------------------------------------------------------------------------
CLI_CONFIG = rebrac.Config(num_updates=60, batch_size=32, hidden_size=32)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, pendulum_expert):
    """The same command twice (2 seeds each; the second compile is served by the persistent cache)."""
    outs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp("rebrac") / name
        options = cli.RunOptions(num_seeds=2, out=str(out), log_points=2, eval_episodes=2, quiet=True, plot=False)
        summary = cli.train_and_evaluate(CLI_CONFIG, rebrac.make_train, options, "rebrac", dataset=pendulum_expert)
        assert summary["updates_per_run"] == 60 and np.isfinite(summary["normalized_score"]["mean"])
        outs.append(out)
    return outs


def test_same_key_same_params(cli_runs, pendulum_expert):
    first, second = (cli.load_run(out, rebrac.Config, rebrac.make_train, "rebrac", dataset=pendulum_expert)
                     for out in cli_runs)
    assert trees_equal(first.state, second.state)  # seeds 0 and 1, trained twice: bitwise the same
    seed0, seed1 = (jax.tree.map(lambda x: x[i], first.state) for i in range(2))
    assert not trees_equal(seed0.actor_params, seed1.actor_params)


def test_cli_save_load_gives_identical_actions(cli_runs, pendulum_expert):
    loaded = cli.load_run(cli_runs[0], rebrac.Config, rebrac.make_train, "rebrac", dataset=pendulum_expert)
    assert loaded.config == CLI_CONFIG and loaded.update == 60
    obs = pendulum_expert.observations[:16]
    trainer = rebrac.make_train(CLI_CONFIG, pendulum_expert)
    for run in range(2):
        state = jax.tree.map(lambda x: x[run], loaded.state)
        np.testing.assert_array_equal(np.asarray(loaded.act(run, obs)), np.asarray(trainer.act(state, obs, None)))
    assert not np.array_equal(np.asarray(loaded.act(0, obs)), np.asarray(loaded.act(1, obs)))
    with pytest.raises(checkpoint.CheckpointError, match="rebrac"):
        cli.load_run(cli_runs[0], rebrac.Config, rebrac.make_train, "td3_bc", dataset=pendulum_expert)


# ---------------------------------------------------------------------------------------------
# Learning checks (4 seeds in one program each)
# ---------------------------------------------------------------------------------------------
SEEDS = range(4)


@pytest.mark.learning
def test_recovers_the_expert_on_expert_data(pendulum_expert):
    # The paper tunes β per dataset; on expert data it takes a strong actor BC term (β_actor = 1, the
    # top of its grid; also CORL's default). Measured: 103 ± 2 after 4000 updates (4 seeds; expert =
    # 100, random = 0). The default β = 0.1 gets there too, but more slowly and less evenly.
    config = rebrac.Config(num_updates=4_000, actor_bc_coef=1.0, critic_bc_coef=1.0, **SMALL)
    trainer = rebrac.make_train(config, pendulum_expert)
    states, metrics = train_seeds(trainer, SEEDS)
    scores = normalized_scores(trainer, states, pendulum_expert, len(SEEDS))
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    assert scores.mean() > 75, scores


@pytest.mark.learning
def test_beats_bc_on_medium_replay():
    # medium-replay mixes random and medium behaviour; cloning it averages in the random actions.
    # Default BC coefficients (0.1); measured 90-95 after 7000 updates (4 seeds) against BC's 24.
    dataset = pendulum_dataset("medium-replay")
    agent = rebrac.make_train(rebrac.Config(num_updates=7_000, hidden_size=32, batch_size=128), dataset)
    clone = bc.make_train(bc.Config(num_updates=2_000, hidden_size=64), dataset)
    agent_scores = normalized_scores(agent, train_seeds(agent, SEEDS)[0], dataset, len(SEEDS))
    bc_scores = normalized_scores(clone, train_seeds(clone, SEEDS)[0], dataset, len(SEEDS))
    assert agent_scores.mean() > bc_scores.mean() + 20, (agent_scores, bc_scores)
