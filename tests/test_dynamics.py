"""Tests of jaxrl/dynamics.py: the Gaussian NLL against a hand computation, the soft log-variance
bounds, masked statistics and sampling on a partly filled buffer, fitting a known linear system with
early stopping inside the compiled program, and TS1/TS∞ member assignment in rollouts."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import dynamics as d


# ---------------------------------------------------------------------------------------------
# Loss and bounds
# ---------------------------------------------------------------------------------------------
def test_gaussian_nll_matches_hand_computation():
    # 1-D: N(1; 0, 1): 0.5 * (1 + 0 + log 2π)
    assert float(d.gaussian_nll(jnp.array([0.0]), jnp.array([0.0]), jnp.array([1.0]))) == pytest.approx(
        0.5 + 0.5 * math.log(2 * math.pi), rel=1e-6)
    # 2-D diagonal: dims (μ=1, σ²=e², y=3) and (μ=−1, σ²=e^−1, y=−0.5), summed
    mean, logvar, y = jnp.array([1.0, -1.0]), jnp.array([2.0, -1.0]), jnp.array([3.0, -0.5])
    by_hand = sum(0.5 * ((yi - mi) ** 2 / math.exp(lv) + lv + math.log(2 * math.pi))
                  for mi, lv, yi in [(1.0, 2.0, 3.0), (-1.0, -1.0, -0.5)])
    assert float(d.gaussian_nll(mean, logvar, y)) == pytest.approx(by_hand, rel=1e-6)
    # it is exactly −log density of the Gaussian
    logpdf = jax.scipy.stats.norm.logpdf(y, mean, jnp.exp(0.5 * logvar)).sum()
    assert float(d.gaussian_nll(mean, logvar, y)) == pytest.approx(-float(logpdf), rel=1e-6)


def test_ensemble_loss_adds_the_bound_penalty():
    ens = d.Ensemble(obs_dim=2, action_dim=1, num_members=3, hidden_size=8, num_layers=1)
    params = ens.init(jax.random.PRNGKey(0))
    params = params._replace(max_logvar=jnp.array([0.5, 1.0, 0.0]), min_logvar=jnp.array([-10.0, -5.0, -7.0]))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 3))
    y = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 3))
    loss, nll = ens_loss = d.ensemble_loss(ens, params, x, y, logvar_penalty=0.01)
    assert float(loss - nll) == pytest.approx(0.01 * (1.5 - (-22.0)), rel=1e-5)
    mean, logvar = ens.apply_all(params, x)
    assert float(nll) == pytest.approx(float(d.gaussian_nll(mean, logvar, y).mean()), rel=1e-6)
    assert np.isfinite(np.asarray(ens_loss)).all()


def test_logvar_bounds_hold_and_are_soft():
    raw = jnp.linspace(-1000.0, 1000.0, 20_001)
    max_lv, min_lv = jnp.float32(0.5), jnp.float32(-10.0)
    lv = d.bound_logvar(raw, max_lv, min_lv)
    # the lower bound is hard; the upper one is soft: the second softplus can add at most
    # softplus(min − max) = log(1 + e^−10.5) ≈ 2.8e-5 on top of max
    assert float(lv.min()) >= -10.0
    assert float(lv.max()) <= 0.5 + np.log1p(np.exp(-10.5)) + 1e-6
    assert np.all(np.diff(np.asarray(lv)) >= 0)                              # monotone
    # ≈ identity well inside the bounds
    assert float(d.bound_logvar(jnp.float32(-3.0), max_lv, min_lv)) == pytest.approx(-3.0, abs=0.05)
    # the bounds are learnable: the bounded value has a gradient with respect to them
    g_max, g_min = jax.grad(lambda a, b: d.bound_logvar(jnp.float32(0.4), a, b), argnums=(0, 1))(max_lv, min_lv)
    assert float(g_max) > 0.1 and abs(float(g_min)) < 1e-3


# ---------------------------------------------------------------------------------------------
# Masked buffers
# ---------------------------------------------------------------------------------------------
def _partly_filled(capacity=64, size=40, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    data = d.ModelData(jax.random.normal(k[0], (capacity, 3)), jax.random.normal(k[1], (capacity, 2)),
                       jax.random.normal(k[2], (capacity,)), jax.random.normal(k[3], (capacity, 3)))
    filled = np.arange(capacity) < size
    # unfilled slots hold garbage (NaN and huge values) that must never show
    garbage = lambda x: jnp.where(filled.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.nan)  # noqa: E731
    return jax.tree.map(garbage, data), size


def test_masked_normalizer_ignores_unfilled_slots():
    data, size = _partly_filled()
    norm = d.fit_normalizer(data, d.filled_mask(64, size))
    inputs = np.concatenate([data.obs[:size], data.action[:size]], -1)
    targets = np.concatenate([data.next_obs[:size] - data.obs[:size], data.reward[:size, None]], -1)
    np.testing.assert_allclose(norm.in_mean, inputs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.in_std, inputs.std(0), rtol=1e-5)
    np.testing.assert_allclose(norm.out_mean, targets.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.out_std, targets.std(0), rtol=1e-5)
    # a constant dimension is left unscaled
    const = data._replace(action=data.action.at[:, 0].set(2.0))
    assert float(d.fit_normalizer(const, d.filled_mask(64, size)).in_std[3]) == 1.0


def test_split_masks_partition_the_filled_slots():
    u = jax.random.uniform(jax.random.PRNGKey(0), (100,))
    train, val = d.split_masks(100, 60, u, 0.25)
    train, val, filled = np.asarray(train), np.asarray(val), np.arange(100) < 60
    assert not np.any(train & val) and np.array_equal(train | val, filled)
    assert np.array_equal(val, filled & (np.asarray(u) < 0.25))
    # no held-out slot yet: validation falls back to the training slots
    train0, val0 = d.split_masks(100, 60, u, 0.0)
    assert np.array_equal(np.asarray(train0), filled) and np.array_equal(np.asarray(val0), filled)


def test_masked_sampling_draws_only_and_uniformly_from_true_slots():
    mask = jnp.zeros(50, bool).at[jnp.array([3, 7, 8, 20, 49])].set(True)
    idx = np.asarray(d.sample_masked(jax.random.PRNGKey(0), mask, (50_000,)))
    assert set(np.unique(idx)) == {3, 7, 8, 20, 49}
    assert np.allclose(np.bincount(idx, minlength=50)[[3, 7, 8, 20, 49]] / 50_000, 0.2, atol=0.01)


# ---------------------------------------------------------------------------------------------
# Training: a known linear system, early stopping inside the compiled program
# ---------------------------------------------------------------------------------------------
A = np.array([[0.9, 0.1], [-0.2, 0.8]], np.float32)
B = np.array([[0.5], [-0.3]], np.float32)
C_OBS, C_ACT = np.array([1.0, 0.0], np.float32), -0.5
ENS = d.Ensemble(obs_dim=2, action_dim=1, num_members=4, hidden_size=32, num_layers=2)
SETTINGS = d.TrainSettings(batch_size=32, max_epochs=300, patience=5, holdout_ratio=0.2)
CAPACITY, SIZE = 768, 512


def _linear_data(key):
    k1, k2 = jax.random.split(key)
    obs = jax.random.normal(k1, (CAPACITY, 2))
    act = jax.random.uniform(k2, (CAPACITY, 1), minval=-1, maxval=1)
    return d.ModelData(obs, act, obs @ C_OBS + C_ACT * act[:, 0], obs @ A.T + act @ B.T)


def _fit(data, capacity, key):
    optimizer = d.make_optimizer(3e-3, 0.0)
    params = ENS.init(key)
    holdout_u = jax.random.uniform(jax.random.PRNGKey(7), (CAPACITY,))[:capacity]
    return d.train_ensemble(ENS, optimizer, params, optimizer.init(params), data, SIZE, holdout_u,
                            jax.random.PRNGKey(3), SETTINGS)


@pytest.fixture(scope="module")
def linear_fit():
    data = _linear_data(jax.random.PRNGKey(0))
    # the same data twice: in a larger buffer whose unfilled slots hold NaN, and in a buffer of exactly SIZE
    nan_tail = jax.tree.map(lambda x: x.at[SIZE:].set(jnp.nan), data)
    exact = jax.tree.map(lambda x: x[:SIZE], data)
    fit = jax.jit(_fit, static_argnums=1)
    return data, fit(nan_tail, CAPACITY, jax.random.PRNGKey(1)), fit(exact, SIZE, jax.random.PRNGKey(1))


def test_fits_a_linear_system_to_near_zero_validation_error(linear_fit):
    data, (params, _, norm, info), _ = linear_fit
    assert float(info.val_score) < 2e-3, info          # normalized MSE on the held-out slots
    # in env units, on fresh inputs: Δs and r of the true system
    fresh = _linear_data(jax.random.PRNGKey(5))
    mean, var = ENS.predict(params, norm, fresh.obs[:256], fresh.action[:256])
    true = np.concatenate([fresh.next_obs[:256] - fresh.obs[:256], fresh.reward[:256, None]], -1)
    assert np.abs(np.asarray(mean) - true).mean() < 0.05
    assert np.all(np.asarray(var) > 0) and np.asarray(var).mean() < 0.01   # confident on noiseless data


def test_early_stopping_stops_before_max_epochs(linear_fit):
    _, (params, _, norm, info), _ = linear_fit
    assert 0 < int(info.epochs) < SETTINGS.max_epochs, info
    # the returned parameters are the best validation epoch's: their score is the reported one
    data = _linear_data(jax.random.PRNGKey(0))
    holdout_u = jax.random.uniform(jax.random.PRNGKey(7), (CAPACITY,))
    _, val = d.split_masks(CAPACITY, SIZE, holdout_u, SETTINGS.holdout_ratio)
    x = (d.model_inputs(data.obs, data.action) - norm.in_mean) / norm.in_std
    y = (d.model_targets(data.obs, data.reward, data.next_obs) - norm.out_mean) / norm.out_std
    assert float(d.validation_mse(ENS, params, x, y, val)) == pytest.approx(float(info.val_score), rel=1e-4)


def test_unfilled_slots_do_not_change_training(linear_fit):
    _, (p_big, _, n_big, i_big), (p_exact, _, n_exact, i_exact) = linear_fit
    assert int(i_big.epochs) == int(i_exact.epochs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 (p_big, n_big), (p_exact, n_exact))


# ---------------------------------------------------------------------------------------------
# Rollouts: trajectory sampling
# ---------------------------------------------------------------------------------------------
def _labelled_ensemble(num_members=5):
    """Member m predicts Δs = m (every dimension) and reward m with (nearly) zero variance."""
    ens = d.Ensemble(obs_dim=2, action_dim=1, num_members=num_members, hidden_size=4, num_layers=1)
    params = ens.init(jax.random.PRNGKey(0))
    last = params.members["params"]["Dense_1"]
    m = jnp.arange(num_members, dtype=jnp.float32)[:, None]
    bias = jnp.concatenate([jnp.broadcast_to(m, (num_members, ens.out_dim)),
                            jnp.full((num_members, ens.out_dim), -30.0)], axis=1)
    last = {"kernel": jnp.zeros_like(last["kernel"]), "bias": bias}
    members = {"params": {**params.members["params"], "Dense_1": last}}
    params = params._replace(members=members, max_logvar=jnp.full(ens.out_dim, -20.0),
                             min_logvar=jnp.full(ens.out_dim, -40.0))
    return ens, params, d.identity_normalizer(ens.in_dim, ens.out_dim)


def _run(mode, batch=(), particles=10, horizon=6):
    ens, params, norm = _labelled_ensemble()
    start = jnp.zeros(batch + (particles, 2))
    policy = lambda t, s, k: jnp.zeros(s.shape[:-1] + (1,))  # noqa: E731
    return d.rollout(ens, params, norm, policy, start, horizon, jax.random.PRNGKey(4), mode=mode)


@pytest.mark.parametrize("mode", ["ts1", "tsinf"])
def test_each_particle_follows_its_assigned_member(mode):
    out = _run(mode, batch=(3,))
    members = np.asarray(out.members)                                     # (H, P)
    steps = np.diff(np.asarray(out.states), axis=0)                      # (H, 3, P, 2)
    np.testing.assert_allclose(steps, np.broadcast_to(members[:, None, :, None], steps.shape), atol=1e-4)
    np.testing.assert_allclose(out.rewards, np.broadcast_to(members[:, None, :], out.rewards.shape), atol=1e-4)
    # balanced: every member gets P/E = 2 particles at every step
    assert all(np.array_equal(np.bincount(row, minlength=5), [2] * 5) for row in members)


def test_tsinf_keeps_and_ts1_resamples_members():
    inf, one = np.asarray(_run("tsinf").members), np.asarray(_run("ts1").members)
    assert np.all(inf == inf[0])                                          # one member per particle, whole horizon
    changed = (one[1:] != one[:-1]).any(axis=1)
    assert changed.all(), one                                             # re-drawn every step


def test_rollout_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'ts1' or 'tsinf'"):
        _run("ts2")
    with pytest.raises(ValueError, match="multiple of the ensemble size"):
        _run("tsinf", particles=7)
