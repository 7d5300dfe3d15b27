"""Wrappers as pure functions of state, with the gymnax API (``reset``/``step`` over ``EnvParams``).

gymnax ships ``FlattenObservationWrapper`` (re-exported here as ``FlattenObservation``); this module
adds what it lacks:

* ``EpisodeStatistics``: return and length, and when the env provides them the episode cost
  (``info["cost"]``), success (``info["success"]``) and a vector return (vector ``reward``).
* ``ClipAction`` and ``RescaleAction`` for Box actions.
* ``VectorEnv``: ``num_envs`` copies stepped together (batched keys, states and actions).
* ``NormalizeObservation``: running mean/variance carried in the state of a ``VectorEnv``, pooled
  over its envs; ``normalize(obs, stats)`` applies frozen statistics (e.g. at evaluation).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces
from gymnax.wrappers.purerl import FlattenObservationWrapper as FlattenObservation
from gymnax.wrappers.purerl import GymnaxWrapper

__all__ = [
    "EpisodeStatistics", "EpisodeStatisticsState", "ClipAction", "RescaleAction", "FlattenObservation",
    "VectorEnv", "NormalizeObservation", "RunningStats", "normalize", "episode_metrics",
]


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    episode_return: jax.Array      # running sums of the episode in progress
    episode_length: jax.Array
    episode_cost: jax.Array
    episode_success: jax.Array
    last_return: jax.Array          # statistics of the last completed episode
    last_length: jax.Array
    last_cost: jax.Array
    last_success: jax.Array
    completed: jax.Array            # number of completed episodes so far


class EpisodeStatistics(GymnaxWrapper):
    """Tracks per-episode statistics and reports them in ``info``.

    ``info["episode_done"]`` marks a step that ended an episode (terminated or truncated);
    ``info["episode_return"]``, ``episode_length``, ``episode_cost``, ``episode_success`` hold the
    statistics of the last completed episode (valid once ``info["episodes_completed"] > 0``).
    A vector reward gives a vector ``episode_return`` (multi-objective envs). Success counts an
    episode as successful if ``info["success"]`` was true at any step of it.
    """

    def _zeros_like_reward(self, key, params):
        obs, env_state = self._env.reset(key, params)
        action = self._env.action_space(params).sample(key)
        reward_shape = jax.eval_shape(lambda: self._env.step(key, env_state, action, params)[2]).shape
        return jnp.zeros(reward_shape, jnp.float32)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        params = self._env.default_params if params is None else params
        obs, env_state = self._env.reset(key, params)
        zero_r = self._zeros_like_reward(key, params)
        zero, zero_i, false = jnp.float32(0), jnp.int32(0), jnp.bool_(False)
        state = EpisodeStatisticsState(env_state, zero_r, zero_i, zero, false, zero_r, zero_i, zero, false, zero_i)
        return obs, state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state: EpisodeStatisticsState, action, params=None):
        params = self._env.default_params if params is None else params
        obs, env_state, reward, terminated, truncated, info = self._env.step(key, state.env_state, action, params)
        done = jnp.logical_or(terminated, truncated)
        cost = jnp.asarray(info.get("cost", 0.0), jnp.float32)
        success = jnp.asarray(info.get("success", False), jnp.bool_)
        ep_return = state.episode_return + reward
        ep_length = state.episode_length + 1
        ep_cost = state.episode_cost + cost
        ep_success = state.episode_success | success

        def keep_or_new(last, new):
            return jnp.where(done, new, last)

        new_state = EpisodeStatisticsState(
            env_state=env_state,
            episode_return=jnp.where(done, jnp.zeros_like(ep_return), ep_return),
            episode_length=jnp.where(done, 0, ep_length),
            episode_cost=jnp.where(done, 0.0, ep_cost),
            episode_success=jnp.where(done, False, ep_success),
            last_return=keep_or_new(state.last_return, ep_return),
            last_length=keep_or_new(state.last_length, ep_length),
            last_cost=keep_or_new(state.last_cost, ep_cost),
            last_success=keep_or_new(state.last_success, ep_success),
            completed=state.completed + done.astype(jnp.int32),
        )
        info = {
            **info,
            "episode_done": done,
            "episode_return": new_state.last_return,
            "episode_length": new_state.last_length,
            "episode_cost": new_state.last_cost,
            "episode_success": new_state.last_success,
            "episodes_completed": new_state.completed,
        }
        return obs, new_state, reward, terminated, truncated, info


def episode_metrics(info) -> dict[str, jax.Array]:
    """Mean statistics of the last completed episode over a batch of envs (NaN before any ends).

    ``info`` is the (possibly time- and env-batched) info of ``EpisodeStatistics``; the last time
    slice is used when it has a leading time axis of the same batch as ``episodes_completed``.
    """
    completed = info["episodes_completed"]
    valid = completed > 0
    n_valid = jnp.maximum(valid.sum(), 1)

    def masked_mean(x):
        x = x.astype(jnp.float32)
        v = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))
        mean = jnp.where(v, x, 0.0).sum(axis=tuple(range(valid.ndim))) / n_valid
        return jnp.where(valid.any(), mean, jnp.nan)

    out = {
        "episode_return": masked_mean(info["episode_return"]),
        "episode_length": masked_mean(info["episode_length"]),
    }
    if "vector_episode_return" in info:  # jaxrl.mo_wrappers.LinearScalarization: one scalar per objective
        vector = masked_mean(info["vector_episode_return"])
        out.update({f"episode_return_{i}": vector[i] for i in range(vector.shape[-1])})
    return out


class ClipAction(GymnaxWrapper):
    """Clip a Box action into the env's bounds before stepping."""

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        params = self._env.default_params if params is None else params
        space = self._env.action_space(params)
        return self._env.step(key, state, jnp.clip(action, space.low, space.high), params)


