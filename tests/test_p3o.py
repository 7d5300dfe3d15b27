"""P3O: the penalized clipped objective and its gradient against hand-computed numbers, the J_c estimate
(completed episodes only, carried over rollouts without one) and the penalty switching on, continuous
actions, determinism, save -> load through the CLI, and a SafeCartPole learning check.

Every trained program vmaps several runs and is compiled once per module (module-scoped fixtures).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.wrappers.purerl import GymnaxWrapper

from agents.safe import p3o
from jaxrl import envs
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.io import read_jsonl

TINY = dict(env="SafeCartPole-v0", total_timesteps=2048, num_envs=4, num_steps=32, num_minibatches=2,
            update_epochs=2, hidden_size=16)


def keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


class ConstantCost(GymnaxWrapper):
    """Makes any env a safe env with ``info["cost"] = cost`` at every step."""

    def __init__(self, env, cost: float):
        super().__init__(env)
        self.cost = cost

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, terminated, truncated, {**info, "cost": jnp.full_like(reward, self.cost)}


# ----------------------------------------------------------------------------------------------
# Pieces, by hand
# ----------------------------------------------------------------------------------------------
LOG_PROB = jnp.log(jnp.array([1.5, 0.5, 1.0]))       # ratios 1.5, 0.5, 1 against old log-probs 0
ADV, COST_ADV = jnp.array([1.0, -1.0, 2.0]), jnp.array([1.0, 1.0, -1.0])


def loss(log_prob, violation):
    return p3o.p3o_policy_loss(log_prob, jnp.zeros(3), ADV, COST_ADV, violation, 10.0, 0.2)


def test_p3o_loss_by_hand():
    """ε = 0.2, κ = 10. Reward: min(ρA, clip(ρ)A) = 1.2, −0.8, 2 -> L_R = −0.8. Cost: max(ρA_c, clip(ρ)A_c)
    = 1.5, 0.8, −1 -> mean 1.3/3. With Ĵ_c − d = 0.5 the ReLU is on: −0.8 + 10·(1.3/3 + 0.5);
    with Ĵ_c − d = −1 it is off and P3O is PPO: −0.8."""
    total, reward_loss, cost_surrogate, active = loss(LOG_PROB, 0.5)
    np.testing.assert_allclose(reward_loss, -0.8, rtol=1e-6)
    np.testing.assert_allclose(cost_surrogate, 1.3 / 3 + 0.5, rtol=1e-6)
    np.testing.assert_allclose(total, -0.8 + 10 * (1.3 / 3 + 0.5), rtol=1e-6)
    assert active
    total, _, cost_surrogate, active = loss(LOG_PROB, -1.0)
    np.testing.assert_allclose(cost_surrogate, 1.3 / 3 - 1.0, rtol=1e-6)
    np.testing.assert_allclose(total, -0.8, rtol=1e-6)
    assert not active


def test_p3o_gradient_by_hand():
    """d/dlog π per sample: the reward term is clipped for samples 0 and 1 (no gradient) and gives −ρA/3 =
    −2/3 for sample 2; the active cost term gives κρA_c/3 = 5 for sample 0 (unclipped, pessimistic
    max), 0 for sample 1 (clipped) and −10/3 for sample 2."""
    on = jax.grad(lambda lp: loss(lp, 0.5)[0])(LOG_PROB)
    off = jax.grad(lambda lp: loss(lp, -1.0)[0])(LOG_PROB)
    np.testing.assert_allclose(on, [5.0, 0.0, -2 / 3 - 10 / 3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(off, [0.0, 0.0, -2 / 3], rtol=1e-5, atol=1e-6)


def test_cost_estimate_by_hand():
    costs = jnp.array([[30.0, 99.0], [40.0, 0.0]])
    completed = jnp.array([[True, False], [True, False]])                  # 99 is an unfinished episode's cost
    est = p3o.update_cost_estimate(p3o.CostEstimate(jnp.float32(7.0)), costs, completed)
    np.testing.assert_allclose(est.episode_cost, 35.0)
    kept = p3o.update_cost_estimate(est, costs, jnp.zeros((2, 2), bool))
    np.testing.assert_allclose(kept.episode_cost, 35.0)


def test_penalty_switches_on_with_the_completed_episode_cost():
    """Probe-Constant (truncated every 10 steps) with cost 1 per step, limit 4, 4 steps per rollout.
    Iterations 1-2: no episode has completed, Ĵ_c = 0, violation −4: the ReLU stays off (λ = 0).
    Iteration 3 sees the episodes end with cost 10: violation 6, penalty on (λ = κ = 20); iteration 4
    completes none and keeps Ĵ_c = 10."""
    config = p3o.Config(env="Probe-Constant", total_timesteps=4 * 4 * 4, num_envs=4, num_steps=4, cost_limit=4.0,
                        num_minibatches=2, update_epochs=1, hidden_size=8)
    probe, probe_params = envs.make("Probe-Constant")
    state, metrics = jax.jit(p3o.make_train(config, env=ConstantCost(probe, 1.0), env_params=probe_params))(
        jax.random.PRNGKey(0))
    np.testing.assert_array_equal(metrics["episodes"], [0, 0, 4, 0])
    np.testing.assert_allclose(metrics["violation"], [-4.0, -4.0, 6.0, 6.0])
    np.testing.assert_array_equal(metrics["lambda"], [0.0, 0.0, 20.0, 20.0])
    np.testing.assert_allclose(state.constraint.episode_cost, 10.0)


def test_bad_config_fails_before_compiling():
    with pytest.raises(ConfigError, match="cost_limit must be >= 0"):
        p3o.make_train(p3o.Config(cost_limit=-1.0))
    with pytest.raises(ConfigError, match="kappa must be >= 0"):
        p3o.make_train(p3o.Config(kappa=-1.0))
    with pytest.raises(ConfigError, match="clip_eps must be > 0"):
        p3o.make_train(p3o.Config(clip_eps=0.0))
    with pytest.raises(ConfigError, match="divisible by num_minibatches"):
        p3o.make_train(p3o.Config(num_minibatches=3))
    with pytest.raises(ConfigError, match=r"needs an env that reports a per-step cost in info\['cost'\], but CartPole-v1"):
        p3o.make_train(p3o.Config(env="CartPole-v1"))


def test_continuous_actions():
    """The Gaussian path learns a continuous probe (zero cost, optimum 0.5) and acts inside the bounds."""
    config = p3o.Config(env="Probe-Action-Continuous", total_timesteps=16 * 16 * 30, num_envs=16, num_steps=16,
                        num_minibatches=2, update_epochs=4, hidden_size=16, lr=3e-3, anneal_lr=False)
    probe, probe_params = envs.make("Probe-Action-Continuous")
    trainer = p3o.make_train(config, env=ConstantCost(probe, 0.0), env_params=probe_params)
    state, metrics = jax.jit(jax.vmap(trainer))(keys(range(2)))
    actions = np.asarray(jax.vmap(trainer.act, in_axes=(0, None, None))(state, jnp.zeros((1, 1)), jax.random.PRNGKey(0)))
    assert actions.shape == (2, 1, 1) and (np.abs(actions) <= 1).all()
    np.testing.assert_allclose(actions[..., 0], 0.5, atol=0.2)       # the probe's optimum
    assert (metrics["lambda"] == 0).all()                              # cost 0 < 25: never penalized


# ----------------------------------------------------------------------------------------------
# Determinism and checkpoints (through the shared CLI)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def direct_states():
    """The tiny agent trained by a direct ``jit(vmap(train))`` call for seeds 0, 1 and 0 again."""
    trainer = p3o.make_train(p3o.Config(**TINY))
    state, metrics = jax.jit(jax.vmap(trainer))(keys((0, 1, 0)))
    return trainer, state, metrics


def test_same_key_same_result(direct_states):
    _, state, metrics = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), (state.params, state.constraint, metrics))
    kernel = state.params["params"]["actor_0"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[1])
    for name in ("episode_return", "episode_cost", "over_limit", "episodes", "lambda", "violation", "cost_surrogate"):
        assert metrics[name].shape == (3, 16), name
    assert ((metrics["lambda"] >= 0) & (metrics["lambda"] <= 20.0)).all()


def test_policy_logits_are_the_actor(direct_states):
    trainer, state, _ = direct_states
    obs = jax.random.normal(jax.random.PRNGKey(3), (64, 4))
    one = jax.tree.map(lambda x: x[1], state)
    logits = p3o.policy_logits(p3o.Config(**TINY), one.params, obs)
    assert logits.shape == (64, 2)
    np.testing.assert_array_equal(jnp.argmax(logits, -1), trainer.act(one, obs, None))


def test_save_load_identical_actions(tmp_path, direct_states):
    """The CLI's checkpoint, loaded back, acts exactly like the same seeds trained by a direct call."""
    trainer, state, _ = direct_states
    out = tmp_path / "run"
    options = RunOptions(out=str(out), num_seeds=2, eval_episodes=4, log_points=4, quiet=True, plot=False)
    summary = train_and_evaluate(p3o.Config(**TINY), p3o.make_train, options, algorithm="p3o")
    assert len(summary["runs"]) == 2
    rows = read_jsonl(out / "metrics.jsonl")
    assert {"episode_cost", "over_limit", "lambda", "episode_return"} <= set(rows[0])
    loaded = load_run(out, p3o.Config, p3o.make_train, "p3o")
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
def test_p3o_keeps_cost_under_the_limit():
    """SafeCartPole-v0 (200 steps, cost outside |x| ≤ 0.5 or |x_dot| ≤ 1), limit 25, 1.5e5 steps, 4 seeds,
    P3O with OmniSafe's defaults unchanged (κ 20, clip 0.2, lr 3e-4 annealed).

    The exact penalty switches on whenever the completed episodes' cost is above the limit, so P3O
    settles under it (conservatively): the averaged cost of the second half of training must be
    under the limit itself, with return well above random play (~25).
    Measured when written: seeds 0-3 cost 13.8 (per seed 12-15), return 98 (82-106); seeds 100-107
    cost 11.5 (8-15), return 91 (79-107). The same program with κ = 0 (PPO with a cost critic): cost
    65 (seeds 0-3) and 53 (seeds 100-107), return ~196. The penalty is on in ~7% of the minibatch steps.
    """
    trainer = p3o.make_train(p3o.Config(env="SafeCartPole-v0", total_timesteps=150_000, cost_limit=LIMIT))
    metrics = jax.tree.map(np.asarray, jax.jit(jax.vmap(trainer))(keys(range(SEEDS)))[1])
    n = metrics["episode_return"].shape[-1]
    half = slice(n // 2, n)
    cost = np.nanmean(metrics["episode_cost"][:, half], -1)
    ret = np.nanmean(metrics["episode_return"][:, half], -1)
    print(f"P3O SafeCartPole-v0 1.5e5 steps, limit {LIMIT}, second half: cost {cost.mean():.1f} "
          f"(per seed {cost.round(1).tolist()}), return {ret.mean():.1f} (per seed {ret.round(1).tolist()}), "
          f"penalty on in {metrics['penalty_active'].mean():.0%} of the minibatch steps")
    assert cost.mean() <= LIMIT
    assert ret.mean() > 60                            # still balances (random: ~25)
    assert metrics["penalty_active"].max() > 0        # the penalty did the work
