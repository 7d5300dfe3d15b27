"""Tests of agents/model_based/mbpo.py: the rollout-length schedule, the masked FIFO model buffer,
the real/model mixing of a minibatch, branched rollouts from real states (with terminations),
config errors, determinism, save -> load -> identical actions through the CLI, and a short
learning check on Pendulum-v1 (several seeds in one compiled program)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.model_based import mbpo
from jaxrl import dynamics, replay
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer


# ---------------------------------------------------------------------------------------------
# The rollout-length schedule (paper's code: k_a until epoch a, linear to k_b at epoch b, floored)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule, expected", [
    # Hopper's (20, 100, 1, 15): k = ⌊1 + (e − 20)/80 · 14⌋ → e=40: 4.5 → 4, e=60: 8, e=99: 14.825 → 14
    ((20, 100, 1, 15), {0: 1, 20: 1, 21: 1, 26: 2, 40: 4, 60: 8, 99: 14, 100: 15, 500: 15}),
    ((1, 15, 1, 1), {0: 1, 7: 1, 100: 1}),                       # InvertedPendulum / mbrl-lib cart-pole
    ((5, 5, 1, 4), {0: 1, 5: 1, 6: 4}),                          # a step at epoch 5
    ((0, 10, 10, 1), {0: 10, 5: 5, 9: 1, 10: 1}),                # decreasing: ⌊10 − 4.5⌋ = 5, ⌊1.9⌋ = 1
])
def test_rollout_length_schedule(schedule, expected):
    epochs = jnp.array(list(expected))
    got = jax.jit(jax.vmap(lambda e: mbpo.rollout_length(schedule, e)))(epochs)
    assert np.asarray(got).tolist() == list(expected.values())


def test_rollout_schedule_parses_cli_strings_and_rejects_bad_ones():
    assert mbpo.parse_schedule(("20", "100", "1", "15")) == (20, 100, 1, 15)      # --rollout-schedule repeated
    assert mbpo.parse_schedule(("20,100,1,15",)) == (20, 100, 1, 15)             # --rollout-schedule 20,100,1,15
    assert mbpo.Config(rollout_schedule=(20, 100, 1, 15)).max_rollout_length == 15
    for bad in [(1, 2, 3), (10, 5, 1, 2), (1, 15, 0, 1), ("a", 1, 1, 1)]:
        with pytest.raises(ConfigError, match=r"rollout_schedule must be four integers"):
            mbpo.parse_schedule(bad)


# ---------------------------------------------------------------------------------------------
# Buffers: masked FIFO model buffer, exact real/model mixing
# ---------------------------------------------------------------------------------------------
def _rows(values, obs_dim=2):
    v = jnp.asarray(values, jnp.float32)
    return mbpo.Transition(jnp.tile(v[:, None], (1, obs_dim)), v[:, None], v, v[:, None] + jnp.zeros(obs_dim),
                           jnp.zeros_like(v))


def test_model_buffer_is_fifo_with_masks():
    example = mbpo.Transition(jnp.zeros(2), jnp.zeros(1), jnp.float32(0), jnp.zeros(2), jnp.float32(0))
    buf = mbpo.model_buffer_init(6, example)
    assert not np.asarray(buf.valid).any()
    buf = mbpo.model_buffer_add(buf, _rows([1, 2, 3, 4]), jnp.array([True, False, True, True]))
    assert np.asarray(buf.data.reward).tolist() == [1, 2, 3, 4, 0, 0]
    assert np.asarray(buf.valid).tolist() == [True, False, True, True, False, False]
    assert int(buf.position) == 4
    # The next block overwrites the oldest slots first: 4, 5, then 0, 1 (wrapping), validity included.
    buf = mbpo.model_buffer_add(buf, _rows([5, 6, 7, 8]), jnp.array([True, True, False, True]))
    assert np.asarray(buf.data.reward).tolist() == [7, 8, 3, 4, 5, 6]
    assert np.asarray(buf.valid).tolist() == [False, True, True, True, True, True]
    assert int(buf.position) == 2
    np.testing.assert_array_equal(np.asarray(buf.data.obs[:, 0]), [7, 8, 3, 4, 5, 6])


def _mixing_buffers():
    """A real buffer of 5 filled slots out of 8 (rewards +1, unfilled slots 99) and a model buffer
    whose valid slots hold reward −1 and invalid slots 99 (a 99 in a batch means a masked or unfilled
    slot leaked); every model row's obs holds its slot index."""
    example = mbpo.Transition(jnp.zeros(2), jnp.zeros(1), jnp.float32(0), jnp.zeros(2), jnp.float32(0))
    real = replay.init(8, example)
    real = real._replace(data=real.data._replace(reward=jnp.full(8, 99.0)))
    real = replay.add(real, _rows([1, 1, 1, 1, 1]))
    valid = jnp.array([True, False, True, False, False, True, True, False, True, False])
    rows = _rows(jnp.arange(10))._replace(reward=jnp.where(valid, -1.0, 99.0))
    model = mbpo.model_buffer_add(mbpo.model_buffer_init(10, example), rows, valid)
    return real, model


