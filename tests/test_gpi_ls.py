"""GPI-LS: GPI action selection, the TD target and loss, exact two-objective corner weights and the
linear-support CCS update on hand-computed cases, config errors, a Deep Sea Treasure learning check
through the CLI (fronts in summary.json), determinism and save -> load.

Every trained program vmaps its seeds and is compiled once per module (module-scoped fixtures).
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.multi_objective import gpi_ls
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError


def seed_keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


# ----------------------------------------------------------------------------------------------
# GPI, target, loss (exact answers)
# ----------------------------------------------------------------------------------------------
class TableQ:
    """A stand-in network: Q(s, ·, w') depends only on which support weight w' it is asked about
    (w'_0 = 1: policy A, else policy B), for every state."""

    num_objectives = 2
    A = jnp.array([[3.0, 0.0], [0.0, 0.0], [1.0, 1.0]])     # actions x objectives
    B = jnp.array([[0.0, 0.0], [0.0, 3.0], [1.5, 1.5]])

    def apply(self, params, obs, w):
        return jnp.where((w[:, 0] == 1.0)[:, None, None], self.A, self.B)


def test_gpi_action_picks_the_best_policy_and_action():
    net, obs = TableQ(), jnp.zeros((3, 2))
    support = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    both = jnp.array([True, True, False])
    # Under (1, 0): policy A's action 0 scores 3 (B's best: 1.5) -> action 0 from policy 0.
    # Under (0, 1): B's action 1 scores 3 -> action 1 from policy 1. Under (.5, .5): A 1.5, B 1.5
    # (action 1 and 2) -> the first best policy, A, and its action 0 (1.5 vs 1.0).
    for w, action, policy in [((1.0, 0.0), 0, 0), ((0.0, 1.0), 1, 1), ((0.5, 0.5), 0, 0)]:
        a, p = gpi_ls.gpi_action(net, None, obs, jnp.array(w), support, both)
        np.testing.assert_array_equal(a, [action] * 3)
        np.testing.assert_array_equal(p, [policy] * 3)
    # With only B in the support, (1, 0) takes B's action 2 (value 1.5).
    a, p = gpi_ls.gpi_action(net, None, obs, jnp.array([1.0, 0.0]), support, jnp.array([False, True, False]))
    np.testing.assert_array_equal(a, [2, 2, 2])
    np.testing.assert_array_equal(p, [1, 1, 1])


def test_td_target_and_loss():
    next_q = jnp.array([[[1.0, 0.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 2.0]]])
    w = jnp.array([[0.9, 0.1], [0.1, 0.9]])
    reward = jnp.array([[1.0, -1.0], [1.0, -1.0]])
    target = gpi_ls.td_target(reward, jnp.array([0.0, 1.0]), next_q, w, 0.5)
    # Row 0: w · Q = (0.9, 0.2) -> action 0: (1, -1) + 0.5 (1, 0). Row 1: terminated: the reward.
    np.testing.assert_allclose(target, [[1.5, -1.0], [1.0, -1.0]])
    # Huber with κ = 0.5: errors (0.2, -2): 0.5·0.04 and 0.5·2, averaged.
    np.testing.assert_allclose(gpi_ls.gpi_ls_loss(jnp.array([0.2, -2.0]), jnp.zeros(2), 0.5), (0.02 + 1.0) / 2)


# ----------------------------------------------------------------------------------------------
# Linear support (exact answers)
# ----------------------------------------------------------------------------------------------
def test_corner_weights_of_a_hand_built_ccs():
    # Lines x, 1 - x and 0.6 (w = (x, 1 - x)); (0.1, 0.1) is never on top; one slot is empty.
    values = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6], [0.1, 0.1], [9.0, 9.0]])
    valid = jnp.array([True, True, True, True, False])
    weights, mask = gpi_ls.corner_weights(values, valid)
    assert weights.shape == (6, 2)
    # The envelope max(x, 1 - x, 0.6) bends at 0.4 and 0.6; x = 0.5, where the first two cross, lies below it.
    np.testing.assert_allclose(weights[mask][:, 0], [0.0, 0.4, 0.6, 1.0], atol=1e-6)
    np.testing.assert_allclose(weights[mask].sum(1), 1.0)
    empty, empty_mask = gpi_ls.corner_weights(values, jnp.zeros(5, bool))
    np.testing.assert_allclose(empty[empty_mask], [[0.0, 1.0], [1.0, 0.0]])


