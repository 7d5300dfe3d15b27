"""CPO: the optimizer pieces against exact answers (conjugate gradient vs a linear solve, the dual step
vs hand-solved and scipy-solved quadratic programs, recovery when infeasible), the constraint value
from completed episodes only, determinism and save -> load through the CLI, and a SafeCartPole
learning check.

Every trained program vmaps several runs and is compiled once per module (module-scoped fixtures).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.wrappers.purerl import GymnaxWrapper
from scipy.optimize import minimize

from agents.safe import cpo
from jaxrl import envs
from jaxrl.cli import RunOptions, load_run, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.io import read_jsonl

TINY = dict(env="SafeCartPole-v0", total_timesteps=2048, num_envs=4, num_steps=32, critic_minibatch_size=64,
            critic_epochs=2, hidden_size=16)


def keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


# ----------------------------------------------------------------------------------------------
# Conjugate gradient
# ----------------------------------------------------------------------------------------------
def test_conjugate_gradient_matches_a_linear_solve():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6))
    a = m @ m.T + 0.5 * np.eye(6)
    b = rng.normal(size=6)
    expected = np.linalg.solve(a, b)
    matvec = lambda v: jnp.asarray(a, jnp.float32) @ v  # noqa: E731
    for iters in (6, 25):   # n steps solve an n x n system; extra steps stop at a vanishing residual (no NaN)
        x = np.asarray(cpo.conjugate_gradient(matvec, jnp.asarray(b, jnp.float32), iters))
        np.testing.assert_allclose(x, expected, rtol=2e-3, atol=2e-4)
    # one step is the steepest-descent step (bᵀb / bᵀAb) b
    x1 = np.asarray(cpo.conjugate_gradient(matvec, jnp.asarray(b, jnp.float32), 1))
    np.testing.assert_allclose(x1, (b @ b) / (b @ a @ b) * b, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# The dual step (Achiam et al. 2017, Appendix 10.2) and recovery (eq. 14)
# ----------------------------------------------------------------------------------------------
def step(g, b, c, h, delta):
    g, b, h = (np.asarray(x, np.float64) for x in (g, b, h))
    hinv_g, hinv_b = np.linalg.solve(h, g), np.linalg.solve(h, b)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    out = cpo.cpo_step(f32(g), f32(b), f32(c), f32(hinv_g), f32(hinv_b), f32(delta))
    return np.asarray(out.direction, np.float64), int(out.case), float(out.nu)


@pytest.mark.parametrize("c, expected, case, nu", [
    (-2.0, (1.0, 0.0), 3, 0.0),                         # the whole trust region is feasible: TRPO step
    (-0.5, (1.0, 0.0), 2, 0.0),                         # the constraint cuts the region but the TRPO step meets it
    (0.5, (np.sqrt(3) / 2, -0.5), 1, 1 / np.sqrt(3)),   # infeasible at 0: best point of the circle with x₂ ≤ −½
    (2.0, (0.0, -1.0), 0, np.nan),                      # no feasible point: recovery, −√(2δ/s) H⁻¹b
])
def test_dual_step_by_hand(c, expected, case, nu):
    """H = I, δ = ½ (the unit disc), g = e₁, b = e₂: max x₁ s.t. ‖x‖ ≤ 1, c + x₂ ≤ 0, solved on paper.

    For c = ½ (r = 0, q = s = 1): λ* = √(A/B) = √(4/3), ν* = (λ*c + r)/s = 1/√3,
    x* = (g − ν* b)/λ* = (√3/2, −½)."""
    x, got_case, got_nu = step([1.0, 0.0], [0.0, 1.0], c, np.eye(2), 0.5)
    np.testing.assert_allclose(x, expected, atol=1e-5)
    assert got_case == case
    np.testing.assert_allclose(got_nu, nu, atol=1e-5)


def test_negligible_cost_gradient_is_a_trpo_step():
    x, case, nu = step([0.0, 2.0], [0.0, 0.0], -1.0, np.diag([4.0, 1.0]), 0.5)
    assert case == 4 and nu == 0.0
    np.testing.assert_allclose(x, [0.0, 1.0], atol=1e-6)    # √(2δ/q) H⁻¹g = √(1/4)·(0, 2)


def scipy_qp(g, b, c, h, delta):
    """min −gᵀx s.t. ½xᵀHx ≤ δ, c + bᵀx ≤ 0 by SLSQP (a convex QP: its local optimum is the optimum)."""
    cons = [{"type": "ineq", "fun": lambda x: delta - 0.5 * x @ h @ x, "jac": lambda x: -h @ x},
            {"type": "ineq", "fun": lambda x: -(c + b @ x), "jac": lambda x: -b}]
    res = minimize(lambda x: -g @ x, np.zeros(len(g)), jac=lambda x: -g, constraints=cons, method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 500})
    assert res.success, res.message
    return res.x


def random_problem(seed, dim=4, delta=0.01):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(dim, dim))
    h = m @ m.T + 0.5 * np.eye(dim)
    g = rng.normal(size=dim)
    return h, g, delta, rng


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind, case", [("far", 3), ("active", 2), ("inactive", 2), ("infeasible", 1)])
def test_dual_step_matches_scipy(seed, kind, case):
    """Random 4-d problems (H SPD, δ = 0.01); c is set relative to √(2δs), the largest cost change
    inside the trust region: ``far`` −2√(2δs) (case 3), ``active``/``inactive`` −0.3√(2δs) with b
    aligned with g / against it (case 2, constraint binding / not), ``infeasible`` +0.5√(2δs) (case 1;
    binding unless the reward step alone already cuts the cost enough). ν* > 0 exactly when it binds."""
    h, g, delta, rng = random_problem(seed)
    b = {"far": rng.normal(size=4), "active": g + 0.3 * rng.normal(size=4),
         "inactive": -g + 0.3 * rng.normal(size=4), "infeasible": rng.normal(size=4)}[kind]
    s = b @ np.linalg.solve(h, b)
    c = {"far": -2.0, "active": -0.3, "inactive": -0.3, "infeasible": 0.5}[kind] * np.sqrt(2 * delta * s)
    x, got_case, nu = step(g, b, c, h, delta)
    expected = scipy_qp(g, b, c, h, delta)
    assert got_case == case
    np.testing.assert_allclose(x, expected, atol=2e-4 * np.linalg.norm(expected) + 1e-6)
    np.testing.assert_allclose(g @ x, g @ expected, rtol=1e-4)
    assert 0.5 * x @ h @ x <= delta * (1 + 1e-4) and c + b @ x <= 1e-5 * np.sqrt(2 * delta * s)
    active = c + b @ expected > -1e-4 * np.sqrt(2 * delta * s)     # the cost constraint binds at the optimum
    assert (nu > 1e-6) == active
    if kind in ("active", "inactive"):
        assert active == (kind == "active")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_infeasible_problem_gets_the_recovery_step(seed):
    """c = 2√(2δs): no point of the trust region meets c + bᵀx ≤ 0 (its minimum there is c − √(2δs) > 0), so
    CPO takes eq. 14's step, the minimizer of bᵀx over the trust region, which scipy finds independently."""
    h, g, delta, rng = random_problem(seed)
    b = rng.normal(size=4)
    s = b @ np.linalg.solve(h, b)
    c = 2.0 * np.sqrt(2 * delta * s)
    x, case, nu = step(g, b, c, h, delta)
    assert case == 0 and np.isnan(nu)
    cons = [{"type": "ineq", "fun": lambda x: delta - 0.5 * x @ h @ x, "jac": lambda x: -h @ x}]
    res = minimize(lambda x: b @ x, np.zeros(4), jac=lambda x: b, constraints=cons, method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 500})
    assert res.success and c + b @ res.x > 0       # truly infeasible
    np.testing.assert_allclose(x, res.x, atol=2e-4 * np.linalg.norm(res.x))
    np.testing.assert_allclose(b @ x, -np.sqrt(2 * delta * s), rtol=1e-4)


