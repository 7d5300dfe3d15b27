"""Sauté PPO: the safety-budget bookkeeping on hand-built cost sequences, clear config errors,
determinism and save -> load through the CLI, and a SafeCartPole learning check (PPO with an
unexhaustible budget violates the limit, Sauté PPO meets it).

Every trained program vmaps several runs and is compiled once per module (module-scoped fixtures).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.wrappers.purerl import GymnaxWrapper

from agents.safe import saute_ppo
from jaxrl import envs
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.io import read_jsonl

TINY = dict(env="SafeCartPole-v0", total_timesteps=2048, num_envs=4, num_steps=32, num_minibatches=2,
            update_epochs=2, hidden_size=16)


def keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


class UnitCost(GymnaxWrapper):
    """``info["cost"] = 1`` at every step (any env made a CMDP with a known cost sequence)."""

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, terminated, truncated, {**info, "cost": jnp.ones_like(reward)}


# ----------------------------------------------------------------------------------------------
# The safety budget, by hand
# ----------------------------------------------------------------------------------------------
def test_discounted_budget_by_hand():
    # γ_c = 1: the limit itself; γ_c = 0.5, T = 4: d (1 − 0.5⁴) / (0.5 · 4) = 2 · 0.9375 / 2
    np.testing.assert_allclose(saute_ppo.discounted_budget(2.0, 1.0, 4), 2.0)
    np.testing.assert_allclose(saute_ppo.discounted_budget(2.0, 0.5, 4), 0.9375)
    # z_{t+1} = (z_t − c_t/d̃)/γ_c on costs d̃ · (0.5, 0, 0.25) with γ_c = 0.5: 1 → 1 → 2 → 3.5
    z, path = jnp.float32(1.0), []
    for c in (0.5, 0.0, 0.25):
        z = saute_ppo.next_budget(z, c * 0.9375, 0.9375, 0.5)
        path.append(float(z))
    np.testing.assert_allclose(path, [1.0, 2.0, 3.5])
    # the reward is replaced from the first z_{t+1} <= 0 on
    np.testing.assert_allclose(saute_ppo.reshaped_reward(jnp.array([2.0, 2.0, 2.0]), jnp.array([0.1, 0.0, -3.0]), -1.0),
                               [2.0, -1.0, -1.0])


def test_budget_bookkeeping_through_an_episode():
    """Probe-Constant (obs 0, reward 1, truncated after 10 steps) with cost 1 per step, d = 4, γ_c = 1.

    z after k steps is 1 − k/4: 0.75, 0.5, 0.25, 0, −0.25, ..., −1.5 at the truncation; the reshaped
    reward is 1 for the first three steps and −2 (the unsafe reward) from z = 0 on. The env's own
    reward stays 1. The truncated step's ``final_observation`` carries z = −1.5, the next episode
    starts again at z = 1, and the second episode repeats the first."""
    probe, probe_params = envs.make("Probe-Constant")
    saute = saute_ppo.Saute(UnitCost(probe))
    params = saute_ppo.SauteParams(probe_params, jnp.float32(4.0), jnp.float32(1.0), jnp.float32(-2.0))
    obs, state = saute.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(obs, [0.0, 1.0])
    zs, rewards, shaped, final_z, next_z = [], [], [], [], []
    for t in range(20):
        obs, state, reward, terminated, truncated, info = saute.step(jax.random.PRNGKey(t), state, 0, params)
        zs.append(float(info["budget"]))
        rewards.append(float(reward))
        shaped.append(float(info["saute_reward"]))
        final_z.append(float(info["final_observation"][-1]))
        next_z.append(float(obs[-1]))
        assert bool(truncated) == (t % 10 == 9) and not bool(terminated)
    episode = [1 - k / 4 for k in range(1, 11)]
    np.testing.assert_allclose(zs, episode * 2)
    np.testing.assert_allclose(final_z, episode * 2)
    np.testing.assert_allclose(next_z, (episode[:-1] + [1.0]) * 2)
    np.testing.assert_array_equal(rewards, [1.0] * 20)
    np.testing.assert_array_equal(shaped, ([1.0] * 3 + [-2.0] * 7) * 2)
    assert saute.observation_space(params).shape == (2,)


def test_training_sees_the_reshaped_reward_and_reports_the_true_one():
    """One iteration on Probe-Constant (continuous actions: the Gaussian path) with cost 1 per step,
    d = 4: every episode reports the env's return 10 and cost 10 (over the limit); 7 of the 10 steps
    of each episode have an exhausted budget. The greedy actions stay inside the bounds."""
    config = saute_ppo.Config(env="Probe-Constant", total_timesteps=4 * 20, num_envs=4, num_steps=20,
                              num_minibatches=2, update_epochs=1, hidden_size=8, cost_limit=4.0, cost_gamma=1.0)
    probe, probe_params = envs.make("Probe-Constant", continuous=True)
    trainer = saute_ppo.make_train(config, env=UnitCost(probe), env_params=probe_params)
    state, metrics = jax.jit(trainer)(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(metrics["episodes"], [8])
    np.testing.assert_array_equal(metrics["episode_return"], [10.0])
    np.testing.assert_array_equal(metrics["episode_cost"], [10.0])
    np.testing.assert_array_equal(metrics["over_limit"], [1.0])
    np.testing.assert_allclose(metrics["unsafe_fraction"], [0.7])
    np.testing.assert_array_equal(metrics["lambda"], [0.0])
    assert np.isfinite(metrics["policy_loss"]).all()
    actions = trainer.act(state, 10 * jax.random.normal(jax.random.PRNGKey(1), (8, 2)), None)
    assert actions.shape == (8, 1) and (np.abs(np.asarray(actions)) <= 1).all()


def test_bad_config_fails_before_compiling():
    with pytest.raises(ConfigError, match="cost_limit must be > 0"):
        saute_ppo.make_train(saute_ppo.Config(cost_limit=-1.0))
    with pytest.raises(ConfigError, match="unsafe_reward must be <= 0"):
        saute_ppo.make_train(saute_ppo.Config(unsafe_reward=1.0))
    with pytest.raises(ConfigError, match=r"cost_gamma must be in \(0, 1\]"):
        saute_ppo.make_train(saute_ppo.Config(cost_gamma=0.0))
    with pytest.raises(ConfigError, match="divisible by num_minibatches"):
        saute_ppo.make_train(saute_ppo.Config(num_minibatches=3))
    with pytest.raises(ConfigError, match=r"needs an env that reports a per-step cost in info\['cost'\], but CartPole-v1"):
        saute_ppo.make_train(saute_ppo.Config(env="CartPole-v1"))


# ----------------------------------------------------------------------------------------------
# Determinism, policy_logits and checkpoints (through the shared CLI)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def direct_states():
    """The tiny agent trained by a direct ``jit(vmap(train))`` call for seeds 0, 1 and 0 again."""
    trainer = saute_ppo.make_train(saute_ppo.Config(**TINY))
    state, metrics = jax.jit(jax.vmap(trainer))(keys((0, 1, 0)))
    return trainer, state, metrics


def test_same_key_same_result(direct_states):
    _, state, metrics = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), state.params)
    kernel = state.params["params"]["actor_0"]["kernel"]
    assert kernel.shape[1:] == (5, 16)                       # CartPole's 4 numbers + the budget z
    assert not np.array_equal(kernel[0], kernel[1])
    for name in ("episode_return", "episode_cost", "over_limit", "episodes", "lambda", "unsafe_fraction"):
        assert metrics[name].shape == (3, 16), name
    assert (metrics["lambda"] == 0).all()


def test_policy_logits_match_the_greedy_action(direct_states):
    trainer, state, _ = direct_states
    params = jax.tree.map(lambda x: x[1], state.params)
    obs = jax.random.normal(jax.random.PRNGKey(5), (32, 4))
    for z in (1.0, 0.3):
        logits = saute_ppo.policy_logits(saute_ppo.Config(**TINY), params, obs, budget=z)
        assert logits.shape == (32, 2)
        augmented = jnp.concatenate([obs, jnp.full((32, 1), z)], axis=-1)
        np.testing.assert_array_equal(jnp.argmax(logits, -1), trainer.act(jax.tree.map(lambda x: x[1], state), augmented, None))


def test_save_load_identical_actions(tmp_path, direct_states):
    """The CLI's checkpoint, loaded back, acts exactly like the same seeds trained by a direct call."""
    trainer, state, _ = direct_states
    out = tmp_path / "run"
    options = RunOptions(out=str(out), num_seeds=2, eval_episodes=4, log_points=4, quiet=True, plot=False)
    summary = train_and_evaluate(saute_ppo.Config(**TINY), saute_ppo.make_train, options, algorithm="saute_ppo")
    assert len(summary["runs"]) == 2
    rows = read_jsonl(out / "metrics.jsonl")
    assert {"episode_cost", "over_limit", "lambda", "episode_return", "unsafe_fraction"} <= set(rows[0])
    loaded = load_run(out, saute_ppo.Config, saute_ppo.make_train, "saute_ppo")
    obs = jax.random.normal(jax.random.PRNGKey(3), (64, 5))
    for r in range(2):
        expected = trainer.act(jax.tree.map(lambda x: x[r], state), obs, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(loaded.act(r, obs), expected)


# ----------------------------------------------------------------------------------------------
# Learning check
# ----------------------------------------------------------------------------------------------
LIMIT = 25.0
SEEDS = 6


@pytest.mark.learning
def test_saute_meets_the_limit_that_ppo_violates():
    """SafeCartPole-v0 (200 steps, cost outside |x| ≤ 0.5 or |x_dot| ≤ 1), limit 25, 1e5 steps, 6 seeds.

    The baseline is the same program with a budget that is never exhausted (cost_limit 1e6: plain
    PPO with z in the observation); both are vmapped over that one float. The short budget changes
    two defaults, for both (as tests/test_ppo_lag.py): lr 1e-3 without annealing, entropy 0.01.
    Averages over the second half of training, then over seeds. Measured on this machine (this
    test's seeds): at 1e5 steps baseline cost 63.8 (return 189), Sauté cost 4.1 (return 197, every
    seed below 8); at 8e4 steps baseline cost 67.5 (return 187), Sauté cost 9.0 (return 190); at
    1.5e5 steps (8 seeds) baseline cost 73.3 (return 189), Sauté 0.5 (return 199).
    """
    config = saute_ppo.Config(env="SafeCartPole-v0", total_timesteps=100_000, lr=1e-3, anneal_lr=False, ent_coef=0.01)

    def train(key, cost_limit):
        return saute_ppo.make_train(dataclasses.replace(config, cost_limit=cost_limit))(key)[1]

    limits = jnp.repeat(jnp.array([1e6, LIMIT]), SEEDS)
    metrics = jax.jit(jax.vmap(train))(jnp.concatenate([keys(range(SEEDS))] * 2), limits)
    metrics = jax.tree.map(lambda x: np.asarray(x).reshape((2, SEEDS) + x.shape[1:]), metrics)
    n = metrics["episode_return"].shape[-1]
    half = slice(n // 2, n)
    ret = np.nanmean(metrics["episode_return"][..., half], -1)       # (2 variants, seeds)
    cost = np.nanmean(metrics["episode_cost"][..., half], -1)
    over = np.nanmean(metrics["over_limit"][1][..., half], -1)      # Sauté's (the baseline's limit is 1e6)
    print(f"SafeCartPole-v0 1e5 steps, {SEEDS} seeds, limit {LIMIT}, second half of training: "
          f"PPO (budget 1e6) return {ret[0].mean():.1f} cost {cost[0].mean():.1f} | "
          f"Sauté PPO return {ret[1].mean():.1f} cost {cost[1].mean():.1f} over-limit {over.mean():.2f}; "
          f"Sauté per seed cost {cost[1].round(1).tolist()} return {ret[1].round(1).tolist()}")
    assert (metrics["unsafe_fraction"][0] == 0).all()                 # the baseline's budget is never exhausted
    assert cost[0].mean() > LIMIT                                      # PPO violates the limit
    assert cost[1].mean() <= LIMIT                                     # Sauté PPO meets it
    assert ret[1].mean() > 150                                         # ... and still balances (random: ~25)
