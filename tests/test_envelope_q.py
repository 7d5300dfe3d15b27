"""Envelope Q-learning: the envelope target, losses and schedules on hand-computed cases, preference
sampling on the simplex, front evaluation and metrics against exact answers, Deep Sea Treasure and
Fruit Tree learning checks, determinism and save -> load through the CLI.

Every trained program vmaps its seeds and is compiled once per module (module-scoped fixtures).
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.multi_objective import envelope_q as eq
from jaxrl import envs
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError


def seed_keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


# ----------------------------------------------------------------------------------------------
# Envelope target, losses, schedules (exact answers)
# ----------------------------------------------------------------------------------------------
# One next state s' valued under K=2 sampled preferences, A=2 actions, m=2 objectives: [k][a] -> Q vector.
SELECT = np.array([[[1.0, 0.0], [0.0, 2.0]],       # ω'_0: a0, a1
                   [[3.0, -1.0], [0.5, 0.5]]])     # ω'_1: a0, a1
EVAL = np.array([[[10.0, 10.0], [20.0, 20.0]],
                 [[30.0, -5.0], [40.0, 40.0]]])


def test_envelope_target_on_a_hand_built_example():
    # Three transitions sharing s' (same Q arrays), with preferences (0.8, 0.2), (0, 1) and (0, 1).
    w = jnp.array([[0.8, 0.2], [0.0, 1.0], [0.0, 1.0]])
    reward = jnp.array([[1.0, -1.0], [2.0, -1.0], [2.0, -1.0]])
    terminated = jnp.array([0.0, 1.0, 0.0])
    select = jnp.broadcast_to(SELECT, (3,) + SELECT.shape)
    evaluate = jnp.broadcast_to(EVAL, (3,) + EVAL.shape)
    target = eq.envelope_target(reward, terminated, select, evaluate, w, 0.5)
    # Row 0: ω·Q_select = [[0.8, 0.4], [2.2, 0.5]] -> (ω'_1, a0); Q_eval there is (30, -5): (1, -1) + 0.5 (30, -5).
    # Row 1: terminated: the reward only. Row 2: [[0, 2], [-1, 0.5]] -> (ω'_0, a1), Q_eval (20, 20).
    np.testing.assert_allclose(target, [[16.0, -3.5], [2.0, -1.0], [12.0, 9.0]])
    # Without the envelope (W = {ω'_0} only), row 0 would take (ω'_0, a0): (1, -1) + 0.5 (10, 10).
    alone = eq.envelope_target(reward[:1], terminated[:1], select[:1, :1], evaluate[:1, :1], w[:1], 0.5)
    np.testing.assert_allclose(alone, [[6.0, 4.0]])


def test_envelope_losses_exact():
    q = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    target = jnp.array([[3.0, 0.0], [1.0, 1.0]])
    w = jnp.array([[0.5, 0.5], [1.0, 0.0]])
    loss_a, loss_b = eq.envelope_losses(q, target, w)
    # L^A: mean of (2, -2, 1, 1)^2 = 2.5. L^B: utilities (1.5 vs 1.5) and (1 vs 0): mean of (0, 1) = 0.5.
    np.testing.assert_allclose([loss_a, loss_b], [2.5, 0.5])


def test_homotopy_schedule():
    lam = np.asarray(eq.homotopy_lambda(jnp.array([0.0, 0.5, 1.0, 2.0]), 0.5, 1000.0))
    np.testing.assert_allclose(lam, [0.5 + 1 / 1000, 0.5 + np.sqrt(500) / 1000, 1.0, 1.0], rtol=1e-6)
    ramp = np.asarray(eq.homotopy_lambda(jnp.linspace(0, 1, 50), 0.0, 1000.0))
    assert np.all(np.diff(ramp) > 0) and ramp[0] == pytest.approx(1e-3) and ramp[-1] == pytest.approx(1.0)


def test_epsilon_schedule():
    eps = eq.linear_epsilon(jnp.array([0, 50, 100, 500]), 0.5, 0.05, 100.0)
    np.testing.assert_allclose(eps, [0.5, 0.275, 0.05, 0.05], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Preferences
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 3, 6])
def test_preferences_are_uniform_on_the_simplex(m):
    n = 40_000
    w = np.asarray(eq.sample_preferences(jax.random.PRNGKey(0), n, m), np.float64)
    assert w.shape == (n, m) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    # Uniform on the simplex = Dirichlet(1,...,1): each coordinate ~ Beta(1, m-1), mean 1/m,
    # E[w_i^2] = 2 / (m (m + 1)), P(w_i <= t) = 1 - (1 - t)^(m-1). Standard errors are < 0.003 here.
    np.testing.assert_allclose(w.mean(0), 1.0 / m, atol=0.01)
    np.testing.assert_allclose((w**2).mean(0), 2.0 / (m * (m + 1)), atol=0.01)
    for t in (0.1, 0.25, 0.5):
        np.testing.assert_allclose((w[:, 0] <= t).mean(), 1 - (1 - t) ** (m - 1), atol=0.01)


def test_parse_preference():
    np.testing.assert_allclose(eq.parse_preference("", 2), [0.5, 0.5])
    np.testing.assert_allclose(eq.parse_preference("0.25,0.75", 2), [0.25, 0.75])
    np.testing.assert_allclose(eq.parse_preference("0.333,0.333,0.333", 3), [1 / 3] * 3, rtol=1e-6)  # typed thirds
    for bad, match in [("1,2,3", "2 values"), ("-1,2", "non-negative"), ("a,b", "comma-separated"), ("0,0", "positive sum"),
                       ("1,3", r"must sum to 1 .*sum 4\); did you mean '0.25,0.75'")]:
        with pytest.raises(ConfigError, match=match):
            eq.parse_preference(bad, 2)


# ----------------------------------------------------------------------------------------------
# Configuration errors
# ----------------------------------------------------------------------------------------------
def test_scalar_reward_env_raises_clear_error():
    with pytest.raises(ConfigError, match=r"multi-objective env.*CartPole-v1.*DeepSeaTreasure"):
        eq.make_train(eq.Config(env="CartPole-v1"))


def test_box_action_env_raises_clear_error():
    with pytest.raises(ConfigError, match=r"only discrete.*Pendulum-v1.*Box"):
        eq.make_train(eq.Config(env="Pendulum-v1"))


@pytest.mark.parametrize("changes, match", [
    ({"preference": "1,2,3"}, "preference"),
    ({"hidden_sizes": "64,x"}, "hidden_sizes"),
    ({"tau": 0.0}, "tau"),
    ({"num_sample_w": 0}, "num_sample_w"),
    ({"homotopy_initial": 1.5}, "homotopy_initial"),
    ({"homotopy_base": 1.0}, "homotopy_base"),
    ({"learning_starts": 200_000}, "learning_starts"),
    ({"buffer_size": 2, "num_envs": 4}, "buffer_size"),
])
def test_bad_config_raises_before_compiling(changes, match):
    with pytest.raises(ConfigError, match=match):
        eq.make_train(dataclasses.replace(eq.Config(), **changes))


# ----------------------------------------------------------------------------------------------
# Front evaluation and metrics (exact answers on Deep Sea Treasure)
# ----------------------------------------------------------------------------------------------
def test_rollout_returns_discounts_exactly():
    env, params = envs.make("DeepSeaTreasure-v0")
    gamma = 0.9

    def always(action):
        return lambda obs, key: jnp.full(obs.shape[0], action, jnp.int32)

    rollout = jax.jit(lambda act: eq.rollout_returns(env, params, act, jax.random.PRNGKey(0), 3, gamma), static_argnums=0)
    # Down: the 0.7 treasure on the first step.
    np.testing.assert_allclose(rollout(always(1)), [[0.7, -1.0], [0.7, -1.0]], rtol=1e-6)
    # Right: along the surface until the 100-step time limit, treasure never reached.
    disc, undisc = rollout(always(3))
    np.testing.assert_allclose(undisc, [0.0, -100.0])
    np.testing.assert_allclose(disc, [0.0, -(1 - gamma**100) / (1 - gamma)], rtol=1e-5)


def test_front_metrics_against_the_exact_front():
    env, _ = envs.make("DeepSeaTreasure-v0")
    true = env.pareto_front(0.99)
    perfect = eq.front_metrics(np.concatenate([true, true[:3] - 1.0]), env, 0.99)   # plus dominated points
    assert perfect["cardinality"] == 10 and perfect["reference_point"] == [0.0, -25.0]
    assert perfect["hypervolume"] == pytest.approx(perfect["true_hypervolume"])
    assert perfect["hypervolume_ratio"] == pytest.approx(1.0)
    assert perfect["igd"] == pytest.approx(0.0) and perfect["maximum_utility_loss"] == pytest.approx(0.0, abs=1e-12)
    nearest = eq.front_metrics([[0.7, -1.0]], env, 0.99)
    # One point (0.7, -1) against (0, -25): a 0.7 x 24 rectangle.
    assert nearest["hypervolume"] == pytest.approx(0.7 * 24) and nearest["cardinality"] == 1
    assert nearest["igd"] == pytest.approx(np.linalg.norm(true - [0.7, -1.0], axis=1).mean())
    weights = eq.front_weights(2, 100)
    assert weights.shape == (101, 2)
    assert nearest["expected_utility"] == pytest.approx(float((weights @ [0.7, -1.0]).mean()), rel=1e-6)
    json.dumps(perfect)


def test_front_weights_are_capped():
    assert eq.front_weights(2, 100).shape == (101, 2)
    w6 = eq.front_weights(6, 100)          # the 6-objective lattice with 100 divisions has ~96M points
    assert len(w6) <= 1_000 and np.allclose(w6.sum(1), 1.0)


# ----------------------------------------------------------------------------------------------
# Learning check: Deep Sea Treasure (convex), γ = 0.99
# ----------------------------------------------------------------------------------------------
# A short budget (15,000 steps, ~7 % of the authors' 2,000 episodes), a small network, one ε sweep
# from 1 over the first half (more exploration than the default 0.5 start, for the short run).
DST_CONFIG = eq.Config(total_timesteps=15_000, batch_size=32, num_sample_w=4, hidden_sizes="32,32",
                       buffer_size=15_000, learning_starts=100, start_e=1.0, exploration_fraction=0.5)
DST_SEEDS = (0, 1, 2, 3)
GAMMA = 0.99


@pytest.fixture(scope="module")
def dst_fronts():
    trainer = eq.make_train(DST_CONFIG)
    weights = eq.front_weights(2, 20)

    def train_and_front(key):
        state, _ = trainer(key)
        return eq.evaluate_front(trainer, state, jax.random.fold_in(key, 1), weights, 1, GAMMA)["discounted"]

    fronts = np.asarray(jax.jit(jax.vmap(train_and_front))(seed_keys(DST_SEEDS)))
    return trainer, fronts


@pytest.mark.learning
def test_dst_front_hypervolume(dst_fronts):
    trainer, fronts = dst_fronts
    metrics = [eq.front_metrics(f, trainer.env, GAMMA) for f in fronts]
    ratios = np.array([m["hypervolume_ratio"] for m in metrics])
    # Reference point (0, -25); the exact γ=0.99 front has hypervolume 360.4. Going straight to the
    # nearest treasure scores 0.047 of it, only the farthest treasure 0.42, the untrained greedy
    # policies (20 seeds) 0.08 on average (most reach no treasure at all: 0). The paper reports
    # near-complete fronts on DST after 2,000 episodes. Measured with this config: 12 seeds
    # (0-3, 100-103, 200-203) all in 0.81-0.96, mean 0.89, 4-seed means 0.87-0.92 (per-seed std
    # ~0.05). 0.75 is ~5 standard errors below a 4-seed mean and far above every trivial policy.
    assert ratios.mean() > 0.75, ratios
    assert np.mean([m["cardinality"] for m in metrics]) >= 3, metrics


# ----------------------------------------------------------------------------------------------
# Learning check: Fruit Tree (depth 6, six objectives), γ = 1
# ----------------------------------------------------------------------------------------------
# Depth 6: the registered FruitTree-v0 (Config.env reaches no other depth), the paper's and the
# mo-fruit-tree reproduce entry's tree. Depth 5 learns faster (this config at 10,000 steps: utility gap
# closed 0.75 vs 0.59; the defaults 0.46 vs 0.37), but Config.env cannot reach it without a new env id
# in the registry, and there hypervolume separates even less (trained 0.57, untrained 0.62; its 32
# leaves are all on the front). All 64 depth-6 leaves are on the true front (and on its convex hull),
# so the hypervolume of a set of leaves rewards how many distinct leaves it holds, not
# whether each preference gets its best leaf: the per-preference utility below is what separates a
# trained network from an untrained one.
# 10,000 env steps (1,667 episodes), a 64x64 network, lr 1e-3 and a target copy every 200 steps: a
# leaf's value needs six backups (one per level) to reach the root, and a copy every 1,000 steps gives
# only ten in this budget. Utility gap closed at 10,000 steps, seeds 0-3, 32x32 network: the defaults
# (lr 3e-4, copies every 1,000 steps) 0.37, copies every 200 steps 0.37, lr 1e-3 0.47, both 0.48;
# both with 64x64 (this config) 0.59.
FT_CONFIG = eq.Config(env="FruitTree-v0", gamma=1.0, total_timesteps=10_000, lr=1e-3, batch_size=32, num_sample_w=4,
                      hidden_sizes="64,64", buffer_size=10_000, learning_starts=100, target_update_interval=200,
                      start_e=1.0, exploration_fraction=0.5)
FT_SEEDS = (0, 1, 2, 3)
FT_DIVISIONS = 4        # the 126-weight simplex lattice of six objectives


def utility_gap_closed(returns, weights, leaves):
    """Mean over the preferences ω of ``weights (W, m)`` of
    (ω·R_ω − ω·mean leaf) / (max_leaf ω·leaf − ω·mean leaf),
    ``R_ω`` the return ``returns[i]`` of ω's greedy policy: 1 when every ω reaches its best leaf (the
    linear-utility optimum, Yang et al. 2019, Sec. 3), 0 for the uniformly random policy's expected return."""
    weights, leaves = np.asarray(weights, np.float64), np.asarray(leaves, np.float64)
    utility = np.sum(weights * np.asarray(returns, np.float64), axis=1)
    best, uniform = (weights @ leaves.T).max(axis=1), weights @ leaves.mean(axis=0)
    return float(np.mean((utility - uniform) / (best - uniform)))


