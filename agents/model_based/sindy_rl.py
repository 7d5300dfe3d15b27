"""SINDy-RL (Zolman, Fasel, Kutz & Brunton 2024, "SINDy-RL: Interpretable and Efficient Model-Based
Reinforcement Learning"): Dyna-style policy learning on a sparse dictionary (SINDy) dynamics model.

The model (Brunton, Proctor & Kutz 2016, "Discovering governing equations from data by sparse
identification of nonlinear dynamical systems", with control inputs as in SINDYc, Brunton et al. 2016):

* a feature library Θ(s, a): every monomial of the concatenated (state, action) up to ``degree``
  (2 by default), plus optional sin/cos of chosen state
  dimensions (``library="poly,sin(x2),cos(x2)"``; ``sin``/``cos`` alone mean every state dimension);
* discrete-time targets: the next-state difference Δs = s' − s and, with ``reward_model="sindy"``,
  the reward r, each a sparse linear combination Θ(s, a) ξ_j;
* ξ fitted by sequentially thresholded least squares (STLSQ, the ``sparsifyDynamics`` algorithm of
  Brunton et al. 2016): a ridge solve, coefficients below ``threshold`` set to
  zero, a ridge re-solve on each target's remaining support, ``stlsq_iterations`` times. It is pure
  ``jnp`` inside the compiled program, on a fixed-capacity buffer of real transitions whose unfilled
  slots are masked out (rows weighted by the mask), so the growing dataset never changes a shape.

``reward_model="known"`` uses the env's true reward function instead of a fitted one (only the
dynamics are then learned); ``KNOWN_REWARDS`` lists the envs that have one. The default is ``sindy``.

The Dyna loop of SINDy-RL: uniform random actions for ``random_steps`` env steps, then the
current policy collects real data; SINDy is refit at the end of the warm-up and every ``refit_every``
env steps after it; after every env step ``rollout_batch`` imagined rollouts of ``rollout_length`` steps
start from real states drawn from the buffer, run the current (stochastic) policy through the SINDy
model, and fill a buffer of imagined transitions on which the policy learner takes ``gradient_steps``
updates. The policy is trained on imagined data only, as in the paper.

Policy learner. The paper trains PPO on the SINDy surrogate env. This file uses SAC (Haarnoja et
al. 2018, "Soft Actor-Critic Algorithms and Applications": squashed Gaussian policy, twin soft Q
with clipped double-Q targets, automatic entropy tuning) on branched imagined rollouts from real
start states (as MBPO, Janner et al. 2019): it learns Pendulum-v1 in a few thousand gradient steps,
which fits a test budget on a CPU, where PPO would need about 10⁶ imagined steps. The surrogate
never terminates (SINDy models no termination): imagined transitions always bootstrap, which is
right for the swing-up tasks this targets (Pendulum-v1, CartPoleSwingUp-v0) and wrong for envs with
terminal states. Imagined states are clipped to the observation space's bounds (where they are
infinite, to the range of the real states seen so far, widened by ``bound_margin``), so a drifting
polynomial cannot diverge.

Defaults. Library degree 2, STLSQ with 10 iterations (Brunton et al. 2016's code) and a ridge term
(pysindy's STLSQ is ridge-regularized). The ridge 1e-3 (on unit-RMS columns, per sample) is ours: it
keeps float32 solves well conditioned when features are collinear on the data (Pendulum's
cos²θ + sin²θ = 1 makes 1, x0² and x1² exactly so); the threshold 0.005 is ours too, set for
Pendulum-v1's scale (its smallest true one-step coefficients are ~0.0075: Δθ̇ = 0.75 sin θ + 0.15 u,
Δcos θ ≈ −0.05 sin θ·θ̇ − 0.0375 sin²θ − 0.0075 sin θ·u). SAC follows the SAC paper's Table 1
(Adam, γ 0.99, τ 0.005, target entropy −|A|, batch 256, 2×256 ReLU) with CleanRL's learning rates
(policy 3e-4, Q and α 1e-3); the Dyna schedule (1 000 random steps, refit every 200 steps, 16
rollouts of 20 steps and 4 gradient steps per env step) is ours.

Interpretability is the point: ``Trainer.report`` returns the learned equations as strings (e.g.
``Δx2 = 0.75 x1 + 0.15 u0``; states are x0.., actions u0..), the support size and the coefficient
matrix; the CLI writes them into ``summary.json`` under ``runs[i]["report"]``.

Run:  python agents/model_based/sindy_rl.py --env Pendulum-v1 --num-seeds 4
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import dynamics, envs, replay
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation, episode_metrics

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
REWARD_MODELS = ("sindy", "known")
TRIG_TERM = re.compile(r"^(sin|cos)(?:\(x(\d+)\))?$")


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id (gymnax or this project's envs/); must have a Box action space."""
    total_timesteps: int = 5_000
    """Real env steps per run (over all parallel envs)."""
    num_envs: int = 1
    """Parallel real envs per run; each iteration steps every env once."""
    random_steps: int = 1_000
    """Real env steps of uniform random actions before the first SINDy fit."""
    refit_every: int = 200
    """Refit SINDy every this many real env steps after the warm-up."""
    buffer_size: int = 100_000
    """Real transitions the model's buffer holds (capped to total_timesteps)."""
    # --- the SINDy model ---
    library: str = "poly"
    """Comma-separated library terms: ``poly`` (monomials of (s, a) up to ``degree``), ``sin``/``cos``
    (of every state dimension) or ``sin(xI)``/``cos(xI)`` (of state dimension I)."""
    degree: int = 2
    """Highest total degree of the polynomial terms."""
    threshold: float = 0.005
    """STLSQ: coefficients with |ξ| below this are set to zero (in the targets' units per feature unit)."""
    ridge: float = 1e-3
    """STLSQ: ridge weight on the column-normalized, per-sample least-squares problem (conditioning)."""
    stlsq_iterations: int = 10
    """STLSQ: threshold-and-re-solve rounds after the first ridge solve."""
    reward_model: str = "sindy"
    """``sindy``: fit the reward with the same library; ``known``: use the env's true reward function
    (envs in ``KNOWN_REWARDS``)."""
    print_threshold: float = 0.0
    """The report prints coefficients with |ξ| above this."""
    bound_margin: float = 0.5
    """Imagined states are clipped to the observation space's bounds; in dimensions where those are
    infinite, to the range of the real states seen widened by this fraction of its width on each side."""
    # --- imagined rollouts ---
    rollout_batch: int = 16
    """Imagined rollouts started from real states after every env step."""
    rollout_length: int = 20
    """Steps of each imagined rollout through the SINDy model."""
    model_buffer_size: int = 20_000
    """Imagined transitions kept for the policy learner (the most recent ones)."""
    # --- SAC on imagined data ---
    gradient_steps: int = 4
    """SAC updates per iteration (after the warm-up)."""
    batch_size: int = 256
    """Imagined transitions per SAC update."""
    policy_lr: float = 3e-4
    """Adam learning rate of the policy."""
    q_lr: float = 1e-3
    """Adam learning rate of the twin Q-networks."""
    alpha_lr: float = 1e-3
    """Adam learning rate of log α."""
    init_alpha: float = 1.0
    """Initial entropy coefficient."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target Q-networks."""
    hidden_size: int = 256
    """Width of the two hidden layers of the policy and of each Q-network."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.num_envs

    @property
    def buffer_capacity(self) -> int:
        return max(1, min(self.buffer_size, self.num_updates * self.num_envs))

    @property
    def model_buffer_capacity(self) -> int:
        return max(self.model_buffer_size, self.rollout_batch * self.rollout_length)


# ----------------------------------------------------------------------------------------------
# The feature library
# ----------------------------------------------------------------------------------------------
def parse_library(library: str, obs_dim: int) -> tuple[bool, tuple[tuple[str, int], ...]]:
    """``(has_poly, ((fn, state_dim), ...))`` from a library string; raises ``ConfigError`` on an
    unknown term or a state dimension out of range."""
    terms = [t.strip() for t in library.split(",") if t.strip()]
    require(terms, f"library must name at least one term (poly, sin, cos, sin(xI), cos(xI)), got {library!r}")
    poly, trig = False, []
    for term in terms:
        if term == "poly":
            poly = True
            continue
        match = TRIG_TERM.match(term)
        require(match is not None, f"unknown library term {term!r} in library={library!r}; allowed: poly, sin, cos, "
                f"sin(xI), cos(xI) with I a state dimension in 0..{obs_dim - 1}")
        fn, dim = match.group(1), match.group(2)
        dims = range(obs_dim) if dim is None else [int(dim)]
        for d in dims:
            require(d < obs_dim, f"library term {term!r}: state dimension {d} is out of range 0..{obs_dim - 1}")
            if (fn, d) not in trig:
                trig.append((fn, d))
    return poly, tuple(trig)


@dataclasses.dataclass(frozen=True)
class Library:
    """Θ(s, a): the monomials of z = (x0.., u0..) up to ``degree`` (when ``poly``), then sin/cos terms."""

    obs_dim: int
    action_dim: int
    degree: int = 2
    poly: bool = True
    trig: tuple[tuple[str, int], ...] = ()

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(f"x{i}" for i in range(self.obs_dim)) + tuple(f"u{i}" for i in range(self.action_dim))

    @property
    def monomials(self) -> tuple[tuple[int, ...], ...]:
        """Index tuples into z, by degree then lexicographically: (), (0,), (1,), .., (0, 0), (0, 1), .."""
        if not self.poly:
            return ()
        n = self.obs_dim + self.action_dim
        return tuple(c for d in range(self.degree + 1) for c in itertools.combinations_with_replacement(range(n), d))

    @property
    def names(self) -> tuple[str, ...]:
        def monomial_name(idx):
            if not idx:
                return "1"
            counts = {i: idx.count(i) for i in dict.fromkeys(idx)}
            return " ".join(self.variables[i] + (f"^{c}" if c > 1 else "") for i, c in counts.items())

        return tuple(monomial_name(m) for m in self.monomials) + tuple(f"{fn}(x{d})" for fn, d in self.trig)

    @property
    def num_features(self) -> int:
        return len(self.names)

    def features(self, obs, action):
        """Θ(s, a) with shape (..., num_features)."""
        z = jnp.concatenate([obs, action], axis=-1)
        columns = [jnp.prod(z[..., list(m)], axis=-1) if m else jnp.ones(z.shape[:-1], z.dtype) for m in self.monomials]
        columns += [(jnp.sin if fn == "sin" else jnp.cos)(obs[..., d]) for fn, d in self.trig]
        return jnp.stack(columns, axis=-1)


# ----------------------------------------------------------------------------------------------
# Sequentially thresholded least squares, masked
# ----------------------------------------------------------------------------------------------
def stlsq(theta, targets, mask, threshold, ridge, iterations: int):
    """Sparse ξ (num_features, num_targets) with ``targets ≈ theta @ ξ`` on the rows where ``mask`` is true.

    STLSQ (Brunton et al. 2016, Sec. "Sparse regression", eq. 8 solved by their ``sparsifyDynamics``):
    ξ⁰ = argmin ‖Y − Θξ‖² + ridge‖ξ‖², then ``iterations`` times: zero every |ξ_ij| < threshold and
    re-solve each target column j on its remaining support. Rows outside ``mask`` carry zero weight
    (they may hold anything, even NaN). Columns are scaled to unit RMS for the solve (conditioning;
    ``ridge`` acts on that per-sample problem), and ξ and the threshold are in the original units.
    """
    m = mask[:, None]
    count = jnp.maximum(mask.sum(), 1).astype(jnp.float32)
    theta = jnp.where(m, theta, 0.0)
    targets = jnp.where(m, targets, 0.0)
    scale = jnp.sqrt((theta ** 2).sum(0) / count)
    scale = jnp.where(scale < 1e-8, 1.0, scale)
    scaled = theta / scale
    gram = scaled.T @ scaled / count                       # (p, p)
    rhs = scaled.T @ targets / count                       # (p, k)
    p = gram.shape[0]

    def solve_on(support):                                  # support (p, k) bool -> ξ (p, k), original units
        def column(s, b):
            s = s.astype(gram.dtype)
            a = gram * s[:, None] * s[None, :] + jnp.diag(ridge * s + (1.0 - s))
            return jnp.linalg.solve(a, b * s) * s
        return jax.vmap(column, in_axes=(1, 1), out_axes=1)(support, rhs) / scale[:, None]

    xi = solve_on(jnp.ones((p, targets.shape[1]), bool))
    xi = jax.lax.fori_loop(0, iterations, lambda _, xi: solve_on(jnp.abs(xi) >= threshold), xi)
    return jnp.where(jnp.abs(xi) >= threshold, xi, 0.0)


# ----------------------------------------------------------------------------------------------
# Known rewards (reward_model="known") and the equations' text
# ----------------------------------------------------------------------------------------------
def pendulum_reward(obs, action, max_torque=2.0):
    """Pendulum-v1 (gymnax): −(θ² + 0.1 θ̇² + 0.001 u²) with θ = atan2(sin θ, cos θ) in [−π, π]."""
    theta = jnp.arctan2(obs[..., 1], obs[..., 0])
    u = jnp.clip(action[..., 0], -max_torque, max_torque)
    return -(theta ** 2 + 0.1 * obs[..., 2] ** 2 + 0.001 * u ** 2)


KNOWN_REWARDS = {"Pendulum-v1": pendulum_reward}


def format_equation(lhs: str, coefficients, names, print_threshold: float = 0.0) -> str:
    """``"lhs = c1 f1 - c2 f2 ..."`` over the coefficients with |c| > print_threshold (4 significant
    digits; ``"lhs = 0"`` when none); a coefficient on the constant feature "1" prints alone."""
    terms = []
    for c, name in zip(np.asarray(coefficients, np.float64), names):
        if abs(c) <= print_threshold or c == 0:
            continue
        magnitude = f"{abs(c):.4g}" + ("" if name == "1" else f" {name}")
        terms.append(("- " if c < 0 else "+ ") + magnitude)
    if not terms:
        return f"{lhs} = 0"
    body = " ".join(terms)
    return f"{lhs} = " + (body[2:] if body.startswith("+ ") else "-" + body[2:])


def equations(coef, library: Library, print_threshold: float = 0.0, with_reward: bool = True) -> list[str]:
    """One equation per state dimension (``Δx0 = ...``) and, with ``with_reward``, ``r = ...``."""
    coef = np.asarray(coef)
    lines = [format_equation(f"Δx{i}", coef[:, i], library.names, print_threshold) for i in range(library.obs_dim)]
    if with_reward:
        lines.append(format_equation("r", coef[:, library.obs_dim], library.names, print_threshold))
    return lines


# ----------------------------------------------------------------------------------------------
# SAC networks and the squashed Gaussian (Haarnoja et al. 2018)
# ----------------------------------------------------------------------------------------------
class Actor(nn.Module):
    """Mean and log-std (in [LOG_STD_MIN, LOG_STD_MAX]) of the Gaussian before the tanh squashing."""

    action_dim: int
    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs):
        x = obs
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        log_std = jnp.tanh(nn.Dense(self.action_dim)(x))
        return nn.Dense(self.action_dim)(x), LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)


class QNetwork(nn.Module):
    """Soft Q(s, a); the twin critics are two parameter sets stacked on a leading axis."""

    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(1)(x)[..., 0]


def squash(u, low, high):
    return 0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(u)


def squashed_sample(key, mean, log_std, low, high):
    """a = squash(u), u ~ N(mean, σ²), and log π(a) by the change of variables (Haarnoja et al. 2018,
    Appendix C, with the rescaling to [low, high]; log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)))."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = jnp.log(0.5 * (high - low)) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return squash(u, low, high), (gaussian - log_det).sum(-1)


