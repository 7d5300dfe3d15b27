"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

Maximum-entropy off-policy actor-critic for Box actions (Algorithm 1 of the paper):

* a tanh-squashed Gaussian policy, rescaled to the env's action bounds, with the exact log-density
  of the squashed action (change of variables, paper Appendix C "Enforcing Action Bounds", plus the rescaling);
* twin soft Q-functions with clipped double-Q targets (min of the two target critics, Sec. 6) and
  Polyak-averaged target networks;
* the soft Bellman target r + γ (1 − terminated) (min_j Q̄_j(s', a') − α log π(a'|s')), a' ~ π(·|s'),
  bootstrapping through time-limit truncation (the pre-reset ``final_observation`` is s');
* automatic entropy tuning (Sec. 5, eq. 18) towards the target entropy −|A|, on log α;
* a fixed-capacity replay buffer kept on device inside the train state, uniform random actions for
  the first ``learning_starts`` env steps, ``num_envs`` vectorized envs and ``gradient_steps``
  updates per iteration (the update-to-data ratio is ``gradient_steps / num_envs``).

Defaults follow the paper's Table 1 (Appendix D: Adam, batch 256, τ 0.005, γ 0.99, two hidden layers of 256
ReLU units, target entropy −dim(A), buffer 1e6, one gradient step per env step) with CleanRL's
``sac_continuous_action.py`` learning rates (policy 3e-4; Q and α 1e-3; the paper uses 3e-4 for all),
its initial α of 1 and its ``learning_starts`` of 5000. Unlike CleanRL (``policy_frequency=2``) the
policy is updated on every gradient step, as in the paper. The replay buffer holds
``min(buffer_size, total_timesteps)`` transitions: a buffer larger than the whole budget would never
fill, so the default 1e6 is capped to save memory (and checkpoint size) on short runs.
``total_timesteps`` defaults to 15 000 (10 000 updates after the random warm-up), enough for
Pendulum-v1 to reach about −150 (4 seeds: −137 ± 15 greedy return; the training curve passes −200
around 8 000 steps).

Run:  python agents/online/sac.py --env Pendulum-v1 --num-seeds 4
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.stats import norm

from jaxrl import envs, replay
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation, episode_metrics

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of the policy's log-std (CleanRL, SpinningUp use similar)


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id (gymnax or this project's envs/); must have a Box action space."""
    total_timesteps: int = 15_000
    """Env steps per run (over all parallel envs)."""
    policy_lr: float = 3e-4
    """Adam learning rate of the policy."""
    q_lr: float = 1e-3
    """Adam learning rate of the twin Q-networks."""
    alpha_lr: float = 1e-3
    """Adam learning rate of log α (automatic entropy tuning)."""
    num_envs: int = 1
    """Parallel envs per run; each iteration steps every env once."""
    gradient_steps: int = 1
    """Gradient updates per iteration (update-to-data ratio = gradient_steps / num_envs)."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions (capped to total_timesteps)."""
    batch_size: int = 256
    """Transitions per gradient step, sampled uniformly from the buffer."""
    learning_starts: int = 5_000
    """Env steps of uniform random actions before the first gradient update."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target Q-networks (1 = hard copy every step)."""
    autotune: bool = True
    """Tune α automatically towards the target entropy; otherwise α is fixed at ``alpha``."""
    alpha: float = 0.2
    """Entropy coefficient when autotune is off."""
    init_alpha: float = 1.0
    """Initial entropy coefficient when autotune is on."""
    target_entropy_scale: float = 1.0
    """Target entropy = −target_entropy_scale · |A| (the paper's heuristic is scale 1)."""
    hidden_size: int = 256
    """Width of the two hidden layers of the policy and of each Q-network."""
    noise_correlation: float = 0.0
    """ρ of the exploration noise: each env's Gaussian noise follows ε_t = ρ ε_{t-1} + √(1−ρ²) ξ_t, so
    0 is SAC's white noise and ρ → 1 holds actions longer (correlation time ≈ 1/(1−ρ) steps; the
    warm-up actions are then uniform but equally correlated). Hard-exploration tasks such as
    MountainCarContinuous-v0 need it (Eberhard et al. 2023, "Pink Noise Is All You Need")."""

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
class Actor(nn.Module):
    """Gaussian policy head before squashing: mean and log-std (kept in [LOG_STD_MIN, LOG_STD_MAX])."""

    action_dim: int
    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs):
        x = obs
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        mean = nn.Dense(self.action_dim)(x)
        log_std = jnp.tanh(nn.Dense(self.action_dim)(x))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)
        return mean, log_std


class QNetwork(nn.Module):
    """Soft Q-function Q(s, a); two independent copies are made by vmapping ``init`` over keys."""

    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(1)(x)[..., 0]


