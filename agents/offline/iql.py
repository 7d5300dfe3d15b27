"""Implicit Q-Learning (Kostrikov, Nair & Levine 2022, "Offline Reinforcement Learning with Implicit
Q-Learning", ICLR).

IQL never queries the critic at actions outside the dataset. Three losses, each one gradient step per
iteration, in the order of the paper's code:

* value, eq. (5): V(s) regresses the ``expectile`` τ of Q̄(s, a) over dataset actions,
  L_V = E[ |τ − 1(u < 0)| u² ] with u = Q̄(s, a) − V(s) and Q̄ the min of the twin target critics;
* policy extraction, eq. (7): advantage-weighted regression, L_π = −E[ exp(β (Q̄(s, a) − V(s))) log π(a|s) ]
  with the temperature β (``temperature``) and the exponentiated advantage clipped at ``exp_adv_max`` (100);
* critic, eq. (6): L_Q = E[ (r + γ (1 − terminated) V(s') − Q_i(s, a))² ] for both critics, then a
  Polyak update of the target critics. Truncated transitions bootstrap (their ``next_observations``
  is the true next state); only terminations stop the bootstrap.

Box actions use a Gaussian policy on actions rescaled to [-1, 1]: mean ``tanh(f(s))``, a
state-independent log-std (clipped to [-5, 2]); evaluation takes the mean, as in the paper's code
(``NormalTanhPolicy(state_dependent_std=False, tanh_squash_distribution=False)``). Discrete actions
use a categorical policy (logits) and Q-networks with one output per action; the same three losses
apply with log π(a|s) the log-softmax of the dataset action, and evaluation takes the argmax.

Defaults are the paper's D4RL locomotion settings (Appendix, Table 5 and the official code):
Adam lr 3e-4 for actor, critics and value; batch 256; two hidden layers of 256 ReLU units; γ 0.99;
τ (Polyak) 0.005; expectile 0.7; temperature 3.0; cosine decay of the actor learning rate over
training; 1M gradient steps; rewards scaled by T / (max episode return − min episode return) of
the dataset, with T the env's episode length (the code's locomotion reward normalization, where T is
1000; with T = the env's own episode length the per-step reward scale, which the temperature is
tuned against, is the same for shorter episodes such as Pendulum's 200 steps); set
``normalize_reward`` off for raw rewards. Observations are used raw (``normalize_observations``
off), as in the paper's code.

Run:  python agents/offline/iql.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant, he_uniform, variance_scaling

from jaxrl import data as data_lib
from jaxrl import envs
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # clip of the policy's state-independent log-std (paper's code)


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id the dataset was collected on (gymnax or this project's envs/)."""
    num_updates: int = 1_000_000
    """Gradient updates per run (each updates value, actor and critics once)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy (start value of the cosine decay)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin Q-networks."""
    value_lr: float = 3e-4
    """Adam learning rate of the value network."""
    batch_size: int = 256
    """Transitions per gradient update, sampled uniformly from the dataset."""
    hidden_size: int = 256
    """Width of the hidden layers of actor, critics and value network."""
    num_layers: int = 2
    """Hidden layers of every network."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target Q-networks."""
    expectile: float = 0.7
    """Expectile τ of the value loss (eq. 5): 0.5 is a mean (SARSA-like), → 1 approaches max_a Q."""
    temperature: float = 3.0
    """Inverse temperature β of advantage-weighted regression (eq. 7); 0 is behaviour cloning."""
    exp_adv_max: float = 100.0
    """Clip of the exponentiated advantage weights."""
    actor_cosine_decay: bool = True
    """Decay the actor learning rate to 0 with a cosine schedule over num_updates."""
    normalize_reward: bool = True
    """Scale rewards by episode length / (max − min episode return in the dataset), as the paper's code does on
    locomotion (1000-step episodes: 1000 / spread)."""
    normalize_observations: bool = False
    """Standardize observations with the dataset's mean and std (CORL does; the paper's code does not)."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """ReLU MLP with a linear output of ``out_dim`` units; the output layer's initial weights are
    scaled by ``out_scale``. (Not orthogonal init as in the paper's code: a vmapped orthogonal
    initializer calls jaxlib's batched CPU QR, which can deadlock on small CPUs.)"""

    out_dim: int
    hidden_size: int = 256
    num_layers: int = 2
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.relu(nn.Dense(self.hidden_size, kernel_init=he_uniform())(x))
        return nn.Dense(self.out_dim, kernel_init=variance_scaling(self.out_scale, "fan_avg", "uniform"))(x)


class Actor(nn.Module):
    """Box actions: (tanh mean in [-1, 1], state-independent log-std). Discrete: (logits, None)."""

    action_dim: int
    discrete: bool
    hidden_size: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.action_dim, self.hidden_size, self.num_layers, out_scale=0.01)(obs)
        if self.discrete:
            return out, None
        log_std = self.param("log_std", constant(0.0), (self.action_dim,))
        return jnp.tanh(out), jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class QNetwork(nn.Module):
    """Q(s, a): Box actions are an input; discrete actions pick one of ``action_dim`` outputs."""

    action_dim: int
    discrete: bool
    hidden_size: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs, action):
        if self.discrete:
            q_all = MLP(self.action_dim, self.hidden_size, self.num_layers)(obs)
            return jnp.take_along_axis(q_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        return MLP(1, self.hidden_size, self.num_layers)(jnp.concatenate([obs, action], axis=-1))[..., 0]


class ValueNetwork(nn.Module):
    """V(s)."""

    hidden_size: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs):
        return MLP(1, self.hidden_size, self.num_layers)(obs)[..., 0]


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def expectile_loss(diff, expectile):
    """Asymmetric squared loss of eq. (5): |τ − 1(u < 0)| u², elementwise (``expectile`` may be traced)."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff ** 2


def log_prob(actor_out, log_std, action, discrete: bool):
    """log π(a|s): categorical on the logits, or a diagonal Gaussian (summed over action dims)."""
    if discrete:
        logp_all = jax.nn.log_softmax(actor_out)
        return jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    z = (action - actor_out) / jnp.exp(log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)


def awr_weights(advantage, temperature, exp_adv_max):
    """exp(β A) clipped above at ``exp_adv_max`` (eq. 7), no gradient."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * advantage), exp_adv_max))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    critic_params: dict          # both critics, stacked on a leading axis of 2
    target_critic_params: dict
    value_params: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    value_opt: optax.OptState
    key: jax.Array


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "actor_lr", "critic_lr", "value_lr", "batch_size", "hidden_size",
                     "num_layers", "exp_adv_max")
    require_unit_interval(config, "gamma")
    require_unit_interval(config, "expectile", closed=False)
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.temperature >= 0, f"temperature must be >= 0, got {config.temperature}")


