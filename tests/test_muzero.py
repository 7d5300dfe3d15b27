"""Tests of agents/model_based/muzero.py: the n-step value targets and unroll masks on hand-built
trajectories (terminations stop the bootstrap, truncations bootstrap), the value transform, the
trajectory buffer's windows, the mctx model functions' shapes, config errors (a continuous env among
them), and one short CartPole-v1 run through the CLI (4 seeds in one compiled program) for the
learning check, determinism, and save -> load -> identical actions."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.model_based import muzero
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer
from jaxrl.io import read_jsonl


# ---------------------------------------------------------------------------------------------
# Targets on a hand-built trajectory
# ---------------------------------------------------------------------------------------------
def test_value_targets_stop_at_termination_and_bootstrap_through_truncation():
    # 8 steps of one env, n = 2, γ = 0.5. The episode terminates after step 2 and is truncated by the
    # time limit after step 5; bootstrap_values (the true next state's value) matter only at step 5.
    rewards = jnp.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    terminated = jnp.array([0.0, 0, 1, 0, 0, 0, 0, 0])
    truncated = jnp.array([0.0, 0, 0, 0, 0, 1, 0, 0])
    search_values = jnp.array([10.0, 20, 30, 40, 50, 60, 70, 80])
    bootstrap_values = jnp.array([7.0, 7, 7, 7, 7, 100, 7, 7])
    z = muzero.value_targets(rewards, terminated, truncated, search_values, bootstrap_values, 0.5, td_steps=2)
    expected = [
        1 + 0.5 * 2 + 0.25 * 30,        # t=0: no end within 2 steps: bootstrap from the search value ν_2
        2 + 0.5 * 3,                    # t=1: terminates after step 2: no bootstrap
        3,                              # t=2: the terminal step itself
        4 + 0.5 * 5 + 0.25 * 60,        # t=3: new episode, ν_5
        5 + 0.5 * (6 + 0.5 * 100),      # t=4: truncated after step 5: bootstrap from its true next state
        6 + 0.5 * 100,                  # t=5: the truncated step itself
    ]
    np.testing.assert_allclose(np.asarray(z), expected, rtol=1e-6)


def test_value_targets_batched_columns_are_independent():
    # Three columns, n = 3, γ = 0.9: no end; terminated at once; terminated and truncated at the same
    # step (a termination on the time limit's last step: no bootstrap).
    rewards = jnp.ones((5, 3))
    terminated = jnp.zeros((5, 3)).at[0, 1].set(1).at[0, 2].set(1)
    truncated = jnp.zeros((5, 3)).at[0, 2].set(1)
    z = muzero.value_targets(rewards, terminated, truncated, jnp.full((5, 3), 4.0), jnp.full((5, 3), 50.0),
                             0.9, td_steps=3)
    full = 1 + 0.9 + 0.81 + 0.729 * 4
    np.testing.assert_allclose(np.asarray(z), [[full, 1.0, 1.0], [full, full, full]], rtol=1e-6)


def test_unroll_masks():
    # Four windows (columns), K = 3: no end; termination after row 1; truncation after row 0;
    # termination after row 0 and (in the next episode) truncation after row 1.
    terminated = jnp.array([[0.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    truncated = jnp.array([[0.0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    alive, absorbing = muzero.unroll_masks(terminated, truncated, 3)
    np.testing.assert_array_equal(np.asarray(alive).T, [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(absorbing).T, [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 1]])


def test_value_transform_round_trip():
    x = jnp.array([-300.0, -1.0, 0.0, 0.5, 3.0, 99.0, 1000.0])
    assert float(muzero.h_transform(jnp.float32(3.0))) == pytest.approx(1.003)       # √4 − 1 + 0.001·3
    assert float(muzero.h_transform(jnp.float32(0.0))) == 0.0
    np.testing.assert_allclose(np.asarray(muzero.h_inverse(muzero.h_transform(x))), np.asarray(x), rtol=1e-4,
                               atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The trajectory buffer
# ---------------------------------------------------------------------------------------------
def test_buffer_windows_are_consecutive_rows_of_one_env_among_the_kept_rows():
    rows, num_envs = 5, 2
    example = muzero.Step(jnp.zeros((num_envs, 1)), jnp.zeros(num_envs, jnp.int32), *[jnp.zeros(num_envs)] * 5,
                          jnp.zeros((num_envs, 2)))

    def chunk(first, n):   # rows first..first+n-1 with obs = 10 · time + env
        t = jnp.arange(first, first + n, dtype=jnp.float32)[:, None] * 10 + jnp.arange(num_envs)
        return jax.tree.map(lambda x: jnp.zeros((n,) + x.shape, x.dtype), example)._replace(obs=t[..., None])

    @jax.jit
    def fill_and_sample(key):
        buffer = muzero.buffer_init(rows, example)
        buffer = muzero.buffer_add(muzero.buffer_add(buffer, chunk(0, 4)), chunk(4, 3))   # 7 rows into 5: 2..6 kept
        return buffer.size, buffer.position, muzero.buffer_sample(buffer, key, 256, 3).obs[..., 0]

    size, position, windows = fill_and_sample(jax.random.PRNGKey(0))
    assert int(size) == 5 and int(position) == 2
    windows = np.asarray(windows)                        # (3, 256)
    time, env = windows // 10, windows % 10
    assert (env == env[0]).all() and set(env[0].tolist()) == {0, 1}
    assert ((time[1:] - time[:-1]) == 1).all()
    assert set(time[0].tolist()) == {2, 3, 4}           # every start has 3 kept rows from it on


# ---------------------------------------------------------------------------------------------
# The model functions handed to mctx
# ---------------------------------------------------------------------------------------------
def test_root_and_recurrent_fn_shapes():
    network = muzero.MuZeroNetwork(num_actions=3, latent_size=6, hidden_size=8)
    root_fn, recurrent_fn = muzero.make_model_fns(network, 0.97, value_transform=True)

    @jax.jit
    def outputs(obs, action):
        params = network.init(jax.random.PRNGKey(1), obs[:1], action[:1])
        root = root_fn(params, obs)
        _, raw_value = network.apply(params, root.embedding, method=muzero.MuZeroNetwork.predict)
        return root, raw_value, recurrent_fn(params, jax.random.PRNGKey(2), action, root.embedding)

    obs, action = jax.random.normal(jax.random.PRNGKey(0), (5, 4)), jnp.array([0, 1, 2, 0, 1])
    root, raw_value, (out, latent) = outputs(obs, action)
    assert root.prior_logits.shape == (5, 3) and root.value.shape == (5,) and root.embedding.shape == (5, 6)
    np.testing.assert_allclose(np.asarray(root.value), np.asarray(muzero.h_inverse(raw_value)), rtol=1e-6)
    assert out.reward.shape == out.discount.shape == out.value.shape == (5,)
    assert out.prior_logits.shape == (5, 3) and latent.shape == (5, 6)
    np.testing.assert_allclose(np.asarray(out.discount), 0.97)
    latent = np.asarray(latent)    # min-max scaled per sample
    np.testing.assert_allclose(latent.min(-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(latent.max(-1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def test_continuous_env_raises_clear_config_error():
    with pytest.raises(ConfigError, match=r"MuZero supports only discrete.*Pendulum-v1.*Box"):
        muzero.make_train(muzero.Config(env="Pendulum-v1"))


@pytest.mark.parametrize("override, message", [
    (dict(buffer_steps=10), r"buffer_steps=10 must hold one training window \(unroll_steps \+ td_steps \+ 1 = 16"),
    (dict(total_timesteps=2_000, learning_starts=2_000), "no gradient step would be taken"),
    (dict(gamma=1.5), "gamma"),
    (dict(num_simulations=0), "num_simulations"),
    (dict(total_timesteps=100), "less than one iteration"),
])
def test_bad_config_raises_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        muzero.make_train(muzero.Config(**override))


def test_first_learning_iteration():
    # 128 env steps per iteration: 1 000 steps are reached after iteration 7 (8 · 128 = 1 024)
    assert muzero.first_learning_iteration(muzero.Config()) == 7
    # a window of 16 rows needs 2 iterations of 8 rows, even with learning_starts 0
    assert muzero.first_learning_iteration(muzero.Config(learning_starts=0, num_steps=8)) == 1


# ---------------------------------------------------------------------------------------------
# One CartPole-v1 run through the CLI: learning check, determinism, save -> load -> identical actions
# ---------------------------------------------------------------------------------------------
# 16 384 env steps (8 envs x 16 steps x 128 iterations), 8 simulations per search, otherwise the
# defaults; 4 seeds in one program. Measured greedy evaluation return (a noise-free search every
# step, 8 episodes per seed) through the CLI: seeds 0-3 (this test): 222.0, 122.9, 178.1, 85.9 (mean
# 152.2); seeds 4-7 (--seed 4): 468.1, 139.1, 170.1, 234.4 (mean 252.9). The mean training-episode
# return over the last 2 048 env steps of a direct jit(vmap) call: seeds 0-3 mean 191.9, seeds 4-7
# mean 189.8. A uniformly random policy scores 21.6 (256 episodes). The threshold 80 holds if two of
# the four seeds learn nothing (22) and the other two reach 140.
CARTPOLE = muzero.Config(total_timesteps=16_384, num_simulations=8)
SEEDS = 4
EVAL_EPISODES = 8


def run_cli(out):
    return train_and_evaluate(CARTPOLE, muzero.make_train,
                              RunOptions(out=str(out), num_seeds=SEEDS, eval_episodes=EVAL_EPISODES, log_points=4,
                                         quiet=True, plot=False), algorithm="muzero")


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("muzero") / "cartpole"
    return out, run_cli(out)


@pytest.mark.learning
def test_cartpole_learns(cartpole_run):
    out, summary = cartpole_run
    returns = np.array([r["eval_return"] for r in summary["runs"]])
    last = [row for row in read_jsonl(out / "metrics.jsonl") if row["update"] == CARTPOLE.num_updates - 1]
    values = {k: np.mean([row[k] for row in last]) for k in ("search_value", "network_value", "episode_return")}
    print(f"MuZero CartPole-v1 {CARTPOLE.total_timesteps} env steps: greedy return {returns.mean():.1f} over "
          f"{SEEDS} seeds {np.round(returns, 1)}; last iteration: training return {values['episode_return']:.1f}, "
          f"search value {values['search_value']:.2f}, network value {values['network_value']:.2f}")
    assert returns.mean() > 80, returns


def test_same_key_same_result(cartpole_run, tmp_path):
    """The same seeds trained again (a second run of the same program) give identical networks."""
    out, summary = cartpole_run
    again = run_cli(tmp_path / "again")
    assert [r["eval_return"] for r in again["runs"]] == [r["eval_return"] for r in summary["runs"]]
    first = load_run(out, muzero.Config, muzero.make_train, "muzero").state.params
    second = load_run(tmp_path / "again", muzero.Config, muzero.make_train, "muzero").state.params
    jax.tree.map(np.testing.assert_array_equal, first, second)
    kernel = np.asarray(jax.tree.leaves(first)[0])
    assert not np.array_equal(kernel[0], kernel[1])              # different seeds, different networks


def test_save_load_identical_actions(cartpole_run):
    """The checkpoint, loaded back, replays the run's final greedy evaluation exactly: every action of
    its 8 episodes per seed (up to 500 searches each) is the one the trained state chose."""
    out, summary = cartpole_run
    loaded = load_run(out, muzero.Config, muzero.make_train, "muzero")
    assert loaded.config == CARTPOLE and loaded.update == CARTPOLE.num_updates
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(SEEDS)])

    def evaluate(state, key):   # the CLI's final evaluation of a run (jaxrl.cli.train_and_evaluate, eval_one)
        eval_key = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), 0)
        return evaluate_trainer(loaded.trainer, state, eval_key, EVAL_EPISODES)

    results = jax.jit(jax.vmap(evaluate))(loaded.state, keys)
    np.testing.assert_array_equal(np.asarray(results["return"]).mean(axis=1),
                                  [r["eval_return"] for r in summary["runs"]])
    np.testing.assert_array_equal(np.asarray(results["length"]).mean(axis=1),
                                  [r["eval_length"] for r in summary["runs"]])
    obs = jax.random.normal(jax.random.PRNGKey(3), (16, 4))
    actions = np.asarray(loaded.act(0, obs))
    assert actions.shape == (16,) and set(actions.tolist()) <= {0, 1}