def test_corner_weights_dedupe_concurrent_lines():
    # Three lines through (0.5, 0.5): x, 1 - x and 0.5 -> one corner at 0.5.
    values = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    weights, mask = gpi_ls.corner_weights(values, jnp.ones(3, bool))
    np.testing.assert_allclose(weights[mask][:, 0], [0.0, 0.5, 1.0], atol=1e-6)


def test_add_solution_sequence():
    ls = gpi_ls.init_linear_support(3, 10, 2)
    add = jax.jit(gpi_ls.add_solution)

    def ccs(ls):
        return sorted(map(tuple, np.asarray(ls.values)[np.asarray(ls.valid)].tolist()))

    ls = add(ls, jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]))
    ls = add(ls, jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0]))
    assert ccs(ls) == [(0.0, 1.0), (1.0, 0.0)]
    # (0.4, 0.4) at (.5, .5) is below the CCS at every visited weight (1, 1, 0.5): discarded.
    ls = add(ls, jnp.array([0.4, 0.4]), jnp.array([0.5, 0.5]))
    assert ccs(ls) == [(0.0, 1.0), (1.0, 0.0)] and int(ls.visited_valid.sum()) == 3
    # (0.75, 0.75) beats the CCS at (.5, .5); the extremes stay the best at (1, 0) and (0, 1).
    ls = add(ls, jnp.array([0.75, 0.75]), jnp.array([0.5, 0.5]))
    assert ccs(ls) == [(0.0, 1.0), (0.75, 0.75), (1.0, 0.0)]
    # The CCS is full (capacity 3): a value that would join is dropped and counted.
    ls_full = add(ls, jnp.array([0.96, 0.5]), jnp.array([0.75, 0.25]))   # 0.845 > 0.75 there
    assert ccs(ls_full) == ccs(ls) and int(ls_full.dropped) == 1
    # (2, 2) is better everywhere: every old value is removed.
    ls = add(ls, jnp.array([2.0, 2.0]), jnp.array([0.5, 0.5]))
    assert ccs(ls) == [(2.0, 2.0)]
    np.testing.assert_allclose(np.asarray(ls.weights)[np.asarray(ls.valid)], [[0.5, 0.5]])


def test_dedupe_weights():
    w = jnp.array([[0.5, 0.5], [1.0, 0.0], [0.50001, 0.49999], [0.0, 1.0], [1.0, 0.0]])
    mask = gpi_ls.dedupe_weights(w, jnp.array([True, True, True, False, True]))
    np.testing.assert_array_equal(mask, [True, True, False, False, False])


# ----------------------------------------------------------------------------------------------
# Configuration errors
# ----------------------------------------------------------------------------------------------
def test_scalar_reward_env_raises_clear_error():
    with pytest.raises(ConfigError, match=r"multi-objective env.*CartPole-v1.*DeepSeaTreasure"):
        gpi_ls.make_train(gpi_ls.Config(env="CartPole-v1"))


def test_box_action_env_raises_clear_error():
    with pytest.raises(ConfigError, match=r"only discrete.*Pendulum-v1.*Box"):
        gpi_ls.make_train(gpi_ls.Config(env="Pendulum-v1"))


def test_more_than_two_objectives_raises_clear_error():
    with pytest.raises(ConfigError, match=r"2 objectives.*FruitTree-v0 has 6"):
        gpi_ls.make_train(gpi_ls.Config(env="FruitTree-v0"))


@pytest.mark.parametrize("changes, match", [
    ({"preference": "1,2,3"}, "preference"),
    ({"hidden_sizes": "64,x"}, "hidden_sizes"),
    ({"tau": 0.0}, "tau"),
    ({"steps_per_iteration": 1001, "num_envs": 2}, "divisible"),
    ({"total_timesteps": 5_000}, "total_timesteps"),
    ({"max_ccs": 0}, "max_ccs"),
    ({"huber_kappa": 0.0}, "huber_kappa"),
    ({"start_e": 1.5}, "start_e"),
])
def test_bad_config_raises_before_compiling(changes, match):
    with pytest.raises(ConfigError, match=match):
        gpi_ls.make_train(dataclasses.replace(gpi_ls.Config(), **changes))


