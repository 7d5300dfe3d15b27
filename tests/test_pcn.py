"""PCN: returns-to-go, dominance, crowding distance, buffer scores, commands and buffer insertion on
hand-computed cases, config errors, a Deep Sea Treasure learning check, determinism and save -> load
through the CLI with the front in summary.json.

Every trained program vmaps its seeds and is compiled once per module (module-scoped fixtures).
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.multi_objective import pcn
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError


def seed_keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


# ----------------------------------------------------------------------------------------------
# Pure pieces (exact answers)
# ----------------------------------------------------------------------------------------------
def test_returns_to_go():
    rewards = jnp.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [9.0, 9.0]])
    # Length 3: the last row is not part of the episode. γ = 0.5: R_0 = 1 + 0.5·2 + 0.25·3 = 2.75, ...
    np.testing.assert_allclose(pcn.returns_to_go(rewards, 3, 0.5),
                               [[2.75, 0.5], [3.5, 1.0], [3.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(pcn.returns_to_go(rewards, 4, 1.0), [[15, 10], [14, 10], [12, 9], [9, 9]])


def test_dominated():
    points = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    valid = jnp.array([True, True, True, True, True, False])
    # Equal points do not dominate each other; the invalid (5, 5) dominates nothing and counts as dominated.
    np.testing.assert_array_equal(pcn.dominated(points, valid), [False, False, False, False, True, True])


def test_crowding_distance_by_hand():
    points = jnp.array([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0], [4.0, 4.0], [100.0, -100.0]])
    valid = jnp.array([True, True, True, True, False])
    # Normalized: x -> (0, .25, .5, 1), y -> (0, .5, .25, 1). Along x, point 1 sits between 0 and .5
    # (gap .5), point 2 between .25 and 1 (.75); along y, point 2: .5, point 1: .75; extremes get 1 each.
    np.testing.assert_allclose(pcn.crowding_distance(points, valid), [2.0, 1.25, 1.25, 2.0, 0.0], atol=1e-6)


def test_episode_scores_by_hand():
    returns = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.0, 0.0], [7.0, 7.0]])
    valid = jnp.array([True, True, True, True, True, False])
    # Non-dominated: rows 0-3 (row 3 repeats row 0), row 4 is 0.7071 from (0.5, 0.5).
    # Crowding distances (stable sorts): 1.5, 2, 2, 1, 1: none is <= 0.2 ...
    expected = [0.0, 0.0, 0.0, -1e-5, -np.sqrt(0.5) - 1e-5, -np.inf]
    np.testing.assert_allclose(pcn.episode_scores(returns, valid, 0.2), expected, rtol=1e-6)
    # ... and rows 3 and 4 are at threshold 1: their scores double.
    expected = [0.0, 0.0, 0.0, -2e-5, 2 * (-np.sqrt(0.5) - 1e-5), -np.inf]
    np.testing.assert_allclose(pcn.episode_scores(returns, valid, 1.0), expected, rtol=1e-6)


def test_command_set_and_sampling():
    returns = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    commands = pcn.command_set(returns, jnp.array([3, 5, 7]), jnp.array([0.0, -0.1, -5.0]), 2)
    # The two best episodes are both non-dominated; each objective's spread over them is 0.5.
    np.testing.assert_allclose(commands.returns, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(commands.horizons, [3.0, 5.0])
    np.testing.assert_array_equal(commands.valid, [True, True])
    np.testing.assert_allclose(commands.spread, [0.5, 0.5])
    sample = jax.jit(jax.vmap(lambda k: pcn.sample_command(k, commands, 2)))
    desired, horizon = sample(jax.random.split(jax.random.PRNGKey(0), 2000))
    desired, horizon = np.asarray(desired), np.asarray(horizon)
    base = np.where((horizon == 1.0)[:, None], [[1.0, 0.0]], [[0.0, 1.0]])   # horizon 3 - 2 = 1, or 5 - 2 = 3
    assert set(horizon.tolist()) == {1.0, 3.0}
    raised = desired - base
    assert np.all(raised >= 0) and np.all(raised <= 0.5) and np.all((raised > 0).sum(1) <= 1)
    assert 0.4 < (raised[:, 0] > 0).mean() < 0.6               # a uniformly chosen objective
    _, clipped = pcn.sample_command(jax.random.PRNGKey(1), commands, 10)
    assert clipped == 1.0
    dominated_only = pcn.command_set(returns, jnp.array([3, 5, 7]), jnp.array([0.0, -0.1, -5.0]), 3)
    np.testing.assert_array_equal(dominated_only.valid, [True, True, False])


def test_next_command():
    desired, horizon = pcn.next_command(jnp.array([5.0, -2.0]), jnp.float32(1.0), jnp.array([0.0, -1.0]),
                                        jnp.array([100.0, -1.5]))
    np.testing.assert_allclose(desired, [5.0, -1.5])          # -2 - (-1) = -1, clipped to max_return -1.5
    assert horizon == 1.0                                      # never below 1


def test_pcn_loss():
    log_probs = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    np.testing.assert_allclose(pcn.pcn_loss(log_probs, jnp.array([0, 2])), -(np.log(0.5) + np.log(0.8)) / 2,
                               rtol=1e-6)


def test_add_episodes_fills_empty_then_lowest_slots():
    capacity, horizon = 4, 3
    buffer = pcn.EpisodeBuffer(jnp.zeros((capacity, horizon, 1)), jnp.zeros((capacity, horizon), jnp.int32),
                               jnp.zeros((capacity, horizon, 2)), jnp.zeros(capacity, jnp.int32),
                               jnp.array([0.5, -jnp.inf, -2.0, -jnp.inf]))
    traj = pcn.Trajectories(jnp.arange(9.0).reshape(3, 3, 1), jnp.array([[1, 2, 3], [0, 0, 0], [3, 3, 3]]),
                            jnp.array([[[1.0, -1], [2, -1], [0, 0]], [[9, 9], [9, 9], [9, 9]],
                                       [[4, -1], [0, 0], [0, 0]]]),
                            jnp.array([2, 3, 1]))
    new = pcn.add_episodes(buffer, traj, jnp.array([True, False, True]), 1.0)
    # Envs 0 and 2 finished: they take the empty slots 1 and 3; env 1 (running) is not written.
    np.testing.assert_allclose(new.score, [0.5, 1.0, -2.0, 1.0])
    np.testing.assert_array_equal(new.length, [0, 2, 0, 1])
    np.testing.assert_allclose(new.rtg[1], [[3, -2], [2, -1], [0, 0]])
    np.testing.assert_allclose(new.rtg[3], [[4, -1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(new.action[1], [1, 2, 3])
    full = pcn.add_episodes(new, traj, jnp.array([False, True, False]), 1.0)
    # No empty slot left: the lowest score (-2, slot 2) is replaced.
    np.testing.assert_allclose(full.score, [0.5, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(full.length, [0, 2, 3, 1])


# ----------------------------------------------------------------------------------------------
# Configuration errors
# ----------------------------------------------------------------------------------------------
def test_scalar_reward_env_raises_clear_error():
    with pytest.raises(ConfigError, match=r"multi-objective env.*CartPole-v1.*DeepSeaTreasure"):
        pcn.make_train(pcn.Config(env="CartPole-v1"))


def test_box_action_env_raises_clear_error():
    with pytest.raises(ConfigError, match=r"only discrete.*Pendulum-v1.*Box"):
        pcn.make_train(pcn.Config(env="Pendulum-v1"))


@pytest.mark.parametrize("changes, match", [
    ({"preference": "1,2,3"}, "preference"),
    ({"scaling_factor": "1,1"}, "scaling_factor"),
    ({"max_return": "1,x"}, "max_return"),
    ({"buffer_size": 5, "num_envs": 10}, "buffer_size"),
    ({"num_er_episodes": 200}, "num_er_episodes"),
    ({"total_timesteps": 50}, "total_timesteps"),
    ({"gamma": 1.5}, "gamma"),
    ({"crowding_threshold": -1.0}, "crowding_threshold"),
])
def test_bad_config_raises_before_compiling(changes, match):
    with pytest.raises(ConfigError, match=match):
        pcn.make_train(dataclasses.replace(pcn.Config(), **changes))


# ----------------------------------------------------------------------------------------------
# Through the CLI: the Deep Sea Treasure learning check (fronts in summary.json), determinism,
# save -> load. One config, so the CLI's programs and the direct one below are the only big compiles.
# ----------------------------------------------------------------------------------------------
# 10,000 env steps (100 rounds of 10 envs x 10 steps), the paper's network and learner settings,
# max_return (100, 0) as in morl-baselines' DST example. The front is scored at γ = 0.99.
DST_CONFIG = pcn.Config(total_timesteps=10_000, max_return="100,0")
NUM_SEEDS = 4


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pcn") / "run"
    opts = RunOptions(out=str(out), num_seeds=NUM_SEEDS, eval_episodes=2, log_points=4, quiet=True, plot=True)
    summary = train_and_evaluate(DST_CONFIG, pcn.make_train, opts, algorithm="pcn")
    return out, summary


@pytest.fixture(scope="module")
def direct_states():
    """Seeds 0, 1 and 0 again, trained by calling ``jit(vmap(train))`` directly (a shorter budget)."""
    trainer = pcn.make_train(dataclasses.replace(DST_CONFIG, total_timesteps=2_000))
    return trainer, jax.jit(jax.vmap(trainer))(seed_keys((0, 1, 0)))[0]


@pytest.mark.learning
def test_dst_front_hypervolume(finished_run):
    _, summary = finished_run
    reports = [run["report"] for run in summary["runs"]]
    ratios = np.array([r["hypervolume_ratio"] for r in reports])
    # Reference point (0, -25); the exact γ=0.99 front has hypervolume 360.4. The nearest treasure
    # alone scores 0.047 of it, the farthest alone 0.42; the same program with lr 1e-12 (an untrained
    # policy on the targets its random episodes found) 0.03 on average over seeds 0-3. Measured with
    # 2,000 steps: 4-seed means 0.88-0.97. With this config (10,000 steps): seeds 0-3 1.000, 1.000,
    # 0.849, 1.000; seeds 4-7 0.992, 0.994, 1.000, 1.000; with 20,000 steps seed 2 still stops at
    # 0.849. The check is that an agent recovers the whole convex front, hypervolume within 1%
    # of the true front's: 7 of 8 seeds measured do, so at least 2 of these 4 must (at a per-seed
    # rate of 7/8 that fails with probability ~1%); the mean keeps a margin below the lowest measured.
    assert (ratios >= 0.99).sum() >= 2, ratios
    assert ratios.mean() > 0.9, ratios
    assert np.mean([r["cardinality"] for r in reports]) >= 8, reports


def test_same_key_same_result(direct_states):
    _, state = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), (state.params, state.buffer))
    kernel = state.params["params"]["Dense_0"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[1])


def test_save_load_identical_actions(finished_run):
    """The checkpoint, loaded back, acts exactly like the state the CLI held in memory: its report
    (the greedy policy conditioned on every non-dominated target, with the run's own key) reproduces
    summary.json's, and its evaluation the CLI's. (A separately compiled program with another number
    of seeds is not compared: its float rounding can differ and the runs drift apart.)"""
    out, summary = finished_run
    assert len(summary["runs"]) == NUM_SEEDS and len(summary["runs"][0]["eval_return"]) == 2   # a vector return
    loaded = load_run(out, pcn.Config, pcn.make_train, "pcn")
    assert loaded.config == DST_CONFIG and loaded.update == DST_CONFIG.num_updates
    obs = jnp.stack(jnp.meshgrid(jnp.arange(11), jnp.arange(11), indexing="ij"), -1).reshape(-1, 2)
    for r in range(NUM_SEEDS):
        restored = jax.tree.map(lambda x: x[r], loaded.state)
        report = loaded.trainer.report(restored, jax.random.fold_in(jax.random.PRNGKey(r), 0x4E9))
        expected = summary["runs"][r]["report"]
        for key in ("front_targets", "front_horizons", "front_returns"):
            assert report[key] == expected[key], key
        np.testing.assert_array_equal(loaded.act(r, obs), loaded.trainer.act(restored, obs, jax.random.PRNGKey(0)))


def test_summary_carries_each_seeds_front_and_the_plot_draws_it(finished_run):
    """The CLI stores ``Trainer.report`` per run in summary.json; front.png draws it beside the true front."""
    from scripts import plot as plot_script

    out, _ = finished_run
    summary = json.loads((out / "summary.json").read_text())
    for run in summary["runs"]:
        report = run["report"]
        assert {"front", "true_front", "hypervolume", "hypervolume_ratio", "expected_utility", "igd",
                "front_targets", "front_returns"} <= set(report)
        assert np.asarray(report["front"]).shape[1] == 2
        assert len(report["front_targets"]) == len(report["front_returns"]) >= 1
    assert (out / "front.png").stat().st_size > 1000
    assert plot_script.main([str(out), "--front", "--out", str(out / "front2.png")]) == 0
