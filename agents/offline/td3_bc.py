"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 (Fujimoto et al. 2018) trained on a fixed dataset, with two changes (Sec. 5):

* the actor maximizes λ Q(s, π(s)) − (π(s) − a)², a behaviour-cloning term towards the dataset
  action a, with λ = α / (mean over the batch of |Q(s, π(s))|) held constant in the gradient
  (eq. 3; this makes α independent of the reward scale);
* observations are standardized by the dataset's mean and std (std + 1e-3).

The TD3 parts: twin critics with the clipped double-Q target
r + γ (1 − terminated) min_j Q̄_j(s', clip(π̄(s') + clip(ε, −c, c), −1, 1)), ε ~ N(0, σ²) (target
policy smoothing); the actor and all target networks are updated every ``policy_freq`` critic
updates (delayed policy updates), targets by Polyak averaging. Only a real termination stops the
bootstrap: a transition cut by a time limit bootstraps from its true next state.

Actions are trained in [-1, 1] (the env's Box bounds mapped linearly; with D4RL's bounds of ±1 this
is the env's own scale, so the noise and the BC term have the paper's meaning) and mapped back in
``act``. Defaults are the paper's (Sec. 5 and the hyperparameter table of its appendix): α 2.5,
Adam lr 3e-4 for actor and critic, batch 256, γ 0.99, τ 0.005, policy noise 0.2, noise clip 0.5,
policy frequency 2, two hidden layers of 256 ReLU units, 1M gradient updates, state normalization on.

Run:  python agents/offline/td3_bc.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import data as data_lib
from jaxrl import envs
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id the dataset was collected in; must have a Box action space."""
    num_updates: int = 1_000_000
    """Gradient updates of the critics per run (the actor gets num_updates / policy_freq)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    batch_size: int = 256
    """Transitions per gradient update, sampled uniformly (with replacement) from the dataset."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target actor and critics."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (in [-1, 1] action units)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise (in [-1, 1] action units)."""
    policy_freq: int = 2
    """Update the actor and the target networks once every this many critic updates."""
    alpha: float = 2.5
    """α of λ = α / mean|Q|: weight of the Q term against the BC term in the actor loss (eq. 3)."""
    normalize_states: bool = True
    """Standardize observations by the dataset's mean and std (Sec. 5)."""
    hidden_size: int = 256
    """Width of the two hidden layers of the actor and of each critic."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
def dense(features: int, fan_in: int) -> nn.Dense:
    """A Dense layer with PyTorch's default ``Linear`` initialization, as in the paper's code: kernel
    and bias uniform in ±1/√fan_in. (With zero biases, an all-zero observation gives Q ≈ 0 for the
    whole batch at the start, and λ = α / mean|Q| starts in the thousands.)"""
    bound = 1.0 / np.sqrt(fan_in)
    init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)  # noqa: E731
    return nn.Dense(features, kernel_init=init, bias_init=init)


class Actor(nn.Module):
    """Deterministic policy: flattened observation -> action in [-1, 1] (tanh)."""

    action_dim: int
    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs):
        x = obs
        for _ in range(2):
            x = nn.relu(dense(self.hidden_size, x.shape[-1])(x))
        return jnp.tanh(dense(self.action_dim, x.shape[-1])(x))


class Critic(nn.Module):
    """Q(s, a) on the flattened observation and the [-1, 1] action; two copies by vmapping ``init``."""

    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        for _ in range(2):
            x = nn.relu(dense(self.hidden_size, x.shape[-1])(x))
        return dense(1, x.shape[-1])(x)[..., 0]


def make_networks(config: Config, action_dim: int) -> tuple[Actor, Critic]:
    """The actor and the critic module (``state.critic_params`` holds two critics on a leading axis)."""
    return Actor(action_dim, config.hidden_size), Critic(config.hidden_size)


def q_values(critic: Critic, critic_params, obs, action):
    """Both critics' Q(s, a): shape (2, batch); ``obs`` already normalized, ``action`` in [-1, 1]."""
    return jax.vmap(critic.apply, in_axes=(0, None, None))(critic_params, obs, action)


