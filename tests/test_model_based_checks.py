"""Issue 7's cross-cutting model-based checks, beside what tests/test_pets.py, test_dynamics.py,
test_mbpo.py and test_sindy_rl.py already cover:

* exact answers: one CEM and one MPPI refit on hand-made candidates; CEM and MPPI
  (``pets.optimize_sequence``) find the known optimum of a quadratic reward over a whole action sequence;
  the probabilistic ensemble, trained on a noisy linear system with known noise, lowers its held-out
  Gaussian NLL to within a small margin of the true model's;
* bad input, raised before anything compiles: planner and ensemble sizes that cannot work, a discrete-action env
  given to PETS/MBPO/SINDy-RL through the CLI (no run folder is written), and a PETS checkpoint used
  for another env (a run folder whose config names another env, another algorithm's loader, another
  env's observations)."""
from __future__ import annotations

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.model_based import mbpo, pets, sindy_rl
from jaxrl import checkpoint as ckpt
from jaxrl import dynamics as d
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError


# ---------------------------------------------------------------------------------------------
# The planners' refits on hand-made candidates
# ---------------------------------------------------------------------------------------------
def test_cem_refit_on_a_hand_case():
    # 4 candidate sequences (H = 1, A = 1); the 2 elites are the returns 5 and 3: actions 1.0 and 3.0
    candidates = jnp.array([1.0, -2.0, 3.0, 0.0]).reshape(4, 1, 1)
    returns = jnp.array([5.0, -1.0, 3.0, 2.0])
    mean, var = pets.cem_refit(jnp.full((1, 1), 10.0), jnp.full((1, 1), 4.0), candidates, returns, 2, 0.25)
    # elites' mean 2, variance 1; blended: 0.25·old + 0.75·new
    np.testing.assert_allclose(np.asarray(mean), [[0.25 * 10 + 0.75 * 2]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(var), [[0.25 * 4 + 0.75 * 1]], rtol=1e-6)


def test_mppi_refit_on_a_hand_case():
    candidates = jnp.array([0.0, 1.0, 2.0]).reshape(3, 1, 1)
    returns = jnp.array([0.0, math.log(2.0), math.log(3.0)])    # λ = 1: weights 1/6, 2/6, 3/6
    mean, var = pets.mppi_refit(jnp.zeros((1, 1)), jnp.full((1, 1), 0.7), candidates, returns, 1.0)
    np.testing.assert_allclose(np.asarray(mean), [[(0 * 1 + 1 * 2 + 2 * 3) / 6]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(var), [[0.7]])           # MPPI keeps its noise
    # λ → 0 puts all the weight on the best candidate
    mean, _ = pets.mppi_refit(jnp.zeros((1, 1)), jnp.ones((1, 1)), candidates, returns, 1e-4)
    np.testing.assert_allclose(np.asarray(mean), [[2.0]], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# CEM and MPPI on a known quadratic over a whole action sequence
# ---------------------------------------------------------------------------------------------
H, A = 5, 2
LOW, HIGH = -jnp.full(A, 2.0), jnp.full(A, 2.0)
# a different optimum at every step and dimension, inside the bounds and away from the start (0)
TARGET = jnp.linspace(-1.5, 1.5, H * A).reshape(H, A)
QUAD_KEYS = 8


def quadratic_return(candidates, key):
    """R(a_1..a_H) = −Σ_t Σ_i (a_t,i − a*_t,i)²: maximum 0 at the sequence a*."""
    return -((candidates - TARGET) ** 2).sum((-2, -1))


def _optimize(config, keys):
    run = lambda k: pets.optimize_sequence(quadratic_return, jnp.zeros((H, A)), LOW, HIGH, k, config)  # noqa: E731
    return jax.jit(jax.vmap(run))(keys)


def _errors(config):
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(QUAD_KEYS)])
    plans, best = _optimize(config, keys)
    assert plans.shape == (QUAD_KEYS, H, A)
    assert np.all(np.asarray(best) <= 0.0)   # no candidate scores above the true maximum 0
    error = np.asarray(plans) - np.asarray(TARGET)[None]
    print(f"{config.planner} (population {config.population}): max |plan − a*| over {QUAD_KEYS} keys "
          f"{np.abs(error).max():.4f}, rms {np.sqrt((error ** 2).mean()):.4f}, worst return {quadratic_gap(error):.5f}")
    return error


def quadratic_gap(error):
    """The worst key's R(plan) − R(a*) = −Σ (plan − a*)² (0 at the optimum)."""
    return float(-(error ** 2).sum((1, 2)).max())


def test_cem_finds_the_optimum_of_a_known_quadratic():
    # 100 elites of 1 000, 12 iterations: the sampling std falls to ~1e-3 and every coordinate of the
    # mean lands within 0.01 (0.25% of the action range 4) of a* (measured: at most 0.003 over 8 keys).
    error = _errors(pets.Config(planner="cem", horizon=H, population=1_000, num_elites=100, iterations=12))
    assert np.abs(error).max() < 0.01
    # The paper's 40 elites of 400 may collapse the variance of a coordinate before its mean arrives
    # (CEM's premature convergence; measured: one coordinate of 80 stops 0.05 short), but the plan's
    # return stays within 0.01 of the maximum 0, i.e. 0.1% of the start's gap R(0) = −Σ a*² = −9.17.
    error = _errors(pets.Config(planner="cem", horizon=H, population=400, num_elites=40, iterations=12))
    assert quadratic_gap(error) > -0.01


def test_mppi_finds_the_optimum_of_a_known_quadratic():
    # λ = 0.5 and noise std σ = 0.5 (0.25 of the half-range 2). With untruncated noise the weighted
    # mean moves from μ to a* + ρ(μ − a*) per iteration, ρ = λ/(λ + 2σ²) = 0.5 per coordinate, so 12
    # iterations leave 1.5·0.5^12 < 1e-3 of bias. The Monte-Carlo error of a weighted mean of 2 000
    # samples (effective size 2 000·(√3/2)^10 ≈ 470) is σ/√2/√470 ≈ 0.016 per coordinate, about
    # 0.016/√(1 − ρ²) ≈ 0.019 once the contraction carries it over: the rms must be near that, and no
    # coordinate of the 80 beyond 4.4 of those (0.08).
    error = _errors(pets.Config(planner="mppi", horizon=H, population=2_000, mppi_temperature=0.5, mppi_noise=0.25,
                                iterations=12))
    assert np.sqrt((error ** 2).mean()) < 0.025
    assert np.abs(error).max() < 0.08


# ---------------------------------------------------------------------------------------------
# The ensemble lowers its held-out NLL on a known noisy linear system
# ---------------------------------------------------------------------------------------------
LIN_A = np.array([[0.9, 0.1], [-0.2, 0.8]], np.float32)
LIN_B = np.array([[0.5], [-0.3]], np.float32)
LIN_C, LIN_D = np.array([1.0, 0.0], np.float32), -0.5
NOISE_STD = np.array([0.05, 0.1, 0.2], np.float32)          # of Δs0, Δs1, r: known, so the best NLL is known
NLL_ENS = d.Ensemble(obs_dim=2, action_dim=1, num_members=4, hidden_size=32, num_layers=2)
NLL_SETTINGS = d.TrainSettings(batch_size=32, max_epochs=60, patience=10, holdout_ratio=0.2)


def _noisy_linear(key, n):
    """s' = A s + B a + ε_s, r = c·s + d·a + ε_r with ε ~ N(0, NOISE_STD²): returns data and the true means."""
    k_obs, k_act, k_noise = jax.random.split(key, 3)
    obs = jax.random.normal(k_obs, (n, 2))
    act = jax.random.uniform(k_act, (n, 1), minval=-1, maxval=1)
    mean = jnp.concatenate([obs @ (LIN_A - np.eye(2, dtype=np.float32)).T + act @ LIN_B.T,
                            (obs @ LIN_C + LIN_D * act[:, 0])[:, None]], -1)     # (Δs, r)
    y = mean + NOISE_STD * jax.random.normal(k_noise, mean.shape)
    return d.ModelData(obs, act, y[:, 2], obs + y[:, :2]), mean


def _held_out_nll(params, norm, data):
    """Mean over members and samples of −log N((Δs, r); μ, σ²), in env units."""
    mean, var = NLL_ENS.predict(params, norm, data.obs, data.action)
    target = d.model_targets(data.obs, data.reward, data.next_obs)
    return d.gaussian_nll(mean, jnp.log(var), target[None]).mean()


@pytest.fixture(scope="module")
def nll_fit():
    data, _ = _noisy_linear(jax.random.PRNGKey(0), 1024)
    test, test_mean = _noisy_linear(jax.random.PRNGKey(1), 2048)      # fresh: neither trained nor validated on

    def fit(data, test):
        params = NLL_ENS.init(jax.random.PRNGKey(2))
        optimizer = d.make_optimizer(3e-3, 0.0)
        holdout_u = jax.random.uniform(jax.random.PRNGKey(3), (1024,))
        trained, _, norm, info = d.train_ensemble(NLL_ENS, optimizer, params, optimizer.init(params), data, 1024,
                                                  holdout_u, jax.random.PRNGKey(4), NLL_SETTINGS)
        return _held_out_nll(params, norm, test), _held_out_nll(trained, norm, test), info

    before, after, info = jax.jit(fit)(data, test)
    target = d.model_targets(test.obs, test.reward, test.next_obs)
    best = d.gaussian_nll(test_mean, jnp.log(jnp.asarray(NOISE_STD) ** 2), target).mean()   # the true model's
    return float(before), float(after), float(best), info


def test_training_lowers_held_out_nll_to_near_the_true_models(nll_fit):
    before, after, best, info = nll_fit
    print(f"held-out NLL: untrained {before:.3f}, trained {after:.3f} ({int(info.epochs)} epochs), "
          f"true model {best:.3f}; expected value of the true model's {expected_true_nll():.3f}")
    assert after < before - 1.0
    # The true model's NLL is the floor in expectation (the excess is a KL divergence). A fitted model
    # must come within 0.1 nat per output dimension (3 dims) of it: that is what a mean off by 0.45σ
    # (½·0.45² ≈ 0.1) or a variance off by a factor 2 (½(½ + log 2 − 1) ≈ 0.1) costs in one dimension.
    # Measured: 0.24 nat above the floor in all (-2.43 vs -2.66) after early stopping at 26 epochs.
    assert best - 0.05 < after < best + 0.3, (after, best)


def expected_true_nll() -> float:
    """E[−log N(y; μ, σ²)] under the true noise: Σ_i ½(1 + log 2πσ_i²)."""
    return float(sum(0.5 * (1 + math.log(2 * math.pi * s ** 2)) for s in NOISE_STD))


def test_true_models_nll_matches_its_expectation(nll_fit):
    # a check on the test's floor itself: 2 048 fresh samples give its expectation within sampling error
    _, _, best, _ = nll_fit
    assert best == pytest.approx(expected_true_nll(), abs=0.1)


# ---------------------------------------------------------------------------------------------
# Bad input: planner sizes, discrete envs — before anything compiles
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    (dict(horizon=0), "horizon must be > 0, got 0"),
    (dict(horizon=-3), "horizon must be > 0, got -3"),
    (dict(population=0), "population must be > 0, got 0"),
    (dict(population=30, num_elites=40), "num_elites=40 must be at most population=30"),
    (dict(planner="mppi", population=30, num_elites=40), "num_elites=40 must be at most population=30"),
    (dict(num_elites=0), "num_elites must be > 0, got 0"),
    (dict(iterations=0), "iterations must be > 0, got 0"),
    (dict(num_particles=0), "num_particles must be > 0, got 0"),
    (dict(planner="CEM"), r"planner must be one of \('cem', 'mppi'\), got 'CEM'"),
])
def test_bad_planner_settings_raise_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        pets.make_train(pets.Config(**override))