class Transition(NamedTuple):
    """An imagined transition; the surrogate never terminates, so every target bootstraps."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    coef: jax.Array                  # (num_features, obs_dim + 1): ξ of Δs and r
    obs_low: jax.Array               # (obs_dim,) bounds of the imagined states
    obs_high: jax.Array
    real: replay.ReplayBuffer        # of dynamics.ModelData
    imagined: replay.ReplayBuffer    # of Transition
    actor_params: dict
    q_params: dict
    target_q_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    q_opt: optax.OptState
    alpha_opt: optax.OptState
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "SINDy-RL")
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    return env, env_params, EpisodeStatistics(flat)


def validate(config: Config) -> None:
    require_positive(config, "total_timesteps", "num_envs", "refit_every", "buffer_size", "degree",
                     "stlsq_iterations", "rollout_batch", "rollout_length", "model_buffer_size", "gradient_steps",
                     "batch_size", "policy_lr", "q_lr", "alpha_lr", "init_alpha", "hidden_size")
    require(config.threshold >= 0, f"threshold must be >= 0, got {config.threshold}")
    require(config.ridge >= 0, f"ridge must be >= 0, got {config.ridge}")
    require(config.bound_margin >= 0, f"bound_margin must be >= 0, got {config.bound_margin}")
    require(config.print_threshold >= 0, f"print_threshold must be >= 0, got {config.print_threshold}")
    require_unit_interval(config, "gamma")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.reward_model in REWARD_MODELS,
            f"reward_model must be one of {REWARD_MODELS}, got {config.reward_model!r}")
    require(config.reward_model != "known" or config.env in KNOWN_REWARDS,
            f"reward_model='known' needs a known reward function for {config.env}; known: {sorted(KNOWN_REWARDS)} "
            "(or use reward_model='sindy')")
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one vector step "
            f"(num_envs = {config.num_envs})")
    require(config.random_steps >= config.num_envs,
            f"random_steps={config.random_steps} must be >= num_envs={config.num_envs}: the first SINDy fit "
            "needs data")
    require(config.random_steps < config.total_timesteps,
            f"random_steps={config.random_steps} must be below total_timesteps={config.total_timesteps}, "
            "or the policy is never trained")


def make_library(config: Config, obs_dim: int, action_dim: int) -> Library:
    poly, trig = parse_library(config.library, obs_dim)
    return Library(obs_dim, action_dim, config.degree, poly, trig)


def require_observations(obs, obs_dim: int, env_id: str, algorithm: str) -> None:
    """Raise a clear ``ValueError`` (at trace time, before anything compiles) when ``act`` gets a batch
    whose observations are not this model's: e.g. a checkpoint of one env acting on another env's states."""
    if obs.ndim < 2 or int(np.prod(obs.shape[1:])) != obs_dim:
        raise ValueError(f"{algorithm} act: expected a batch of {env_id} observations, shape (batch, ...) with "
                         f"{obs_dim} numbers each, got shape {tuple(obs.shape)} (observations of another env, "
                         "or an unbatched observation?)")


def make_train(config: Config, env=None, env_params=None) -> Trainer:
    """Build the SINDy-RL ``Trainer``; ``env``/``env_params`` replace ``config.env`` when given."""
    validate(config)
    env, env_params, wrapped = make_env(config, env, env_params)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    low, high = low.reshape(-1), high.reshape(-1)
    space = env.observation_space(env_params)
    space_low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape).reshape(-1)
    space_high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape).reshape(-1)
    library = make_library(config, obs_dim, action_dim)
    known_reward = KNOWN_REWARDS.get(config.env) if config.reward_model == "known" else None
    capacity = config.buffer_capacity
    actor, critic = Actor(action_dim, config.hidden_size), QNetwork(config.hidden_size)
    actor_tx, q_tx, alpha_tx = optax.adam(config.policy_lr), optax.adam(config.q_lr), optax.adam(config.alpha_lr)
    target_entropy = -float(action_dim)

    # ------------------------------------------------------------------------------------------
    # The SINDy model
    # ------------------------------------------------------------------------------------------
    def fit(data: dynamics.ModelData, mask):
        """ξ of (Δs, r) by STLSQ on the masked real transitions."""
        theta = library.features(data.obs, data.action)
        targets = dynamics.model_targets(data.obs, data.reward, data.next_obs)
        return stlsq(theta, targets, mask, config.threshold, config.ridge, config.stlsq_iterations)

    def model_step(coef, obs_low, obs_high, obs, action):
        """One surrogate step: (s + Θ(s, a) ξ_Δs clipped to the seen range, reward)."""
        out = library.features(obs, action) @ coef
        next_obs = jnp.clip(obs + out[..., :obs_dim], obs_low, obs_high)
        reward = known_reward(obs, action) if known_reward is not None else out[..., obs_dim]
        return next_obs, reward

    def surrogate_bounds(data: dynamics.ModelData, mask):
        """The observation space's bounds where finite; elsewhere the range of the real states seen,
        widened by ``bound_margin`` times its width on each side."""
        seen_low = jnp.where(mask[:, None], jnp.minimum(data.obs, data.next_obs), jnp.inf).min(0)
        seen_high = jnp.where(mask[:, None], jnp.maximum(data.obs, data.next_obs), -jnp.inf).max(0)
        width = seen_high - seen_low
        return (jnp.where(jnp.isfinite(space_low), space_low, seen_low - config.bound_margin * width),
                jnp.where(jnp.isfinite(space_high), space_high, seen_high + config.bound_margin * width))

    def refit(state: TrainState):
        mask = dynamics.filled_mask(capacity, state.real.size)
        coef = fit(state.real.data, mask)
        data = state.real.data
        obs_low, obs_high = surrogate_bounds(data, mask)
        pred, _ = model_step(coef, -jnp.inf, jnp.inf, data.obs, data.action)
        err = jnp.where(mask[:, None], (pred - data.next_obs) ** 2, 0.0).sum() / (mask.sum() * obs_dim)
        metrics = {"model_mse": err, "support_size": (coef != 0).sum().astype(jnp.float32)}
        return state._replace(coef=coef, obs_low=obs_low, obs_high=obs_high), metrics

    def keep_model(state: TrainState):
        return state, {"model_mse": jnp.float32(jnp.nan), "support_size": jnp.float32(jnp.nan)}

    # ------------------------------------------------------------------------------------------
    # Imagined rollouts and SAC on them
    # ------------------------------------------------------------------------------------------
    def imagine(state: TrainState, key) -> replay.ReplayBuffer:
        """``rollout_batch`` rollouts of ``rollout_length`` steps from real states, with the current policy."""
        start_key, key = jax.random.split(key)
        idx = jax.random.randint(start_key, (config.rollout_batch,), 0, jnp.maximum(state.real.size, 1))
        start = state.real.data.obs[idx]

        def step(obs, key):
            mean, log_std = actor.apply(state.actor_params, obs)
            action, _ = squashed_sample(key, mean, log_std, low, high)
            next_obs, reward = model_step(state.coef, state.obs_low, state.obs_high, obs, action)
            return next_obs, Transition(obs, action, reward, next_obs)

        _, traj = jax.lax.scan(step, start, jax.random.split(key, config.rollout_length))
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), traj)
        return replay.add(state.imagined, flat)

    def q_values(q_params, obs, action):
        return jax.vmap(critic.apply, in_axes=(0, None, None))(q_params, obs, action)

    def q_loss_fn(q_params, state: TrainState, batch: Transition, key):
        """Soft Bellman residual (Haarnoja et al. 2018, eq. 5 with the clipped double-Q target of Sec. 6);
        the surrogate has no terminal states, so the target always bootstraps."""
        mean, log_std = actor.apply(state.actor_params, batch.next_obs)
        next_action, next_log_prob = squashed_sample(key, mean, log_std, low, high)
        next_q = q_values(state.target_q_params, batch.next_obs, next_action).min(0)
        target = batch.reward + config.gamma * (next_q - jnp.exp(state.log_alpha) * next_log_prob)
        q = q_values(q_params, batch.obs, batch.action)
        return ((q - jax.lax.stop_gradient(target)) ** 2).mean(1).sum()

    def actor_loss_fn(actor_params, q_params, log_alpha, obs, key):
        """E[α log π(a|s) − min_j Q_j(s, a)] with a reparameterized (Haarnoja et al. 2018, eq. 7)."""
        mean, log_std = actor.apply(actor_params, obs)
        action, log_prob = squashed_sample(key, mean, log_std, low, high)
        return (jnp.exp(log_alpha) * log_prob - q_values(q_params, obs, action).min(0)).mean(), log_prob

    def alpha_loss_fn(log_alpha, log_prob):
        """Automatic entropy tuning (Haarnoja et al. 2018, eq. 18), on log α."""
        return -(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()

    def gradient_step(state: TrainState, key):
        sample_key, q_key, actor_key = jax.random.split(key, 3)
        batch = replay.sample(state.imagined, sample_key, config.batch_size)
        q_loss, q_grads = jax.value_and_grad(q_loss_fn)(state.q_params, state, batch, q_key)
        q_updates, q_opt = q_tx.update(q_grads, state.q_opt, state.q_params)
        q_params = optax.apply_updates(state.q_params, q_updates)
        (actor_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor_params, q_params, state.log_alpha, batch.obs, actor_key)
        actor_updates, actor_opt = actor_tx.update(actor_grads, state.actor_opt, state.actor_params)
        alpha_grad = jax.grad(alpha_loss_fn)(state.log_alpha, log_prob)
        alpha_update, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt, state.log_alpha)
        state = state._replace(
            actor_params=optax.apply_updates(state.actor_params, actor_updates), q_params=q_params,
            target_q_params=optax.incremental_update(q_params, state.target_q_params, config.tau),
            log_alpha=optax.apply_updates(state.log_alpha, alpha_update),
            actor_opt=actor_opt, q_opt=q_opt, alpha_opt=alpha_opt)
        return state, {"q_loss": q_loss, "actor_loss": actor_loss, "entropy": -log_prob.mean()}

    def learn(state: TrainState, key):
        rollout_key, update_key = jax.random.split(key)
        state = state._replace(imagined=imagine(state, rollout_key))
        state, metrics = jax.lax.scan(gradient_step, state, jax.random.split(update_key, config.gradient_steps))
        metrics = {k: v.mean() for k, v in metrics.items()}
        metrics["alpha"] = jnp.exp(state.log_alpha)
        return state, metrics

    def wait(state: TrainState, key):
        nan = jnp.float32(jnp.nan)
        return state, {"q_loss": nan, "actor_loss": nan, "entropy": nan, "alpha": jnp.exp(state.log_alpha)}

    # ------------------------------------------------------------------------------------------
    # Env interaction and the Dyna loop
    # ------------------------------------------------------------------------------------------
    def reset_envs(key):
        return jax.vmap(wrapped.reset, in_axes=(0, None))(jax.random.split(key, config.num_envs), env_params)

    def step_envs(key, env_state, action):
        keys = jax.random.split(key, config.num_envs)
        env_action = action.reshape((config.num_envs,) + action_shape)
        return jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))(keys, env_state, env_action, env_params)

    def init(key) -> TrainState:
        key, actor_key, q_key, env_key = jax.random.split(key, 4)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        q_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(q_key, 2), dummy_obs, dummy_action)
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        obs, env_state = reset_envs(env_key)
        real = replay.init(capacity, dynamics.ModelData(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.float32(0),
                                                        jnp.zeros(obs_dim)))
        example = Transition(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.float32(0), jnp.zeros(obs_dim))
        imagined = replay.init(config.model_buffer_capacity, example)
        return TrainState(jnp.zeros((library.num_features, obs_dim + 1)), jnp.full(obs_dim, -jnp.inf),
                          jnp.full(obs_dim, jnp.inf), real, imagined, actor_params, q_params, q_params, log_alpha,
                          actor_tx.init(actor_params), q_tx.init(q_params), alpha_tx.init(log_alpha), env_state,
                          obs.reshape((config.num_envs, obs_dim)), key)

    def update(state: TrainState, iteration):
        key, action_key, step_key, learn_key = jax.random.split(state.key, 4)
        # ACT: uniform random actions during the warm-up, then the stochastic policy
        warmup = iteration * config.num_envs < config.random_steps
        mean, log_std = actor.apply(state.actor_params, state.obs)
        policy_action, _ = squashed_sample(action_key, mean, log_std, low, high)
        random_action = jax.random.uniform(action_key, policy_action.shape, minval=low, maxval=high)
        action = jnp.where(warmup, random_action, policy_action)
        next_obs, env_state, reward, _, _, info = step_envs(step_key, state.env_state, action)
        # STORE: the true next state, pre-reset at an episode's end. Elsewhere it is the carried
        # ``next_obs`` itself: XLA may recompute ``final_observation`` in another fusion, whose last
        # bits can then differ between programs (a refit would amplify that into different models).
        next_obs = next_obs.reshape((config.num_envs, obs_dim))
        final_obs = jnp.where(info["episode_done"][:, None], info["final_observation"].reshape(next_obs.shape),
                              next_obs)
        real = replay.add(state.real, dynamics.ModelData(state.obs, action, reward.astype(jnp.float32), final_obs))
        state = state._replace(real=real, env_state=env_state, obs=next_obs, key=key)
        # REFIT SINDy at the end of the warm-up, then every refit_every env steps. ``iteration`` is
        # an unbatched scan input, so under vmap the conds stay real branches.
        before, after = iteration * config.num_envs, (iteration + 1) * config.num_envs
        last_warmup = (before < config.random_steps) & (after >= config.random_steps)
        crossed = after // config.refit_every > before // config.refit_every
        state, metrics = jax.lax.cond(last_warmup | ((after > config.random_steps) & crossed), refit, keep_model, state)
        # LEARN the policy on imagined rollouts once a model exists
        state, learn_metrics = jax.lax.cond(after >= config.random_steps, learn, wait, state, learn_key)
        metrics.update(learn_metrics)
        metrics.update(episode_metrics(info))
        return state, metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the squashed mean, in the env's bounds."""
        require_observations(obs, obs_dim, config.env, "SINDy-RL")
        obs = obs.reshape((obs.shape[0], obs_dim))
        mean, _ = actor.apply(state.actor_params, obs)
        return squash(mean, low, high).reshape((obs.shape[0],) + action_shape)

    def report(state: TrainState, key) -> dict:
        """The learned equations (host side): strings, support size, feature names and ξ."""
        coef = np.asarray(state.coef)
        learned_reward = known_reward is None
        shown = coef if learned_reward else coef[:, :obs_dim]
        return {"equations": equations(coef, library, config.print_threshold, with_reward=learned_reward),
                "reward": "sindy" if learned_reward else f"known ({config.env})",
                "support_size": int((shown != 0).sum()),
                "features": list(library.names),
                "coefficients": shown.tolist()}

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.num_envs, env=env, env_params=env_params, report=report)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="sindy_rl")
