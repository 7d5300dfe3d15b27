"""Proximal Policy Optimization (Schulman et al. 2017, "Proximal Policy Optimization Algorithms").

Clipped surrogate objective (eq. 7), GAE(λ) advantages (Schulman et al. 2016, eq. 16), value loss
and entropy bonus (eq. 9), learning-rate annealing. Discrete actions use a categorical policy;
Box actions a Gaussian with a state-independent log-std, clipped to the env's bounds.

Defaults are PureJaxRL's ``ppo.py`` CartPole-v1 settings (Lu et al. 2022, "Discovered Policy
Optimisation"), which follow the PPO paper's Atari table (Table 5) scaled to classic control:
lr 2.5e-4 annealed, 4 envs x 128 steps, 4 epochs x 4 minibatches, γ 0.99, λ 0.95, clip 0.2,
entropy 0.01, value 0.5, grad-norm 0.5, tanh 64x64.

Run:  python agents/online/ppo.py --env CartPole-v1 --num-seeds 8
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

from jaxrl import envs
from jaxrl.config import require, require_divides, require_positive, require_unit_interval
from jaxrl.initializers import orthogonal
from jaxrl.trainer import Trainer
from jaxrl.wrappers import ClipAction, EpisodeStatistics, FlattenObservation, VectorEnv, episode_metrics


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    """Environment id (gymnax or this project's envs/)."""
    total_timesteps: int = 500_000
    """Env steps per run (over all parallel envs)."""
    lr: float = 2.5e-4
    """Adam learning rate (start value when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    num_envs: int = 4
    """Parallel envs per run."""
    num_steps: int = 128
    """Steps per env per rollout."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per epoch; num_envs * num_steps must divide by it."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_eps: float = 0.2
    """Clipping range of the probability ratio."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    hidden_size: int = 64
    """Width of the two hidden layers of actor and critic."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""
    normalize_advantages: bool = True
    """Standardize advantages per minibatch."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class ActorCritic(nn.Module):
    """Separate actor and critic MLPs; the actor returns logits (discrete) or a mean (continuous)."""

    action_dim: int
    discrete: bool
    hidden_size: int = 64
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        act = nn.tanh if self.activation == "tanh" else nn.relu

        def mlp(x, out_dim, out_scale):
            for _ in range(2):
                x = act(nn.Dense(self.hidden_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
            return nn.Dense(out_dim, kernel_init=orthogonal(out_scale), bias_init=constant(0.0))(x)

        actor_out = mlp(obs, self.action_dim, 0.01)
        value = mlp(obs, 1, 1.0)[..., 0]
        log_std = self.param("log_std", constant(0.0), (self.action_dim,)) if not self.discrete else None
        return actor_out, log_std, value


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


def sample_action(key, actor_out, log_std, discrete: bool):
    if discrete:
        return jax.random.categorical(key, actor_out)
    return actor_out + jnp.exp(log_std) * jax.random.normal(key, actor_out.shape)


# ----------------------------------------------------------------------------------------------
# Advantages
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array            # terminated or truncated: the episode ends after this step
    next_value: jax.Array      # V(s_{t+1}) of the pre-reset next state (info["final_observation"])


def gae_advantages(traj: Transition, gamma, gae_lambda):
    """GAE(λ) over a (time, env) trajectory, bootstrapping through truncation but not termination.

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t), with s'_t the true next state even when the
    episode was truncated (gymnax's ``final_observation``); A_t = δ_t + γλ (1 − done_t) A_{t+1}.
    Returns (advantages, value targets = advantages + values).
    """

    def backward(next_adv, t):
        delta = t.reward + gamma * (1.0 - t.terminated) * t.next_value - t.value
        adv = delta + gamma * gae_lambda * (1.0 - t.done) * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(traj.value[0]), traj, reverse=True)
    return advantages, advantages + traj.value


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config):
    env, env_params = envs.make(config.env)
    discrete = envs.is_discrete(env, env_params)
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    wrapped = EpisodeStatistics(flat)
    if not discrete:
        wrapped = ClipAction(wrapped)
    return env, env_params, wrapped, discrete


def validate(config: Config) -> None:
    require_positive(config, "lr", "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                     "hidden_size", "max_grad_norm")
    require_unit_interval(config, "gamma", "gae_lambda")
    require_positive(config, "clip_eps")
    require(config.ent_coef >= 0, f"ent_coef must be >= 0, got {config.ent_coef}")
    require(config.vf_coef >= 0, f"vf_coef must be >= 0, got {config.vf_coef}")
    require(config.activation in ("tanh", "relu"), f"activation must be 'tanh' or 'relu', got {config.activation!r}")
    require_divides("num_envs * num_steps", config.batch_size, "num_minibatches", config.num_minibatches)
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one rollout "
            f"(num_envs * num_steps = {config.batch_size})")


def make_train(config: Config, network: nn.Module | None = None) -> Trainer:
    """Build the PPO trainer. ``network`` replaces the default ``ActorCritic`` (same outputs:
    ``(logits or mean, log_std or None, value)``), e.g. to try another architecture in a notebook."""
    validate(config)
    env, env_params, wrapped, discrete = make_env(config)
    obs_shape = (int(np.prod(env.observation_space(env_params).shape)),)
    action_space = env.action_space(env_params)
    action_dim = action_space.n if discrete else int(np.prod(action_space.shape))
    if network is None:
        network = ActorCritic(action_dim, discrete, config.hidden_size, config.activation)
    minibatch_size = config.batch_size // config.num_minibatches

    def lr_schedule(count):
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / config.num_updates
        return config.lr * frac if config.anneal_lr else config.lr

    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr_schedule, eps=1e-5))

    vec_env = VectorEnv(wrapped, config.num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        params = network.init(net_key, jnp.zeros(obs_shape))
        obs, env_state = vec_env.reset(env_key, env_params)
        return TrainState(params, tx.init(params), env_state, obs, key)

    def loss_fn(params, batch: Transition, advantages, targets):
        actor_out, log_std, value = network.apply(params, batch.obs)
        log_prob, entropy = log_prob_and_entropy(actor_out, log_std, batch.action, discrete)
        # Clipped value loss, as in PPO2/PureJaxRL.
        value_clipped = batch.value + jnp.clip(value - batch.value, -config.clip_eps, config.clip_eps)
        value_loss = 0.5 * jnp.maximum((value - targets) ** 2, (value_clipped - targets) ** 2).mean()
        if config.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = jnp.exp(log_prob - batch.log_prob)
        surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * advantages)
        policy_loss = -surrogate.mean()
        entropy = entropy.mean()
        total = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        approx_kl = ((ratio - 1) - (log_prob - batch.log_prob)).mean()
        return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "approx_kl": approx_kl}

    def update(state: TrainState, _iteration):
        # COLLECT TRAJECTORIES
        def env_step(carry, _):
            params, env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actor_out, log_std, value = network.apply(params, obs)
            action = sample_action(act_key, actor_out, log_std, discrete)
            log_prob, _ = log_prob_and_entropy(actor_out, log_std, action, discrete)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, action, env_params)
            done = jnp.logical_or(terminated, truncated)
            transition = (obs, action, log_prob, value, reward, terminated.astype(jnp.float32),
                          done.astype(jnp.float32), info["final_observation"])
            return (params, env_state, next_obs, key), (transition, info)

        (params, env_state, obs, key), (traj, info) = jax.lax.scan(
            env_step, (state.params, state.env_state, state.obs, state.key), None, config.num_steps
        )
        final_obs = traj[-1]
        next_value = network.apply(params, final_obs)[2]
        traj = Transition(*traj[:-1], next_value=next_value)

        # CALCULATE ADVANTAGE
        advantages, targets = gae_advantages(traj, config.gamma, config.gae_lambda)

        # UPDATE NETWORK
        def update_epoch(carry, _):
            params, opt_state, key = carry
            key, perm_key = jax.random.split(key)
            perm = jax.random.permutation(perm_key, config.batch_size)
            flat = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), (traj, advantages, targets))
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), flat)

            def update_minibatch(carry, minibatch):
                params, opt_state = carry
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, *minibatch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            (params, opt_state), aux = jax.lax.scan(update_minibatch, (params, opt_state), shuffled)
            return (params, opt_state, key), aux

        (params, opt_state, key), aux = jax.lax.scan(
            update_epoch, (params, state.opt_state, key), None, config.update_epochs
        )
        metrics = {k: v.mean() for k, v in aux.items()}
        metrics.update(episode_metrics(jax.tree.map(lambda x: x[-1], info)))
        return TrainState(params, opt_state, env_state, obs, key), metrics

    def act(state: TrainState, obs, key):
        """Greedy action: argmax of the logits, or the Gaussian mean clipped to the action bounds."""
        obs = obs.reshape((obs.shape[0], -1))
        actor_out, _, _ = network.apply(state.params, obs)
        if discrete:
            return jnp.argmax(actor_out, axis=-1)
        return jnp.clip(actor_out, action_space.low, action_space.high)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.batch_size, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="ppo")
