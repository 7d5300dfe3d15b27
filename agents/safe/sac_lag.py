"""SAC-Lagrangian: Soft Actor-Critic on the Lagrangian of a constrained MDP (Ha, Xu, Tan, Levine &
Tan 2020, "Learning to Walk in the Real World with Minimal Human Effort", §IV-B: SAC with a cost
critic and a learned Lagrange multiplier; OmniSafe's ``SACLag``, Ji et al. 2023).

Everything of SAC (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"; see
``agents/online/sac.py`` for the same pieces in the unconstrained agent): a tanh-squashed Gaussian
policy with the exact squashed log-density, twin reward critics with clipped double-Q soft targets
r + γ (1 − terminated) (min_j Q̄_j(s', a') − α log π(a'|s')), a' ~ π(·|s'), Polyak target networks,
an on-device replay buffer, uniform random actions for the first ``learning_starts`` steps, and
bootstrapping through time-limit truncation (the pre-reset ``final_observation`` is s'). Added:

* twin cost critics Q_c1, Q_c2 with their own Polyak targets, trained on the pessimistic target
  c + γ_c (1 − terminated) max_j Q̄_cj(s', a') (no entropy term: the cost is not soft), a' ~ π(·|s') as
  the reward target's; the actor sees max_j Q_cj too. This is clipped double Q (Fujimoto et al. 2018)
  mirrored for a quantity the actor *minimizes*; OmniSafe's SACLag has one cost critic. With one,
  the actor drives Q_c into its own errors and the bootstrap spreads them: measured on PointGoal1-v0
  (4 envs, α autotuned, 1.8e5 steps, 2 seeds) Q_c fell to −7 and −12 although every cost is ≥ 0, and
  the cost stayed at 16-148 per episode while λ kept rising;
* the actor loss of the Lagrangian, normalized by 1 + λ as OmniSafe's ``SACLag._loss_pi``:
  E_s[(α log π(a|s) − min_j Q_j(s, a) + λ max_j Q_cj(s, a)) / (1 + λ)], a ~ π(·|s) reparameterized;
* λ from ``jaxrl.constraints.lagrangian`` (Adam on −λ (J_c − d), λ ≥ 0), moved once per iteration in
  which an episode *completed*, from those episodes' undiscounted costs, after ``lambda_start`` env
  steps (OmniSafe updates it from the last episodes' costs once per 2000-step epoch after a warm-up).

Defaults are OmniSafe's ``SACLag.yaml``: cost limit 25, λ0 0.001, lr 3e-4 for actor and critics,
batch 256, τ 0.005, γ 0.99 (cost γ the same), actor updated every 2nd critic step (``policy_delay``),
10 000 random steps before learning, fixed α = 0.2 (no auto-tuning), grad-norm clip 40, two hidden
layers of 256 ReLU units, buffer 1e6 (capped to the budget, as ``agents/online/sac.py``), no reward or
cost normalization (``reward_scale`` 1). Departures: the twin cost critics above; and, for runs of
1e4-1e5 steps instead of OmniSafe's 1e6: OmniSafe's λ learning rate 1e-5 per 2000-step epoch after a
100-epoch (2e5-step) warm-up leaves λ at its initial value for any run shorter than about 1e6 steps, so the default here is PPO-Lag's
λ lr 0.035 (OmniSafe's ``PPOLag.yaml``) applied once per completed episode, from ``lambda_start`` =
the first learning step on (``--lambda-lr 1e-5`` recovers their rate). On a task whose reward per step
is small, such as PointGoal's (≤ ~0.03), the fixed α drowns the reward: use ``--autotune`` and a
``--reward-scale`` (``scripts/reproduce_pointgoal.py`` uses 10; see there what that changed).
``--lambda-init 0 --lambda-lr 0`` keeps λ at 0: plain SAC with a cost critic, reporting the same
metrics (floats, so one ``--sweep`` trains both in one program). Box actions only: a discrete env is
a clear error before anything compiles. ``policy_logits`` (the tabular read-off of
``scripts/reproduce_safe.py``) does not apply: the actions are continuous.

Metrics per iteration: ``episode_return``, ``episode_cost``, ``episode_length``, ``over_limit``
(fraction of the envs whose last completed episode cost more than the limit) are those of the last
completed episode of each env, averaged over envs (NaN before the first episode ends; with one env
an iteration is one step, so this is the running curve ``agents/online/sac.py`` reports);
``episodes`` (episodes completed in this iteration), ``lambda`` (the λ of this iteration's actor
loss), ``alpha``, and the losses, ``q_mean``/``qc_mean`` and ``entropy`` (NaN before learning starts;
on the critic steps between two actor updates, the actor's loss and entropy are evaluated, not applied).
Measured with these defaults but one cost critic (before the twin pair; 2 seeds, this 2-core CPU,
stopped at 45 000 of the 50 000 steps): λ
≈ 4.4-5.2 and still rising, last episodes' cost 43-54 (limit 25), return −135 / −243; the default
budget is too short for this limit on SafePendulum-v0 (``tests/test_sac_lag.py`` meets a limit of 40
in 24 000 steps with 4 envs, α auto-tuned and a larger λ learning rate).

Run:  python agents/safe/sac_lag.py --env SafePendulum-v0 --num-seeds 4
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import constraints, envs, replay
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of the policy's log-std (as agents/online/sac.py)


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "SafePendulum-v0"
    """Environment id (gymnax or this project's envs/); Box actions, cost in info["cost"]."""
    total_timesteps: int = 50_000
    """Env steps per run (over all parallel envs)."""
    cost_limit: float = 25.0
    """d: the limit on the expected (undiscounted) episode cost."""
    lambda_init: float = 0.001
    """Initial Lagrange multiplier λ0."""
    lambda_lr: float = 0.035
    """Adam learning rate of λ, one step per iteration that completes an episode (0 with lambda_init 0: plain SAC)."""
    lambda_start: int = 10_000
    """Env steps before λ starts to move (its warm-up; OmniSafe: 2e5)."""
    policy_lr: float = 3e-4
    """Adam learning rate of the policy."""
    q_lr: float = 3e-4
    """Adam learning rate of the reward and cost critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α (only with autotune)."""
    num_envs: int = 1
    """Parallel envs per run; each iteration steps every env once."""
    gradient_steps: int = 1
    """Critic updates per iteration (update-to-data ratio = gradient_steps / num_envs)."""
    policy_delay: int = 2
    """The actor (and α) is updated on every policy_delay-th critic update."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions (capped to total_timesteps)."""
    batch_size: int = 256
    """Transitions per gradient step, sampled uniformly from the buffer."""
    learning_starts: int = 10_000
    """Env steps of uniform random actions before the first gradient update."""
    gamma: float = 0.99
    """Discount factor of the reward."""
    cost_gamma: float = 0.99
    """Discount factor of the cost critic."""
    tau: float = 0.005
    """Polyak averaging rate of the target critics (1 = hard copy every step)."""
    reward_scale: float = 1.0
    """Multiplies the reward in the reward critics' targets (SAC's reward scale, Haarnoja et al. 2018a, §5 and
    App. D); reported returns stay unscaled."""
    autotune: bool = False
    """Tune α towards the target entropy (Haarnoja et al. 2018, eq. 18); otherwise α is fixed at ``alpha``."""
    alpha: float = 0.2
    """Entropy coefficient when autotune is off."""
    init_alpha: float = 1.0
    """Initial entropy coefficient when autotune is on."""
    target_entropy_scale: float = 1.0
    """Target entropy = −target_entropy_scale · |A| (autotune only)."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip of every network's update."""
    hidden_size: int = 256
    """Width of the two hidden layers of the policy and of each critic."""
    activation: str = "relu"
    """Hidden activation: relu or tanh."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.num_envs

    @property
    def buffer_capacity(self) -> int:
        """Transitions the buffer actually holds: buffer_size capped to the whole budget."""
        return max(1, min(self.buffer_size, self.num_updates * self.num_envs))


# ----------------------------------------------------------------------------------------------
# Networks and the squashed Gaussian
# ----------------------------------------------------------------------------------------------
def activation_fn(name: str):
    return nn.relu if name == "relu" else nn.tanh


class Actor(nn.Module):
    """Gaussian policy head before squashing: mean and log-std (kept in [LOG_STD_MIN, LOG_STD_MAX])."""

    action_dim: int
    hidden_size: int = 256
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        x = obs
        for _ in range(2):
            x = activation_fn(self.activation)(nn.Dense(self.hidden_size)(x))
        mean = nn.Dense(self.action_dim)(x)
        log_std = jnp.tanh(nn.Dense(self.action_dim)(x))
        return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)


class QNetwork(nn.Module):
    """Q(s, a) of the reward or of the cost (two copies of each, vmapped over init keys)."""

    hidden_size: int = 256
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        for _ in range(2):
            x = activation_fn(self.activation)(nn.Dense(self.hidden_size)(x))
        return nn.Dense(1)(x)[..., 0]


def squash(u, low, high):
    """Map a pre-squash sample u to the env's bounds: a = mid + half_range · tanh(u)."""
    return 0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(u)


def squashed_log_prob(mean, log_std, u, low, high):
    """log π(a) of a = squash(u), u ~ N(mean, exp(log_std)²), summed over action dimensions
    (Haarnoja et al. 2018, Appendix C, plus the rescaling): log N(u) − Σ_i log(half_range_i (1 − tanh²(u_i))),
    with log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u)), finite for any u."""
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = jnp.log(0.5 * (high - low)) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return (gaussian - log_det).sum(-1)


def sample_action(key, mean, log_std, low, high):
    """Reparameterized sample of the squashed policy: (action in [low, high], its log-probability)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return squash(u, low, high), squashed_log_prob(mean, log_std, u, low, high)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def soft_q_target(reward, terminated, next_q_min, next_log_prob, alpha, gamma):
    """SAC's soft Bellman target (Haarnoja et al. 2018, eqs. 3 and 5 with clipped double Q):
    r + γ (1 − terminated) (min_j Q̄_j(s', a') − α log π(a'|s'))."""
    return reward + gamma * (1.0 - terminated) * (next_q_min - alpha * next_log_prob)


def cost_q_target(cost, terminated, next_qc_max, cost_gamma):
    """The cost critics' Bellman target (Ha et al. 2020, §IV-B; OmniSafe SACLag), pessimistic over the twin
    targets: c + γ_c (1 − terminated) max_j Q̄_cj(s', a')."""
    return cost + cost_gamma * (1.0 - terminated) * next_qc_max


def lagrangian_actor_objective(log_prob, q_min, qc_max, alpha, penalty):
    """Per-sample actor loss (α log π − min_j Q_j + λ max_j Q_cj) / (1 + λ): SAC's policy loss (Haarnoja et
    al. 2018, eq. 7) on the Lagrangian r − λ c (Ha et al. 2020, §IV-B), normalized as OmniSafe's SACLag."""
    return (alpha * log_prob - q_min + penalty * qc_max) / (1.0 + penalty)


