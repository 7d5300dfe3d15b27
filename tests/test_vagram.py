"""Tests of agents/model_based/vagram.py: the VaGraM loss on hand-computed cases (a linear value with a
known gradient; errors in dimensions the value ignores cost nothing), the gradient clipping and
normalization, the weighted fit of ``dynamics.train_ensemble``, config errors before compiling,
one tiny CLI run (determinism, save -> load -> identical actions) and a learning check on Pendulum-v1
(3 seeds in one compiled program; the measured numbers are above ``cli_run``)."""
from __future__ import annotations

import dataclasses
import json
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.model_based import vagram
from jaxrl import dynamics
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer


# ---------------------------------------------------------------------------------------------
# The loss, by hand
# ---------------------------------------------------------------------------------------------
def test_linear_value_hand_computed_loss():
    """V(s) = 3 s_0 + 0 s_1 + 4 s_2: ∂V/∂s = (3, 0, 4) everywhere, norm 5, so after clipping (all norms
    equal the quantile) and normalization by the mean norm ĝ = (0.6, 0, 0.8); as in the code's loss the
    state terms are averaged over the d = 3 state dimensions and the reward keeps weight 1: the weights
    of (Δs_0, Δs_1, Δs_2, r) are (0.36/3, 0, 0.64/3, 1) = (0.12, 0, 0.21333, 1). Errors (1, 5, 2, 0.5)
    and (−2, 0, 0, 1) give (0.12 + 0 + 0.85333 + 0.25 + 0.48 + 0 + 0 + 1) / 2 = 1.351667."""
    c = jnp.array([3.0, 0.0, 4.0])
    next_obs = jax.random.normal(jax.random.PRNGKey(0), (2, 3))
    grads = vagram.value_gradients([lambda s: c @ s], next_obs)
    np.testing.assert_allclose(grads, np.broadcast_to(c, (1, 2, 3)))
    stable = vagram.stabilize_gradients(grads, jnp.array([True, True]), 0.95)
    np.testing.assert_allclose(stable[0], [[0.6, 0.0, 0.8]] * 2, rtol=1e-6)
    weights = vagram.vagram_weights(stable)
    np.testing.assert_allclose(weights, [[0.12, 0.0, 0.64 / 3, 1.0]] * 2, rtol=1e-6)
    target = jnp.zeros((2, 4))
    predicted = jnp.array([[1.0, 5.0, 2.0, 0.5], [-2.0, 0.0, 0.0, 1.0]])
    expected = (0.12 + 0.64 / 3 * 4 + 0.25 + 0.12 * 4 + 1.0) / 2
    np.testing.assert_allclose(vagram.vagram_loss(predicted, target, weights), expected, rtol=1e-6)
    # The point of the method: any error in the dimension the value ignores (∂V/∂s_1 = 0) costs nothing.
    for wrong in (-100.0, 1e3):
        np.testing.assert_allclose(vagram.vagram_loss(predicted.at[:, 1].set(wrong), target, weights), expected,
                                   rtol=1e-6)
    # ... while a plain squared error would count it; mse_weight adds it, averaged over the 4 outputs.
    np.testing.assert_allclose(vagram.vagram_weights(stable, mse_weight=0.5)[0],
                               [0.12 + 0.125, 0.125, 0.64 / 3 + 0.125, 1.125], rtol=1e-6)
    # Unnormalized (grad_norm="none"): the raw gradient, the Taylor value error in value units.
    raw, mean_norms = vagram.clip_gradients(grads, jnp.array([True, True]), 0.95)
    np.testing.assert_allclose(raw, grads, rtol=1e-6)
    np.testing.assert_allclose(mean_norms, [5.0], rtol=1e-6)
    np.testing.assert_allclose(vagram.vagram_weights(raw)[0], [3.0, 0.0, 16 / 3, 1.0], rtol=1e-6)


def test_running_norm_is_the_code_update_applied_per_minibatch():
    """The closed form equals the code's update done step by step: per minibatch, each critic's mean norm
    folded in turn, avg ← (1 − r) avg + r m_v, from avg = 1."""
    m = jnp.array([2.0, 3.0, 5.0, 7.0])
    avg = 1.0
    for _ in range(37):
        for v in m:
            avg = (1 - 0.01) * avg + 0.01 * float(v)
    np.testing.assert_allclose(vagram.running_norm(jnp.float32(1.0), m, 37, 0.01), avg, rtol=1e-5)
    np.testing.assert_allclose(vagram.running_norm(jnp.float32(1.0), m, 0, 0.01), 1.0)


