"""PQN: Parallel Q-Network, vectorized Q(λ) with no replay buffer and no target network.

Gallici, Fellows, Ellis, Pou, Masmitja, Foerster, Martin (2024), "Simplifying Deep Temporal
Difference Learning" (arXiv:2407.04811). Many envs are stepped in parallel with an ε-greedy policy;
each rollout of ``num_steps`` x ``num_envs`` transitions gets Q(λ) targets computed backwards in time
from the current network, and is then used for a few epochs of minibatch regression, exactly like a
PPO rollout. LayerNorm in the Q-network is what keeps this off-policy TD update stable without a
target network (the paper's Section 4).

Defaults are the reference implementation's CartPole-v1 settings (purejaxql
``purejaxql/config/alg/pqn_cartpole.yaml``, run by ``pqn_gymnax.py``): 5e5 steps, 32 envs x 64 steps,
4 epochs x 16 minibatches, RAdam lr 1e-4 decayed linearly to 0, global grad-norm clip 10,
ε from 1 to 0.2 over the first 20% of updates, γ 0.99, λ 0.95, reward scale 0.1, 2 x 256 relu with
LayerNorm. Its MinAtar settings (``pqn_minatar.yaml``) are 1e7 steps, 128 envs x 32 steps,
2 epochs x 32 minibatches, lr 5e-4, ε 1 -> 0.05 over the first 10%, λ 0.65, reward scale 1; that file
uses a small CNN, this one flattens MinAtar observations into the same MLP.

One deliberate difference from the reference: it treats a time-limit truncation as a termination.
Here the λ-return bootstraps through truncation from Q(final_observation) and is cut (no
bootstrap) only on a true termination; see ``q_lambda_returns``.

Run:  python agents/online/pqn.py --env CartPole-v1 --num-seeds 8
      python agents/online/pqn.py --env Breakout-MinAtar --total-timesteps 5e6 --num-envs 128 \
          --num-steps 32 --num-minibatches 32 --update-epochs 2 --lr 5e-4 --q-lambda 0.65 \
          --eps-finish 0.05 --eps-decay 0.1 --reward-scale 1
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import envs
from jaxrl.config import require, require_divides, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation, VectorEnv, episode_metrics


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    """Environment id (gymnax or this project's envs/); discrete actions only."""
    total_timesteps: int = 500_000
    """Env steps per run (over all parallel envs)."""
    lr: float = 1e-4
    """Learning rate (start value when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    optimizer: str = "radam"
    """radam (as the reference) or adam."""
    num_envs: int = 32
    """Parallel envs per run."""
    num_steps: int = 64
    """Steps per env per rollout."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 16
    """Minibatches per epoch; num_envs * num_steps must divide by it."""
    gamma: float = 0.99
    """Discount factor."""
    q_lambda: float = 0.95
    """λ of the Q(λ) returns (0: one-step Q-learning targets; 1: Monte Carlo with a bootstrap at the cut)."""
    eps_start: float = 1.0
    """ε of the ε-greedy behaviour policy at the start of training."""
    eps_finish: float = 0.2
    """ε after the decay (kept until the end)."""
    eps_decay: float = 0.2
    """Fraction of the updates over which ε decays linearly from eps_start to eps_finish."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this before learning (the reference uses 0.1 on CartPole, 1 on MinAtar)."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    hidden_size: int = 256
    """Width of the hidden layers of the Q-network."""
    num_layers: int = 2
    """Number of hidden layers (Dense -> norm -> relu)."""
    norm: str = "layer_norm"
    """Normalization after each hidden Dense: layer_norm (PQN) or none (ablation)."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
class QNetwork(nn.Module):
    """MLP with LayerNorm before every relu; one Q-value per discrete action."""

    action_dim: int
    hidden_size: int = 256
    num_layers: int = 2
    norm: str = "layer_norm"

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32)
        for _ in range(self.num_layers):
            x = nn.Dense(self.hidden_size)(x)
            if self.norm == "layer_norm":
                x = nn.LayerNorm()(x)
            x = nn.relu(x)
        return nn.Dense(self.action_dim)(x)


def epsilon_greedy(key, q_values, epsilon):
    """Greedy action of ``q_values`` (..., A), replaced by a uniform one with probability ``epsilon``."""
    explore_key, action_key = jax.random.split(key)
    greedy = jnp.argmax(q_values, axis=-1)
    random = jax.random.randint(action_key, greedy.shape, 0, q_values.shape[-1])
    return jnp.where(jax.random.uniform(explore_key, greedy.shape) < epsilon, random, greedy)


def epsilon_schedule(iteration, num_updates: int, eps_start, eps_finish, eps_decay):
    """Linear decay from ``eps_start`` to ``eps_finish`` over the first ``eps_decay`` of the updates."""
    decay_updates = jnp.maximum(eps_decay * num_updates, 1.0)
    frac = jnp.clip(iteration / decay_updates, 0.0, 1.0)
    return eps_start + frac * (eps_finish - eps_start)