def test_mixed_batch_has_exactly_the_real_ratio_and_no_masked_slot():
    real, model = _mixing_buffers()
    ratios = jnp.array([0.0, 0.05, 0.25, 0.5, 1.0])
    keys = jax.random.split(jax.random.PRNGKey(0), ratios.shape[0])
    # real_ratio traced (vmapped, as a CLI sweep does); batch of 40: ⌊40 r⌋ = 0, 2, 10, 20, 40 real rows
    batches = jax.jit(jax.vmap(lambda r, k: mbpo.mixed_batch(real, model, k, 40, r)))(ratios, keys)
    rewards = np.asarray(batches.reward)
    assert (rewards == 1).sum(axis=1).tolist() == [0, 2, 10, 20, 40]
    assert (rewards == -1).sum(axis=1).tolist() == [40, 38, 30, 20, 0]
    assert not (rewards == 99).any()
    # The paper's default: int(256 · 0.05) = 12 real rows
    batch = mbpo.mixed_batch(real, model, jax.random.PRNGKey(1), 256, 0.05)
    assert int((np.asarray(batch.reward) == 1).sum()) == 12


def test_mixed_batch_samples_the_valid_model_slots_uniformly():
    real, model = _mixing_buffers()
    batch = jax.jit(lambda k: mbpo.mixed_batch(real, model, k, 20_000, 0.0))(jax.random.PRNGKey(2))
    counts = np.bincount(np.asarray(batch.obs[:, 0]).astype(int), minlength=10)
    assert np.flatnonzero(counts).tolist() == [0, 2, 5, 6, 8]
    np.testing.assert_allclose(counts[[0, 2, 5, 6, 8]] / 20_000, 0.2, atol=0.015)   # 5σ ≈ 0.014


# ---------------------------------------------------------------------------------------------
# Branched rollouts: they start from real states, chain, and stop at k and at terminations
# ---------------------------------------------------------------------------------------------
def _still_model(ensemble: dynamics.Ensemble, key):
    """A model that predicts Δs = 0, r = 0 with (nearly) no noise: every member's weights zero, the
    log-variance bounded at ≤ −30."""
    params = ensemble.init(key)
    members = jax.tree.map(jnp.zeros_like, params.members)
    return params._replace(members=members, max_logvar=jnp.full(ensemble.out_dim, -30.0),
                           min_logvar=jnp.full(ensemble.out_dim, -40.0))


def test_branched_rollouts_start_from_real_states_and_respect_k_and_terminations():
    ensemble = dynamics.Ensemble(obs_dim=2, action_dim=1, num_members=2, hidden_size=4, num_layers=1)
    model = _still_model(ensemble, jax.random.PRNGKey(0))
    norm = dynamics.identity_normalizer(ensemble.in_dim, ensemble.out_dim)
    example = mbpo.Transition(jnp.zeros(2), jnp.zeros(1), jnp.float32(0), jnp.zeros(2), jnp.float32(0))
    # Real states: first coordinate 0 (never terminal) or 1 (terminal); 3 of 6 slots filled.
    real = replay.add(replay.init(6, example), mbpo.Transition(
        jnp.array([[0.0, 10.0], [1.0, 20.0], [0.0, 30.0]]), jnp.zeros((3, 1)), jnp.zeros(3), jnp.zeros((3, 2)),
        jnp.zeros(3)))

    def policy(t, obs, key):
        return obs[..., 1:] / 100.0 + t  # depends on the state and the step, to check the chaining

    def terminates(obs, action, next_obs):
        return next_obs[..., 0] > 0.5

    k_max, n = 4, 64
    block, valid = jax.jit(lambda k, key: mbpo.branched_rollout(ensemble, model, norm, policy, real, k, k_max, n,
                                                                 terminates, key))(3, jax.random.PRNGKey(1))
    obs = np.asarray(block.obs).reshape(k_max, n, 2)
    next_obs = np.asarray(block.next_obs).reshape(k_max, n, 2)
    valid = np.asarray(valid).reshape(k_max, n)
    # Every start is one of the 3 filled real states (never an unfilled slot), and all 3 occur.
    starts = {tuple(s) for s in obs[0].tolist()}
    assert starts == {(0.0, 10.0), (1.0, 20.0), (0.0, 30.0)}
    # Steps chain: s_{t+1} of step t is s of step t+1 (the still model keeps the state).
    np.testing.assert_allclose(obs[1:], next_obs[:-1], atol=1e-4)
    np.testing.assert_allclose(next_obs, obs, atol=1e-4)
    np.testing.assert_allclose(np.asarray(block.action).reshape(k_max, n),
                               obs[..., 1] / 100.0 + np.arange(k_max)[:, None], atol=1e-5)
    # Validity: steps t < k = 3 of non-terminal particles; a terminal particle keeps only its terminal step.
    terminal = obs[0, :, 0] > 0.5
    expected = np.where(terminal[None], np.arange(k_max)[:, None] == 0, np.arange(k_max)[:, None] < 3)
    np.testing.assert_array_equal(valid, expected)
    np.testing.assert_array_equal(np.asarray(block.terminated).reshape(k_max, n), np.broadcast_to(terminal, (k_max, n)))


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
def test_discrete_env_raises_clear_config_error():
    with pytest.raises(ConfigError, match=r"MBPO supports only continuous.*CartPole-v1.*Discrete\(2\)"):
        mbpo.make_train(mbpo.Config(env="CartPole-v1", termination="none"))