def test_two_critics_sum_and_the_value_is_taken_at_the_next_state():
    """V_1(s) = s_0² (gradient (2 s_0, 0)), V_2(s) = s_1 (gradient (0, 1)); at s' = (1, 5) and (2, 5):
    norms 2, 4 (V_1) and 1, 1 (V_2); no clipping at quantile 1; mean norms 3 and 1, so ĝ_1 = (2/3, 0),
    (4/3, 0), ĝ_2 = (0, 1): Σ_v ĝ² = (4/9, 1) and (16/9, 1), halved (the mean over d = 2 state dims):
    weights (2/9, 1/2, 1) and (8/9, 1/2, 1)."""
    next_obs = jnp.array([[1.0, 5.0], [2.0, 5.0]])
    grads = vagram.value_gradients([lambda s: s[0] ** 2, lambda s: s[1]], next_obs)
    stable = vagram.stabilize_gradients(grads, jnp.array([True, True]), 1.0)
    np.testing.assert_allclose(vagram.vagram_weights(stable), [[2 / 9, 0.5, 1.0], [8 / 9, 0.5, 1.0]], rtol=1e-6)


def test_clipping_at_the_norm_quantile_of_the_masked_rows():
    """Norms 1, 2, 3, 100 (and a masked row of norm 50): the 0.75 quantile of the four unmasked norms
    is the 3rd smallest (⌊0.75 · 3⌋ = index 2), 3; the clipped norms 1, 2, 3, 3 have mean 2.25."""
    g = jnp.array([[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 100.0], [50.0, 0.0]]])
    mask = jnp.array([True, True, True, True, False])
    assert float(vagram.masked_quantile(jnp.linalg.norm(g[0], axis=-1), mask, 0.75)) == 3.0
    stable = vagram.stabilize_gradients(g, mask, 0.75)
    np.testing.assert_allclose(stable[0, :4], np.array([[1, 0], [0, 2], [3, 0], [0, 3]]) / 2.25, rtol=1e-6)
    # Non-finite gradients become large finite ones, then the clipping bounds them.
    grads = vagram.value_gradients([lambda s: jnp.sqrt(s[0])], jnp.array([[0.0, 1.0], [4.0, 1.0]]))
    assert np.isfinite(np.asarray(grads)).all()


def test_weighted_fit_ignores_unweighted_dimensions():
    """``dynamics.train_ensemble`` with weights: the output head of a target dimension with weight 0 (here
    pure noise) gets no gradient at all and keeps its initial weights, while the weighted dimensions
    are fitted; with all weights 1 (a plain squared error) the same head moves."""
    n = 256
    key = jax.random.PRNGKey(0)
    obs = jax.random.normal(key, (n, 2))
    action = jax.random.normal(jax.random.fold_in(key, 1), (n, 1))
    noise = 5.0 * jax.random.normal(jax.random.fold_in(key, 2), (n,))
    next_obs = jnp.stack([obs[:, 0] + 0.5 * action[:, 0], obs[:, 1] + noise], axis=-1)
    data = dynamics.ModelData(obs, action, obs[:, 0], next_obs)
    ensemble = dynamics.Ensemble(2, 1, num_members=1, hidden_size=32, num_layers=1)
    tx = dynamics.make_optimizer(1e-2, 0.0)
    settings = dynamics.TrainSettings(batch_size=64, max_epochs=50, patience=50, holdout_ratio=0.0)
    init = ensemble.init(jax.random.PRNGKey(1))

    @jax.jit
    def fit(weights):
        params, _, norm, info = dynamics.train_ensemble(ensemble, tx, init, tx.init(init), data, n, jnp.ones(n),
                                                        jax.random.PRNGKey(2), settings, weights=weights)
        mean, _ = ensemble.predict(params, norm, obs, action)
        return params, mean[0], info

    head = lambda p: np.asarray(p.members["params"]["Dense_1"]["kernel"][0, :, :3])   # the 3 mean outputs
    params, mean, info = fit(jnp.tile(jnp.array([1.0, 0.0, 1.0]), (n, 1)))
    assert int(info.epochs) == 50
    assert float(((mean[:, 0] - 0.5 * action[:, 0]) ** 2).mean()) < 0.01     # the weighted Δs_0 is learned
    assert float(((mean[:, 2] - obs[:, 0]) ** 2).mean()) < 0.01               # so is the reward
    np.testing.assert_array_equal(head(params)[:, 1], head(init)[:, 1])      # weight 0: never updated
    assert not np.allclose(head(params)[:, 0], head(init)[:, 0])
    plain, _, _ = fit(jnp.ones((n, 3)))
    assert not np.allclose(head(plain)[:, 1], head(init)[:, 1])


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def test_unknown_model_loss_raises_before_compiling():
    with pytest.raises(ConfigError, match=r"model_loss must be one of \('vagram', 'mle'\), got 'l2'"):
        vagram.make_train(vagram.Config(model_loss="l2"))


