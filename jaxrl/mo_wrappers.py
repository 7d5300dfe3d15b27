"""Wrappers for multi-objective envs (vector ``reward`` of shape ``(num_objectives,)``).

``LinearScalarization(env, weights)`` turns a multi-objective env into a single-objective one with
reward ``w · r``, so that every single-objective agent runs on it. The weights live in the env
params (``LinearScalarizationParams.weights``), not in the wrapper: they are an ordinary traced
array, so one compiled program can train under many weight vectors
(``jax.vmap`` over ``params.replace(weights=w)``).

The vector reward is kept in ``info["vector_reward"]``, and the wrapper tracks the vector return of
each episode (``info["vector_episode_return"]``, the last completed episode's, valid once
``EpisodeStatistics`` reports ``episodes_completed > 0``). ``jaxrl.wrappers.EpisodeStatistics``
wrapped around it then reports the scalarized ``episode_return`` and passes these through.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.wrappers.purerl import GymnaxWrapper

__all__ = ["LinearScalarization", "LinearScalarizationParams", "LinearScalarizationState"]


@struct.dataclass
class LinearScalarizationParams:
    env_params: Any
    weights: jax.Array          # (num_objectives,)

    @property
    def max_steps_in_episode(self):
        return self.env_params.max_steps_in_episode


@struct.dataclass
class LinearScalarizationState:
    env_state: Any
    episode_vector_return: jax.Array    # running vector return of the episode in progress
    last_vector_return: jax.Array       # vector return of the last completed episode


class LinearScalarization(GymnaxWrapper):
    """Scalar reward ``weights · reward`` of a multi-objective env (see the module docstring).

    ``weights``: a vector of ``env.num_objectives`` finite numbers (they are used as given, not
    normalized). ``env_params``: the wrapped env's params (default: its ``default_params``).
    """

    def __init__(self, env, weights, env_params=None):
        super().__init__(env)
        num_objectives = getattr(env, "num_objectives", None)
        if num_objectives is None:
            raise ValueError(f"LinearScalarization needs a multi-objective env exposing num_objectives; "
                             f"{getattr(env, 'name', type(env).__name__)} has none")
        self.num_objectives = int(num_objectives)
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != (self.num_objectives,):
            raise ValueError(f"weights must have shape ({self.num_objectives},) for an env with "
                             f"{self.num_objectives} objectives, got shape {weights.shape}")
        if not np.all(np.isfinite(weights)):
            raise ValueError(f"weights must be finite, got {weights.tolist()}")
        self._weights = weights
        self._env_params = env_params

    @property
    def default_params(self) -> LinearScalarizationParams:
        inner = self._env.default_params if self._env_params is None else self._env_params
        return LinearScalarizationParams(env_params=inner, weights=jnp.asarray(self._weights))

    def _params(self, params):
        params = self.default_params if params is None else params
        if params.weights.shape != (self.num_objectives,):
            raise ValueError(f"params.weights must have shape ({self.num_objectives},), got {params.weights.shape}")
        return params

    def action_space(self, params=None):
        return self._env.action_space(None if params is None else params.env_params)

    def observation_space(self, params=None):
        return self._env.observation_space(None if params is None else params.env_params)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        params = self._params(params)
        obs, env_state = self._env.reset(key, params.env_params)
        zero = jnp.zeros(self.num_objectives, jnp.float32)
        return obs, LinearScalarizationState(env_state, zero, zero)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state: LinearScalarizationState, action, params=None):
        params = self._params(params)
        obs, env_state, vector_reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params.env_params)
        vector_reward = jnp.asarray(vector_reward, jnp.float32)
        reward = jnp.dot(params.weights.astype(jnp.float32), vector_reward)
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_vector_return + vector_reward
        new_state = LinearScalarizationState(
            env_state=env_state,
            episode_vector_return=jnp.where(done, 0.0, episode_return),
            last_vector_return=jnp.where(done, episode_return, state.last_vector_return),
        )
        info = {**info, "vector_reward": vector_reward, "vector_episode_return": new_state.last_vector_return}
        return obs, new_state, reward, terminated, truncated, info