def test_kl_divergence_by_hand():
    # categorical: KL((½, ½) ‖ (¼, ¾)) = ½ log 2 + ½ log(2/3)
    old = (jnp.log(jnp.array([[0.5, 0.5]])), None)
    new = (jnp.log(jnp.array([[0.25, 0.75]])), None)
    np.testing.assert_allclose(cpo.kl_divergence(old, new, True), [0.5 * np.log(2) + 0.5 * np.log(2 / 3)], rtol=1e-5)
    # Gaussian: KL(N(0, 1) ‖ N(1, 2²)) = log 2 + (1 + 1)/8 − ½
    old = (jnp.zeros((1, 1)), jnp.zeros(1))
    new = (jnp.ones((1, 1)), jnp.log(2.0) * jnp.ones(1))
    np.testing.assert_allclose(cpo.kl_divergence(old, new, False), [np.log(2) + 0.25 - 0.5], rtol=1e-5)


def test_cost_gae_bootstraps_through_truncation_not_termination():
    """Cost 1 per step, V_c(next) = 10, γ = 0.5, GAE λ = 1: step 0 truncated (1 + 0.5·10), step 1 terminated (1)."""
    one = jnp.ones((3, 1))
    adv, targets = cpo.gae(one, 0 * one, 10 * one, jnp.array([[0.0], [1.0], [0.0]]),
                           jnp.array([[1.0], [1.0], [0.0]]), 0.5, 1.0)
    np.testing.assert_allclose(adv[:, 0], [6.0, 1.0, 6.0])
    np.testing.assert_allclose(targets, adv)