@pytest.mark.parametrize("build, message", [
    (lambda: d.Ensemble(obs_dim=0, action_dim=1), "Ensemble obs_dim must be an integer >= 1, got 0"),
    (lambda: d.Ensemble(obs_dim=3, action_dim=1, num_members=0), "Ensemble num_members must be an integer >= 1, got 0"),
    (lambda: d.Ensemble(obs_dim=3, action_dim=1, init_max_logvar=-20.0),
     "init_min_logvar=-10.0 must be below init_max_logvar=-20.0"),
    (lambda: d.TrainSettings(batch_size=0), "TrainSettings batch_size must be an integer >= 1, got 0"),
    (lambda: d.TrainSettings(patience=0), "TrainSettings patience must be an integer >= 1, got 0"),
    (lambda: d.TrainSettings(holdout_ratio=1.0), r"TrainSettings holdout_ratio must be in \[0, 1\), got 1.0"),
])
def test_bad_dynamics_sizes_raise_clear_errors(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


@pytest.mark.parametrize("module, config, name", [
    (pets, pets.Config(env="CartPole-v1"), "PETS"),
    (mbpo, mbpo.Config(env="Acrobot-v1", termination="none"), "MBPO"),
    (sindy_rl, sindy_rl.Config(env="CartPole-v1"), "SINDy-RL"),
])
def test_discrete_env_is_refused_by_the_cli_before_a_run_folder_exists(tmp_path, module, config, name):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf"{name} supports only continuous action spaces, but {config.env} has "
                                          r"Discrete\(\d\)\. Try a continuous env such as Pendulum-v1"):
        train_and_evaluate(config, module.make_train, RunOptions(out=str(out), quiet=True, plot=False),
                           algorithm=name.lower())
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# A PETS checkpoint used for another env
# ---------------------------------------------------------------------------------------------
# The config and run options of tests/test_pets.py's save/load test: the same compiled programs, so
# the session's persistent compilation cache (tests/conftest.py) compiles them once for both files.
TINY = pets.Config(total_timesteps=300, random_steps=100, train_every=100, ensemble_size=2, hidden_size=16,
                   num_layers=1, max_epochs=3, horizon=4, population=16, num_elites=4, iterations=2,
                   num_particles=2)


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pets") / "pendulum"
    train_and_evaluate(TINY, pets.make_train, RunOptions(out=str(out), num_seeds=2, eval_episodes=2, log_points=3,
                                                         quiet=True, plot=False), algorithm="pets")
    return out


