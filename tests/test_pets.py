"""Tests of agents/model_based/pets.py: config errors, the CEM/MPPI planners on a known reward,
determinism, save -> load -> identical actions through the CLI, and a short learning check on
Pendulum-v1 (3 seeds in one compiled program)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.model_based import pets
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def test_discrete_env_raises_clear_config_error():
    with pytest.raises(ConfigError, match=r"PETS supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        pets.make_train(pets.Config(env="CartPole-v1"))


@pytest.mark.parametrize("override, message", [
    (dict(num_particles=7), "num_particles=7 must be a multiple of ensemble_size=5"),
    (dict(planner="random"), "planner must be one of"),
    (dict(propagation="ts2"), r"propagation must be one of \('tsinf', 'ts1'\)"),
    (dict(num_elites=600), "num_elites=600 must be at most population=400"),
    (dict(holdout_ratio=1.0), "holdout_ratio"),
    (dict(cem_alpha=1.5), "cem_alpha"),
    (dict(random_steps=0), "random_steps=0 must be >= num_envs"),
    (dict(random_steps=3_000), "random_steps=3000 must be below total_timesteps"),
    (dict(horizon=0), "horizon"),
])
def test_bad_config_raises_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        pets.make_train(pets.Config(**override))


def test_buffer_capacity_is_capped_to_the_budget():
    assert pets.Config().buffer_capacity == 3_000
    assert pets.Config(total_timesteps=2_000_000).buffer_capacity == 1_000_000


# ---------------------------------------------------------------------------------------------
# Planners on a known model: Δs = 0 and reward −z·tanh(z/2) ≈ −z²/2 with z = a − 0.3
# ---------------------------------------------------------------------------------------------
def _bowl_model(state, target=0.3):
    """Set every member to predict Δs = 0 and r = −(swish(z) + swish(−z)) = −z·tanh(z/2), z = a − target,
    with (nearly) zero variance: each step's reward peaks at a = target, so the best plan is a ≡ target."""
    members = state.model.members["params"]
    E = members["Dense_0"]["kernel"].shape[0]
    k0 = jnp.zeros_like(members["Dense_0"]["kernel"]).at[:, 1, 0].set(1.0).at[:, 1, 1].set(-1.0)  # input [s, a]
    b0 = jnp.zeros_like(members["Dense_0"]["bias"]).at[:, 0].set(-target).at[:, 1].set(target)
    k1 = jnp.zeros_like(members["Dense_1"]["kernel"]).at[:, 0, 1].set(-1.0).at[:, 1, 1].set(-1.0)  # -> r
    b1 = jnp.zeros_like(members["Dense_1"]["bias"]).at[:, 2:].set(-30.0)                           # log-variances
    model = state.model._replace(members={"params": {"Dense_0": {"kernel": k0, "bias": b0},
                                                     "Dense_1": {"kernel": k1, "bias": b1}}},
                                 max_logvar=jnp.full(2, -20.0), min_logvar=jnp.full(2, -40.0))
    assert E == 2
    return state._replace(model=model)


@pytest.mark.parametrize("planner, extra, tolerance", [
    ("cem", {}, 0.03),
    ("cem", dict(propagation="ts1"), 0.03),
    ("mppi", dict(mppi_temperature=0.01, mppi_noise=0.3), 0.05),
])
def test_planner_finds_the_known_optimum(planner, extra, tolerance):
    config = pets.Config(env="Probe-Action-Continuous", total_timesteps=100, random_steps=10, ensemble_size=2,
                         hidden_size=2, num_layers=1, horizon=3, population=200, num_elites=20, iterations=5,
                         num_particles=2, planner=planner, **extra)
    trainer = pets.make_train(config)
    state = _bowl_model(trainer.init(jax.random.PRNGKey(0)))
    actions = jax.jit(trainer.act)(state, jnp.zeros((4, 1)), jax.random.PRNGKey(1))
    assert actions.shape == (4, 1)
    np.testing.assert_allclose(np.asarray(actions), 0.3, atol=tolerance)


