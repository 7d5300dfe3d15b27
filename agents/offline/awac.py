"""Advantage-Weighted Actor-Critic, offline phase (Nair, Gupta, Dalal & Levine 2020, "AWAC:
Accelerating Online Reinforcement Learning with Offline Datasets").

Algorithm 1 of the paper, trained on the dataset only:

* twin critics Q_1, Q_2 trained by TD (eq. 9) towards r + γ (1 − terminated) min_i Q̄_i(s', a'),
  a' ~ π(·|s'), with Polyak-averaged target critics (the SAC-style critic of the paper's
  implementation, without entropy term, as in CORL's ``awac.py``). Truncated transitions bootstrap
  (``next_observations`` is the true next state); only terminations stop the bootstrap;
* the actor by advantage-weighted maximum likelihood (eq. 13),
  L_π = −E[ exp(A(s, a) / λ) log π(a|s) ], A(s, a) = min_i Q_i(s, a) − min_i Q_i(s, ã), ã ~ π(·|s)
  (a one-sample estimate of V^π(s)), with the weights clipped at ``exp_adv_max`` (100).

The policy is a Gaussian on actions rescaled to [-1, 1], with a state-independent log-std clipped
to [-20, 2]; sampled actions are clipped to [-1, 1], and evaluation takes the mean (clipped to the
env's bounds). Box actions only.

Defaults follow CORL's ``algorithms/offline/awac.py`` (Tarasov et al. 2022, "CORL: Research-oriented
Deep Offline Reinforcement Learning Library"), whose D4RL numbers use the paper's λ = 1: Adam lr 3e-4
for actor and critics, batch 256, three hidden layers of 256 ReLU units in actor and critics, γ 0.99,
τ 0.005, λ 1.0, exp-advantage clip 100, 1M gradient steps, observations standardized with the
dataset's mean and std, raw rewards.

Run:  python agents/offline/awac.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
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

from jaxrl import data as data_lib
from jaxrl import envs
from jaxrl.config import require_positive, require, require_unit_interval
from jaxrl.trainer import Trainer

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # clip of the policy's state-independent log-std (CORL)


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id the dataset was collected on; must have a Box action space."""
    num_updates: int = 1_000_000
    """Gradient updates per run (each updates the critics, then the actor)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin Q-networks."""
    batch_size: int = 256
    """Transitions per gradient update, sampled uniformly from the dataset."""
    hidden_size: int = 256
    """Width of the hidden layers of actor and critics."""
    num_layers: int = 3
    """Hidden layers of actor and critics."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target Q-networks."""
    awac_lambda: float = 1.0
    """Temperature λ of the advantage weights exp(A / λ) (eq. 13); smaller is greedier."""
    exp_adv_max: float = 100.0
    """Clip of the exponentiated advantage weights."""
    normalize_observations: bool = True
    """Standardize observations with the dataset's mean and std (as CORL does)."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """ReLU MLP with ``num_layers`` hidden layers and a linear output (PyTorch-like default init)."""

    out_dim: int
    hidden_size: int = 256
    num_layers: int = 3

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(self.out_dim)(x)


class Actor(nn.Module):
    """Gaussian policy on [-1, 1]-scaled actions: (mean, state-independent log-std)."""

    action_dim: int
    hidden_size: int = 256
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs):
        mean = MLP(self.action_dim, self.hidden_size, self.num_layers)(obs)
        log_std = self.param("log_std", constant(0.0), (self.action_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class QNetwork(nn.Module):
    """Q(s, a); two independent copies are made by vmapping ``init`` over keys."""

    hidden_size: int = 256
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs, action):
        return MLP(1, self.hidden_size, self.num_layers)(jnp.concatenate([obs, action], axis=-1))[..., 0]


def gaussian_log_prob(mean, log_std, action):
    """log N(action; mean, exp(log_std)²), summed over action dimensions."""
    z = (action - mean) / jnp.exp(log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)


def sample_action(key, mean, log_std):
    """A policy sample, clipped to the [-1, 1] action box (as CORL's actor does)."""
    return jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), -1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    critic_params: dict          # both critics, stacked on a leading axis of 2
    target_critic_params: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    key: jax.Array


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "actor_lr", "critic_lr", "batch_size", "hidden_size", "num_layers",
                     "awac_lambda", "exp_adv_max")
    require_unit_interval(config, "gamma")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the AWAC trainer on ``dataset``. ``env``/``env_params`` replace the env of ``config.env``
    when given: an env that needs constructor arguments, or ``jaxrl.envs.SpacesOnly`` for a D4RL/Minari
    dataset from a simulator gymnax does not have."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "AWAC")
    data_lib.check_compatible(dataset, config.env, env, env_params, "AWAC")
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs = np.asarray(dataset.observations, np.float64).reshape(dataset.size, -1)
    if config.normalize_observations:
        obs_mean, obs_std = jnp.asarray(obs.mean(0), jnp.float32), jnp.asarray(obs.std(0) + 1e-3, jnp.float32)
    else:
        obs_mean, obs_std = jnp.zeros(obs_dim), jnp.ones(obs_dim)

    actor = Actor(action_dim, config.hidden_size, config.num_layers)
    critic = QNetwork(config.hidden_size, config.num_layers)
    actor_tx = optax.adam(config.actor_lr)
    critic_tx = optax.adam(config.critic_lr)

    def prep_obs(x):
        return (x.reshape((x.shape[0], -1)) - obs_mean) / obs_std

    def to_unit(action):
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, actor_key, critic_key = jax.random.split(key, 3)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        critic_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(critic_key), dummy_obs,
                                                                       dummy_action)
        return TrainState(actor_params, critic_params, critic_params, actor_tx.init(actor_params),
                          critic_tx.init(critic_params), key)

    def min_q(params, obs, action):
        return jax.vmap(critic.apply, in_axes=(0, None, None))(params, obs, action).min(0)

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key, next_key, pi_key = jax.random.split(state.key, 4)
        batch = data_lib.sample_batch(data, sample_key, config.batch_size)
        obs, next_obs = prep_obs(batch.observations), prep_obs(batch.next_observations)
        action = to_unit(batch.actions)

        # UPDATE CRITICS: TD towards min_i Q̄_i(s', a'), a' ~ π(·|s'); no bootstrap past a termination
        next_action = sample_action(next_key, *actor.apply(state.actor_params, next_obs))
        target = batch.rewards + config.gamma * (1.0 - batch.terminations) * min_q(
            state.target_critic_params, next_obs, next_action)

        def critic_loss_fn(params):
            q = jax.vmap(critic.apply, in_axes=(0, None, None))(params, obs, action)
            return ((q - target) ** 2).mean(1).sum(), q

        (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic_params)
        updates, critic_opt = critic_tx.update(grads, state.critic_opt, state.critic_params)
        critic_params = optax.apply_updates(state.critic_params, updates)

        # UPDATE ACTOR: advantage-weighted maximum likelihood of the dataset actions (eq. 13)
        mean, log_std = actor.apply(state.actor_params, obs)
        v = min_q(critic_params, obs, sample_action(pi_key, mean, log_std))
        advantage = min_q(critic_params, obs, action) - v
        weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(advantage / config.awac_lambda), config.exp_adv_max))

        def actor_loss_fn(params):
            mean, log_std = actor.apply(params, obs)
            return -(weights * gaussian_log_prob(mean, log_std, action)).mean()

        actor_loss, grads = jax.value_and_grad(actor_loss_fn)(state.actor_params)
        updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)

        # UPDATE TARGETS
        target_critic_params = optax.incremental_update(critic_params, state.target_critic_params, config.tau)
        metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "q_mean": q.mean(),
                   "advantage_mean": advantage.mean(), "weight_mean": weights.mean()}
        return TrainState(actor_params, critic_params, target_critic_params, actor_opt, critic_opt, key), metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the policy mean, rescaled and clipped to the env's bounds."""
        mean, _ = actor.apply(state.actor_params, prep_obs(obs))
        return 0.5 * (high + low) + 0.5 * (high - low) * jnp.clip(mean, -1.0, 1.0)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=dataset)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="awac", offline=True)