def test_utility_gap_closed_exact():
    weights = np.array([[1.0, 0.0], [0.5, 0.5]])
    leaves = np.array([[4.0, 0.0], [0.0, 2.0]])        # best utilities 4 and 2, random policy 2 and 1.5
    assert utility_gap_closed([[4.0, 0.0], [4.0, 0.0]], weights, leaves) == pytest.approx(1.0)
    assert utility_gap_closed([[2.0, 1.0], [2.0, 1.0]], weights, leaves) == pytest.approx(0.0)
    # ω_0 takes the worse leaf: (0 − 2) / (4 − 2) = −1; ω_1 a best one (utility 2): 1. Mean 0.
    assert utility_gap_closed([[0.0, 2.0], [4.0, 0.0]], weights, leaves) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def fruit_tree_fronts():
    trainer = eq.make_train(FT_CONFIG)
    weights = eq.front_weights(6, FT_DIVISIONS)

    def train_and_front(key):
        state, _ = trainer(key)
        return eq.evaluate_front(trainer, state, jax.random.fold_in(key, 1), weights, 1, 1.0)["discounted"]

    fronts = np.asarray(jax.jit(jax.vmap(train_and_front))(seed_keys(FT_SEEDS)))
    return trainer, weights, fronts


@pytest.mark.learning
def test_fruit_tree_front(fruit_tree_fronts):
    trainer, weights, fronts = fruit_tree_fronts
    metrics = [eq.front_metrics(f, trainer.env, 1.0) for f in fronts]
    assert len(metrics[0]["true_front"]) == 64
    ratios = np.array([m["hypervolume_ratio"] for m in metrics])
    cardinality = np.array([m["cardinality"] for m in metrics])
    gap = np.array([utility_gap_closed(f, weights, trainer.env.fruits) for f in fronts])
    # Measured with the same metrics over the same 126 preferences (reference point 0^6, γ = 1):
    #                          HV fraction   distinct front points   utility gap closed
    #   always left            0.004         1                       -0.09
    #   always right           0.018         1                        0.08
    #   random policy          0.12          1                        0     (its expected return)
    #   untrained network      0.46 (0.24-0.61)  14.2 (6-23)         -0.01 (-0.29-0.21)   (20 seeds)
    #   best leaf per ω        0.73          50                       1
    #   this config, 12 seeds  0.49 (0.33-0.67)  18.6 (13-22)         0.57 (0.50-0.65)   (seeds 0-11;
    #                          seeds 0-3: 0.48, 19.0, 0.59; 40,000 steps: 0.45, 17.3, 0.72)
    # Every leaf being Pareto-optimal, the untrained network's many distinct leaves already score a
    # hypervolume like the trained one's: the first two checks only rule out single-policy and collapsed
    # fronts; the third, the utility each preference gets, needs learning (the untrained maximum is 0.21).
    # Thresholds: 3.7, 4.8 and 6.8 standard errors of a 4-seed mean (per-seed std 0.10, 2.7, 0.05 over
    # the 12 seeds) below the measured means.
    assert ratios.mean() > 0.3, ratios
    assert cardinality.mean() >= 12, cardinality
    assert gap.mean() > 0.4, gap


