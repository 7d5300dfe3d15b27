"""Policy Regularization with Dataset Constraint (Ran, Li, Zhang, Zhang & Yu 2023, "Policy
Regularization with Dataset Constraint for Offline Reinforcement Learning", ICML).

TD3 (Fujimoto et al. 2018) with the dataset constraint of PRDC (eq. 6 and Algorithm 1 of the paper):

* twin critics trained by TD towards r + γ (1 − terminated) min_i Q̄_i(s', clip(π̄(s') + ε)),
  ε = clip(N(0, σ²), −c, c) (target policy smoothing), target networks updated by Polyak averaging.
  Truncated transitions bootstrap (``next_observations`` is the true next state); only terminations
  stop the bootstrap;
* every ``policy_freq`` updates, the deterministic actor minimizes
  −λ Q_1(s, π(s)) + ‖π(s) − a*‖², λ = α / mean|Q_1(s, π(s))| (TD3+BC's normalization), where
  (s*, a*) is the nearest neighbour of the query (β·s, π(s)) among the dataset's (β·s_j, a_j) pairs:
  β weighs state distance against action distance, so the policy is pulled toward the action of a
  dataset pair near in *both* state and action (not toward the behaviour action at s itself as in
  TD3+BC). With ``k`` > 1 the k-th nearest neighbour is used, as in the paper's code.

The nearest-neighbour search runs on device inside the compiled update (the paper uses a CPU KD-tree):
an exact brute-force search over the ``data`` argument in blocks of ``nn_chunk_size`` rows
(``lax.scan`` over blocks, keeping a running best), so memory stays at batch x block distances for
any dataset size. Distances use ‖q‖² − 2 q·p + ‖p‖² in full float32 precision.

States are standardized with the dataset's mean and std, and actions rescaled to [-1, 1] (D4RL's
action box, for which β and the noise scales were chosen) before they enter the networks and the
search. Box actions only.

Defaults are the paper's (Sec. 5 and Appendix; the TD3+BC settings it builds on): Adam lr 3e-4 for
actor and critics, batch 256, two hidden layers of 256 ReLU units, γ 0.99, τ 0.005, policy noise 0.2,
noise clip 0.5, policy delay 2, α 2.5, β 2.0, k 1, 1M gradient steps, state normalization.

Run:  python agents/offline/prdc.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

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
    """Environment id the dataset was collected on; must have a Box action space."""
    num_updates: int = 1_000_000
    """Gradient updates per run (critic every update, actor every policy_freq updates)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin Q-networks."""
    batch_size: int = 256
    """Transitions per gradient update, sampled uniformly from the dataset."""
    hidden_size: int = 256
    """Width of the hidden layers of actor and critics."""
    num_layers: int = 2
    """Hidden layers of actor and critics."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target actor and critics."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (in [-1, 1]-scaled action units)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    policy_freq: int = 2
    """Update the actor and the target networks every this many critic updates."""
    alpha: float = 2.5
    """α of λ = α / mean|Q|: weight of the Q term against the dataset constraint."""
    beta: float = 2.0
    """β: weight of the (normalized) state in the nearest-neighbour distance over (β·s, a)."""
    k: int = 1
    """Use the k-th nearest neighbour (1: the nearest)."""
    nn_chunk_size: int = 16_384
    """Dataset rows per block of the on-device nearest-neighbour search (bounds its memory)."""
    normalize_observations: bool = True
    """Standardize observations with the dataset's mean and std (as TD3+BC and PRDC do)."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class MLP(nn.Module):
    out_dim: int
    hidden_size: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(self.out_dim)(x)


class Actor(nn.Module):
    """Deterministic policy: tanh output in the [-1, 1]-scaled action box."""

    action_dim: int
    hidden_size: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs):
        return jnp.tanh(MLP(self.action_dim, self.hidden_size, self.num_layers)(obs))


class QNetwork(nn.Module):
    """Q(s, a); two independent copies are made by vmapping ``init`` over keys."""

    hidden_size: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs, action):
        return MLP(1, self.hidden_size, self.num_layers)(jnp.concatenate([obs, action], axis=-1))[..., 0]


# ----------------------------------------------------------------------------------------------
# Exact nearest neighbours on device, block by block
# ----------------------------------------------------------------------------------------------
def chunked_nearest(queries: jax.Array, num_points: int, get_block: Callable[[jax.Array, int], jax.Array],
                    chunk_size: int, k: int = 1) -> tuple[jax.Array, jax.Array]:
    """Exact k-th nearest neighbour (squared Euclidean) of each query among ``num_points`` points.

    ``get_block(start, size)`` returns points ``start .. start+size-1`` as a (size, D) array (built
    on the fly, e.g. from a dynamic slice of the dataset), so at most (queries x ``chunk_size``)
    distances exist at a time. The last block is shifted back to end at ``num_points`` and its rows
    already seen are masked out, so every point is counted exactly once.
    Returns (squared distances, indices) of the k-th nearest neighbour, shapes (B,) and (B,).
    """
    size = min(chunk_size, num_points)
    num_blocks = -(-num_points // size)
    q_sq = (queries ** 2).sum(-1)

    def block(carry, b):
        best_d, best_i = carry
        start = jnp.minimum(b * size, num_points - size)
        points = get_block(start, size)
        cross = jnp.matmul(queries, points.T, precision=jax.lax.Precision.HIGHEST)
        dist = jnp.maximum(q_sq[:, None] - 2.0 * cross + (points ** 2).sum(-1)[None, :], 0.0)
        index = start + jnp.arange(size)
        dist = jnp.where(index[None, :] >= b * size, dist, jnp.inf)  # rows of the previous block
        if k == 1:
            j = jnp.argmin(dist, axis=1)
            d = jnp.take_along_axis(dist, j[:, None], 1)
            better = d < best_d
            return (jnp.where(better, d, best_d), jnp.where(better, index[j][:, None], best_i)), None
        all_d = jnp.concatenate([best_d, dist], axis=1)
        all_i = jnp.concatenate([best_i, jnp.broadcast_to(index, dist.shape)], axis=1)
        neg_d, j = jax.lax.top_k(-all_d, k)
        return (-neg_d, jnp.take_along_axis(all_i, j, 1)), None

    init = (jnp.full((queries.shape[0], k), jnp.inf, queries.dtype), jnp.zeros((queries.shape[0], k), jnp.int32))
    (best_d, best_i), _ = jax.lax.scan(block, init, jnp.arange(num_blocks))
    return best_d[:, k - 1], best_i[:, k - 1]


def nearest_neighbour(queries: jax.Array, points: jax.Array, chunk_size: int = 16_384, k: int = 1):
    """``chunked_nearest`` over a plain (N, D) array of points."""
    return chunked_nearest(queries, points.shape[0],
                           lambda start, size: jax.lax.dynamic_slice_in_dim(points, start, size), chunk_size, k)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    target_actor_params: dict
    critic_params: dict          # both critics, stacked on a leading axis of 2
    target_critic_params: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    actor_metrics: dict          # losses of the latest actor update (reported between actor updates)
    key: jax.Array


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "actor_lr", "critic_lr", "batch_size", "hidden_size", "num_layers",
                     "policy_freq", "k", "nn_chunk_size", "alpha")
    require_unit_interval(config, "gamma")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.policy_noise >= 0, f"policy_noise must be >= 0, got {config.policy_noise}")
    require(config.noise_clip >= 0, f"noise_clip must be >= 0, got {config.noise_clip}")
    require(config.beta >= 0, f"beta must be >= 0, got {config.beta}")


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the PRDC trainer on ``dataset``. ``env``/``env_params`` replace the env of ``config.env``
    when given: an env that needs constructor arguments, or ``jaxrl.envs.SpacesOnly`` for a D4RL/Minari
    dataset from a simulator gymnax does not have."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "PRDC")
    data_lib.check_compatible(dataset, config.env, env, env_params, "PRDC")
    require(config.k <= dataset.size, f"k={config.k} exceeds the dataset's {dataset.size} transitions")
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    num_points = dataset.size
    obs = np.asarray(dataset.observations, np.float64).reshape(num_points, -1)
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

    def dataset_keys(data: data_lib.Dataset):
        """``get_block`` for the search: rows (β·normalized s_j, a_j in [-1, 1]) of ``data``, built per block."""
        def get_block(start, size):
            s = prep_obs(jax.lax.dynamic_slice_in_dim(data.observations, start, size))
            a = to_unit(jax.lax.dynamic_slice_in_dim(data.actions, start, size))
            return jnp.concatenate([config.beta * s, a], axis=-1)

        return get_block

    def init(key) -> TrainState:
        key, actor_key, critic_key = jax.random.split(key, 3)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        critic_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(critic_key), dummy_obs,
                                                                       dummy_action)
        blank = {name: jnp.array(jnp.nan, jnp.float32) for name in ("actor_loss", "dc_loss", "nn_distance")}
        return TrainState(actor_params, actor_params, critic_params, critic_params, actor_tx.init(actor_params),
                          critic_tx.init(critic_params), blank, key)

    def twin_q(params, obs, action):
        return jax.vmap(critic.apply, in_axes=(0, None, None))(params, obs, action)

    def update(state: TrainState, iteration, data: data_lib.Dataset):
        key, sample_key, noise_key = jax.random.split(state.key, 3)
        batch = data_lib.sample_batch(data, sample_key, config.batch_size)
        obs, next_obs = prep_obs(batch.observations), prep_obs(batch.next_observations)
        action = to_unit(batch.actions)

        # UPDATE CRITICS: clipped double-Q with target policy smoothing
        noise = jnp.clip(config.policy_noise * jax.random.normal(noise_key, action.shape),
                         -config.noise_clip, config.noise_clip)
        next_action = jnp.clip(actor.apply(state.target_actor_params, next_obs) + noise, -1.0, 1.0)
        target = batch.rewards + config.gamma * (1.0 - batch.terminations) * twin_q(
            state.target_critic_params, next_obs, next_action).min(0)

        def critic_loss_fn(params):
            q = twin_q(params, obs, action)
            return ((q - target) ** 2).mean(1).sum(), q

        (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic_params)
        updates, critic_opt = critic_tx.update(grads, state.critic_opt, state.critic_params)
        critic_params = optax.apply_updates(state.critic_params, updates)

        # UPDATE ACTOR (delayed): −λ Q_1(s, π(s)) + ‖π(s) − a*‖²,
        # (s*, a*) = the dataset pair nearest to (β·s, π(s))
        def actor_step(_):
            pi = actor.apply(state.actor_params, obs)
            query = jax.lax.stop_gradient(jnp.concatenate([config.beta * obs, pi], axis=-1))
            nn_dist, nn_index = chunked_nearest(query, num_points, dataset_keys(data), config.nn_chunk_size,
                                                config.k)
            nn_action = to_unit(data.actions[nn_index])

            def actor_loss_fn(params):
                pi = actor.apply(params, obs)
                q1 = critic.apply(jax.tree.map(lambda x: x[0], critic_params), obs, pi)
                lam = jax.lax.stop_gradient(config.alpha / jnp.abs(q1).mean())
                dc_loss = ((pi - nn_action) ** 2).mean()
                return -lam * q1.mean() + dc_loss, dc_loss

            (actor_loss, dc_loss), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor_params)
            updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor_params)
            actor_params = optax.apply_updates(state.actor_params, updates)
            # UPDATE TARGETS
            target_actor = optax.incremental_update(actor_params, state.target_actor_params, config.tau)
            target_critic = optax.incremental_update(critic_params, state.target_critic_params, config.tau)
            return (actor_params, target_actor, target_critic, actor_opt,
                    {"actor_loss": actor_loss, "dc_loss": dc_loss, "nn_distance": jnp.sqrt(nn_dist).mean()})

        def skip(_):
            return (state.actor_params, state.target_actor_params, state.target_critic_params, state.actor_opt,
                    state.actor_metrics)

        actor_params, target_actor, target_critic, actor_opt, actor_metrics = jax.lax.cond(
            iteration % config.policy_freq == 0, actor_step, skip, None)
        metrics = {"critic_loss": critic_loss, "q_mean": q.mean(), **actor_metrics}
        return TrainState(actor_params, target_actor, critic_params, target_critic, actor_opt, critic_opt,
                          actor_metrics, key), metrics

    def act(state: TrainState, obs, key):
        """Deterministic action π(s), rescaled to the env's bounds."""
        return 0.5 * (high + low) + 0.5 * (high - low) * actor.apply(state.actor_params, prep_obs(obs))

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=dataset)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="prdc", offline=True)