def dataset_statistics(dataset: data_lib.Dataset, config: Config, episode_length: int):
    """Host-side constants from the dataset: observation mean/std and the reward scale
    ``episode_length / (max − min episode return)`` (1 when the returns do not spread)."""
    obs = np.asarray(dataset.observations, np.float64).reshape(dataset.size, -1)
    if config.normalize_observations:
        mean, std = obs.mean(0), obs.std(0) + 1e-3
    else:
        mean, std = np.zeros(obs.shape[1]), np.ones(obs.shape[1])
    scale = 1.0
    if config.normalize_reward:
        returns = data_lib.episode_returns(dataset)
        spread = float(returns.max() - returns.min()) if returns.size else 0.0
        scale = episode_length / spread if spread > 1e-6 else 1.0
    return jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32), scale


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the IQL trainer on ``dataset``. ``env``/``env_params`` replace the env of ``config.env``
    when given: an env that needs constructor arguments, or ``jaxrl.envs.SpacesOnly`` for a D4RL/Minari
    dataset from a simulator gymnax does not have."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    data_lib.check_compatible(dataset, config.env, env, env_params, "IQL")
    discrete = envs.is_discrete(env, env_params)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    if discrete:
        action_dim = int(env.action_space(env_params).n)
        low = high = None
    else:
        low, high = envs.action_bounds(env, env_params)
        action_dim = int(np.prod(low.shape))
    episode_length = int(env_params.max_steps_in_episode)
    obs_mean, obs_std, reward_scale = dataset_statistics(dataset, config, episode_length)

    actor = Actor(action_dim, discrete, config.hidden_size, config.num_layers)
    critic = QNetwork(action_dim, discrete, config.hidden_size, config.num_layers)
    value = ValueNetwork(config.hidden_size, config.num_layers)
    actor_lr = (optax.cosine_decay_schedule(config.actor_lr, config.num_updates)
                if config.actor_cosine_decay else config.actor_lr)
    actor_tx = optax.adam(actor_lr)
    critic_tx = optax.adam(config.critic_lr)
    value_tx = optax.adam(config.value_lr)

    def prep_obs(obs):
        return (obs.reshape((obs.shape[0], -1)) - obs_mean) / obs_std

    def to_unit(action):
        """Dataset actions in env units -> the policy's [-1, 1] (identity for discrete actions)."""
        if discrete:
            return action
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, actor_key, critic_key, value_key = jax.random.split(key, 4)
        obs = jnp.zeros((1, obs_dim))
        action = jnp.zeros((1,), jnp.int32) if discrete else jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, obs)
        critic_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(critic_key), obs, action)
        value_params = value.init(value_key, obs)
        return TrainState(actor_params, critic_params, critic_params, value_params, actor_tx.init(actor_params),
                          critic_tx.init(critic_params), value_tx.init(value_params), key)

    def twin_q(params, obs, action):
        """Q-values of both critics, shape (2, batch)."""
        return jax.vmap(critic.apply, in_axes=(0, None, None))(params, obs, action)

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key = jax.random.split(state.key)
        batch = data_lib.sample_batch(data, sample_key, config.batch_size)
        obs, next_obs = prep_obs(batch.observations), prep_obs(batch.next_observations)
        action = to_unit(batch.actions)
        reward = batch.rewards * reward_scale
        target_q = twin_q(state.target_critic_params, obs, action).min(0)

        # UPDATE VALUE (eq. 5): expectile regression of V(s) on min_i Q̄_i(s, a)
        def value_loss_fn(params):
            v = value.apply(params, obs)
            return expectile_loss(target_q - v, config.expectile).mean(), v

        (value_loss, v), grads = jax.value_and_grad(value_loss_fn, has_aux=True)(state.value_params)
        updates, value_opt = value_tx.update(grads, state.value_opt, state.value_params)
        value_params = optax.apply_updates(state.value_params, updates)

        # UPDATE ACTOR (eq. 7): advantage-weighted regression with the new value
        advantage = target_q - value.apply(value_params, obs)
        weights = awr_weights(advantage, config.temperature, config.exp_adv_max)

        def actor_loss_fn(params):
            actor_out, log_std = actor.apply(params, obs)
            return -(weights * log_prob(actor_out, log_std, action, discrete)).mean()

        actor_loss, grads = jax.value_and_grad(actor_loss_fn)(state.actor_params)
        updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)

        # UPDATE CRITICS (eq. 6): TD targets from V(s'), bootstrapping through truncation only
        td_target = reward + config.gamma * (1.0 - batch.terminations) * value.apply(value_params, next_obs)

        def critic_loss_fn(params):
            q = twin_q(params, obs, action)
            return ((q - td_target) ** 2).mean(1).sum(), q

        (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic_params)
        updates, critic_opt = critic_tx.update(grads, state.critic_opt, state.critic_params)
        critic_params = optax.apply_updates(state.critic_params, updates)
        target_critic_params = optax.incremental_update(critic_params, state.target_critic_params, config.tau)

        metrics = {"value_loss": value_loss, "actor_loss": actor_loss, "critic_loss": critic_loss,
                   "q_mean": q.mean(), "v_mean": v.mean(), "advantage_mean": advantage.mean(),
                   "weight_mean": weights.mean()}
        return TrainState(actor_params, critic_params, target_critic_params, value_params, actor_opt, critic_opt,
                          value_opt, key), metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the argmax of the logits, or the policy mean rescaled to the env's bounds."""
        actor_out, _ = actor.apply(state.actor_params, prep_obs(obs))
        if discrete:
            return jnp.argmax(actor_out, axis=-1)
        return 0.5 * (high + low) + 0.5 * (high - low) * actor_out

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=dataset)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="iql", offline=True)