# ----------------------------------------------------------------------------------------------
# Determinism, and save -> load through the CLI
# ----------------------------------------------------------------------------------------------
TINY = eq.Config(total_timesteps=512, batch_size=16, num_sample_w=2, hidden_sizes="16", buffer_size=512,
                 learning_starts=64, target_update_interval=64, front_divisions=4)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("envelope") / "run"
    opts = RunOptions(out=str(out), num_seeds=2, eval_episodes=2, log_points=4, quiet=True, plot=True)
    summary = train_and_evaluate(TINY, eq.make_train, opts, algorithm="envelope_q")
    return out, summary


@pytest.fixture(scope="module")
def direct_states():
    trainer = eq.make_train(TINY)
    return trainer, jax.jit(jax.vmap(trainer))(seed_keys((0, 1, 0)))[0]


def test_same_key_same_result(direct_states):
    _, state = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), state.params)
    kernel = state.params["params"]["Dense_0"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[1])


def test_save_load_identical_actions(finished_run, direct_states):
    out, summary = finished_run
    trainer, state = direct_states
    assert len(summary["runs"]) == 2 and len(summary["runs"][0]["eval_return"]) == 2   # a vector return
    loaded = load_run(out, eq.Config, eq.make_train, "envelope_q")
    assert loaded.config == TINY
    obs = jnp.stack(jnp.meshgrid(jnp.arange(11), jnp.arange(11), indexing="ij"), -1).reshape(-1, 2)
    network = eq.make_network(TINY, 4, 2)
    w = jnp.array([0.9, 0.1])
    for r in range(2):
        direct = jax.tree.map(lambda x: x[r], state)
        np.testing.assert_array_equal(loaded.act(r, obs), trainer.act(direct, obs, jax.random.PRNGKey(0)))
        np.testing.assert_array_equal(
            eq.act_with_preference(network, jax.tree.map(lambda x: x[r], loaded.state.params), obs, w),
            eq.act_with_preference(network, direct.params, obs, w))