def _copy_with_env(src, dst, env_id):
    """The run folder ``src`` with its config.json saying ``env_id``: a checkpoint filed under another env."""
    shutil.copytree(src, dst)
    saved = json.loads((dst / "config.json").read_text())
    saved["env"] = saved["config"]["env"] = env_id
    (dst / "config.json").write_text(json.dumps(saved))
    return dst


@pytest.mark.parametrize("env_id", ["MountainCarContinuous-v0", "Probe-Action-Continuous"])
def test_loading_a_pendulum_checkpoint_for_another_env_is_a_clear_error(tmp_path, pendulum_run, env_id):
    out = _copy_with_env(pendulum_run, tmp_path / "other", env_id)
    with pytest.raises(ckpt.CheckpointError, match=rf"saved with env='Pendulum-v1', but this run has env='{env_id}'"):
        load_run(out, pets.Config, pets.make_train, "pets")


def test_loading_a_pets_checkpoint_as_another_algorithm_is_a_clear_error(pendulum_run):
    with pytest.raises(ckpt.CheckpointError, match="holds a 'pets' run, not 'mbpo'"):
        load_run(pendulum_run, mbpo.Config, mbpo.make_train, "mbpo")


def test_a_pendulum_model_refuses_another_envs_observations(pendulum_run):
    loaded = load_run(pendulum_run, pets.Config, pets.make_train, "pets")
    assert loaded.config == TINY
    assert loaded.act(0, jnp.zeros((2, 3))).shape == (2, 1)
    for obs in (jnp.zeros((2, 2)), jnp.zeros(3)):   # MountainCarContinuous' states; one unbatched state
        with pytest.raises(ValueError, match=r"PETS act: expected a batch of Pendulum-v1 observations.*3 numbers"):
            loaded.act(0, obs)


@pytest.mark.parametrize("module, config", [
    (mbpo, mbpo.Config(total_timesteps=300, random_steps=100)),
    (sindy_rl, sindy_rl.Config(total_timesteps=300, random_steps=100)),
])
def test_mbpo_and_sindy_policies_refuse_another_envs_observations(module, config):
    trainer = module.make_train(config)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))      # shapes only: nothing runs
    with pytest.raises(ValueError, match=r"act: expected a batch of Pendulum-v1 observations.*got shape \(2, 2\)"):
        jax.eval_shape(trainer.act, state, jnp.zeros((2, 2)), jax.random.PRNGKey(0))
    out = jax.eval_shape(trainer.act, state, jnp.zeros((2, 3)), jax.random.PRNGKey(0))
    assert out.shape == (2, 1)