class RescaleAction(GymnaxWrapper):
    """Map actions from [-1, 1] to the env's [low, high] (clipping first); the space becomes [-1, 1]."""

    def action_space(self, params=None):
        space = self._env.action_space(params)
        return spaces.Box(-1.0, 1.0, space.shape, jnp.float32)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        params = self._env.default_params if params is None else params
        space = self._env.action_space(params)
        action = jnp.clip(action, -1.0, 1.0)
        scaled = space.low + (action + 1.0) * 0.5 * (space.high - space.low)
        return self._env.step(key, state, scaled, params)


class VectorEnv(GymnaxWrapper):
    """``num_envs`` independent copies; ``reset``/``step`` take one key and batched states/actions."""

    def __init__(self, env, num_envs: int):
        super().__init__(env)
        self.num_envs = int(num_envs)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.reset, in_axes=(0, None))(keys, params)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)


@struct.dataclass
class RunningStats:
    """Running mean and variance (parallel Welford / Chan et al. 1979), pooled over a batch."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape) -> "RunningStats":
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.float32(1e-4))

    def update(self, batch: jax.Array) -> "RunningStats":
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0)
        batch_count = batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        return RunningStats(mean, m2 / total, total)


def normalize(obs: jax.Array, stats: RunningStats, clip: float = 10.0) -> jax.Array:
    """Standardize ``obs`` with frozen statistics (what a trained policy sees)."""
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + 1e-8), -clip, clip)


@struct.dataclass
class NormalizeObservationState:
    env_state: Any
    stats: RunningStats


class NormalizeObservation(GymnaxWrapper):
    """Standardize observations of a ``VectorEnv`` with running statistics kept in the state.

    The statistics update on every reset and step batch; ``info["final_observation"]`` is
    normalized with the same statistics so that bootstrapped values see what the policy sees.
    """

    def __init__(self, vec_env: VectorEnv, clip: float = 10.0):
        super().__init__(vec_env)
        self.clip = clip

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        stats = RunningStats.create(obs.shape[1:]).update(obs)
        return normalize(obs, stats, self.clip), NormalizeObservationState(env_state, stats)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state: NormalizeObservationState, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(key, state.env_state, action, params)
        stats = state.stats.update(obs)
        info = {**info, "final_observation": normalize(info["final_observation"], stats, self.clip)}
        return normalize(obs, stats, self.clip), NormalizeObservationState(env_state, stats), reward, terminated, truncated, info
