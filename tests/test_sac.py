"""Tests of agents/online/sac.py: the squashed-Gaussian density, the replay buffer, config errors,
probe environments with known answers (all probes x seeds in one compiled program), and a short
learning check on Pendulum-v1 (4 seeds in one program)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment

from agents.online import sac
from jaxrl import envs
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer


# ---------------------------------------------------------------------------------------------
# The tanh-squashed Gaussian
# ---------------------------------------------------------------------------------------------
def _normal_logpdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def test_squashed_log_prob_matches_numerical_change_of_variables():
    # Hand case: 2-D action with asymmetric bounds, a = mid + half * tanh(u).
    low, high = jnp.array([-2.0, 0.0]), jnp.array([2.0, 3.0])
    mean, log_std = jnp.array([0.3, -0.7]), jnp.array([-0.2, 0.4])
    u = jnp.array([0.9, -1.6])
    got = float(sac.squashed_log_prob(mean, log_std, u, low, high))
    # log p(a) = log N(u) - log |da/du|, with da/du by central finite differences (float64 numpy).
    u_np, h = np.asarray(u, np.float64), 1e-6
    a_of = lambda x: 0.5 * (np.asarray(high) + np.asarray(low)) + 0.5 * (np.asarray(high) - np.asarray(low)) * np.tanh(x)  # noqa: E731
    dadu = (a_of(u_np + h) - a_of(u_np - h)) / (2 * h)
    expected = np.sum(_normal_logpdf(u_np, np.asarray(mean, np.float64), np.exp(np.asarray(log_std, np.float64)))
                      - np.log(dadu))
    assert got == pytest.approx(expected, abs=1e-4)
    np.testing.assert_allclose(np.asarray(sac.squash(u, low, high)), a_of(u_np), rtol=1e-6)


def test_squashed_density_integrates_to_one_and_is_finite_at_the_bounds():
    low, high = jnp.array([0.5]), jnp.array([3.5])
    mean, log_std = jnp.array([0.4]), jnp.array([-0.3])
    a = jnp.linspace(0.5, 3.5, 200_001)[1:-1, None]
    u = jnp.arctanh((a - 2.0) / 1.5)
    density = np.exp(np.asarray(jax.vmap(lambda x: sac.squashed_log_prob(mean, log_std, x, low, high))(u), np.float64))
    assert np.trapezoid(density, np.asarray(a[:, 0], np.float64)) == pytest.approx(1.0, abs=2e-3)
    # Far in the tails the stable form stays finite (the naive log(1 - tanh(u)^2) gives -inf).
    far = sac.squashed_log_prob(mean, log_std, jnp.array([30.0]), low, high)
    assert np.isfinite(float(far))
    # Sampled actions lie in the bounds and their log-probs agree with the closed form.
    key = jax.random.PRNGKey(0)
    actions, logp = sac.sample_action(key, jnp.tile(mean, (1000, 1)), jnp.tile(log_std, (1000, 1)), low, high)
    assert bool(jnp.all((actions >= 0.5) & (actions <= 3.5))) and logp.shape == (1000,)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def test_discrete_env_raises_clear_config_error():
    with pytest.raises(ConfigError, match=r"SAC supports only continuous.*CartPole-v1.*Discrete\(2\).*Pendulum-v1"):
        sac.make_train(sac.Config(env="CartPole-v1"))


@pytest.mark.parametrize("override, message", [
    (dict(tau=0.0), "tau"),
    (dict(gamma=1.5), "gamma"),
    (dict(batch_size=0), "batch_size"),
    (dict(learning_starts=20_000, total_timesteps=20_000), "learning_starts"),
])
def test_bad_config_raises_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        sac.make_train(sac.Config(**override))


def test_buffer_capacity_is_capped_to_the_budget():
    assert sac.Config(total_timesteps=20_000).buffer_capacity == 20_000
    assert sac.Config(total_timesteps=3_000_000).buffer_capacity == 1_000_000


# ---------------------------------------------------------------------------------------------
# Probes: every continuous probe x seeds in ONE compiled program
# ---------------------------------------------------------------------------------------------
PROBE_KINDS = ("Probe-Constant", "Probe-ObsReward", "Probe-TwoStep", "Probe-Action", "Probe-ObsAction")
PROBE_SEEDS = 2
PROBE_CONFIG = sac.Config(
    total_timesteps=3_000, num_envs=2, gradient_steps=2, batch_size=64, hidden_size=64, learning_starts=300,
    policy_lr=1e-3, q_lr=1e-3, gamma=0.9, tau=0.05, autotune=False,
)
# Fixed α per probe: sizeable on the value probes (so the entropy term of the soft value is visible),
# small on the action probes (so the soft-optimal policy is sharp around the best action).
PROBE_ALPHA = {"Probe-Constant": 0.2, "Probe-ObsReward": 0.2, "Probe-TwoStep": 0.2, "Probe-Action": 0.02,
               "Probe-ObsAction": 0.02}


@struct.dataclass
class SuiteParams(environment.EnvParams):
    max_steps_in_episode: int = 10
    kind: int = 0


class ProbeSuite(environment.Environment):
    """The continuous probes of ``envs/probes.py`` behind one env; ``params.kind`` picks the probe,
    so that probes (like seeds) are a vmapped axis of a single program."""

    def __init__(self):
        super().__init__()
        self.probes = [envs.make(i, continuous=True)[0] for i in PROBE_KINDS]

    @property
    def default_params(self):
        return SuiteParams()

    def reset_env(self, key, params):
        return jax.lax.switch(params.kind, [p.reset_env for p in self.probes], key, params)

    def step_env(self, key, state, action, params):
        return jax.lax.switch(params.kind, [p.step_env for p in self.probes], key, state, action, params)

    def action_space(self, params=None):
        return self.probes[0].action_space(params)

    def observation_space(self, params=None):
        return self.probes[0].observation_space(params)


def _policy_entropy(actor, actor_params, obs_value, key, low, high, n=8192):
    mean, log_std = actor.apply(actor_params, jnp.full((n, 1), obs_value))
    _, log_prob = sac.sample_action(key, mean, log_std, low, high)
    return -log_prob.mean()


@pytest.fixture(scope="module")
def probe_results():
    suite = ProbeSuite()
    cfg = PROBE_CONFIG
    actor, critic = sac.Actor(1, cfg.hidden_size), sac.QNetwork(cfg.hidden_size)
    low, high = jnp.array([-1.0]), jnp.array([1.0])
    obs_points = jnp.array([[-1.0], [0.0], [1.0]])
    action_points = jnp.linspace(-0.9, 0.9, 7)[:, None]

    def train_one(kind, alpha, key):
        params = SuiteParams(max_steps_in_episode=jnp.where(kind == 0, 10, 100), kind=kind)
        trainer = sac.make_train(dataclasses.replace(cfg, alpha=alpha), suite, params)
        state, metrics = trainer(key)
        # Q of both critics at every (obs, action) grid point: (2, 3 obs, 7 actions).
        q = jax.vmap(lambda o: jax.vmap(critic.apply, in_axes=(0, None, None))(
            state.q_params, jnp.tile(o, (action_points.shape[0], 1)), action_points), out_axes=1)(obs_points)
        greedy = trainer.act(state, obs_points, key)[:, 0]
        entropy = jax.vmap(lambda o: _policy_entropy(actor, state.actor_params, o, key, low, high))(obs_points[:, 0])
        return {"q": q, "greedy": greedy, "entropy": entropy}

    kinds = jnp.repeat(jnp.arange(len(PROBE_KINDS)), PROBE_SEEDS)
    alphas = jnp.repeat(jnp.array([PROBE_ALPHA[k] for k in PROBE_KINDS]), PROBE_SEEDS)
    keys = jnp.stack([jax.random.PRNGKey(100 + i) for i in range(kinds.shape[0])])
    out = jax.jit(jax.vmap(train_one))(kinds, alphas, keys)
    out = jax.tree.map(lambda x: np.asarray(x).reshape((len(PROBE_KINDS), PROBE_SEEDS) + x.shape[1:]), out)
    return {name: jax.tree.map(lambda x: x[i], out) for i, name in enumerate(PROBE_KINDS)}


OBS = {-1.0: 0, 0.0: 1, 1.0: 2}  # index of an observation in the probe grid


def test_probe_constant_soft_value_bootstraps_through_truncation(probe_results):
    # Reward 1 forever, episodes only truncated: the soft Q is the fixed point of
    # Q = 1 + γ (Q + α H), i.e. (1 + γ α H) / (1 - γ), with H the policy's entropy at obs 0.
    # Treating truncation as termination would give far less (at most (1 - γ^10)/(1 - γ) ≈ 6.5).
    r, gamma, alpha = probe_results["Probe-Constant"], PROBE_CONFIG.gamma, PROBE_ALPHA["Probe-Constant"]
    entropy = r["entropy"][:, OBS[0.0]]
    expected = (1.0 + gamma * alpha * entropy) / (1.0 - gamma)
    q = r["q"][:, :, OBS[0.0], :].mean(axis=(1, 2))
    assert np.all(np.abs(q - expected) < 0.25), (q, expected)
    # ... and the entropy term is really there: the hard value 1/(1-γ) = 10 is clearly off.
    assert np.all(expected - 1.0 / (1.0 - gamma) > 1.0), expected


def test_probe_obs_reward_q_tracks_observation(probe_results):
    q = probe_results["Probe-ObsReward"]["q"]  # one step, terminated: Q(s, a) = r = obs exactly
    assert np.all(np.abs(q[:, :, OBS[1.0]] - 1.0) < 0.1), q
    assert np.all(np.abs(q[:, :, OBS[-1.0]] + 1.0) < 0.1), q


def test_probe_two_step_discounts_the_soft_value(probe_results):
    r, gamma, alpha = probe_results["Probe-TwoStep"], PROBE_CONFIG.gamma, PROBE_ALPHA["Probe-TwoStep"]
    q_last = r["q"][:, :, OBS[1.0]].mean(axis=(1, 2))    # terminal step, reward 1: Q = 1
    q_first = r["q"][:, :, OBS[0.0]].mean(axis=(1, 2))   # Q = 0 + γ (1 + α H(obs 1))
    expected_first = gamma * (1.0 + alpha * r["entropy"][:, OBS[1.0]])
    assert np.all(np.abs(q_last - 1.0) < 0.05), q_last
    assert np.all(np.abs(q_first - expected_first) < 0.05), (q_first, expected_first)
    assert np.all(expected_first - gamma > 0.1), expected_first  # the entropy bonus is visible


def test_probe_action_greedy_action_is_optimal(probe_results):
    greedy = probe_results["Probe-Action"]["greedy"][:, OBS[0.0]]
    assert np.all(np.abs(greedy - 0.5) < 0.05), greedy


def test_probe_obs_action_greedy_action_follows_observation(probe_results):
    greedy = probe_results["Probe-ObsAction"]["greedy"]
    assert np.all(np.abs(greedy[:, OBS[1.0]] - 0.5) < 0.05), greedy
    assert np.all(np.abs(greedy[:, OBS[-1.0]] + 0.5) < 0.05), greedy


# ---------------------------------------------------------------------------------------------
# Learning check: Pendulum-v1, several seeds in one program
# ---------------------------------------------------------------------------------------------
# Smaller than the defaults (64 units, batch 128, 500 random steps) so that it runs in about a
# minute on 2 CPU cores. Measured over 16 seeds: greedy return -193 ± 118 (worst seed -578).
PENDULUM_CONFIG = sac.Config(env="Pendulum-v1", total_timesteps=6_000, learning_starts=500, hidden_size=64,
                             batch_size=128)
PENDULUM_SEEDS = 4


@pytest.mark.learning
def test_pendulum_learns_well_above_random():
    trainer = sac.make_train(PENDULUM_CONFIG)

    def run(key):
        state, metrics = trainer(key)
        result = evaluate_trainer(trainer, state, jax.random.fold_in(key, 1), num_episodes=16)
        return result["return"].mean(), metrics["alpha"][-1]

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(PENDULUM_SEEDS)])
    returns, alpha = jax.jit(jax.vmap(run))(keys)
    returns = np.asarray(returns)
    print(f"SAC Pendulum-v1 {PENDULUM_CONFIG.total_timesteps} steps: greedy return "
          f"{returns.mean():.1f} ± {returns.std():.1f} over {PENDULUM_SEEDS} seeds {np.round(returns, 1)}")
    # A random policy scores about -1200, a solved pendulum about -150.
    assert returns.mean() > -500, returns
    assert np.all(np.asarray(alpha) < PENDULUM_CONFIG.init_alpha)  # α was tuned down from its start
