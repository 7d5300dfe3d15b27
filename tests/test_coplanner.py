"""Tests of agents/model_based/coplanner.py: the ensemble disagreement on a hand case, UP-MPC's choice
(conservative / optimistic / return only) with a hand-made ensemble, terminations inside a plan,
conservative rollouts from real states, config errors before compiling, determinism and
save -> load -> identical actions through the CLI, and a short learning check on Pendulum-v1
(several seeds in one compiled program)."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.model_based import coplanner
from jaxrl import replay
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate, evaluate_trainer


# ---------------------------------------------------------------------------------------------
# The uncertainty: disagreement of the members' samples
# ---------------------------------------------------------------------------------------------
def test_disagreement_is_the_members_std_averaged_over_dimensions():
    # 3 members, 2 output dimensions, 1 particle: columns [0, 2, 4] (std 2) and [0, 0, 3]
    # (mean 1, squared deviations 1, 1, 4 -> Bessel-corrected variance 3, std √3): (2 + √3) / 2.
    samples = jnp.array([[[0.0, 0.0]], [[2.0, 0.0]], [[4.0, 3.0]]])
    np.testing.assert_allclose(np.asarray(coplanner.disagreement(samples)), [(2 + np.sqrt(3)) / 2], rtol=1e-6)
    # Members that agree have no disagreement, whatever their value.
    np.testing.assert_array_equal(np.asarray(coplanner.disagreement(jnp.full((5, 4, 3), 7.0))), np.zeros(4))


# ---------------------------------------------------------------------------------------------
# UP-MPC with a hand-made ensemble
# ---------------------------------------------------------------------------------------------
# obs_dim 1, action_dim 2. Member m (m = 0, 1, 2) predicts Δs = c_m · a[1] with c = (−1, 0, 1) and
# r = a[0], with zero variance: a[0] is the reward and a[1] the disagreement of a step. The std of
# (−d, 0, d) is d (ddof 1) and the reward column agrees, so one step's uncertainty is d / 2.
SPREAD = jnp.array([-1.0, 0.0, 1.0])


def fake_predict(obs, action):
    delta = SPREAD[:, None, None, None] * action[None, ..., 1:2]          # (E, K, N, 1)
    reward = jnp.broadcast_to(action[None, ..., 0:1], delta.shape)
    mean = jnp.concatenate([delta, reward], axis=-1)
    return mean, jnp.zeros_like(mean)


# Three candidates, each repeating one action (reward, disagreement): safe and good, best return but
# uncertain, poor but very uncertain. Candidate k is the k-th row of the policy's output.
CANDIDATES = jnp.array([[1.0, 0.0], [2.0, 1.5], [0.0, 6.0]])


def fake_policy(t, states, key):
    return jnp.broadcast_to(CANDIDATES[:, None, :], states.shape[:2] + (2,))


def never(obs, action, next_obs):
    return jnp.zeros(next_obs.shape[:-1], bool)


def plan(rate, terminates=never, horizon=2):
    obs = jnp.zeros((4, 1))   # 4 states planned at once
    return coplanner.up_mpc(fake_predict, fake_policy, terminates, obs, jax.random.PRNGKey(0), 3, horizon,
                            rate, 0.97, 0.97)


RATES = (0.0, -2.0, 1.0)


@functools.lru_cache(maxsize=None)
def plans():
    """UP-MPC at α = 0, conservative α_c = 2 and optimistic α_o = 1, in one compiled call (the rate traced)."""
    return jax.jit(jax.vmap(plan))(jnp.array(RATES))


def test_up_mpc_scores_return_and_uncertainty_exactly():
    out = plans()
    # H = 2, γ = 0.97: return r (1 + 0.97), uncertainty d/2 (1 + 0.97), the same at every rate
    for i in range(len(RATES)):
        np.testing.assert_allclose(np.asarray(out.returns[i, :, 0]), [1.97, 3.94, 0.0], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(out.uncertainty[i, :, 0]), [0.0, 0.75 * 1.97, 3.0 * 1.97], rtol=1e-6)


@pytest.mark.parametrize("rate, expected", [
    (0.0, 1),    # α = 0: the best predicted return (3.94), whatever its uncertainty
    (-2.0, 0),   # conservative α_c = 2: 1.97 vs 3.94 − 2 · 1.4775 = 0.985 vs 0 − 11.82 -> the safe one
    (1.0, 2),    # optimistic α_o = 1: 1.97 vs 5.4175 vs 0 + 5.91 -> the most uncertain one
])
def test_up_mpc_conservative_picks_safe_optimistic_picks_uncertain(rate, expected):
    out = jax.tree.map(lambda x: x[RATES.index(rate)], plans())
    assert np.asarray(out.index).tolist() == [expected] * 4
    np.testing.assert_array_equal(np.asarray(out.action), np.tile(np.asarray(CANDIDATES[expected]), (4, 1)))


def test_up_mpc_stops_counting_after_a_predicted_termination():
    # Every transition terminates: only the first step of each candidate counts.
    def always(obs, action, next_obs):
        return jnp.ones(next_obs.shape[:-1], bool)

    out = jax.jit(lambda: plan(0.0, always, horizon=3))()
    np.testing.assert_allclose(np.asarray(out.returns[:, 0]), [1.0, 2.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.uncertainty[:, 0]), [0.0, 0.75, 3.0], rtol=1e-6)


def test_branched_rollouts_start_from_real_states_and_take_the_planned_actions():
    # A still model (Δs = 0, r = 0) and an act_fn that marks the step: starts are filled real slots
    # only, steps chain, and the actions stored are the act_fn's.
    def still(obs, action):
        mean = jnp.zeros((2,) + obs.shape[:-1] + (obs.shape[-1] + 1,))
        return mean, jnp.zeros_like(mean)

    example = coplanner.Transition(jnp.zeros(2), jnp.zeros(1), jnp.float32(0), jnp.zeros(2), jnp.float32(0))
    real = replay.add(replay.init(6, example), coplanner.Transition(
        jnp.array([[0.0, 10.0], [1.0, 20.0], [0.0, 30.0]]), jnp.zeros((3, 1)), jnp.zeros(3), jnp.zeros((3, 2)),
        jnp.zeros(3)))

    def act(t, obs, key):
        return obs[..., 1:] / 100.0 + t

    def terminates(obs, action, next_obs):
        return next_obs[..., 0] > 0.5

    k_max, n = 3, 32
    block, valid, u = jax.jit(lambda key: coplanner.branched_rollout(still, act, real, 2, k_max, n, terminates, key))(
        jax.random.PRNGKey(1))
    obs = np.asarray(block.obs).reshape(k_max, n, 2)
    assert {tuple(s) for s in obs[0].tolist()} == {(0.0, 10.0), (1.0, 20.0), (0.0, 30.0)}
    np.testing.assert_array_equal(obs[1:], np.asarray(block.next_obs).reshape(k_max, n, 2)[:-1])
    np.testing.assert_allclose(np.asarray(block.action).reshape(k_max, n), obs[..., 1] / 100 + np.arange(k_max)[:, None])
    terminal = obs[0, :, 0] > 0.5
    expected = np.where(terminal[None], np.arange(k_max)[:, None] == 0, np.arange(k_max)[:, None] < 2)
    np.testing.assert_array_equal(np.asarray(valid).reshape(k_max, n), expected)
    np.testing.assert_array_equal(np.asarray(u), 0.0)


# ---------------------------------------------------------------------------------------------
# Configuration errors, before anything compiles
# ---------------------------------------------------------------------------------------------
def test_discrete_env_raises_clear_config_error():
    with pytest.raises(ConfigError, match=r"COPlanner supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        coplanner.make_train(coplanner.Config(env="CartPole-v1", termination="none"))


def test_unknown_termination_rule_raises_and_known_envs_build():
    with pytest.raises(ConfigError, match=r"termination rule of 'Probe-Action-Continuous'.*termination='none'"):
        coplanner.make_train(coplanner.Config(env="Probe-Action-Continuous"))
    done = coplanner.termination_fn(coplanner.Config(env="MountainCarContinuous-v0"))(
        None, None, jnp.array([[0.45, 0.0], [0.46, -0.01], [0.3, 0.05]]))
    assert np.asarray(done).tolist() == [True, False, False]
    for env in ("Pendulum-v1", "CartPoleSwingUp-v0", "MountainCarContinuous-v0"):
        assert coplanner.make_train(coplanner.Config(env=env)).num_updates == 5_000


@pytest.mark.parametrize("override, message", [
    (dict(num_candidates=0), r"num_candidates \(K\) must be an integer >= 1, got 0"),
    (dict(planning_horizon=0), r"planning_horizon \(H\) must be an integer >= 1, got 0"),
    (dict(num_candidates=2.5), r"num_candidates \(K\) must be an integer >= 1, got 2.5"),
    (dict(ensemble_size=1), r"ensemble_size must be an integer >= 2, got 1.*disagreement"),
    (dict(optimistic_rate=-1.0), r"optimistic_rate \(α_o\) must be >= 0"),
    (dict(conservative_rate=-0.5), r"conservative_rate \(α_c\) must be >= 0"),
    (dict(reward_discount=1.5), "reward_discount must be in"),
    (dict(termination="learned"), "termination must be 'auto' or 'none'"),
    (dict(rollout_schedule=(1, 2)), "rollout_schedule must be four integers"),
    (dict(random_steps=5_000), "random_steps=5000 must be below total_timesteps"),
])
def test_bad_config_raises_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        coplanner.make_train(coplanner.Config(**override))


def test_paper_defaults():
    cfg = coplanner.Config()
    assert (cfg.num_candidates, cfg.planning_horizon) == (5, 5)
    assert (cfg.optimistic_rate, cfg.conservative_rate) == (1.0, 2.0)
    assert (cfg.reward_discount, cfg.uncertainty_discount) == (0.97, 0.97)


# ---------------------------------------------------------------------------------------------
# Through the CLI: determinism, and save -> load -> identical actions
# ---------------------------------------------------------------------------------------------
TINY = coplanner.Config(total_timesteps=300, random_steps=100, train_every=100, epoch_length=100, ensemble_size=2,
                        hidden_size=8, num_layers=1, max_epochs=2, model_batch_size=16, rollouts_per_step=2,
                        rollout_every=100, rollout_schedule=(0, 2, 1, 2), updates_per_step=1, batch_size=16,
                        sac_hidden_size=16, num_candidates=3, planning_horizon=2)
EVAL_EPISODES = 2


def _cli_run(out):
    options = RunOptions(out=str(out), num_seeds=2, eval_episodes=EVAL_EPISODES, log_points=1, quiet=True, plot=False)
    return train_and_evaluate(TINY, coplanner.make_train, options, algorithm="coplanner")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """The same config and seeds trained twice through the CLI (the second run reuses the compiled
    program from the persistent compilation cache)."""
    root = tmp_path_factory.mktemp("coplanner")
    return [(root / name, _cli_run(root / name)) for name in ("a", "b")]


def test_same_key_same_result(cli_runs):
    (out_a, summary_a), (out_b, summary_b) = cli_runs
    a = load_run(out_a, coplanner.Config, coplanner.make_train, "coplanner")
    b = load_run(out_b, coplanner.Config, coplanner.make_train, "coplanner")
    jax.tree.map(np.testing.assert_array_equal, a.state, b.state)
    assert [r["eval_return"] for r in summary_a["runs"]] == [r["eval_return"] for r in summary_b["runs"]]
    # the two seeds differ, and UP-MPC acted after the warm-up (the planner's uncertainty was logged)
    assert not np.array_equal(a.state.buffer.data.action[0], a.state.buffer.data.action[1])
    assert np.all(np.abs(np.asarray(a.state.buffer.data.action)) <= 2.0)       # Pendulum's bounds


@pytest.mark.parametrize("env", ["CartPoleSwingUp-v0", "MountainCarContinuous-v0"])
def test_other_continuous_envs_trace(env):
    """The whole program traces (shapes and dtypes, nothing compiled) on the other envs of the issue,
    MountainCar's termination rule inside UP-MPC and the rollouts included."""
    trainer = coplanner.make_train(dataclasses.replace(TINY, env=env))
    state, metrics = jax.eval_shape(jax.vmap(trainer), jnp.stack([jax.random.PRNGKey(0)] * 2))
    obs_dim = {"CartPoleSwingUp-v0": 5, "MountainCarContinuous-v0": 2}[env]
    assert state.obs.shape == (2, 1, obs_dim)
    assert metrics["explore_uncertainty"].shape == (2, TINY.total_timesteps)