# ----------------------------------------------------------------------------------------------
# Transitions stored in the replay buffer (jaxrl.replay: fixed capacity, on device)
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array          # (obs_dim,)
    action: jax.Array       # (action_dim,), in env units
    reward: jax.Array       # ()
    cost: jax.Array         # ()
    next_obs: jax.Array     # (obs_dim,): the true next state, also on truncation
    terminated: jax.Array   # () float: 1 only on a real termination (no bootstrap)


def last_episode_metrics(info, cost_limit) -> dict:
    """Statistics of each env's last completed episode, averaged over the envs that have one (NaN if none)."""
    valid = info["episodes_completed"] > 0
    n = valid.sum()

    def mean(x):
        return jnp.where(n > 0, jnp.where(valid, x.astype(jnp.float32), 0.0).sum() / jnp.maximum(n, 1), jnp.nan)

    return {
        "episode_return": mean(info["episode_return"]),
        "episode_cost": mean(info["episode_cost"]),
        "episode_length": mean(info["episode_length"]),
        "over_limit": mean(info["episode_cost"] > cost_limit),
        "episodes": info["episode_done"].sum().astype(jnp.float32),
    }


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    q_params: dict           # both reward critics, stacked on a leading axis of 2
    target_q_params: dict
    qc_params: dict          # both cost critics, stacked on a leading axis of 2
    target_qc_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    q_opt: optax.OptState    # of (q_params, qc_params)
    alpha_opt: optax.OptState
    constraint: object       # the state of jaxrl.constraints.lagrangian
    buffer: replay.ReplayBuffer
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    """The env of ``config.env`` (or ``env``/``env_params``) and its training wrapper; raises a
    ``ConfigError`` for a discrete action space or an env without ``info["cost"]``."""
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    if envs.is_discrete(env, env_params):
        raise ConfigError(
            f"SAC-Lagrangian supports only continuous (Box) action spaces, but {config.env} has "
            f"{envs.describe_action_space(env, env_params)}: discrete actions are not supported. Use a continuous "
            "safe env such as SafePendulum-v0 or PointGoal1-v0, or a discrete-action safe agent "
            "(agents/safe/ppo_lag.py) for this one.")
    envs.require_cost(config.env, env, env_params, "SAC-Lagrangian")
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    return env, env_params, EpisodeStatistics(flat)