def squash(u, low, high):
    """Map a pre-squash sample u to the env's bounds: a = mid + half_range · tanh(u)."""
    return 0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(u)


def squashed_log_prob(mean, log_std, u, low, high):
    """log π(a) of a = squash(u), u ~ N(mean, exp(log_std)²), summed over action dimensions.

    Change of variables: log π(a) = log N(u) − Σ_i log |da_i/du_i| with
    da/du = half_range · (1 − tanh(u)²), and log(1 − tanh(u)²) = 2 (log 2 − u − softplus(−2u))
    written in the form that stays finite for large |u|.
    """
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = jnp.log(0.5 * (high - low)) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return (gaussian - log_det).sum(-1)


def sample_action(key, mean, log_std, low, high):
    """Reparameterized sample of the squashed policy: (action in [low, high], its log-probability)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return squash(u, low, high), squashed_log_prob(mean, log_std, u, low, high)


# ----------------------------------------------------------------------------------------------
# Transitions stored in the replay buffer (jaxrl.replay: fixed capacity, on device)
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array          # (obs_dim,)
    action: jax.Array       # (action_dim,), in env units
    reward: jax.Array       # ()
    next_obs: jax.Array     # (obs_dim,): the true next state, also on truncation
    terminated: jax.Array   # () float: 1 only on a real termination (no bootstrap)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    q_params: dict           # both critics, stacked on a leading axis of 2
    target_q_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    q_opt: optax.OptState
    alpha_opt: optax.OptState
    buffer: replay.ReplayBuffer
    env_state: object
    obs: jax.Array
    noise: jax.Array         # (num_envs, action_dim): the exploration noise ε_t of each env
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "SAC")
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    return env, env_params, EpisodeStatistics(flat)


def validate(config: Config) -> None:
    require_positive(config, "total_timesteps", "policy_lr", "q_lr", "alpha_lr", "num_envs", "gradient_steps",
                     "buffer_size", "batch_size", "hidden_size", "alpha", "init_alpha")
    require_unit_interval(config, "gamma")
    require((0 <= config.noise_correlation) & (config.noise_correlation < 1),
            f"noise_correlation must be in [0, 1), got {config.noise_correlation}")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.learning_starts >= 0, f"learning_starts must be >= 0, got {config.learning_starts}")
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one vector step "
            f"(num_envs = {config.num_envs})")
    require(config.learning_starts < config.total_timesteps,
            f"learning_starts={config.learning_starts} must be below total_timesteps={config.total_timesteps}, "
            "or no gradient step is ever taken")


def make_train(config: Config, env=None, env_params=None) -> Trainer:
    """Build the SAC ``Trainer``; ``env``/``env_params`` replace ``config.env`` when given (an env
    that needs constructor arguments, e.g. ``envs.make("Probe-Action", continuous=True)``)."""
    validate(config)
    env, env_params, wrapped = make_env(config, env, env_params)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    low, high = low.reshape(-1), high.reshape(-1)
    actor = Actor(action_dim, config.hidden_size)
    critic = QNetwork(config.hidden_size)
    target_entropy = -config.target_entropy_scale * action_dim
    actor_tx = optax.adam(config.policy_lr)
    q_tx = optax.adam(config.q_lr)
    alpha_tx = optax.adam(config.alpha_lr)
    capacity = config.buffer_capacity

    def q_values(q_params, obs, action):
        """Both critics: shape (2, batch)."""
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
        key, actor_key, q_key, env_key, noise_key = jax.random.split(key, 5)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        q_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(q_key, 2), dummy_obs, dummy_action)
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        obs, env_state = reset_envs(env_key)
        return TrainState(actor_params, q_params, q_params, log_alpha, actor_tx.init(actor_params),
                          q_tx.init(q_params), alpha_tx.init(log_alpha), replay.init(capacity, Transition(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.float32(0), jnp.zeros(obs_dim), jnp.float32(0))),
                          env_state, obs.reshape((config.num_envs, obs_dim)),
                          jax.random.normal(noise_key, (config.num_envs, action_dim)), key)

    def q_loss_fn(q_params, target_q_params, actor_params, log_alpha, batch, key):
        obs, action, reward, next_obs, terminated = batch
        mean, log_std = actor.apply(actor_params, next_obs)
        next_action, next_log_prob = sample_action(key, mean, log_std, low, high)
        next_q = q_values(target_q_params, next_obs, next_action).min(axis=0)
        soft_value = next_q - get_alpha(log_alpha) * next_log_prob
        target = jax.lax.stop_gradient(reward + config.gamma * (1.0 - terminated) * soft_value)
        q = q_values(q_params, obs, action)
        loss = ((q - target) ** 2).mean(axis=1).sum()  # sum of the two critics' MSEs
        return loss, q.mean()

    def actor_loss_fn(actor_params, q_params, log_alpha, obs, key):
        mean, log_std = actor.apply(actor_params, obs)
        action, log_prob = sample_action(key, mean, log_std, low, high)
        q = q_values(q_params, obs, action).min(axis=0)
        loss = (get_alpha(log_alpha) * log_prob - q).mean()
        return loss, log_prob

    def alpha_loss_fn(log_alpha, log_prob):
        # eq. 18 on log α (as SpinningUp / SB3): the gradient pushes the entropy towards the target.
        return -(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()

    def gradient_step(state: TrainState, key):
        sample_key, q_key, actor_key = jax.random.split(key, 3)
        batch = replay.sample(state.buffer, sample_key, config.batch_size)
        # UPDATE CRITICS
        (q_loss, q_mean), q_grads = jax.value_and_grad(q_loss_fn, has_aux=True)(
            state.q_params, state.target_q_params, state.actor_params, state.log_alpha, batch, q_key)
        q_updates, q_opt = q_tx.update(q_grads, state.q_opt, state.q_params)
        q_params = optax.apply_updates(state.q_params, q_updates)
        # UPDATE ACTOR
        (actor_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor_params, q_params, state.log_alpha, batch[0], actor_key)
        actor_updates, actor_opt = actor_tx.update(actor_grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, actor_updates)
        # UPDATE TEMPERATURE
        if config.autotune:
            alpha_loss, alpha_grad = jax.value_and_grad(alpha_loss_fn)(state.log_alpha, log_prob)
            alpha_update, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt, state.log_alpha)
            log_alpha = optax.apply_updates(state.log_alpha, alpha_update)
        else:
            alpha_loss, alpha_opt, log_alpha = jnp.float32(0.0), state.alpha_opt, state.log_alpha
        # UPDATE TARGET NETWORKS
        target_q_params = optax.incremental_update(q_params, state.target_q_params, config.tau)
        state = state._replace(actor_params=actor_params, q_params=q_params, target_q_params=target_q_params,
                               log_alpha=log_alpha, actor_opt=actor_opt, q_opt=q_opt, alpha_opt=alpha_opt)
        metrics = {"q_loss": q_loss, "actor_loss": actor_loss, "alpha_loss": alpha_loss, "q_mean": q_mean,
                   "entropy": -log_prob.mean(), "alpha": get_alpha(log_alpha)}
        return state, metrics

    def update(state: TrainState, iteration):
        # COLLECT: one step of every env (uniform random actions until learning_starts)
        key, noise_key, step_key, learn_key = jax.random.split(state.key, 4)
        rho = config.noise_correlation
        noise = rho * state.noise + jnp.sqrt(1.0 - rho ** 2) * jax.random.normal(noise_key, state.noise.shape)
        mean, log_std = actor.apply(state.actor_params, state.obs)
        policy_action = squash(mean + jnp.exp(log_std) * noise, low, high)
        # Uniform on [low, high] per step (the normal CDF of a standard normal is uniform), and as
        # correlated in time as the policy's noise.
        random_action = low + (high - low) * norm.cdf(noise)
        warmup = iteration * config.num_envs < config.learning_starts
        action = jnp.where(warmup, random_action, policy_action)
        next_obs, env_state, reward, terminated, _, info = step_envs(step_key, state.env_state, action)
        # STORE: the true next state (pre-reset on truncation); only termination stops bootstrapping
        final_obs = info["final_observation"].reshape((config.num_envs, obs_dim))
        buffer = replay.add(state.buffer, Transition(state.obs, action, reward.astype(jnp.float32), final_obs,
                                                     terminated.astype(jnp.float32)))
        state = state._replace(buffer=buffer, env_state=env_state, obs=next_obs.reshape((config.num_envs, obs_dim)),
                               noise=noise, key=key)

        # UPDATE NETWORKS: gradient_steps updates once learning has started. ``iteration`` is an
        # unbatched scan input, so under vmap this stays a real branch (no wasted updates).
        def learn(state):
            state, metrics = jax.lax.scan(gradient_step, state, jax.random.split(learn_key, config.gradient_steps))
            return state, {k: v.mean() for k, v in metrics.items()}

        def wait(state):  # no update yet: losses are undefined (NaN, written as null)
            nan = jnp.float32(jnp.nan)
            return state, {"q_loss": nan, "actor_loss": nan, "alpha_loss": nan, "q_mean": nan, "entropy": nan,
                           "alpha": get_alpha(state.log_alpha)}

        learning = (iteration + 1) * config.num_envs > config.learning_starts
        state, metrics = jax.lax.cond(learning, learn, wait, state)
        metrics.update(episode_metrics(info))
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

    main(Config, make_train, algorithm="sac")
