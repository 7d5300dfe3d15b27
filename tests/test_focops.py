"""FOCOPS: the per-state KL, the projection loss and the ν step against hand-computed numbers, ν moving
only after an episode completes, the KL early stop, continuous actions, determinism, save -> load
through the CLI, and a SafeCartPole learning check.

Every trained program vmaps several runs and is compiled once per module (module-scoped fixtures).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.wrappers.purerl import GymnaxWrapper

from agents.safe import focops
from jaxrl import envs
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.io import read_jsonl

TINY = dict(env="SafeCartPole-v0", total_timesteps=2048, num_envs=4, num_steps=32, num_minibatches=2,
            update_epochs=2, hidden_size=16)


def keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


class ZeroCost(GymnaxWrapper):
    """A cost-free env made explicit: ``info["cost"] = 0`` at every step."""

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, terminated, truncated, {**info, "cost": jnp.zeros_like(reward)}


# ----------------------------------------------------------------------------------------------
# Pieces, by hand
# ----------------------------------------------------------------------------------------------
def test_policy_kl_by_hand():
    # categorical: π_new = (1/4, 3/4), π_old = (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2)
    kl = focops.policy_kl(jnp.log(jnp.array([[1.0, 3.0]])), None, jnp.zeros((1, 2)), None, True)
    np.testing.assert_allclose(kl, [0.25 * np.log(0.5) + 0.75 * np.log(1.5)], rtol=1e-6)
    np.testing.assert_allclose(focops.policy_kl(jnp.array([[0.3, -2.0]]), None, jnp.array([[0.3, -2.0]]), None, True),
                               [0.0], atol=1e-7)
    # Gaussian: N(1, 1) ‖ N(0, 2²) = ln 2 + (1 + 1)/(2·4) − 1/2, summed over two identical dims
    kl = focops.policy_kl(jnp.ones((1, 2)), jnp.zeros(2), jnp.zeros((1, 2)), jnp.full((1, 2), np.log(2.0)), False)
    np.testing.assert_allclose(kl, [2 * (np.log(2.0) + 0.25 - 0.5)], rtol=1e-6)


def test_focops_loss_by_hand():
    """λ = 2, ν = 1, η = 0.02. Sample 0: ratio 2, KL 0.01: 0.01 − 2·(1 − 0.5)/2 = −0.49. Sample 1: ratio 1,
    KL 0: −(2 − 1)/2 = −0.5. Sample 2: KL 0.05 > η, rejected: 0. Mean −0.33, 2/3 accepted."""
    old = jnp.zeros(3)
    log_prob = jnp.array([np.log(2.0), 0.0, 0.0])
    kl = jnp.array([0.01, 0.0, 0.05])
    adv, cost_adv = jnp.array([1.0, 2.0, 5.0]), jnp.array([0.5, 1.0, 0.0])
    loss, accepted = focops.focops_policy_loss(log_prob, old, kl, adv, cost_adv, 1.0, 2.0, 0.02)
    np.testing.assert_allclose(loss, -0.33, rtol=1e-6)
    np.testing.assert_allclose(accepted, 2 / 3, rtol=1e-6)
    # the indicator is a constant: a rejected sample gives no gradient; d/dKL = 1/N for accepted ones,
    # d/dlogπ = −ratio·(A − ν A_c)/(λ N): −2·0.5/6 and −1·1/6
    grad_logp, grad_kl = jax.grad(lambda lp, k: focops.focops_policy_loss(lp, old, k, adv, cost_adv, 1.0, 2.0, 0.02)[0],
                                  argnums=(0, 1))(log_prob, kl)
    np.testing.assert_allclose(grad_kl, [1 / 3, 1 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(grad_logp, [-1 / 6, -1 / 6, 0.0], rtol=1e-6)


def test_nu_step_by_hand():
    """ν ← clip(ν + α (Ĵ_c − d), 0, ν_max) with Ĵ_c the mean over completed episodes only."""
    costs = jnp.array([[30.0, 99.0], [40.0, 0.0]])
    completed = jnp.array([[True, False], [True, False]])                  # Ĵ_c = 35; 99 is a running cost

    def step(nu, limit):
        return focops.nu_update(focops.NuState(jnp.float32(nu)), costs, completed, limit, 0.01, 2.0).nu

    np.testing.assert_allclose(step(0.5, 25.0), 0.6, rtol=1e-6)             # 0.5 + 0.01·10
    np.testing.assert_allclose(step(1.95, 25.0), 2.0, rtol=1e-6)            # 2.05, projected to ν_max
    np.testing.assert_allclose(step(0.05, 45.0), 0.0, atol=1e-7)            # 0.05 − 0.1, projected to 0
    unchanged = focops.nu_update(focops.NuState(jnp.float32(0.7)), costs, jnp.zeros((2, 2), bool), 25.0, 0.01, 2.0)
    np.testing.assert_allclose(unchanged.nu, 0.7, rtol=1e-6)


def test_nu_moves_only_after_an_episode_completes():
    """Probe-Constant is truncated every 10 steps and costs nothing (``ZeroCost``): with 4 steps per rollout, the first
    two iterations see no completed episode (ν stays ν0 = 0.5); the third sees the episodes end at
    step 10 with cost 0, and ν ← 0.5 + 0.01·(0 − 25) = 0.25."""
    config = focops.Config(env="Probe-Constant", total_timesteps=4 * 4 * 3, num_envs=4, num_steps=4,
                           num_minibatches=2, update_epochs=1, hidden_size=8, nu_init=0.5)
    probe, probe_params = envs.make("Probe-Constant")
    _, metrics = jax.jit(focops.make_train(config, env=ZeroCost(probe), env_params=probe_params))(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(metrics["episodes"], [0, 0, 4])
    np.testing.assert_allclose(metrics["lambda"], [0.5, 0.5, 0.25], rtol=1e-6)
    assert np.isnan(metrics["episode_cost"][0]) and metrics["episode_cost"][2] == 0.0


def test_bad_config_fails_before_compiling():
    with pytest.raises(ConfigError, match="cost_limit must be >= 0"):
        focops.make_train(focops.Config(cost_limit=-1.0))
    with pytest.raises(ConfigError, match="nu_lr must be >= 0"):
        focops.make_train(focops.Config(nu_lr=-0.1))
    with pytest.raises(ConfigError, match="focops_lambda must be > 0"):
        focops.make_train(focops.Config(focops_lambda=0.0))
    with pytest.raises(ConfigError, match="nu_init must be <= nu_max"):
        focops.make_train(focops.Config(nu_init=3.0))
    with pytest.raises(ConfigError, match="divisible by num_minibatches"):
        focops.make_train(focops.Config(num_minibatches=3))
    with pytest.raises(ConfigError, match=r"needs an env that reports a per-step cost in info\['cost'\], but CartPole-v1"):
        focops.make_train(focops.Config(env="CartPole-v1"))


def test_continuous_actions_and_kl_early_stop():
    """The Gaussian path learns a continuous probe (zero cost, optimum 0.5) and acts inside the bounds.
    The same program with δ = 1e-12 stops after the first epoch of every iteration (Algorithm 1's
    early stop: the first epoch always applies, its KL then exceeds δ); both share one compile."""
    config = focops.Config(env="Probe-Action-Continuous", total_timesteps=16 * 16 * 30, num_envs=16, num_steps=16,
                           num_minibatches=2, update_epochs=4, hidden_size=16, lr=3e-3, anneal_lr=False)
    probe, probe_params = envs.make("Probe-Action-Continuous")
    env = ZeroCost(probe)

    def train(key, target_kl):
        trainer = focops.make_train(dataclasses.replace(config, target_kl=target_kl), env=env, env_params=probe_params)
        state, metrics = trainer(key)
        return trainer.act(state, jnp.zeros((1, 1)), key), metrics

    actions, metrics = jax.jit(jax.vmap(train))(keys(range(3)), jnp.array([0.02, 0.02, 1e-12]))
    actions = np.asarray(actions)
    assert actions.shape == (3, 1, 1) and (np.abs(actions) <= 1).all()
    np.testing.assert_allclose(actions[:2, 0, 0], 0.5, atol=0.2)          # the probe's optimum
    np.testing.assert_array_equal(metrics["epochs"][2], 1.0)
    assert metrics["epochs"][:2].max() == 4.0 and (metrics["kl"][2] > 1e-12).all()


# ----------------------------------------------------------------------------------------------
# Determinism and checkpoints (through the shared CLI)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def direct_states():
    """The tiny agent trained by a direct ``jit(vmap(train))`` call for seeds 0, 1 and 0 again."""
    trainer = focops.make_train(focops.Config(**TINY))
    state, metrics = jax.jit(jax.vmap(trainer))(keys((0, 1, 0)))
    return trainer, state, metrics


def test_same_key_same_result(direct_states):
    _, state, metrics = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), (state.params, state.constraint, metrics))
    kernel = state.params["params"]["actor_0"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[1])
    for name in ("episode_return", "episode_cost", "over_limit", "episodes", "lambda", "kl", "accepted"):
        assert metrics[name].shape == (3, 16), name
    assert ((metrics["lambda"] >= 0) & (metrics["lambda"] <= 2.0)).all()


def test_policy_logits_are_the_actor(direct_states):
    trainer, state, _ = direct_states
    obs = jax.random.normal(jax.random.PRNGKey(3), (64, 4))
    params = jax.tree.map(lambda x: x[1], state.params)
    logits = focops.policy_logits(focops.Config(**TINY), params, obs)
    assert logits.shape == (64, 2)
    np.testing.assert_array_equal(jnp.argmax(logits, -1), trainer.act(jax.tree.map(lambda x: x[1], state), obs, None))


def test_save_load_identical_actions(tmp_path, direct_states):
    """The CLI's checkpoint, loaded back, acts exactly like the same seeds trained by a direct call."""
    trainer, state, _ = direct_states
    out = tmp_path / "run"
    options = RunOptions(out=str(out), num_seeds=2, eval_episodes=4, log_points=4, quiet=True, plot=False)
    summary = train_and_evaluate(focops.Config(**TINY), focops.make_train, options, algorithm="focops")
    assert len(summary["runs"]) == 2
    rows = read_jsonl(out / "metrics.jsonl")
    assert {"episode_cost", "over_limit", "lambda", "episode_return"} <= set(rows[0])
    loaded = load_run(out, focops.Config, focops.make_train, "focops")
    obs = jax.random.normal(jax.random.PRNGKey(3), (64, 4))
    for r in range(2):
        expected = trainer.act(jax.tree.map(lambda x: x[r], state), obs, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(loaded.act(r, obs), expected)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b[:2]), loaded.state.constraint, state.constraint)