def test_report_of_a_loaded_run(finished_run):
    out, _ = finished_run
    loaded = load_run(out, eq.Config, eq.make_train, "envelope_q")
    report = eq.make_report(TINY)
    result = report(loaded.trainer, jax.tree.map(lambda x: x[0], loaded.state), jax.random.PRNGKey(0))
    assert np.asarray(result["front_returns"]).shape == (5, 2)          # 4 divisions: 5 weights
    for key in ("front", "hypervolume", "expected_utility", "cardinality", "igd", "maximum_utility_loss",
                "hypervolume_ratio", "true_front", "reference_point"):
        assert key in result
    json.dumps(result)


def test_summary_carries_each_seeds_front_and_the_plot_draws_it(finished_run):
    """The CLI stores ``Trainer.report`` per run in summary.json; front.png draws it beside the true front."""
    import json

    from scripts import plot as plot_script

    out, _ = finished_run
    summary = json.loads((out / "summary.json").read_text())
    for run in summary["runs"]:
        report = run["report"]
        assert {"front", "true_front", "hypervolume", "hypervolume_ratio", "expected_utility", "igd"} <= set(report)
        assert np.asarray(report["front"]).shape[1] == 2
    assert len(summary["eval_return_per_objective"]) == 2
    assert (out / "front.png").stat().st_size > 1000
    assert plot_script.main([str(out), "--front", "--out", str(out / "front2.png")]) == 0
    assert (out / "front2.png").stat().st_size > 1000