def test_unknown_termination_rule_raises_and_none_declares_it():
    with pytest.raises(ConfigError, match=r"termination rule of 'Probe-Action-Continuous'.*termination='none'"):
        mbpo.make_train(mbpo.Config(env="Probe-Action-Continuous"))
    assert mbpo.termination_fn(mbpo.Config(env="Probe-Action-Continuous", termination="none")) is mbpo.never_terminates
    assert mbpo.termination_fn(mbpo.Config()) is mbpo.never_terminates            # Pendulum never terminates
    done = mbpo.termination_fn(mbpo.Config(env="MountainCarContinuous-v0"))(
        None, None, jnp.array([[0.45, 0.0], [0.46, -0.01], [0.3, 0.05]]))
    assert np.asarray(done).tolist() == [True, False, False]


@pytest.mark.parametrize("override, message", [
    (dict(termination="learned"), "termination must be 'auto' or 'none'"),
    (dict(rollout_schedule=(1, 2)), "rollout_schedule must be four integers"),
    (dict(rollouts_per_step=3, rollout_every=3),
     r"rollouts_per_step \* rollout_every = 9 must be a multiple of ensemble_size=5"),
    (dict(num_envs=4, rollout_every=6), "rollout_every=6 and num_envs=4 must divide one another"),
    (dict(real_ratio=1.5), "real_ratio"),
    (dict(holdout_ratio=1.0), "holdout_ratio"),
    (dict(random_steps=0), "random_steps=0 must be >= num_envs"),
    (dict(random_steps=5_000), "random_steps=5000 must be below total_timesteps"),
    (dict(updates_per_step=0), "updates_per_step"),
])
def test_bad_config_raises_before_compiling(override, message):
    with pytest.raises(ConfigError, match=message):
        mbpo.make_train(mbpo.Config(**override))


def test_capacities():
    cfg = mbpo.Config()
    assert cfg.buffer_capacity == 5_000
    assert cfg.rollout_batch == 400                          # M = 400 rollouts every env step
    assert cfg.model_buffer_capacity == 80_000               # 1 epoch × 200 batches × k_max 1 × 400
    cfg = mbpo.Config(rollout_schedule=(20, 100, 1, 15), epoch_length=1000, rollout_every=250)
    assert cfg.rollout_batch == 100_000                      # the paper's code: 100k rollouts every 250 steps
    assert cfg.model_buffer_capacity == 4 * 15 * 100_000    # its pool: 4 batches per epoch, k_max 15


# ---------------------------------------------------------------------------------------------
# Tiny runs: the schedule inside a run, determinism, and the CLI's checkpoint acts like a direct call
# ---------------------------------------------------------------------------------------------
TINY = mbpo.Config(total_timesteps=300, random_steps=100, train_every=100, epoch_length=100, ensemble_size=2,
                   hidden_size=8, num_layers=1, max_epochs=2, model_batch_size=16, rollouts_per_step=2,
                   rollout_every=100, rollout_schedule=(0, 2, 1, 3), updates_per_step=1, batch_size=16,
                   sac_hidden_size=16)


@pytest.fixture(scope="module")
def direct_states():
    trainer = mbpo.make_train(TINY)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1, 0)])
    state, metrics = jax.jit(jax.vmap(trainer))(keys)
    return trainer, state, metrics


def test_same_key_same_result(direct_states):
    _, state, metrics = direct_states
    first = jax.tree.map(lambda x: x[0], (state, metrics))
    third = jax.tree.map(lambda x: x[2], (state, metrics))
    jax.tree.map(np.testing.assert_array_equal, first, third)
    assert not np.array_equal(state.buffer.data.action[0], state.buffer.data.action[1])


