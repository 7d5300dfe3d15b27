"""Constrained Policy Optimization (Achiam, Held, Tamar & Abbeel 2017, "Constrained Policy Optimization").

Each iteration solves, around the current actor parameters θ_k, the paper's approximate problem
(eq. 10):  max_x gᵀx  s.t.  c + bᵀx ≤ 0,  ½ xᵀHx ≤ δ,  where g is the gradient of the reward
surrogate, b the gradient of the cost surrogate, c = J_c(π_k) − d the constraint value and H the
Fisher matrix (the Hessian of the mean KL divergence). H is never materialized: H⁻¹g and H⁻¹b come
from conjugate gradient on Fisher-vector products (``jax.jvp`` of ``jax.grad`` of the mean KL, plus
damping). The step is the analytic solution of the subproblem's dual (Theorem 1, Appendix 10.2),
chosen by the cases of (q, r, s, c) below; when no point of the trust region satisfies the
linearized constraint, the recovery step of eq. 14 purely decreases the cost. A backtracking line
search then accepts the largest step fraction 0.8^k (k < 15) whose mean KL stays ≤ δ, whose cost
surrogate rises by at most max(0, −c), and (in the feasible cases) whose reward surrogate does not
decrease, as OmniSafe's ``CPO._cpo_search_step``; if none qualifies, the actor is left unchanged.
The reward and cost critics are trained by regression (Adam) on their GAE(λ) returns.

Cases (``case`` metric; the numbering of Achiam's and OmniSafe's code):

* 4 feasible, the cost gradient vanishes (bᵀb ≤ 1e-6, c < 0): plain TRPO step √(2δ/q) H⁻¹g.
* 3 feasible, the constraint plane misses the trust region (c < 0, B < 0): plain TRPO step.
* 2 feasible, the constraint cuts the trust region (c < 0, B ≥ 0): dual solution.
* 1 infeasible, but the trust region reaches the feasible set (c ≥ 0, B ≥ 0): dual solution.
* 0 infeasible, recovery (c ≥ 0, B < 0): x = −√(2δ/s) H⁻¹b (eq. 14).

with q = gᵀH⁻¹g, r = gᵀH⁻¹b, s = bᵀH⁻¹b, A = q − r²/s, B = 2δ − c²/s.

Units of the constraint (``constraint_units``). Two conventions, both with J_c and T̄ the mean cost
and length of the episodes that *completed* in the rollout (when none did, the last known values are
kept; before the first episode ends, J_c = 0 and T̄ = ``num_steps``: the constraint counts as satisfied):

* "per_step", the units of the paper's linearization: the cost surrogate is the per-step mean of
  ratio · A_c with centered, unscaled cost advantages, so its change estimates (J_c(π') − J_c(π_k)) / T̄,
  and c = (J_c − d) / T̄. The step then predicts the cost change it makes.
* "episode" (default), OmniSafe's ``second_order/cpo.py``: c = J_c − d in episode-cost units and
  standardized cost advantages. The units do not match, and |c| is so large against √(2δs) that B < 0
  unless J_c is within a fraction of a cost unit of d: in effect, recovery steps (case 0, pure cost
  decrease) while over the limit and TRPO steps (case 3) while under it.

Why the default is OmniSafe's: the per-step form trusts the in-sample linear prediction of the cost
change, and with 2048-sample batches (fewer samples than the 64x64 actor's parameters) that prediction
is mostly fitted noise. On PointGoal1 (1e6 steps, 2 seeds) every step was a case-1 dual step predicting a
cost decrease of about (J_c − d) per episode, and the cost stayed at ~77 (~58 with 8192-sample batches)
while the return climbed to PPO's; the paper's experiments used 50 000-sample batches. The episode form
brought the cost down to 26-63 (2048) and 18-44 (8192). Where the linearization holds (SafeCartPole with
32-unit layers), the per-step form is the better controller: cost 1.5 and return 199 against cost 14
and return 170 (``tests/test_cpo.py``). The reward advantages are standardized in both (the
subproblem's solution does not depend on g's scale).

Defaults are OmniSafe's ``CPO.yaml`` (Ji et al. 2023, "OmniSafe: An Infrastructure for Accelerating
Safe Reinforcement Learning Research") where they map: target KL δ = 0.01, CG 15 iterations with
damping 0.1, cost limit 25, γ = cost γ = 0.99, GAE λ 0.95 for reward and cost, critic lr 1e-3 (Adam)
with 10 epochs of 128-sample minibatches, critic L2 0.001, grad-norm clip 40, tanh 64x64, 1 024 000
steps in batches of 2048 (``update_cycle``: here 8 envs x 256 steps, one batch per CPO step).
Backtracking: coefficient 0.8 and 15 steps (the defaults of OmniSafe's ``_cpo_search_step``; its
``_update_actor`` passes 20), accepting KL ≤ δ (the paper's trust region; the OmniSafe version read,
commit 1f2fd39, allows 1.5 δ). Not taken: OmniSafe's reward normalization and its std bounds; the
Gaussian actor here has a state-independent learned log-std. The sign of r in the dual differs
from OmniSafe's code (see ``cpo_step``); with OmniSafe's sign, in a 60-step 4-seed SafeCartPole run,
the line search rejected most constrained steps and the runs ended near cost 30 / return 120,
against cost 0 / return 200 with the sign derived here.

Measured (``tests/test_cpo.py``, SafeCartPole-v0, limit 25, 81 920 steps, 32-unit layers, 6 seeds,
second half of training): episode cost 14.3, return 169.9 (per-step units: cost 1.5, return 199.4);
unconstrained TRPO (limit 1e5) costs ~36.
On random tabular CMDPs (``safe-tabular``: 4 CMDPs x 3 limits x 4 seeds, 2e5 steps, exact evaluation,
``scripts/results/safe-tabular.md``): 44 of 48 runs meet their limit (worst V_c/d 1.065), mean
V_c/d 0.94, value gap to the LP optimum 3.1%; with per-step units: 48 of 48, V_c/d 0.92, gap 3.1%.

Metrics per iteration (episode statistics over the episodes completed in that iteration's rollout,
NaN if none): ``episode_return``, ``episode_cost``, ``episode_length``, ``over_limit``,
``episodes``, ``step_cost``, and for the CPO step: ``case`` (above), ``step_fraction`` (the accepted
fraction of the step, 0 when the line search rejected every fraction), ``kl`` (mean KL of the
accepted update), ``lambda`` (ν*, the dual variable of the cost constraint, the closest analogue of
a Lagrange multiplier: the step direction is H⁻¹(g − ν* b)/λ*; 0 in the TRPO cases 3-4, NaN in the
recovery case 0, where reward is ignored entirely), ``constraint`` (c), ``value_loss``,
``cost_value_loss``, ``entropy``.

Run:  python agents/safe/cpo.py --env SafeCartPole-v0 --num-seeds 8
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant
from jax.flatten_util import ravel_pytree

from jaxrl import constraints, envs
from jaxrl.config import require, require_divides, require_positive, require_unit_interval
from jaxrl.initializers import orthogonal
from jaxrl.trainer import Trainer
from jaxrl.wrappers import ClipAction, EpisodeStatistics, FlattenObservation, VectorEnv


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "SafeCartPole-v0"
    """Environment id (gymnax or this project's envs/); the cost is read from info["cost"]."""
    total_timesteps: int = 1_024_000
    """Env steps per run (over all parallel envs)."""
    cost_limit: float = 25.0
    """d: the limit on the expected (undiscounted) episode cost."""
    target_kl: float = 0.01
    """δ: the trust region, a bound on the mean KL(π_k ‖ π) of one update."""
    cg_iters: int = 15
    """Conjugate-gradient iterations for H⁻¹g and H⁻¹b."""
    cg_damping: float = 0.1
    """Damping added to the Fisher-vector product: (H + damping·I) v."""
    backtrack_coef: float = 0.8
    """Line search: the step fractions tried are backtrack_coef^k, k = 0 .. backtracks − 1."""
    backtracks: int = 15
    """Number of step fractions the line search tries."""
    critic_lr: float = 1e-3
    """Adam learning rate of the reward and cost critics."""
    critic_epochs: int = 10
    """Passes of critic regression over each rollout."""
    critic_minibatch_size: int = 128
    """Samples per critic minibatch; num_envs * num_steps must divide by it."""
    critic_norm_coef: float = 0.001
    """L2 penalty on the critics' weights."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip of the critic updates."""
    num_envs: int = 8
    """Parallel envs per run."""
    num_steps: int = 256
    """Steps per env per rollout (one CPO step per rollout of num_envs * num_steps samples)."""
    gamma: float = 0.99
    """Discount factor of the reward."""
    cost_gamma: float = 0.99
    """Discount factor of the cost."""
    gae_lambda: float = 0.95
    """GAE λ of the reward advantage."""
    cost_gae_lambda: float = 0.95
    """GAE λ of the cost advantage."""
    hidden_size: int = 64
    """Width of the two hidden layers of actor and critics."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""
    constraint_units: str = "episode"
    """How the constraint value c and the cost gradient b are scaled (see the module docstring):
    "episode" (OmniSafe's: c = J_c − d in episode-cost units, standardized cost advantages) or
    "per_step" (c = (J_c − d)/T̄ and centered cost advantages: the units of the paper's linearization)."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class ActorCritics(nn.Module):
    """Actor (logits or Gaussian mean, plus a state-independent log-std), reward critic and cost
    critic: three separate MLPs. Every critic parameter lives under a name containing "critic"; the
    rest is the actor, the part the CPO step moves."""

    action_dim: int
    discrete: bool
    hidden_size: int = 64
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        act = nn.tanh if self.activation == "tanh" else nn.relu

        def mlp(x, out_dim, out_scale, name):
            for i in range(2):
                x = act(nn.Dense(self.hidden_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0),
                                 name=f"{name}_{i}")(x))
            return nn.Dense(out_dim, kernel_init=orthogonal(out_scale), bias_init=constant(0.0), name=f"{name}_out")(x)

        actor_out = mlp(obs, self.action_dim, 0.01, "actor")
        value = mlp(obs, 1, 1.0, "critic")[..., 0]
        cost_value = mlp(obs, 1, 1.0, "cost_critic")[..., 0]
        log_std = self.param("log_std", constant(0.0), (self.action_dim,)) if not self.discrete else None
        return actor_out, log_std, value, cost_value


def split_params(params):
    """(actor part, critic part) of the network's variables: critics are the names containing "critic"."""
    inner = params["params"]
    return ({k: v for k, v in inner.items() if "critic" not in k},
            {k: v for k, v in inner.items() if "critic" in k})


def merge_params(actor, critics):
    return {"params": {**actor, **critics}}


def policy_logits(config: Config, params, obs):
    """The actor's output for a batch of observations: action logits (discrete actions; the Gaussian
    mean for continuous ones), from the trained ``state.params``. The actor's output width is read
    off the parameters."""
    action_dim = params["params"]["actor_out"]["kernel"].shape[-1]
    discrete = "log_std" not in params["params"]
    network = ActorCritics(action_dim, discrete, config.hidden_size, config.activation)
    return network.apply(params, obs.reshape((obs.shape[0], -1)))[0]


def log_prob_and_entropy(actor_out, log_std, action, discrete: bool):
    """Log-probability of ``action`` and the policy entropy (categorical or diagonal Gaussian)."""
    if discrete:
        logp_all = jax.nn.log_softmax(actor_out)
        logp = jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
        return logp, entropy
    std = jnp.exp(log_std)
    logp = (-0.5 * ((action - actor_out) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
    entropy = jnp.broadcast_to((log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(-1), logp.shape)
    return logp, entropy


def kl_divergence(old, new, discrete: bool):
    """KL(π_old(·|s) ‖ π_new(·|s)) per state; ``old``/``new`` are (actor_out, log_std) pairs."""
    if discrete:
        logp_old, logp_new = jax.nn.log_softmax(old[0]), jax.nn.log_softmax(new[0])
        return (jnp.exp(logp_old) * (logp_old - logp_new)).sum(-1)
    (mu0, log_std0), (mu1, log_std1) = old, new
    var0, var1 = jnp.exp(2 * log_std0), jnp.exp(2 * log_std1)
    return (log_std1 - log_std0 + (var0 + (mu0 - mu1) ** 2) / (2 * var1) - 0.5).sum(-1)


def sample_action(key, actor_out, log_std, discrete: bool):
    if discrete:
        return jax.random.categorical(key, actor_out)
    return actor_out + jnp.exp(log_std) * jax.random.normal(key, actor_out.shape)


# ----------------------------------------------------------------------------------------------
# The CPO step: conjugate gradient, the dual of the quadratic subproblem, recovery
# ----------------------------------------------------------------------------------------------
def conjugate_gradient(matvec, b, iters: int, tol: float = 1e-10):
    """x ≈ A⁻¹b for a symmetric positive definite A given as ``matvec(v) = A v`` (Hestenes & Stiefel 1952;
    TRPO, Schulman et al. 2015, Appendix C). ``iters`` fixed iterations; once the squared residual
    falls below ``tol`` the iterate is frozen (no division by a vanishing residual)."""

    def body(carry, _):
        x, r, p, rr = carry
        ap = matvec(p)
        go = rr > tol
        alpha = jnp.where(go, rr / jnp.where(go, p @ ap, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        beta = jnp.where(go, rr_new / jnp.where(go, rr, 1.0), 0.0)
        p = jnp.where(go, r + beta * p, p)
        return (x, r, p, jnp.where(go, rr_new, rr)), None

    (x, *_), _ = jax.lax.scan(body, (jnp.zeros_like(b), b, b, b @ b), None, iters)
    return x


class CPOStep(NamedTuple):
    direction: jax.Array   # x*, the full step before the line search
    case: jax.Array        # 0 recovery, 1 infeasible (dual), 2 feasible (dual), 3/4 feasible (TRPO)
    lam: jax.Array         # λ*, the dual variable of the trust region (0 in recovery)
    nu: jax.Array          # ν*, the dual variable of the cost constraint (NaN in recovery)


def cpo_step(g, b, c, hinv_g, hinv_b, delta, eps: float = 1e-8) -> CPOStep:
    """Solve max_x gᵀx s.t. c + bᵀx ≤ 0, ½xᵀHx ≤ δ through its dual (Achiam et al. 2017, Theorem 1 and
    Appendix 10.2); recovery x = −√(2δ/s) H⁻¹b when it is infeasible (eq. 14).

    The paper states Theorem 1 for min_x gᵀx; here g is the gradient of the reward surrogate (ascent),
    so the paper's r is −r below. With q = gᵀH⁻¹g, r = gᵀH⁻¹b, s = bᵀH⁻¹b, the Lagrangian
    gᵀx − ν(c + bᵀx) − λ(½xᵀHx − δ) is maximized by x = H⁻¹(g − νb)/λ, and the dual is
    max_{λ,ν ≥ 0} −(q − 2rν + sν²)/(2λ) + νc − λδ. For fixed λ, ν* = (λc + r)₊/s, and λ* maximizes
    f_a(λ) = −½(A/λ + Bλ) + rc/s over Λ_a = {λ ≥ 0: λc + r > 0} or f_b(λ) = −½(q/λ + 2δλ) over
    Λ_b = {λ ≥ 0: λc + r ≤ 0} (A = q − r²/s, B = 2δ − c²/s): the unconstrained maximizers √(A/B) and
    √(q/2δ) projected onto their sets (both are concave), whichever value is larger. Then
    x* = (H⁻¹g − ν* H⁻¹b)/λ*. Pure jnp (the cases are ``jnp.where``s): jit- and vmap-able.

    Note: the version of OmniSafe's ``CPO._update_actor`` read for this file (commit 1f2fd39) uses the
    ascent gradient with the paper's minimization-form ν* = (λc − r)₊/s, i.e. the opposite sign of r;
    the exact tests in ``tests/test_cpo.py`` (against scipy's solution of the same program) pin the
    signs used here (that form fails them: it returns the plain TRPO step when the constraint binds).
    """
    q, r, s = g @ hinv_g, g @ hinv_b, b @ hinv_b
    s_safe = jnp.maximum(s, eps)
    A = q - r**2 / s_safe
    B = 2 * delta - c**2 / s_safe
    negligible_b = (b @ b <= 1e-6) & (c < 0)
    case = jnp.where(negligible_b, 4, jnp.where(c < 0, jnp.where(B < 0, 3, 2), jnp.where(B >= 0, 1, 0)))

    # TRPO step (cases 3, 4): the boundary of the trust region along H⁻¹g
    trpo_scale = jnp.sqrt(2 * delta / (q + eps))
    trpo = trpo_scale * hinv_g

    # dual solution (cases 1, 2): ν*(λ) > 0 exactly when λc + r > 0, i.e. on one side of λ = −r/c
    c_safe = jnp.where(c >= 0, jnp.maximum(c, eps), jnp.minimum(c, -eps))
    boundary = jnp.maximum(-r / c_safe, 0.0)
    lam_a = jnp.sqrt(jnp.maximum(A, 0.0) / jnp.maximum(B, eps))
    lam_b = jnp.sqrt(q / (2 * delta))
    feasible = c < 0
    lam_a = jnp.where(feasible, jnp.clip(lam_a, 0.0, boundary), jnp.maximum(lam_a, boundary))
    lam_b = jnp.where(feasible, jnp.maximum(lam_b, boundary), jnp.clip(lam_b, 0.0, boundary))
    f_a = -0.5 * (A / (lam_a + eps) + B * lam_a) + r * c / s_safe
    f_b = -0.5 * (q / (lam_b + eps) + 2 * delta * lam_b)
    lam = jnp.where(f_a >= f_b, lam_a, lam_b)
    nu = jnp.maximum(lam * c + r, 0.0) / s_safe
    dual = (hinv_g - nu * hinv_b) / (lam + eps)

    # recovery (case 0): the largest cost decrease inside the trust region
    recovery = -jnp.sqrt(2 * delta / s_safe) * hinv_b

    trpo_case = case >= 3
    direction = jnp.where(trpo_case, trpo, jnp.where(case == 0, recovery, dual))
    lam = jnp.where(trpo_case, 1.0 / trpo_scale, jnp.where(case == 0, 0.0, lam))
    nu = jnp.where(trpo_case, 0.0, jnp.where(case == 0, jnp.nan, nu))
    return CPOStep(direction, case, lam, nu)


# ----------------------------------------------------------------------------------------------
# Advantages
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    cost_value: jax.Array
    reward: jax.Array
    cost: jax.Array
    terminated: jax.Array
    done: jax.Array             # terminated or truncated: the episode ends after this step
    next_value: jax.Array       # V(s_{t+1}) of the pre-reset next state (info["final_observation"])
    next_cost_value: jax.Array  # V_c(s_{t+1}) of the same state


def gae(signal, value, next_value, terminated, done, gamma, gae_lambda):
    """GAE(λ) of any per-step signal (reward or cost) over (time, env) arrays (Schulman et al. 2016, eq. 16).

    δ_t = x_t + γ (1 − terminated_t) V(s'_t) − V(s_t), bootstrapping through truncation (s'_t is the
    true next state) but not through termination; A_t = δ_t + γλ (1 − done_t) A_{t+1}.
    Returns (advantages, value targets = advantages + values).
    """

    def backward(next_adv, xs):
        x, v, nv, term, d = xs
        delta = x + gamma * (1.0 - term) * nv - v
        adv = delta + gamma * gae_lambda * (1.0 - d) * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(value[0]), (signal, value, next_value, terminated, done),
                                 reverse=True)
    return advantages, advantages + value


def completed_episode_metrics(info, cost_limit) -> dict:
    """Means over the episodes that ended during the rollout (``info`` is (time, env)-batched)."""
    done = info["episode_done"]
    n = done.sum()

    def mean(x):
        return jnp.where(n > 0, jnp.where(done, x.astype(jnp.float32), 0.0).sum() / jnp.maximum(n, 1), jnp.nan)

    return {
        "episode_return": mean(info["episode_return"]),
        "episode_cost": mean(info["episode_cost"]),
        "episode_length": mean(info["episode_length"]),
        "over_limit": mean(info["episode_cost"] > cost_limit),
        "episodes": n.astype(jnp.float32),
    }


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    critic_opt_state: optax.OptState
    episode_cost: jax.Array     # J_c: mean cost of the episodes completed in the last rollout that had any
    episode_length: jax.Array   # T̄: their mean length
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    """The env of ``config.env``, or ``env``/``env_params`` when given (e.g. one CMDP of a batch whose
    arrays are traced, ``scripts/reproduce_safe.py``), wrapped for training."""
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_cost(config.env, env, env_params, "CPO")
    discrete = envs.is_discrete(env, env_params)
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    wrapped = EpisodeStatistics(flat)
    if not discrete:
        wrapped = ClipAction(wrapped)
    return env, env_params, wrapped, discrete


def validate(config: Config) -> None:
    require_positive(config, "total_timesteps", "num_envs", "num_steps", "target_kl", "cg_iters", "backtracks",
                     "critic_lr", "critic_epochs", "critic_minibatch_size", "hidden_size", "max_grad_norm")
    require_unit_interval(config, "gamma", "cost_gamma", "gae_lambda", "cost_gae_lambda")
    require_unit_interval(config, "backtrack_coef", closed=False)
    require(config.cost_limit >= 0, f"cost_limit must be >= 0, got {config.cost_limit}")
    for name in ("cg_damping", "critic_norm_coef"):
        require(getattr(config, name) >= 0, f"{name} must be >= 0, got {getattr(config, name)}")
    require(config.activation in ("tanh", "relu"), f"activation must be 'tanh' or 'relu', got {config.activation!r}")
    require(config.constraint_units in ("episode", "per_step"),
            f"constraint_units must be 'episode' or 'per_step', got {config.constraint_units!r}")
    require_divides("num_envs * num_steps", config.batch_size, "critic_minibatch_size", config.critic_minibatch_size)
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one rollout "
            f"(num_envs * num_steps = {config.batch_size})")


def make_train(config: Config, network: nn.Module | None = None, env=None, env_params=None) -> Trainer:
    """Build the CPO trainer. ``network`` replaces ``ActorCritics`` (same four outputs; critic parameters
    under names containing "critic"). ``env``/``env_params`` replace the env of ``config.env`` when given."""
    validate(config)
    env, env_params, wrapped, discrete = make_env(config, env, env_params)
    obs_shape = (int(np.prod(env.observation_space(env_params).shape)),)
    action_space = env.action_space(env_params)
    action_dim = action_space.n if discrete else int(np.prod(action_space.shape))
    if network is None:
        network = ActorCritics(action_dim, discrete, config.hidden_size, config.activation)
    num_minibatches = config.batch_size // config.critic_minibatch_size
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.critic_lr))
    vec_env = VectorEnv(wrapped, config.num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        params = network.init(net_key, jnp.zeros(obs_shape))
        obs, env_state = vec_env.reset(env_key, env_params)
        return TrainState(params, tx.init(split_params(params)[1]), jnp.float32(0.0), jnp.float32(config.num_steps),
                          env_state, obs, key)

    # COLLECT TRAJECTORIES
    def collect(state: TrainState):
        def env_step(carry, _):
            params, env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actor_out, log_std, value, cost_value = network.apply(params, obs)
            action = sample_action(act_key, actor_out, log_std, discrete)
            log_prob, _ = log_prob_and_entropy(actor_out, log_std, action, discrete)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, action, env_params)
            done = jnp.logical_or(terminated, truncated)
            _, _, next_value, next_cost_value = network.apply(params, info["final_observation"])
            transition = Transition(obs, action, log_prob, value, cost_value, reward,
                                    jnp.asarray(info["cost"], jnp.float32),
                                    terminated.astype(jnp.float32), done.astype(jnp.float32), next_value, next_cost_value)
            stats = {k: info[k] for k in ("episode_done", "episode_return", "episode_cost", "episode_length")}
            return (params, env_state, next_obs, key), (transition, stats)

        (_, env_state, obs, key), (traj, stats) = jax.lax.scan(
            env_step, (state.params, state.env_state, state.obs, state.key), None, config.num_steps)
        return traj, stats, env_state, obs, key

    # UPDATE ACTOR: the CPO step
    def update_actor(params, batch: Transition, reward_adv, cost_adv, c):
        actor, critics = split_params(params)
        theta0, unravel = ravel_pytree(actor)

        def policy(theta):
            actor_out, log_std = network.apply(merge_params(unravel(theta), critics), batch.obs)[:2]
            return actor_out, log_std

        old = jax.lax.stop_gradient(policy(theta0))

        def surrogates(theta):
            """Reward and cost surrogates E[π/π_k · A] (Achiam et al. 2017, eq. 10: gᵀx and bᵀx are their
            linearizations), and the mean KL(π_k ‖ π_θ) of the trust region."""
            new = policy(theta)
            log_prob, _ = log_prob_and_entropy(*new, batch.action, discrete)
            ratio = jnp.exp(log_prob - batch.log_prob)
            return (ratio * reward_adv).mean(), (ratio * cost_adv).mean(), kl_divergence(old, new, discrete).mean()

        reward_sur, cost_sur, _ = surrogates(theta0)
        g = jax.grad(lambda t: surrogates(t)[0])(theta0)
        b = jax.grad(lambda t: surrogates(t)[1])(theta0)
        kl_grad = jax.grad(lambda t: kl_divergence(old, policy(t), discrete).mean())

        def fisher_vector_product(v):
            """(H + damping·I) v with H the Hessian of the mean KL at θ_k (forward-over-reverse)."""
            return jax.jvp(kl_grad, (theta0,), (v,))[1] + config.cg_damping * v

        hinv = jax.vmap(lambda rhs: conjugate_gradient(fisher_vector_product, rhs, config.cg_iters))(jnp.stack([g, b]))
        step = cpo_step(g, b, c, hinv[0], hinv[1], config.target_kl)

        # LINE SEARCH over the fractions backtrack_coef^k, all evaluated at once; the first accepted wins
        fractions = jnp.power(config.backtrack_coef, jnp.arange(config.backtracks, dtype=jnp.float32))
        new_reward, new_cost, kl = jax.vmap(lambda f: surrogates(theta0 + f * step.direction))(fractions)
        accepted = (jnp.isfinite(new_reward) & jnp.isfinite(new_cost) & jnp.isfinite(kl)
                    & (kl <= config.target_kl)
                    & (new_cost - cost_sur <= jnp.maximum(-c, 0.0))
                    & ((step.case <= 1) | (new_reward >= reward_sur))
                    & jnp.all(jnp.isfinite(step.direction)))
        first = jnp.argmax(accepted)
        fraction = jnp.where(accepted.any(), fractions[first], 0.0)
        theta = theta0 + fraction * jnp.where(jnp.isfinite(step.direction), step.direction, 0.0)
        _, entropy = log_prob_and_entropy(*old, batch.action, discrete)
        metrics = {"case": step.case.astype(jnp.float32), "step_fraction": fraction,
                   "kl": jnp.where(accepted.any(), kl[first], 0.0), "lambda": step.nu, "entropy": entropy.mean()}
        return merge_params(unravel(theta), critics), metrics

    # UPDATE CRITICS: regression on the GAE returns
    def critic_loss(critics, actor, batch: Transition, targets, cost_targets):
        _, _, value, cost_value = network.apply(merge_params(actor, critics), batch.obs)
        v_loss = 0.5 * ((value - targets) ** 2).mean()
        c_loss = 0.5 * ((cost_value - cost_targets) ** 2).mean()
        l2 = sum((x**2).sum() for x in jax.tree.leaves(critics) if x.ndim == 2)
        return v_loss + c_loss + config.critic_norm_coef * l2, (v_loss, c_loss)

    def update_critics(params, opt_state, data, key):
        actor, critics = split_params(params)

        def epoch(carry, perm_key):
            critics, opt_state = carry
            perm = jax.random.permutation(perm_key, config.batch_size)
            mb_shape = (num_minibatches, config.critic_minibatch_size)
            shuffled = jax.tree.map(lambda x: x[perm].reshape(mb_shape + x.shape[1:]), data)

            def minibatch(carry, mb):
                critics, opt_state = carry
                grads, losses = jax.grad(critic_loss, has_aux=True)(critics, actor, *mb)
                updates, opt_state = tx.update(grads, opt_state, critics)
                return (optax.apply_updates(critics, updates), opt_state), losses

            return jax.lax.scan(minibatch, (critics, opt_state), shuffled)

        (critics, opt_state), (v_loss, c_loss) = jax.lax.scan(
            epoch, (critics, opt_state), jax.random.split(key, config.critic_epochs))
        return merge_params(actor, critics), opt_state, {"value_loss": v_loss.mean(), "cost_value_loss": c_loss.mean()}

    def update(state: TrainState, _iteration):
        traj, stats, env_state, obs, key = collect(state)
        key, critic_key = jax.random.split(key)

        # CONSTRAINT VALUE c = (J_c − d) / T̄ from the episodes completed in this rollout (else the last known)
        ep_cost, any_done = constraints.completed_mean(stats["episode_cost"], stats["episode_done"])
        ep_len, _ = constraints.completed_mean(stats["episode_length"], stats["episode_done"])
        ep_cost = jnp.where(any_done, ep_cost, state.episode_cost)
        ep_len = jnp.where(any_done, ep_len, state.episode_length)
        c = ep_cost - config.cost_limit
        if config.constraint_units == "per_step":
            c = c / jnp.maximum(ep_len, 1.0)

        # CALCULATE ADVANTAGES
        reward_adv, targets = gae(traj.reward, traj.value, traj.next_value, traj.terminated, traj.done,
                                  config.gamma, config.gae_lambda)
        cost_adv, cost_targets = gae(traj.cost, traj.cost_value, traj.next_cost_value, traj.terminated, traj.done,
                                     config.cost_gamma, config.cost_gae_lambda)
        flat = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]),
                            (traj, reward_adv, cost_adv, targets, cost_targets))
        batch, reward_adv, cost_adv, targets, cost_targets = flat
        reward_adv = (reward_adv - reward_adv.mean()) / (reward_adv.std() + 1e-8)
        cost_adv = cost_adv - cost_adv.mean()
        if config.constraint_units == "episode":
            cost_adv = cost_adv / (cost_adv.std() + 1e-8)

        # UPDATE NETWORK: CPO step on the actor, then the critics
        params, actor_metrics = update_actor(state.params, batch, reward_adv, cost_adv, c)
        params, opt_state, critic_metrics = update_critics(params, state.critic_opt_state,
                                                           (batch, targets, cost_targets), critic_key)

        metrics = {**actor_metrics, **critic_metrics, "constraint": c, "step_cost": traj.cost.mean()}
        metrics.update(completed_episode_metrics(stats, config.cost_limit))
        return TrainState(params, opt_state, ep_cost, ep_len, env_state, obs, key), metrics

    def act(state: TrainState, obs, key):
        """Greedy action: argmax of the logits, or the Gaussian mean clipped to the action bounds."""
        obs = obs.reshape((obs.shape[0], -1))
        actor_out = network.apply(state.params, obs)[0]
        if discrete:
            return jnp.argmax(actor_out, axis=-1)
        return jnp.clip(actor_out, action_space.low, action_space.high)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.batch_size, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="cpo")