def test_discrete_env_raises_clear_config_error():
    with pytest.raises(ConfigError, match=r"VaGraM supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        vagram.make_train(vagram.Config(env="CartPole-v1", termination="none"))


@pytest.mark.parametrize("override, message", [
    (dict(env="Probe-Action-Continuous"), r"termination rule of 'Probe-Action-Continuous'.*termination='none'"),
    (dict(clip_quantile=0.0), r"clip_quantile must be in \(0, 1\]"),
    (dict(mse_weight=-1.0), "mse_weight must be >= 0"),
    (dict(grad_norm="l2"), r"grad_norm must be one of \('running', 'retraining', 'none'\), got 'l2'"),
    (dict(mse_warmup_steps=-1), "mse_warmup_steps must be >= 0"),
    (dict(norm_rate=0.0), r"norm_rate must be in \(0, 1\]"),
    (dict(rollout_schedule=(1, 2)), "rollout_schedule must be four integers"),
    (dict(random_steps=5_000), "random_steps=5000 must be below total_timesteps"),
])
def test_bad_config_raises_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        vagram.make_train(vagram.Config(**override))


def test_distractor_envs_never_terminate():
    for n in (5, 10, 15, 20):
        rule = vagram.termination_fn(vagram.Config(env=f"Pendulum-Distract{n}-v0"))
        assert rule is vagram.never_terminates


# ---------------------------------------------------------------------------------------------
# Determinism and save -> load -> identical actions, through one tiny CLI run
# ---------------------------------------------------------------------------------------------
TINY = vagram.Config(env="Pendulum-Distract5-v0", total_timesteps=300, random_steps=100, train_every=100,
                     epoch_length=100, ensemble_size=2, hidden_size=8, num_layers=1, max_epochs=2, model_batch_size=16,
                     rollouts_per_step=2, rollout_every=100, rollout_schedule=(0, 2, 1, 3), updates_per_step=1,
                     batch_size=16, sac_hidden_size=16)


# Learning check (bottom of the file) in MBPO's test setting (tests/test_mbpo.py: ensemble of 5 x 2 swish
# layers of 64, SAC 2 x 64, batch 128, G = 20, 5% real data, M = 100 rollouts of length 1 per env step,
# 2 000 env steps), greedy return over 8 episodes, random play about -1200. Measured, 3 seeds in one program:
#   defaults (raw clipped value gradients, grad_norm="none"; plain MSE added in the first epoch):
#       seeds 0-2: -151, -92, -635 (mean -293); seeds 10-12: -107, -374, -516 (mean -333)
#   the previous implementation (unit mean norm per retraining, Σ_v ĝ² not averaged over the state dims,
#       no MSE warm-up): seeds 0-2: -721, -879, -835 (mean -811)
#   grad_norm="running" (the code's running mean, rate 0.001 per critic and minibatch, which with this
#       setting's many minibatches per retraining converges to the mean norm within one retraining):
#       seeds 0-2: -910, -878, -737 (mean -842)
#   model_loss="mle" (MBPO's NLL ensemble), same program: seeds 0-2: -294, -93, -300 (mean -229)
# The normalized variants put the value-weighted state error on the scale of a unit gradient, far below
# the reward's squared error, so the shared hidden layers fit the reward and the dynamics poorly (held-out
# next-state MSE 0.007-0.014 against 0.0015-0.0027 unnormalized). Unnormalized, both terms are in value
# units: γ ∇V(s')ᵀ(ŝ' − s') and r̂ − r enter the Bellman target the same way.
# The MLE vs VaGraM comparison under distractors lives in scripts/reproduce_mb_distractors.py.
#
# One compiled program serves determinism and save -> load: the tiny config on Pendulum-v1 through the
# CLI, 2 seeds x 2 values of logvar_penalty, which the VaGraM loss does not use, so the two runs of a
# seed are the same computation from the same key and must match bit for bit. (Pendulum-v1, not a
# distractor env: the distractors' chaos, sin of P d with P ~ 100, turns the last-bit differences
# between two compilations of the same evaluation into different trajectories, so the exact replay
# of the CLI's evaluation below needs a plain env.)
CLI_TINY = dataclasses.replace(TINY, env="Pendulum-v1")
EVAL_EPISODES = 2
SEEDS = 2


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vagram") / "run"
    summary = train_and_evaluate(CLI_TINY, vagram.make_train,
                                 RunOptions(out=str(out), num_seeds=SEEDS, sweep=("logvar_penalty=0.01,0.02",),
                                            eval_episodes=EVAL_EPISODES, log_points=2, quiet=True, plot=False),
                                 algorithm="vagram")
    return out, summary


def test_same_key_same_result(cli_run):
    out, summary = cli_run
    runs = summary["runs"]
    assert len(runs) == 2 * SEEDS
    loaded = load_run(out, vagram.Config, vagram.make_train, "vagram")
    for seed in range(SEEDS):
        a, b = seed, SEEDS + seed                # the seed at logvar_penalty 0.01 and at 0.02
        assert runs[a]["seed"] == runs[b]["seed"] == seed
        assert runs[a]["eval_return"] == runs[b]["eval_return"]
        jax.tree.map(lambda x: np.testing.assert_array_equal(x[a], x[b]), loaded.state)
    assert not np.array_equal(loaded.state.buffer.data.action[0], loaded.state.buffer.data.action[1])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    strip = lambda row: {k: v for k, v in row.items() if k not in ("run", "sweep")}
    first = [strip(r) for r in rows if r["run"] == 0]
    assert first and first == [strip(r) for r in rows if r["run"] == SEEDS]


def test_save_load_identical_actions(cli_run):
    """The checkpoint, loaded back, replays the CLI's final greedy evaluation (same keys, same vmapped
    evaluation), so it acts exactly as the trained policies did."""
    out, summary = cli_run
    loaded = load_run(out, vagram.Config, vagram.make_train, "vagram")
    assert loaded.config == CLI_TINY and loaded.update == CLI_TINY.num_updates
    keys = jnp.stack([jax.random.PRNGKey(r["seed"]) for r in summary["runs"]])

    def replay_eval(state, key):
        eval_key = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), 0)
        return evaluate_trainer(loaded.trainer, state, eval_key, EVAL_EPISODES)["return"]

    returns = np.asarray(jax.jit(jax.vmap(replay_eval))(loaded.state, keys)).mean(axis=1)
    np.testing.assert_allclose(returns, [r["eval_return"] for r in summary["runs"]], rtol=1e-5)
    obs = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    actions = np.asarray(loaded.act(0, obs))
    assert actions.shape == (8, 1) and np.all(np.abs(actions) <= 2.0)
    assert not np.array_equal(actions, np.asarray(loaded.act(1, obs)))