# ----------------------------------------------------------------------------------------------
# Through the CLI: the Deep Sea Treasure learning check (fronts in summary.json), determinism,
# save -> load. One config, so the CLI's programs and the direct one below are the only big compiles.
# ----------------------------------------------------------------------------------------------
# A short budget: 15,000 env steps in 5 iterations of 3,000, one gradient step per env step on
# batches of 32 (x2), a 64-64 network, lr 1e-3 (3e-4 learns slower on this budget: seeds 0-3
# and 100-103 gave 0.78 on average), target copies every 200 steps (morl-baselines' examples),
# one evaluation episode per weight (DST is deterministic). The front: 21 weights, γ = 0.99.
DST_CONFIG = gpi_ls.Config(total_timesteps=15_000, steps_per_iteration=3_000, lr=1e-3, batch_size=32,
                           gradient_updates=1, hidden_sizes="64,64", buffer_size=15_000, target_update_interval=200,
                           ls_episodes=1, front_divisions=20)
NUM_SEEDS = 4


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpi_ls") / "run"
    opts = RunOptions(out=str(out), num_seeds=NUM_SEEDS, eval_episodes=2, log_points=5, quiet=True, plot=True)
    summary = train_and_evaluate(DST_CONFIG, gpi_ls.make_train, opts, algorithm="gpi_ls")
    return out, summary


@pytest.fixture(scope="module")
def direct_states():
    """Seeds 0, 1 and 0 again, trained by calling ``jit(vmap(train))`` directly."""
    trainer = gpi_ls.make_train(DST_CONFIG)
    return trainer, jax.jit(jax.vmap(trainer))(seed_keys((0, 1, 0)))[0]


@pytest.mark.learning
def test_dst_front_hypervolume(finished_run):
    _, summary = finished_run
    reports = [run["report"] for run in summary["runs"]]
    ratios = np.array([r["hypervolume_ratio"] for r in reports])
    # Reference point (0, -25); the exact γ=0.99 front has hypervolume 360.4. The nearest treasure
    # alone scores 0.047 of it, the farthest alone 0.42; the same program with lr 1e-12 (untrained)
    # 0.16 on average over seeds 0-3. Measured with this config, 4-seed means: through the CLI
    # 0.82 (seeds 0-3) and 0.75 (100-103); by direct jit(vmap) 0.83 (0-3), 0.85 (100-103), 0.83
    # (200-203). Per seed mostly 0.77-0.95, about one seed in ten stuck at a 2-3 point front (0.5-0.66),
    # per-seed std ~0.1. 0.65 is ~3 standard errors of a 4-seed mean below the typical 0.8 and far
    # above every trivial policy.
    assert ratios.mean() > 0.65, ratios
    assert np.mean([r["cardinality"] for r in reports]) >= 3, reports


def test_same_key_same_result(direct_states):
    _, state = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), (state.params, state.ls, state.support))
    kernel = state.params["params"]["Dense_0"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[1])


def test_save_load_identical_actions(finished_run):
    """The checkpoint, loaded back, acts exactly like the state the CLI held in memory: its report
    (the GPI policy rolled out under 21 weights, with the run's own key) reproduces summary.json's.
    (A separately compiled program with another number of seeds is not compared: over 15,000 steps
    its float rounding can differ and the runs drift apart.)"""
    out, summary = finished_run
    assert len(summary["runs"]) == NUM_SEEDS and len(summary["runs"][0]["eval_return"]) == 2   # a vector return
    loaded = load_run(out, gpi_ls.Config, gpi_ls.make_train, "gpi_ls")
    assert loaded.config == DST_CONFIG and loaded.update == DST_CONFIG.num_updates
    obs = jnp.stack(jnp.meshgrid(jnp.arange(11), jnp.arange(11), indexing="ij"), -1).reshape(-1, 2)
    for r in range(NUM_SEEDS):
        restored = jax.tree.map(lambda x: x[r], loaded.state)
        report = loaded.trainer.report(restored, jax.random.fold_in(jax.random.PRNGKey(r), 0x4E9))
        expected = summary["runs"][r]["report"]
        for key in ("front_returns", "ccs", "ccs_weights", "support"):
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
                "ccs", "ccs_weights", "support"} <= set(report)
        assert np.asarray(report["front_returns"]).shape == (21, 2)
        assert len(report["ccs"]) == len(report["ccs_weights"]) >= 1
    assert (out / "front.png").stat().st_size > 1000
    assert plot_script.main([str(out), "--front", "--out", str(out / "front2.png")]) == 0