def test_save_load_identical_actions(cli_runs):
    out, summary = cli_runs[0]
    loaded = load_run(out, coplanner.Config, coplanner.make_train, "coplanner")
    assert loaded.config == TINY
    # The restored greedy policy replays the CLI's final evaluation: same episodes (the CLI's eval key,
    # fold_in(fold_in(seed key, 0x5EED), 0)), same returns, hence the same actions step by step.
    keys = jnp.stack([jax.random.PRNGKey(r["seed"]) for r in summary["runs"]])
    trainer = loaded.trainer

    def replay_eval(state, key):
        key = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), 0)
        return evaluate_trainer(trainer, state, key, EVAL_EPISODES)["return"].mean()

    returns = np.asarray(jax.jit(jax.vmap(replay_eval))(loaded.state, keys))
    np.testing.assert_allclose(returns, [r["eval_return"] for r in summary["runs"]], rtol=1e-5)
    obs = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    for r in range(2):
        state = jax.tree.map(lambda x: x[r], loaded.state)
        np.testing.assert_array_equal(loaded.act(r, obs, jax.random.PRNGKey(0)),
                                      trainer.act(state, obs, jax.random.PRNGKey(1)))
    with pytest.raises(ValueError, match=r"COPlanner act: expected a batch of Pendulum-v1 observations"):
        loaded.act(0, jnp.zeros((8, 4)))