# ----------------------------------------------------------------------------------------------
# Config errors, and the constraint value from completed episodes (continuous actions)
# ----------------------------------------------------------------------------------------------
def test_bad_config_fails_before_compiling():
    with pytest.raises(ConfigError, match="cost_limit must be >= 0"):
        cpo.make_train(cpo.Config(cost_limit=-1.0))
    with pytest.raises(ConfigError, match=r"backtrack_coef must be in \(0, 1\)"):
        cpo.make_train(cpo.Config(backtrack_coef=1.0))
    with pytest.raises(ConfigError, match="target_kl must be > 0"):
        cpo.make_train(cpo.Config(target_kl=0.0))
    with pytest.raises(ConfigError, match="divisible by critic_minibatch_size"):
        cpo.make_train(cpo.Config(critic_minibatch_size=100))
    with pytest.raises(ConfigError, match="constraint_units must be 'episode' or 'per_step', got 'step'"):
        cpo.make_train(cpo.Config(constraint_units="step"))
    with pytest.raises(ConfigError, match=r"needs an env that reports a per-step cost in info\['cost'\], but CartPole-v1"):
        cpo.make_train(cpo.Config(env="CartPole-v1"))


class ZeroCost(GymnaxWrapper):
    """A cost-free env made explicit: ``info["cost"] = 0`` at every step."""

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, terminated, truncated, {**info, "cost": jnp.zeros_like(reward)}


@pytest.mark.parametrize("units, expected", [("per_step", [-25 / 4, -25 / 4, -2.5]), ("episode", [-25, -25, -25])])
def test_constraint_value_from_completed_episodes_only(units, expected):
    """Probe-Constant-Continuous (Gaussian actor) is truncated every 10 steps and costs nothing. With 4 steps
    per rollout, no episode completes in iterations 1-2: J_c = 0 and T̄ = num_steps (the documented prior);
    in iteration 3 the episodes end at length 10. Per step: c = (0 − d)/T̄ = −25/4, −25/4, −25/10; in
    episode units c = 0 − d = −25 throughout. The cost gradient is exactly 0, so every step is case 4
    (TRPO) with ν = 0; the greedy action stays inside the action bounds."""
    config = cpo.Config(env="Probe-Constant-Continuous", total_timesteps=4 * 4 * 3, num_envs=4, num_steps=4,
                        critic_minibatch_size=8, critic_epochs=1, hidden_size=8, constraint_units=units)
    probe, probe_params = envs.make("Probe-Constant-Continuous")
    trainer = cpo.make_train(config, env=ZeroCost(probe), env_params=probe_params)
    state, metrics = jax.jit(trainer)(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(metrics["episodes"], [0, 0, 4])
    np.testing.assert_allclose(metrics["constraint"], expected, rtol=1e-6)
    np.testing.assert_array_equal(metrics["case"], [4, 4, 4])
    np.testing.assert_array_equal(metrics["lambda"], [0, 0, 0])
    assert (metrics["kl"] <= config.target_kl).all()
    actions = np.asarray(trainer.act(state, jnp.linspace(-1, 1, 5)[:, None], jax.random.PRNGKey(0)))
    assert actions.shape == (5, 1) and (np.abs(actions) <= 1).all()
    assert cpo.policy_logits(config, state.params, jnp.zeros((5, 1))).shape == (5, 1)


# ----------------------------------------------------------------------------------------------
# Determinism and checkpoints (through the shared CLI)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def direct_states():
    """The tiny agent trained by a direct ``jit(vmap(train))`` call for seeds 0, 1 and 0 again."""
    trainer = cpo.make_train(cpo.Config(**TINY))
    state, metrics = jax.jit(jax.vmap(trainer))(keys((0, 1, 0)))
    return trainer, state, metrics


def test_same_key_same_result(direct_states):
    _, state, metrics = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), state)
    kernel = state.params["params"]["actor_0"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[1])
    for name in ("episode_return", "episode_cost", "over_limit", "lambda", "case", "step_fraction", "kl"):
        assert metrics[name].shape == (3, 16), name
    assert np.isin(metrics["case"], [0, 1, 2, 3, 4]).all()
    assert ((metrics["step_fraction"] >= 0) & (metrics["step_fraction"] <= 1)).all()
    assert (metrics["kl"] <= cpo.Config().target_kl).all()
    # policy_logits reads the actor off the trained params (what scripts/reproduce_safe.py uses)
    params0 = jax.tree.map(lambda x: x[0], state.params)
    obs = jax.random.normal(jax.random.PRNGKey(2), (8, 4))
    np.testing.assert_array_equal(cpo.policy_logits(cpo.Config(**TINY), params0, obs).argmax(-1),
                                  direct_states[0].act(jax.tree.map(lambda x: x[0], state), obs, jax.random.PRNGKey(0)))


