"""ReBRAC (Tarasov et al. 2023, "Revisiting the Minimalist Approach to Offline Reinforcement Learning").

TD3+BC (Fujimoto & Gu 2021) with the design choices that the paper finds matter (Sec. 3-4):

* decoupled behaviour-cloning penalties: the actor minimizes
  β_actor ‖π(s) − a‖² − λ min_j Q_j(s, π(s)), with λ = 1 / mean|min_j Q_j(s, π(s))| held constant
  in the gradient (``normalize_q``), and the critic's target subtracts a penalty on the target
  action, y = r + γ (1 − terminated) (min_j Q̄_j(s', ã') − β_critic ‖ã' − a'‖²), where
  ã' = clip(π̄(s') + clip(ε, −c, c), −1, 1) and a' is the action the dataset takes at s' (the next
  row of the episode's stream);
* LayerNorm after every hidden layer of the critics (optionally of the actor);
* deeper networks (3 hidden layers of 256) and a larger batch (1024) with a larger learning rate.

TD3's delayed updates stay: the actor and the target networks are updated every ``policy_freq``
critic updates. Only a real termination stops the bootstrap. A transition cut by a time limit has
no dataset action at its next state (the next row starts another episode), so its critic penalty
is dropped (CORL's loader drops such transitions altogether).

Actions are trained in [-1, 1] (the env's Box bounds mapped linearly; D4RL's bounds are ±1) and
mapped back in ``act``. Defaults are the paper's general hyperparameters (its appendix table, also
CORL's ``rebrac.py``): Adam lr 1e-3 for actor and critic, batch 1024, γ 0.99, τ 5e-3, policy noise
0.2, noise clip 0.5, policy frequency 2, 3 hidden layers of 256 ReLU units, LayerNorm in the critic
only, Q normalization on, no state or reward normalization, 1M gradient updates. Initialization
follows the paper's code: PyTorch-style fan-in uniform kernels, hidden biases 0.1, output layers
uniform in ±1e-3 (actor) and ±3e-3 (critic).

The BC coefficients are tuned per dataset in the paper (β_actor from 0.0005 to 1, β_critic from 0 to
0.5). Our defaults, β_actor = β_critic = 0.1, sit inside that grid; CORL's code defaults are 1.0 and
1.0. Pass ``--actor-bc-coef``/``--critic-bc-coef`` (or ``--sweep actor_bc_coef=...``) per dataset.

Run:  python agents/offline/rebrac.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
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
    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the twin critics."""
    batch_size: int = 1024
    """Transitions per gradient update, sampled uniformly (with replacement) from the dataset."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 5e-3
    """Polyak averaging rate of the target actor and critics."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (in [-1, 1] action units)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise (in [-1, 1] action units)."""
    policy_freq: int = 2
    """Update the actor and the target networks once every this many critic updates."""
    actor_bc_coef: float = 0.1
    """β_actor: weight of ‖π(s) − a‖² in the actor loss (the paper tunes it per dataset)."""
    critic_bc_coef: float = 0.1
    """β_critic: weight of ‖ã' − a'‖² subtracted from the target Q (the paper tunes it per dataset)."""
    normalize_q: bool = True
    """Divide the actor's Q term by mean|Q| (TD3+BC's λ with α = 1)."""
    normalize_states: bool = False
    """Standardize observations by the dataset's mean and std (std + 1e-3)."""
    hidden_size: int = 256
    """Width of the hidden layers of the actor and of each critic."""
    actor_layers: int = 3
    """Hidden layers of the actor."""
    critic_layers: int = 3
    """Hidden layers of each critic."""
    actor_layernorm: bool = False
    """LayerNorm after every hidden layer of the actor."""
    critic_layernorm: bool = True
    """LayerNorm after every hidden layer of the critics."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
fan_in_uniform = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
"""U(−1/√fan_in, 1/√fan_in): PyTorch's default ``Linear`` kernel initialization."""


def uniform(bound: float):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def mlp_torso(x, hidden_size: int, layers: int, layernorm: bool):
    """Dense -> ReLU -> (LayerNorm), ``layers`` times (inside an ``nn.compact`` method)."""
    for _ in range(layers):
        x = nn.relu(nn.Dense(hidden_size, kernel_init=fan_in_uniform, bias_init=nn.initializers.constant(0.1))(x))
        if layernorm:
            x = nn.LayerNorm()(x)
    return x


class Actor(nn.Module):
    """Deterministic policy: flattened observation -> action in [-1, 1] (tanh)."""

    action_dim: int
    hidden_size: int = 256
    layers: int = 3
    layernorm: bool = False

    @nn.compact
    def __call__(self, obs):
        x = mlp_torso(obs, self.hidden_size, self.layers, self.layernorm)
        return jnp.tanh(nn.Dense(self.action_dim, kernel_init=uniform(1e-3), bias_init=uniform(1e-3))(x))


class Critic(nn.Module):
    """Q(s, a) on the flattened observation and the [-1, 1] action; two copies by vmapping ``init``."""

    hidden_size: int = 256
    layers: int = 3
    layernorm: bool = True

    @nn.compact
    def __call__(self, obs, action):
        x = mlp_torso(jnp.concatenate([obs, action], axis=-1), self.hidden_size, self.layers, self.layernorm)
        return nn.Dense(1, kernel_init=uniform(3e-3), bias_init=uniform(3e-3))(x)[..., 0]