# ---------------------------------------------------------------------------------------------
# Tiny runs: determinism, and the CLI's checkpoint acts like a direct call
# ---------------------------------------------------------------------------------------------
TINY = pets.Config(total_timesteps=300, random_steps=100, train_every=100, ensemble_size=2, hidden_size=16,
                   num_layers=1, max_epochs=3, horizon=4, population=16, num_elites=4, iterations=2,
                   num_particles=2)


@pytest.fixture(scope="module")
def direct_states():
    trainer = pets.make_train(TINY)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1, 0)])
    state, metrics = jax.jit(jax.vmap(trainer))(keys)
    return trainer, state, metrics


def test_same_key_same_result(direct_states):
    _, state, metrics = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), (state.model, state.buffer.data))
    assert not np.array_equal(state.buffer.data.action[0], state.buffer.data.action[1])


def test_model_is_retrained_on_schedule(direct_states):
    # warm-up ends after 100 steps (iteration 99), then every 100 steps: iterations 99 and 199 (and 299)
    _, state, metrics = direct_states
    trained = np.flatnonzero(np.isfinite(np.asarray(metrics["model_epochs"][0])))
    assert trained.tolist() == [99, 199, 299]
    planned = np.isfinite(np.asarray(metrics["planned_return"][0]))
    assert not planned[:100].any() and planned[100:].all()                 # random warm-up, then MPC
    assert int(state.buffer.size[0]) == 300
    assert np.all(np.abs(np.asarray(state.buffer.data.action)) <= 2.0)     # Pendulum's bounds


def test_save_load_identical_actions(tmp_path, direct_states):
    trainer, state, _ = direct_states
    out = tmp_path / "pets"
    summary = train_and_evaluate(TINY, pets.make_train,
                                 RunOptions(out=str(out), num_seeds=2, eval_episodes=2, log_points=3, quiet=True,
                                            plot=False), algorithm="pets")
    assert len(summary["runs"]) == 2
    loaded = load_run(out, pets.Config, pets.make_train, "pets")
    assert loaded.config == TINY
    obs = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    for r in range(2):
        expected = trainer.act(jax.tree.map(lambda x: x[r], state), obs, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(loaded.act(r, obs, jax.random.PRNGKey(0)), expected)


# ---------------------------------------------------------------------------------------------
# Learning check: Pendulum-v1, 3 seeds in one program
# ---------------------------------------------------------------------------------------------
# Small enough for about a minute on 2 CPU cores: ensemble of 5 with 2 x 64 swish units, CEM with
# population 100 (10 elites), 2 iterations, horizon 25, 5 particles (one per member under TS∞).
# 1 000 env steps = 5 episodes: 1 random, then 4 with MPC, the model retrained after each.
# Measured with this test (seeds 0-2): 5th-episode returns -125, -120, -379 (mean -208), after
# random first episodes of -1494, -1607, -1280; in a separate 4-seed program (seeds 0-3) -124, -366,
# -129, -121. PETS reaches about -200 within ~10 episodes in the literature.
PENDULUM = pets.Config(env="Pendulum-v1", total_timesteps=1_000, hidden_size=64, num_layers=2, population=100,
                       num_elites=10, iterations=2, horizon=25, num_particles=5)
PENDULUM_SEEDS = 3


@pytest.mark.learning
def test_pendulum_learns_within_five_episodes():
    trainer = pets.make_train(PENDULUM)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(PENDULUM_SEEDS)])
    _, metrics = jax.jit(jax.vmap(trainer))(keys)
    episode_ends = np.arange(199, PENDULUM.total_timesteps, 200)
    returns = np.asarray(metrics["episode_return"])[:, episode_ends]     # (seeds, 5 episodes)
    print(f"PETS Pendulum-v1 episode returns (rows: seeds):\n{np.round(returns)}")
    first, last = returns[:, 0], returns[:, -1]
    # A random policy scores about -1200 (here the random first episodes); -600 on the mean would
    # still hold if one of the three seeds failed completely (-1500) while the other two swung up
    # (about -150).
    assert last.mean() > -600, returns
    assert last.mean() - first.mean() > 500, returns
