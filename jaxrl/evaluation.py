"""Deterministic-policy evaluation: jitted, vmapped over episodes, one key per call."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrl.wrappers import EpisodeStatistics


def evaluate(
    env,
    env_params,
    act: Callable[[jax.Array, jax.Array], jax.Array],
    key: jax.Array,
    num_episodes: int,
    max_steps: int | None = None,
) -> dict[str, jax.Array]:
    """Run ``num_episodes`` episodes in parallel until each ends once; return per-episode statistics.

    ``act(obs_batch, key) -> action_batch`` is the policy (usually greedy). Each episode is counted
    from reset to its first termination or truncation; later (auto-reset) steps are ignored.
    ``max_steps`` defaults to the env's ``max_steps_in_episode``.
    Returns ``{"return", "length", "cost", "success"}``, each of shape ``(num_episodes, ...)``.
    """
    env = EpisodeStatistics(env)
    if max_steps is None:
        max_steps = int(env_params.max_steps_in_episode)
    reset_key, run_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes), env_params)
    finished = jnp.zeros(num_episodes, bool)

    def body(carry, step_key):
        obs, state, finished, result = carry
        act_key, env_key = jax.random.split(step_key)
        action = act(obs, act_key)
        obs, state, _, _, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(env_key, num_episodes), state, action, env_params
        )
        newly = info["episode_done"] & ~finished
        record = {
            "return": info["episode_return"], "length": info["episode_length"],
            "cost": info["episode_cost"], "success": info["episode_success"],
        }
        result = jax.tree.map(
            lambda old, new: jnp.where(newly.reshape(newly.shape + (1,) * (new.ndim - 1)), new, old), result, record
        )
        return (obs, state, finished | newly, result), None

    result = {
        "return": jnp.zeros_like(state.last_return), "length": jnp.zeros_like(state.last_length),
        "cost": jnp.zeros_like(state.last_cost), "success": jnp.zeros_like(state.last_success),
    }
    (_, _, finished, result), _ = jax.lax.scan(body, (obs, state, finished, result), jax.random.split(run_key, max_steps))
    return result


def evaluate_trainer(trainer, state, key: jax.Array, num_episodes: int) -> dict[str, jax.Array]:
    """``evaluate`` the greedy policy of one run's train ``state`` in the trainer's own env.

    Vmap it over a batch of states and keys to evaluate many seeds in one program:
    ``jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, 16))(states, keys)``.
    """
    if trainer.evaluate is not None:
        return trainer.evaluate(state, key, num_episodes)
    return evaluate(trainer.env, trainer.env_params, lambda obs, k: trainer.act(state, obs, k), key, num_episodes)