def test_save_load_identical_actions(tmp_path, direct_states):
    """The CLI's checkpoint, loaded back, acts exactly like the same seeds trained by a direct call."""
    trainer, state, _ = direct_states
    out = tmp_path / "run"
    options = RunOptions(out=str(out), num_seeds=2, eval_episodes=4, log_points=4, quiet=True, plot=False)
    summary = train_and_evaluate(cpo.Config(**TINY), cpo.make_train, options, algorithm="cpo")
    assert len(summary["runs"]) == 2
    rows = read_jsonl(out / "metrics.jsonl")
    assert {"episode_cost", "over_limit", "lambda", "episode_return", "case", "step_fraction", "kl"} <= set(rows[0])
    loaded = load_run(out, cpo.Config, cpo.make_train, "cpo")
    obs = jax.random.normal(jax.random.PRNGKey(3), (64, 4))
    for r in range(2):
        expected = trainer.act(jax.tree.map(lambda x: x[r], state), obs, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(loaded.act(r, obs), expected)


# ----------------------------------------------------------------------------------------------
# Learning check
# ----------------------------------------------------------------------------------------------
LIMIT = 25.0
SEEDS = 6


@pytest.mark.learning
def test_cpo_meets_the_limit_and_balances():
    """SafeCartPole-v0 (200 steps, cost outside |x| ≤ 0.5 or |x_dot| ≤ 1), limit 25, 40 CPO steps of
    8 envs x 256 steps (81 920 env steps), 6 seeds in one program; OmniSafe's defaults except 32-unit
    hidden layers (cost of the test).

    Early on the reward step drifts the cart out of the band; the constraint then shapes the updates
    (cases 0-2: dual steps and recoveries) until the policy balances in place, after which the whole
    trust region is feasible (case 3). As for PPO-Lag, the check averages each run's training episodes
    over the second half of training, then over seeds: the cost must be below the limit and the cart
    balanced (return > 150; random play ~22), and every run must have met the constraint in its steps.
    Measured (this machine): these 6 seeds, second half: cost 1.5 (per seed 0.2-4.2), return 199.4.
    With 60 steps and 4 seeds, unconstrained TRPO (the same program with limit 1e5: every step case 3)
    reached return 200 at cost 36 (per seed 0.5-91), CPO return 200 at cost 0.0.
    """
    config = cpo.Config(env="SafeCartPole-v0", total_timesteps=40 * 2048, cost_limit=LIMIT, hidden_size=32)
    metrics = jax.jit(jax.vmap(lambda key: cpo.make_train(config)(key)[1]))(keys(range(SEEDS)))
    metrics = jax.tree.map(np.asarray, metrics)
    n = metrics["episode_return"].shape[-1]
    half = slice(n // 2, n)
    ret = np.nanmean(metrics["episode_return"][:, half], -1)
    cost = np.nanmean(metrics["episode_cost"][:, half], -1)
    over = np.nanmean(metrics["over_limit"][:, half], -1)
    cases = np.stack([(metrics["case"] == k).mean() for k in range(5)])
    print(f"SafeCartPole-v0 {n * config.batch_size} steps, {SEEDS} seeds, limit {LIMIT}, second half of training: "
          f"CPO return {ret.mean():.1f} cost {cost.mean():.1f} over-limit {over.mean():.2f}; "
          f"cases 0-4 over training {cases.round(2).tolist()}, step fraction {metrics['step_fraction'].mean():.2f}; "
          f"per seed cost {cost.round(1).tolist()} return {ret.round(1).tolist()}")
    assert (metrics["case"] <= 2).any(-1).all()       # the constraint entered every run's updates
    assert cost.mean() <= LIMIT
    assert ret.mean() > 150
