"""Tests of agents/model_based/sindy_rl.py: config errors, the feature library and STLSQ against exact
answers, the report's equation strings, the one-step fit on Pendulum-v1, determinism, save -> load ->
identical actions (and the equations in summary.json) through the CLI, and a short learning check on
Pendulum-v1 (3 seeds in one compiled program)."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.pendulum import EnvState

from agents.model_based import sindy_rl
from jaxrl import dynamics, envs
from jaxrl.cli import RunOptions, chunked, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def test_discrete_env_raises_clear_config_error():
    with pytest.raises(ConfigError, match=r"SINDy-RL supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        sindy_rl.make_train(sindy_rl.Config(env="CartPole-v1"))


@pytest.mark.parametrize("override, message", [
    (dict(library="poly,exp"), r"unknown library term 'exp'.*allowed: poly, sin, cos, sin\(xI\), cos\(xI\)"),
    (dict(library="poly,sin(u0)"), r"unknown library term 'sin\(u0\)'"),
    (dict(library="sin(x3)"), r"state dimension 3 is out of range 0..2"),
    (dict(library=" , "), "library must name at least one term"),
    (dict(reward_model="learned"), r"reward_model must be one of \('sindy', 'known'\)"),
    (dict(env="MountainCarContinuous-v0", reward_model="known"), "needs a known reward function"),
    (dict(threshold=-0.1), "threshold must be >= 0"),
    (dict(degree=0), "degree must be > 0"),
    (dict(random_steps=0), "random_steps=0 must be >= num_envs"),
    (dict(random_steps=5_000), "random_steps=5000 must be below total_timesteps"),
])
def test_bad_config_raises_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        sindy_rl.make_train(sindy_rl.Config(**override))


# ---------------------------------------------------------------------------------------------
# The library, STLSQ and the equations, on exact answers
# ---------------------------------------------------------------------------------------------
def test_library_names_and_values_on_a_hand_case():
    poly, trig = sindy_rl.parse_library("poly, sin(x1), cos", obs_dim=2)
    assert poly and trig == (("sin", 1), ("cos", 0), ("cos", 1))
    library = sindy_rl.Library(obs_dim=2, action_dim=1, degree=2, poly=poly, trig=trig)
    assert library.names == ("1", "x0", "x1", "u0", "x0^2", "x0 x1", "x0 u0", "x1^2", "x1 u0", "u0^2",
                             "sin(x1)", "cos(x0)", "cos(x1)")
    values = library.features(jnp.array([[2.0, 3.0]]), jnp.array([[5.0]]))
    expected = [1, 2, 3, 5, 4, 6, 10, 9, 15, 25, np.sin(3.0), np.cos(2.0), np.cos(3.0)]
    np.testing.assert_allclose(np.asarray(values[0]), expected, rtol=1e-6)
    cubic = sindy_rl.Library(obs_dim=1, action_dim=1, degree=3)
    assert cubic.names == ("1", "x0", "u0", "x0^2", "x0 u0", "u0^2", "x0^3", "x0^2 u0", "x0 u0^2", "u0^3")


LIBRARY = sindy_rl.Library(obs_dim=2, action_dim=1, degree=2, trig=(("sin", 0),))
# True sparse ξ over LIBRARY.names = 1, x0, x1, u0, x0^2, x0 x1, x0 u0, x1^2, x1 u0, u0^2, sin(x0);
# columns: Δx0, Δx1, r.
TRUE_COEF = np.zeros((11, 3), np.float32)
TRUE_COEF[[2, 3, 10], 0] = [0.5, -0.2, 0.3]      # Δx0 = 0.5 x1 − 0.2 u0 + 0.3 sin(x0)
TRUE_COEF[[1, 5, 9], 1] = [-0.3, 0.1, 0.05]      # Δx1 = −0.3 x0 + 0.1 x0 x1 + 0.05 u0²
TRUE_COEF[[0, 4], 2] = [1.0, -1.0]               # r = 1 − x0²


def test_stlsq_recovers_a_sparse_system_and_ignores_masked_garbage():
    key_x, key_u, key_garbage = jax.random.split(jax.random.PRNGKey(0), 3)
    obs = jax.random.uniform(key_x, (200, 2), minval=-2.0, maxval=2.0)
    action = jax.random.uniform(key_u, (200, 1), minval=-1.0, maxval=1.0)
    theta = LIBRARY.features(obs, action)
    targets = theta @ TRUE_COEF
    # 100 unfilled slots holding garbage: huge values, NaN and inf; the mask must exclude them entirely
    garbage = 1e6 * jax.random.normal(key_garbage, (100, 11))
    garbage = garbage.at[::7].set(jnp.nan).at[3::11].set(jnp.inf)
    theta_all = jnp.concatenate([theta, garbage])
    targets_all = jnp.concatenate([targets, garbage[:, :3]])
    mask = jnp.arange(300) < 200
    fit = jax.jit(sindy_rl.stlsq, static_argnums=5)
    coef = np.asarray(fit(theta_all, targets_all, mask, 0.01, 0.0, 10))
    np.testing.assert_array_equal(coef != 0, TRUE_COEF != 0)
    np.testing.assert_allclose(coef, TRUE_COEF, atol=1e-4)
    # a threshold above a true coefficient removes exactly that term (0.05 u0² of Δx1)
    coef = np.asarray(fit(theta_all, targets_all, mask, 0.07, 0.0, 10))
    assert coef[9, 1] == 0 and np.count_nonzero(coef) == np.count_nonzero(TRUE_COEF) - 1


def test_report_equations_on_a_hand_set_coefficient_matrix():
    library = sindy_rl.Library(obs_dim=2, action_dim=1, degree=2)
    coef = np.zeros((10, 3))
    coef[[2, 3], 0] = [0.05, -0.01]
    coef[[0, 1, 5], 2] = [-1.0, 0.5, 0.001]
    assert sindy_rl.equations(coef, library) == ["Δx0 = 0.05 x1 - 0.01 u0", "Δx1 = 0",
                                                 "r = -1 + 0.5 x0 + 0.001 x0 x1"]
    assert sindy_rl.equations(coef, library, print_threshold=0.002, with_reward=True)[2] == "r = -1 + 0.5 x0"
    assert sindy_rl.equations(coef, library, with_reward=False) == ["Δx0 = 0.05 x1 - 0.01 u0", "Δx1 = 0"]
    assert sindy_rl.format_equation("Δx1", [0, -2.5, 1e-5, 0], ("1", "x0", "x1", "u0")) == "Δx1 = -2.5 x0 + 1e-05 x1"


def _pendulum_transitions(key, n):
    """``n`` one-step transitions of Pendulum-v1 from uniform states (θ, θ̇ ∈ [−6, 6]) and torques."""
    env, params = envs.make("Pendulum-v1")
    k_theta, k_speed, k_action, k_step = jax.random.split(key, 4)
    state = EnvState(theta=jax.random.uniform(k_theta, (n,), minval=-jnp.pi, maxval=jnp.pi),
                     theta_dot=jax.random.uniform(k_speed, (n,), minval=-6.0, maxval=6.0),
                     last_u=jnp.zeros(n), time=jnp.zeros(n, jnp.int32))
    action = jax.random.uniform(k_action, (n, 1), minval=-2.0, maxval=2.0)
    obs = jax.vmap(env.get_obs, in_axes=(0, None))(state, params)
    next_obs, _, reward, _, _ = jax.vmap(env.step_env, in_axes=(None, 0, 0, None))(k_step, state, action, params)
    return obs, action, reward, next_obs


def test_pendulum_one_step_fit():
    # Pendulum's observation already carries cos θ and sin θ, so the degree-2 library of (cos θ, sin θ, θ̇, u)
    # holds the exact velocity update θ̇' − θ̇ = 0.75 sin θ + 0.15 u (3g/2l·dt and 3/ml²·dt, below
    # the speed clip) and the leading terms of Δcos θ = −0.05 sin θ·θ̇ + ..., Δsin θ = 0.05 cos θ·θ̇ + ...
    library = sindy_rl.Library(obs_dim=3, action_dim=1, degree=2)
    train = _pendulum_transitions(jax.random.PRNGKey(0), 500)
    test = _pendulum_transitions(jax.random.PRNGKey(1), 500)
    fit = jax.jit(lambda obs, a, r, nxt: sindy_rl.stlsq(library.features(obs, a), dynamics.model_targets(obs, r, nxt),
                                                         jnp.ones(obs.shape[0], bool), 0.005, 1e-6, 10))
    coef = np.asarray(fit(*train))
    names = library.names
    velocity = {names[i]: coef[i, 2] for i in np.flatnonzero(coef[:, 2])}
    # the support may add c·(x0² + x1² − 1), which is 0 on every observation (cos² + sin² = 1)
    assert {"x1", "u0"} <= velocity.keys() <= {"x1", "u0", "1", "x0^2", "x1^2"}, velocity
    np.testing.assert_allclose([velocity["x1"], velocity["u0"]], [0.75, 0.15], atol=1e-3)
    assert abs(coef[names.index("x1 x2"), 0] + 0.05) < 0.005 and abs(coef[names.index("x0 x2"), 1] - 0.05) < 0.005
    obs, action, reward, next_obs = test
    pred = library.features(obs, action) @ coef
    targets = np.asarray(dynamics.model_targets(obs, reward, next_obs))
    relative = ((np.asarray(pred) - targets) ** 2).mean(0) / targets.var(0)
    # measured: 0.006, 0.007, 1e-12 (Δcos θ, Δsin θ, Δθ̇) and 0.017 for the reward
    assert np.all(relative[:3] < 0.02) and relative[3] < 0.05, relative


# ---------------------------------------------------------------------------------------------
# Tiny runs: determinism, the refit schedule, and the CLI's checkpoint acts like a direct call
# ---------------------------------------------------------------------------------------------
TINY = sindy_rl.Config(total_timesteps=300, random_steps=100, refit_every=100, hidden_size=16, batch_size=32,
                       gradient_steps=1, rollout_batch=4, rollout_length=5, model_buffer_size=200)


# Two differently structured programs (one scan of 300 iterations, the CLI's chunks of 100) may differ
# in the last bit of Pendulum's observation (XLA fuses and vectorizes its cos/sin differently), and a
# least-squares refit plus SAC training amplify one bit into visibly different runs. So the direct
# run below has the CLI's shape: seeds 0 and 1 in a batch of 2, one compiled chunk of 100 iterations.
@pytest.fixture(scope="module")
def direct_states():
    """Seeds 0 and 1 trained by a program of the CLI's shape: one compiled chunk of 100 iterations,
    run three times (see the comment above)."""
    trainer = sindy_rl.make_train(TINY)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    state = jax.jit(lambda keys: jax.lax.map(trainer.init, keys))(keys)
    run_chunk = jax.jit(jax.vmap(chunked(trainer.update, 100, TINY.num_updates), in_axes=(0, None)))
    chunks = []
    for start in range(0, TINY.num_updates, 100):
        state, metrics = run_chunk(state, start)
        chunks.append(metrics)
    metrics = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *chunks)
    return trainer, state, metrics


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sindy_rl") / "run"
    summary = train_and_evaluate(TINY, sindy_rl.make_train,
                                 RunOptions(out=str(out), num_seeds=2, eval_episodes=2, log_points=3, quiet=True,
                                            plot=False), algorithm="sindy_rl")
    return out, summary


def test_same_key_same_result(direct_states, cli_run):
    # the CLI compiles its own program (in chunks, from a checkpoint) with keys 0 and 1: same keys,
    # identical model and policy; different keys, different data
    _, state, _ = direct_states
    loaded = load_run(cli_run[0], sindy_rl.Config, sindy_rl.make_train, "sindy_rl")
    jax.tree.map(np.testing.assert_array_equal, (state.coef, state.actor_params, state.real.data),
                 (loaded.state.coef, loaded.state.actor_params, loaded.state.real.data))
    assert not np.array_equal(state.real.data.action[0], state.real.data.action[1])


def test_model_is_refit_on_schedule(direct_states):
    # warm-up ends after 100 steps (iteration 99), then every 100 steps: iterations 99, 199, 299
    _, state, metrics = direct_states
    refit = np.flatnonzero(np.isfinite(np.asarray(metrics["model_mse"][0])))
    assert refit.tolist() == [99, 199, 299]
    learning = np.isfinite(np.asarray(metrics["q_loss"][0]))
    assert not learning[:99].any() and learning[99:].all()
    assert int(state.real.size[0]) == 300 and int(state.imagined.size[0]) == 200
    assert np.all(np.abs(np.asarray(state.real.data.action)) <= 2.0)


def test_save_load_identical_actions_and_equations_in_summary(direct_states, cli_run):
    trainer, state, _ = direct_states
    out, summary = cli_run
    assert len(summary["runs"]) == 2
    loaded = load_run(out, sindy_rl.Config, sindy_rl.make_train, "sindy_rl")
    assert loaded.config == TINY
    obs = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    for r in range(2):
        run_state = jax.tree.map(lambda x: x[r], state)
        expected = trainer.act(run_state, obs, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(loaded.act(r, obs, jax.random.PRNGKey(0)), expected)
        report = json.loads((out / "summary.json").read_text())["runs"][r]["report"]
        assert report == json.loads(json.dumps(trainer.report(run_state, None)))
        assert [line.split(" = ")[0] for line in report["equations"]] == ["Δx0", "Δx1", "Δx2", "r"]
        assert report["support_size"] == int(np.count_nonzero(np.asarray(run_state.coef)))
        assert report["features"][:5] == ["1", "x0", "x1", "x2", "u0"] and len(report["features"]) == 15


# ---------------------------------------------------------------------------------------------
# Learning check: Pendulum-v1, 3 seeds in one program
# ---------------------------------------------------------------------------------------------
# 1 200 real env steps = 6 episodes: 1 random, SINDy refit every episode; after every real step 16
# imagined rollouts of 50 steps and 16 SAC updates (2×64 units, batch 128, policy lr 1e-3) on them.
# The reward is Pendulum's known reward function (reward_model="known"), the dynamics SINDy's.
# Measured with this test (seeds 0-2): greedy returns over 8 episodes -249, -185, -174 (mean -203);
# seeds 3-5: -211, -145, -207 (mean -187). The learned-reward variant (reward_model="sindy") with the
# same budget, seeds 0-2: -183, -511, -295 (mean -330).
PENDULUM = sindy_rl.Config(env="Pendulum-v1", total_timesteps=1_200, random_steps=200, refit_every=200,
                           reward_model="known", hidden_size=64, batch_size=128, policy_lr=1e-3, gradient_steps=16,
                           rollout_batch=16, rollout_length=50, model_buffer_size=10_000)
PENDULUM_SEEDS = 3


@pytest.mark.learning
def test_pendulum_policy_trained_on_sindy_beats_random():
    trainer = sindy_rl.make_train(PENDULUM)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(PENDULUM_SEEDS)])

    def run(keys):
        state, _ = jax.vmap(trainer)(keys)
        return jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, 8))(state, keys)["return"]

    returns = np.asarray(jax.jit(run)(keys)).mean(1)
    print(f"SINDy-RL Pendulum-v1 greedy returns per seed: {np.round(returns)}")
    # A random policy scores about -1200; -700 on the mean still holds if one of the three seeds
    # failed completely (about -1450) while the other two swung up (about -300).
    assert returns.mean() > -700, returns