def state_statistics(observations, enabled: bool, eps: float = 1e-3):
    """(mean, std + eps) of the flattened observations, or (0, 1) when normalization is off."""
    obs = np.asarray(observations, np.float32).reshape((observations.shape[0], -1))
    if not enabled:
        return np.zeros(obs.shape[1], np.float32), np.ones(obs.shape[1], np.float32)
    return obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    actor_target: dict
    critic_params: dict        # both critics, stacked on a leading axis of 2
    critic_target: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    key: jax.Array
    actor_metrics: dict        # of the last actor update (the actor is updated every policy_freq steps)


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "actor_lr", "critic_lr", "batch_size", "policy_freq", "hidden_size")
    require_unit_interval(config, "gamma")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.policy_noise >= 0, f"policy_noise must be >= 0, got {config.policy_noise}")
    require(config.noise_clip >= 0, f"noise_clip must be >= 0, got {config.noise_clip}")
    require(config.alpha >= 0, f"alpha must be >= 0, got {config.alpha}")


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the TD3+BC trainer on ``dataset``. ``env``/``env_params`` replace ``config.env`` when
    given (an env that needs constructor arguments, e.g. ``envs.make("Probe-Action", continuous=True)``)."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "TD3+BC")
    data_lib.check_compatible(dataset, config.env, env, env_params, "TD3+BC")
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    mid, half = ((high + low) / 2).reshape(-1), ((high - low) / 2).reshape(-1)
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    actor, critic = make_networks(config, action_dim)
    actor_tx = optax.adam(config.actor_lr)
    critic_tx = optax.adam(config.critic_lr)
    # Small host-side constants: the dataset's observation statistics.
    obs_mean, obs_std = state_statistics(dataset.observations, config.normalize_states)

    def normalize(obs):
        return (obs.reshape((obs.shape[0], -1)) - obs_mean) / obs_std

    def to_unit(actions):
        return jnp.clip((actions.reshape((actions.shape[0], -1)) - mid) / half, -1.0, 1.0)

    def init(key) -> TrainState:
        key, actor_key, critic_key = jax.random.split(key, 3)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        critic_params = jax.vmap(critic.init, in_axes=(0, None, None))(
            jax.random.split(critic_key, 2), dummy_obs, dummy_action)
        nan = jnp.float32(jnp.nan)
        return TrainState(actor_params, actor_params, critic_params, critic_params, actor_tx.init(actor_params),
                          critic_tx.init(critic_params), key, {"actor_loss": nan, "bc_mse": nan, "lambda": nan})

    def critic_loss_fn(critic_params, state: TrainState, obs, actions, rewards, next_obs, terminated, key):
        # Target policy smoothing: clipped Gaussian noise on the target actor's action.
        noise = jnp.clip(config.policy_noise * jax.random.normal(key, actions.shape), -config.noise_clip,
                         config.noise_clip)
        next_actions = jnp.clip(actor.apply(state.actor_target, next_obs) + noise, -1.0, 1.0)
        next_q = q_values(critic, state.critic_target, next_obs, next_actions).min(axis=0)
        target = jax.lax.stop_gradient(rewards + config.gamma * (1.0 - terminated) * next_q)
        q = q_values(critic, critic_params, obs, actions)
        loss = ((q - target) ** 2).mean(axis=1).sum()  # sum of the two critics' MSEs
        return loss, q.mean()

    def actor_loss_fn(actor_params, critic_params, obs, actions):
        pi = actor.apply(actor_params, obs)
        q = critic.apply(jax.tree.map(lambda p: p[0], critic_params), obs, pi)  # Q_1, as in TD3
        lmbda = jax.lax.stop_gradient(config.alpha / jnp.abs(q).mean())
        bc_mse = ((pi - actions) ** 2).mean()
        loss = -lmbda * q.mean() + bc_mse
        return loss, {"actor_loss": loss, "bc_mse": bc_mse, "lambda": lmbda}

    def update(state: TrainState, iteration, data: data_lib.Dataset):
        # SAMPLE A BATCH (from the data argument: shared by all vmapped seeds, never closed over)
        key, sample_key, noise_key = jax.random.split(state.key, 3)
        batch = data_lib.sample_batch(data, sample_key, config.batch_size)
        obs, next_obs = normalize(batch.observations), normalize(batch.next_observations)
        actions = to_unit(batch.actions)

        # UPDATE CRITICS
        (critic_loss, q_mean), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
            state.critic_params, state, obs, actions, batch.rewards, next_obs, batch.terminations, noise_key)
        updates, critic_opt = critic_tx.update(grads, state.critic_opt, state.critic_params)
        state = state._replace(critic_params=optax.apply_updates(state.critic_params, updates),
                               critic_opt=critic_opt, key=key)

        # UPDATE ACTOR AND TARGETS every policy_freq critic updates (``iteration`` is an unbatched
        # scan input, so under vmap this stays a real branch)
        def actor_step(state: TrainState) -> TrainState:
            grads, metrics = jax.grad(actor_loss_fn, has_aux=True)(state.actor_params, state.critic_params, obs, actions)
            updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor_params)
            actor_params = optax.apply_updates(state.actor_params, updates)
            return state._replace(
                actor_params=actor_params, actor_opt=actor_opt, actor_metrics=metrics,
                actor_target=optax.incremental_update(actor_params, state.actor_target, config.tau),
                critic_target=optax.incremental_update(state.critic_params, state.critic_target, config.tau))

        state = jax.lax.cond(iteration % config.policy_freq == 0, actor_step, lambda s: s, state)
        return state, {"critic_loss": critic_loss, "q_mean": q_mean, **state.actor_metrics}

    def act(state: TrainState, obs, key):
        """Deterministic action: the actor's output mapped to the env's bounds."""
        pi = actor.apply(state.actor_params, normalize(obs))
        return (mid + half * pi).reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=dataset)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="td3_bc", offline=True)