# ----------------------------------------------------------------------------------------------
# Learning check
# ----------------------------------------------------------------------------------------------
LIMIT = 25.0
SEEDS = 4


@pytest.mark.learning
def test_focops_keeps_cost_near_the_limit():
    """SafeCartPole-v0 (200 steps, cost outside |x| ≤ 0.5 or |x_dot| ≤ 1), limit 25, 1.5e5 steps, 4 seeds,
    FOCOPS with the paper's defaults unchanged (λ 1.5, ν lr 0.01, ν_max 2, lr 3e-4 annealed).

    As for PPO-Lag (tests/test_ppo_lag.py), the check averages each run's training episodes over the
    second half of training, then over seeds: cost near the limit (≤ 1.5 x 25), return well above
    random play (~25), and ν must have been used (the constraint was active at some point).
    Measured when written: seeds 0-3 cost 28.2 (per seed 20-43: one seed sat near ν_max = 2), return
    137; seeds 100-107 cost 23.8 (17-33), return 110. The same program with ν held at 0 (nu_lr 0),
    seeds 100-107: cost 48.5, return 194.
    """
    trainer = focops.make_train(focops.Config(env="SafeCartPole-v0", total_timesteps=150_000, cost_limit=LIMIT))
    metrics = jax.tree.map(np.asarray, jax.jit(jax.vmap(trainer))(keys(range(SEEDS)))[1])
    n = metrics["episode_return"].shape[-1]
    half = slice(n // 2, n)
    cost = np.nanmean(metrics["episode_cost"][:, half], -1)
    ret = np.nanmean(metrics["episode_return"][:, half], -1)
    print(f"FOCOPS SafeCartPole-v0 1.5e5 steps, limit {LIMIT}, second half: cost {cost.mean():.1f} "
          f"(per seed {cost.round(1).tolist()}), return {ret.mean():.1f} (per seed {ret.round(1).tolist()}), "
          f"final ν {metrics['lambda'][:, -1].round(2).tolist()}")
    assert cost.mean() <= 1.5 * LIMIT
    assert ret.mean() > 80                            # still balances (random: ~25)
    assert metrics["lambda"].max() > 0.5              # the multiplier did the work