# ----------------------------------------------------------------------------------------------
# Q(λ) returns
# ----------------------------------------------------------------------------------------------
def q_lambda_returns(rewards, q_next, terminated, done, gamma, lam):
    """Q(λ) returns over a (time, ...) rollout, bootstrapping through truncation but not termination.

    ``q_next[t] = max_a Q(s'_t, a)`` where ``s'_t`` is the true next state of step ``t`` even when the
    episode ended there (gymnax's ``info["final_observation"]``); ``terminated[t]`` and ``done[t]``
    (terminated or truncated) are 0/1 floats. Backwards in time,

        G_t = r_t + γ (1 − terminated_t) [ (1 − done_t) λ G_{t+1} + (1 − (1 − done_t) λ) q_next_t ],

    so inside an episode G_t = r_t + γ [λ G_{t+1} + (1 − λ) q_next_t]; at a truncation
    G_t = r_t + γ q_next_t (the next episode's return is not mixed in); at a termination G_t = r_t.
    The rollout's last step bootstraps from its own ``q_next`` (G_T := q_next_{T−1}).
    λ = 0 gives one-step Q-learning targets; λ = 1 the discounted Monte Carlo return that
    bootstraps at truncations and at the end of the rollout.
    """

    def backward(g_next, step):
        reward, q, term, d = step
        trace = (1.0 - d) * lam
        g = reward + gamma * (1.0 - term) * (trace * g_next + (1.0 - trace) * q)
        return g, g

    _, returns = jax.lax.scan(backward, q_next[-1], (rewards, q_next, terminated, done), reverse=True)
    return returns


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array            # terminated or truncated: the episode ends after this step
    next_obs: jax.Array        # the true next state (info["final_observation"], pre-reset)


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config):
    """(raw env, params, wrapped env): observations flattened (MinAtar), episode statistics tracked."""
    env, env_params = envs.make(config.env)
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) != 1 else env
    return env, env_params, EpisodeStatistics(flat)


def validate(config: Config) -> None:
    require_positive(config, "lr", "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                     "hidden_size", "max_grad_norm", "reward_scale")
    require(config.num_layers >= 1, f"num_layers must be >= 1, got {config.num_layers}")
    require_unit_interval(config, "gamma", "q_lambda", "eps_start", "eps_finish", "eps_decay")
    require(config.optimizer in ("radam", "adam"), f"optimizer must be 'radam' or 'adam', got {config.optimizer!r}")
    require(config.norm in ("layer_norm", "none"), f"norm must be 'layer_norm' or 'none', got {config.norm!r}")
    require_divides("num_envs * num_steps", config.batch_size, "num_minibatches", config.num_minibatches)
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one rollout "
            f"(num_envs * num_steps = {config.batch_size})")
    env, env_params = envs.make(config.env)
    envs.require_action_space(config.env, env, env_params, "discrete", "PQN")


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped = make_env(config)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    network = QNetwork(env.action_space(env_params).n, config.hidden_size, config.num_layers, config.norm)
    minibatch_size = config.batch_size // config.num_minibatches
    grad_steps_per_update = config.num_minibatches * config.update_epochs

    def lr_schedule(count):
        frac = 1.0 - (count // grad_steps_per_update) / config.num_updates
        return config.lr * frac if config.anneal_lr else config.lr

    optimizer = optax.radam if config.optimizer == "radam" else optax.adam
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optimizer(lr_schedule))

    vec_env = VectorEnv(wrapped, config.num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        params = network.init(net_key, jnp.zeros((1, obs_dim)))
        obs, env_state = vec_env.reset(env_key, env_params)
        return TrainState(params, tx.init(params), env_state, obs, key)

    def loss_fn(params, batch: Transition, targets):
        q = network.apply(params, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
        loss = 0.5 * jnp.square(q_taken - targets).mean()
        return loss, {"td_loss": loss, "q_mean": q_taken.mean()}

    def update(state: TrainState, iteration):
        epsilon = epsilon_schedule(iteration, config.num_updates, config.eps_start, config.eps_finish,
                                   config.eps_decay)

        # COLLECT TRAJECTORIES
        def env_step(carry, _):
            env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            action = epsilon_greedy(act_key, network.apply(state.params, obs), epsilon)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, action, env_params)
            done = jnp.logical_or(terminated, truncated)
            transition = Transition(obs, action, config.reward_scale * reward, terminated.astype(jnp.float32),
                                    done.astype(jnp.float32), info["final_observation"])
            return (env_state, next_obs, key), (transition, info)

        (env_state, obs, key), (traj, info) = jax.lax.scan(
            env_step, (state.env_state, state.obs, state.key), None, config.num_steps
        )

        # CALCULATE Q(λ) TARGETS (with the network that collected the rollout)
        q_next = network.apply(state.params, traj.next_obs).max(axis=-1)
        targets = q_lambda_returns(traj.reward, q_next, traj.terminated, traj.done, config.gamma, config.q_lambda)

        # UPDATE NETWORK
        def update_epoch(carry, _):
            params, opt_state, key = carry
            key, perm_key = jax.random.split(key)
            perm = jax.random.permutation(perm_key, config.batch_size)
            flat = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), (traj, targets))
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), flat)

            def update_minibatch(carry, minibatch):
                params, opt_state = carry
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, *minibatch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            (params, opt_state), aux = jax.lax.scan(update_minibatch, (params, opt_state), shuffled)
            return (params, opt_state, key), aux

        (params, opt_state, key), aux = jax.lax.scan(
            update_epoch, (state.params, state.opt_state, key), None, config.update_epochs
        )
        metrics = {k: v.mean() for k, v in aux.items()}
        metrics["epsilon"] = jnp.asarray(epsilon, jnp.float32)
        metrics["target_mean"] = targets.mean()
        metrics.update(episode_metrics(jax.tree.map(lambda x: x[-1], info)))
        return TrainState(params, opt_state, env_state, obs, key), metrics

    def act(state: TrainState, obs, key):
        """Greedy action: argmax_a Q(obs, a) for a batch of raw (unflattened) observations."""
        return jnp.argmax(network.apply(state.params, obs.reshape((obs.shape[0], obs_dim))), axis=-1)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.batch_size, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="pqn")