# ---------------------------------------------------------------------------------------------
# Learning check: Pendulum-v1, 3 seeds in one program, against random play
# ---------------------------------------------------------------------------------------------
# Small networks (ensemble 5 x 2 swish layers of 64, model batch 64; SAC 2 x 64, batch 64), the paper's
# UP-MPC (K = 5, H = 5, α_o = 1, α_c = 2) and G = 20 updates per env step, M = 20 conservative rollouts
# of length 1 per env step, 2 000 env steps (one random episode, then 9 with optimistic UP-MPC).
# Measured (greedy return over 8 episodes): this test, seeds 0-2: -943, -292, -466 (mean -567); with
# M = 100 and batch 128 instead (3x the time): -619, -109, -867 (mean -532). Random play: -1290 (mean over
# 3 keys x 16 episodes: -1270, -1372, -1228); the zero action: -1295. mbpo.py's test (M = 100, batch 128)
# measured mean -272 on the same budget.
PENDULUM = coplanner.Config(total_timesteps=2_000, ensemble_size=5, hidden_size=64, num_layers=2, model_batch_size=64,
                            rollouts_per_step=20, updates_per_step=20, batch_size=64, sac_hidden_size=64)
PENDULUM_SEEDS = 3


def random_play_return(trainer, keys, episodes=16):
    """Mean return of uniform random actions in the trainer's env (one number per key)."""
    env, params = trainer.env, trainer.env_params
    low, high = -2.0, 2.0   # Pendulum-v1's torque bounds

    def act(obs, key):
        return jax.random.uniform(key, (obs.shape[0], 1), minval=low, maxval=high)

    return jax.vmap(lambda k: evaluate(env, params, act, k, episodes)["return"].mean())(keys)


@pytest.mark.learning
def test_pendulum_greedy_return_beats_random_play():
    trainer = coplanner.make_train(PENDULUM)

    def run(key):
        state, _ = trainer(key)
        return evaluate_trainer(trainer, state, jax.random.fold_in(key, 1), num_episodes=8)["return"].mean()

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(PENDULUM_SEEDS)])
    returns = np.asarray(jax.jit(jax.vmap(run))(keys))
    random_return = float(np.asarray(random_play_return(trainer, keys[:2])).mean())
    print(f"COPlanner Pendulum-v1 {PENDULUM.total_timesteps} env steps: greedy return {returns.mean():.1f} over "
          f"{PENDULUM_SEEDS} seeds {np.round(returns, 1)}; random play {random_return:.1f}")
    # Random play scores about -1300. -900 holds if one seed fails completely (-1300) while the other two
    # reach about -700; it is 400 above random play.
    assert random_return < -1100, random_return
    assert returns.mean() > -900, returns