# ---------------------------------------------------------------------------------------------
# Learning check: Pendulum-v1, 3 seeds in one program, MBPO's test setting (numbers above ``cli_run``)
# ---------------------------------------------------------------------------------------------
PENDULUM = vagram.Config(total_timesteps=2_000, ensemble_size=5, hidden_size=64, num_layers=2, model_batch_size=64,
                         rollouts_per_step=100, updates_per_step=20, batch_size=128, sac_hidden_size=64)
PENDULUM_SEEDS = 3


@pytest.mark.learning
def test_pendulum_learns_well_above_random_play():
    trainer = vagram.make_train(PENDULUM)

    def run(key):
        state, metrics = trainer(key)
        return evaluate_trainer(trainer, state, jax.random.fold_in(key, 1), num_episodes=8)["return"].mean()

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(PENDULUM_SEEDS)])
    returns = np.asarray(jax.jit(jax.vmap(run))(keys))
    print(f"VaGraM Pendulum-v1 {PENDULUM.total_timesteps} env steps: greedy return {returns.mean():.1f} over "
          f"{PENDULUM_SEEDS} seeds {np.round(returns, 1)} (random play about -1200)")
    # Measured -293 (seeds 0-2) and -333 (seeds 10-12). -800 holds if one seed fails completely (-1500)
    # while the other two reach about -450; it is 400 above random play (and the previous normalized
    # loss's -811).
    assert returns.mean() > -800, returns