def make_networks(config: Config, action_dim: int) -> tuple[Actor, Critic]:
    """The actor and the critic module (``state.critic_params`` holds two critics on a leading axis)."""
    return (Actor(action_dim, config.hidden_size, config.actor_layers, config.actor_layernorm),
            Critic(config.hidden_size, config.critic_layers, config.critic_layernorm))


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
    require_positive(config, "num_updates", "actor_lr", "critic_lr", "batch_size", "policy_freq", "hidden_size",
                     "actor_layers", "critic_layers")
    require_unit_interval(config, "gamma")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    for name in ("policy_noise", "noise_clip", "actor_bc_coef", "critic_bc_coef"):
        value = getattr(config, name)
        require(value >= 0, f"{name} must be >= 0, got {value}")


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the ReBRAC trainer on ``dataset``. ``env``/``env_params`` replace ``config.env`` when
    given (an env that needs constructor arguments, e.g. ``envs.make("Probe-Action", continuous=True)``)."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "ReBRAC")
    data_lib.check_compatible(dataset, config.env, env, env_params, "ReBRAC")
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    mid, half = ((high + low) / 2).reshape(-1), ((high - low) / 2).reshape(-1)
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    actor, critic = make_networks(config, action_dim)
    actor_tx = optax.adam(config.actor_lr)
    critic_tx = optax.adam(config.critic_lr)
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

    def sample(data: data_lib.Dataset, key):
        """A batch and, per transition, the dataset's action at the next state with a 0/1 flag of
        whether it exists (not at an episode's end, where the next row belongs to another episode)."""
        n = data.rewards.shape[0]
        idx = jax.random.randint(key, (config.batch_size,), 0, n)
        has_next = 1.0 - jnp.maximum(data.terminations[idx], data.truncations[idx])
        next_actions = to_unit(data.actions[jnp.minimum(idx + 1, n - 1)])
        return (normalize(data.observations[idx]), to_unit(data.actions[idx]), data.rewards[idx],
                normalize(data.next_observations[idx]), data.terminations[idx], next_actions, has_next)

    def critic_loss_fn(critic_params, state: TrainState, batch, key):
        obs, actions, rewards, next_obs, terminated, next_data_actions, has_next = batch
        # Target policy smoothing, then the critic's BC penalty on the smoothed target action.
        noise = jnp.clip(config.policy_noise * jax.random.normal(key, actions.shape), -config.noise_clip,
                         config.noise_clip)
        next_actions = jnp.clip(actor.apply(state.actor_target, next_obs) + noise, -1.0, 1.0)
        penalty = has_next * ((next_actions - next_data_actions) ** 2).sum(-1)
        next_q = q_values(critic, state.critic_target, next_obs, next_actions).min(axis=0)
        next_q = next_q - config.critic_bc_coef * penalty
        target = jax.lax.stop_gradient(rewards + config.gamma * (1.0 - terminated) * next_q)
        q = q_values(critic, critic_params, obs, actions)
        loss = ((q - target) ** 2).mean(axis=1).sum()  # sum of the two critics' MSEs
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "critic_bc_penalty": penalty.mean()}

    def actor_loss_fn(actor_params, critic_params, obs, actions):
        pi = actor.apply(actor_params, obs)
        bc = ((pi - actions) ** 2).sum(-1)
        q = q_values(critic, critic_params, obs, pi).min(axis=0)
        lmbda = jax.lax.stop_gradient(1.0 / jnp.abs(q).mean()) if config.normalize_q else jnp.float32(1.0)
        loss = (config.actor_bc_coef * bc - lmbda * q).mean()
        return loss, {"actor_loss": loss, "bc_mse": bc.mean(), "lambda": lmbda}

    def update(state: TrainState, iteration, data: data_lib.Dataset):
        # SAMPLE A BATCH (from the data argument: shared by all vmapped seeds, never closed over)
        key, sample_key, noise_key = jax.random.split(state.key, 3)
        batch = sample(data, sample_key)

        # UPDATE CRITICS
        grads, critic_metrics = jax.grad(critic_loss_fn, has_aux=True)(state.critic_params, state, batch, noise_key)
        updates, critic_opt = critic_tx.update(grads, state.critic_opt, state.critic_params)
        state = state._replace(critic_params=optax.apply_updates(state.critic_params, updates),
                               critic_opt=critic_opt, key=key)

        # UPDATE ACTOR AND TARGETS every policy_freq critic updates (``iteration`` is an unbatched
        # scan input, so under vmap this stays a real branch)
        def actor_step(state: TrainState) -> TrainState:
            grads, metrics = jax.grad(actor_loss_fn, has_aux=True)(state.actor_params, state.critic_params,
                                                                   batch[0], batch[1])
            updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor_params)
            actor_params = optax.apply_updates(state.actor_params, updates)
            return state._replace(
                actor_params=actor_params, actor_opt=actor_opt, actor_metrics=metrics,
                actor_target=optax.incremental_update(actor_params, state.actor_target, config.tau),
                critic_target=optax.incremental_update(state.critic_params, state.critic_target, config.tau))

        state = jax.lax.cond(iteration % config.policy_freq == 0, actor_step, lambda s: s, state)
        return state, {**critic_metrics, **state.actor_metrics}

    def act(state: TrainState, obs, key):
        """Deterministic action: the actor's output mapped to the env's bounds."""
        pi = actor.apply(state.actor_params, normalize(obs))
        return (mid + half * pi).reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=dataset)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="rebrac", offline=True)