def validate(config: Config) -> None:
    require_positive(config, "total_timesteps", "policy_lr", "q_lr", "alpha_lr", "reward_scale", "num_envs",
                     "gradient_steps", "policy_delay", "buffer_size", "batch_size", "hidden_size", "alpha",
                     "init_alpha", "max_grad_norm")
    require_unit_interval(config, "gamma", "cost_gamma")
    require(config.cost_limit >= 0, f"cost_limit must be >= 0, got {config.cost_limit}")
    require(config.lambda_init >= 0, f"lambda_init must be >= 0, got {config.lambda_init}")
    require(config.lambda_lr >= 0, f"lambda_lr must be >= 0, got {config.lambda_lr}")
    require(config.lambda_start >= 0, f"lambda_start must be >= 0, got {config.lambda_start}")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.activation in ("relu", "tanh"), f"activation must be 'relu' or 'tanh', got {config.activation!r}")
    require(config.learning_starts >= 0, f"learning_starts must be >= 0, got {config.learning_starts}")
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one vector step "
            f"(num_envs = {config.num_envs})")
    require(config.learning_starts < config.total_timesteps,
            f"learning_starts={config.learning_starts} must be below total_timesteps={config.total_timesteps}, "
            "or no gradient step is ever taken")


def make_train(config: Config, network=None, env=None, env_params=None) -> Trainer:
    """Build the SAC-Lagrangian trainer. ``network`` (optional) is an ``(actor, critic)`` pair of flax
    modules with the interfaces of ``Actor`` and ``QNetwork``; ``env``/``env_params`` replace the env
    of ``config.env`` when given (``env_params`` may be traced)."""
    validate(config)
    env, env_params, wrapped = make_env(config, env, env_params)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    low, high = low.reshape(-1), high.reshape(-1)
    if network is None:
        network = (Actor(action_dim, config.hidden_size, config.activation),
                   QNetwork(config.hidden_size, config.activation))
    actor, critic = network
    target_entropy = -config.target_entropy_scale * action_dim
    clip = optax.clip_by_global_norm(config.max_grad_norm)
    actor_tx = optax.chain(clip, optax.adam(config.policy_lr))
    q_tx = optax.chain(clip, optax.adam(config.q_lr))
    alpha_tx = optax.adam(config.alpha_lr)
    handler = constraints.lagrangian(init=config.lambda_init, lr=config.lambda_lr)
    capacity = config.buffer_capacity

    def q_values(q_params, obs, action):
        """Both critics of a pair (reward or cost): shape (2, batch)."""
        return jax.vmap(critic.apply, in_axes=(0, None, None))(q_params, obs, action)

    def get_alpha(log_alpha):
        return jnp.exp(log_alpha) if config.autotune else jnp.asarray(config.alpha, jnp.float32)

    def reset_envs(key):
        return jax.vmap(wrapped.reset, in_axes=(0, None))(jax.random.split(key, config.num_envs), env_params)

    def step_envs(key, env_state, action):
        keys = jax.random.split(key, config.num_envs)
        env_action = action.reshape((config.num_envs,) + action_shape)
        return jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))(keys, env_state, env_action, env_params)

    def init(key) -> TrainState:
        key, actor_key, q_key, qc_key, env_key = jax.random.split(key, 5)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        q_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(q_key, 2), dummy_obs, dummy_action)
        qc_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(qc_key, 2), dummy_obs,
                                                                    dummy_action)
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        example = Transition(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.float32(0), jnp.float32(0),
                             jnp.zeros(obs_dim), jnp.float32(0))
        obs, env_state = reset_envs(env_key)
        return TrainState(actor_params, q_params, q_params, qc_params, qc_params, log_alpha, actor_tx.init(actor_params),
                          q_tx.init((q_params, qc_params)), alpha_tx.init(log_alpha), handler.init(),
                          replay.init(capacity, example), env_state, obs.reshape((config.num_envs, obs_dim)), key)

    def critic_loss_fn(critic_params, state: TrainState, batch: Transition, key):
        """Squared Bellman errors: the two reward critics' soft targets and the two cost critics' target."""
        q_params, qc_params = critic_params
        mean, log_std = actor.apply(state.actor_params, batch.next_obs)
        next_action, next_log_prob = sample_action(key, mean, log_std, low, high)
        next_q = q_values(state.target_q_params, batch.next_obs, next_action).min(axis=0)
        target = soft_q_target(config.reward_scale * batch.reward, batch.terminated, next_q, next_log_prob,
                               get_alpha(state.log_alpha), config.gamma)
        next_qc = q_values(state.target_qc_params, batch.next_obs, next_action).max(axis=0)
        cost_target = cost_q_target(batch.cost, batch.terminated, next_qc, config.cost_gamma)
        q = q_values(q_params, batch.obs, batch.action)
        qc = q_values(qc_params, batch.obs, batch.action)
        q_loss = ((q - jax.lax.stop_gradient(target)) ** 2).mean(axis=1).sum()   # sum of the two critics' MSEs
        qc_loss = ((qc - jax.lax.stop_gradient(cost_target)) ** 2).mean(axis=1).sum()
        return q_loss + qc_loss, {"q_loss": q_loss, "qc_loss": qc_loss, "q_mean": q.mean(), "qc_mean": qc.mean()}

    def actor_loss_fn(actor_params, state: TrainState, obs, penalty, key):
        mean, log_std = actor.apply(actor_params, obs)
        action, log_prob = sample_action(key, mean, log_std, low, high)
        q_min = q_values(state.q_params, obs, action).min(axis=0)
        qc = q_values(state.qc_params, obs, action).max(axis=0)
        loss = lagrangian_actor_objective(log_prob, q_min, qc, get_alpha(state.log_alpha), penalty).mean()
        return loss, log_prob

    def alpha_loss_fn(log_alpha, log_prob):
        """Temperature loss (Haarnoja et al. 2018, eq. 18) on log α."""
        return -(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()

    def update_actor(state: TrainState, obs, penalty, key):
        """One actor step on the Lagrangian objective, then (autotune) one temperature step."""
        (actor_loss, log_prob), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor_params, state, obs, penalty, key)
        updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor_params)
        state = state._replace(actor_params=optax.apply_updates(state.actor_params, updates), actor_opt=actor_opt)
        if config.autotune:
            alpha_grad = jax.grad(alpha_loss_fn)(state.log_alpha, log_prob)
            alpha_update, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt, state.log_alpha)
            state = state._replace(log_alpha=optax.apply_updates(state.log_alpha, alpha_update), alpha_opt=alpha_opt)
        return state, {"actor_loss": actor_loss, "entropy": -log_prob.mean()}

    def gradient_step(carry, xs):
        state, penalty = carry
        key, step = xs
        sample_key, critic_key, actor_key = jax.random.split(key, 3)
        batch = replay.sample(state.buffer, sample_key, config.batch_size)
        # UPDATE CRITICS (reward and cost)
        critic_params = (state.q_params, state.qc_params)
        grads, aux = jax.grad(critic_loss_fn, has_aux=True)(critic_params, state, batch, critic_key)
        updates, q_opt = q_tx.update(grads, state.q_opt, critic_params)
        q_params, qc_params = optax.apply_updates(critic_params, updates)
        state = state._replace(q_params=q_params, qc_params=qc_params, q_opt=q_opt)
        # UPDATE ACTOR (every policy_delay-th step; ``step`` is unbatched, so this stays a real branch).
        # Between updates the actor's loss is still evaluated, so every logged iteration reports one.
        def evaluate_actor(s):
            loss, log_prob = actor_loss_fn(s.actor_params, s, batch.obs, penalty, actor_key)
            return s, {"actor_loss": loss, "entropy": -log_prob.mean()}

        state, actor_aux = jax.lax.cond(step % config.policy_delay == 0,
                                        lambda s: update_actor(s, batch.obs, penalty, actor_key), evaluate_actor, state)
        # UPDATE TARGET NETWORKS
        state = state._replace(target_q_params=optax.incremental_update(q_params, state.target_q_params, config.tau),
                               target_qc_params=optax.incremental_update(qc_params, state.target_qc_params, config.tau))
        return (state, penalty), {**aux, **actor_aux}

    def update(state: TrainState, iteration):
        # COLLECT: one step of every env (uniform random actions until learning_starts)
        key, act_key, random_key, step_key, learn_key = jax.random.split(state.key, 5)
        mean, log_std = actor.apply(state.actor_params, state.obs)
        policy_action, _ = sample_action(act_key, mean, log_std, low, high)
        random_action = jax.random.uniform(random_key, policy_action.shape, minval=low, maxval=high)
        action = jnp.where(iteration * config.num_envs < config.learning_starts, random_action, policy_action)
        next_obs, env_state, reward, terminated, _, info = step_envs(step_key, state.env_state, action)
        cost = jnp.asarray(info["cost"], jnp.float32)
        # STORE: the true next state (pre-reset on truncation); only termination stops bootstrapping
        final_obs = info["final_observation"].reshape((config.num_envs, obs_dim))
        buffer = replay.add(state.buffer, Transition(state.obs, action, reward.astype(jnp.float32), cost, final_obs,
                                                     terminated.astype(jnp.float32)))
        state = state._replace(buffer=buffer, env_state=env_state, obs=next_obs.reshape((config.num_envs, obs_dim)),
                               key=key)

        # UPDATE λ from the episodes completed at this step (after the warm-up)
        moved, _ = handler.update(state.constraint, info["episode_cost"], info["episode_done"], config.cost_limit)
        started = iteration * config.num_envs >= config.lambda_start
        constraint = jax.tree.map(lambda new, old: jnp.where(started, new, old), moved, state.constraint)
        penalty = constraints.penalty_of(constraint)
        state = state._replace(constraint=constraint)

        # UPDATE NETWORKS once learning has started (``iteration`` is unbatched: a real branch under vmap)
        def learn(state):
            steps = iteration * config.gradient_steps + jnp.arange(config.gradient_steps)
            (state, _), metrics = jax.lax.scan(gradient_step, (state, penalty),
                                               (jax.random.split(learn_key, config.gradient_steps), steps))
            return state, {k: v.mean() for k, v in metrics.items()}

        def wait(state):  # no update yet: losses are undefined (NaN, written as null)
            nan = jnp.float32(jnp.nan)
            return state, {k: nan for k in ("q_loss", "qc_loss", "q_mean", "qc_mean", "actor_loss", "entropy")}

        learning = (iteration + 1) * config.num_envs > config.learning_starts
        state, metrics = jax.lax.cond(learning, learn, wait, state)
        metrics.update(last_episode_metrics(info, config.cost_limit))
        metrics["alpha"] = get_alpha(state.log_alpha)
        metrics["lambda"] = penalty
        metrics["step_cost"] = cost.mean()
        return state, metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the squashed mean, in the env's bounds."""
        obs = obs.reshape((obs.shape[0], -1))
        mean, _ = actor.apply(state.actor_params, obs)
        return squash(mean, low, high).reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.num_envs, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="sac_lag")