def test_model_refresh_and_rollout_length_follow_the_schedule(direct_states):
    # Warm-up ends after 100 steps (iteration 99), then every 100 steps. Epochs count after the
    # warm-up: 0, 1, 2 at the three refreshes, so k = ⌊1 + e/2 · 2⌋ = 1, 2, 3 (schedule (0, 2, 1, 3)).
    _, state, metrics = direct_states
    k = np.asarray(metrics["rollout_length"][0])
    refreshed = np.flatnonzero(np.isfinite(k))
    assert refreshed.tolist() == [99, 199, 299]
    assert k[refreshed].tolist() == [1, 2, 3]
    # One block of k_max · 200 starts per refresh, FIFO over one block: k · 200 valid slots each time.
    valid = np.asarray(metrics["model_buffer_valid"][0])
    assert valid[refreshed].tolist() == [200, 400, 600]
    assert TINY.model_buffer_capacity == 600
    # SAC starts with the first model batch: no update before iteration 99.
    q_loss = np.asarray(metrics["q_loss"][0])
    assert np.isnan(q_loss[:99]).all() and np.isfinite(q_loss[99:]).all()
    assert np.all(np.abs(np.asarray(state.buffer.data.action)) <= 2.0)       # Pendulum's bounds


def test_save_load_identical_actions(tmp_path, direct_states):
    trainer, state, _ = direct_states
    out = tmp_path / "mbpo"
    summary = train_and_evaluate(TINY, mbpo.make_train,
                                 RunOptions(out=str(out), num_seeds=2, eval_episodes=2, log_points=3, quiet=True,
                                            plot=False), algorithm="mbpo")
    assert len(summary["runs"]) == 2
    loaded = load_run(out, mbpo.Config, mbpo.make_train, "mbpo")
    assert loaded.config == TINY
    obs = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    for r in range(2):
        # The CLI's chunked 2-seed program and the direct 3-seed one are compiled differently, and 300
        # iterations of model fitting and SAC updates carry their last-bit differences (measured: 2e-7
        # in the actions), so the restored run matches the direct run of the same key up to rounding.
        direct = jax.tree.map(lambda x: x[r], state)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[r], b, atol=1e-5),
                     loaded.state.actor_params, direct.actor_params)
        expected = trainer.act(direct, obs, jax.random.PRNGKey(0))
        np.testing.assert_allclose(loaded.act(r, obs, jax.random.PRNGKey(0)), expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Learning check: Pendulum-v1, 3 seeds in one program, against our SAC at the same env steps
# ---------------------------------------------------------------------------------------------
# Small networks (ensemble of 5 x 2 swish layers of 64; SAC 2 x 64, batch 128), the paper's G = 20
# updates per env step and 5% real data, M = 100 rollouts of length 1 per env step, 2 000 env steps
# (one random episode, then 9 with the policy). Measured (greedy return over 8 episodes): this test,
# seeds 0-2: -166, -186, -463 (mean -272); the same config in a separate 4-seed program (other float
# rounding, so other runs): -614, -121, -706, -134 (mean -394); with G = 10 instead: mean -861.
# Our SAC (agents/online/sac.py, same 2 x 64 networks and batch 128, one update per env step) at the
# same 2 000 env steps: -1353, -983, -1176, -928 (mean -1110) with 200 random steps, mean -1350 with
# its test's 500. Random play scores about -1200. SAC with G = 10 updates per env step on real data
# only reached -697, -92, -742, -136 (mean -417): on Pendulum the model's 95% share does not beat
# replaying the real data as often (docs in the report).
PENDULUM = mbpo.Config(total_timesteps=2_000, ensemble_size=5, hidden_size=64, num_layers=2, model_batch_size=64,
                       rollouts_per_step=100, updates_per_step=20, batch_size=128, sac_hidden_size=64)
PENDULUM_SEEDS = 3
SAC_AT_SAME_STEPS = -1110.0   # measured above, 4 seeds


@pytest.mark.learning
def test_pendulum_beats_sac_at_the_same_env_steps():
    trainer = mbpo.make_train(PENDULUM)

    def run(key):
        state, metrics = trainer(key)
        return evaluate_trainer(trainer, state, jax.random.fold_in(key, 1), num_episodes=8)["return"].mean()

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(PENDULUM_SEEDS)])
    returns = np.asarray(jax.jit(jax.vmap(run))(keys))
    print(f"MBPO Pendulum-v1 {PENDULUM.total_timesteps} env steps: greedy return {returns.mean():.1f} "
          f"over {PENDULUM_SEEDS} seeds {np.round(returns, 1)} (our SAC: {SAC_AT_SAME_STEPS})")
    # -800 holds if one seed fails completely (-1500) while the other two reach about -450; it is
    # 300 above our SAC at the same number of env steps and 400 above random play.
    assert returns.mean() > -800, returns
