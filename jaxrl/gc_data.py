"""Offline goal-conditioned RL on a ``jaxrl.data.Dataset``: OGBench-style goal sampling and the
success evaluation on an env's fixed evaluation tasks.

Goal sampling follows OGBench (Park et al. 2025, "OGBench: Benchmarking Offline Goal-Conditioned RL",
ICLR; Sec. 6 / Appendix, and its ``impls/utils/datasets.py`` ``GCDataset``). A batch of dataset
indices ``idx`` gets goal indices drawn from a mixture:

* the current state (probability ``p_cur``): goal index = ``idx``;
* a future state of the same trajectory (``p_traj``): ``idx + k`` with k ~ Geometric(1 − γ) on
  {1, 2, ...} (``geom_sample=True``), or uniform between ``idx + 1`` and the trajectory's last index
  (``geom_sample=False``: OGBench rounds ``(idx + 1) d + final (1 − d)``, d ~ U[0, 1)); both are capped
  at the last index of the trajectory, so a goal never crosses a trajectory boundary;
* a uniformly random dataset state (``p_random``).

As OGBench draws it: first the future goal with probability ``p_traj / (1 − p_cur)``, else the random
goal, then the current state with probability ``p_cur`` (the three probabilities must sum to 1).

The goal itself is the goal-space part of the goal state: for the point maze the observation is the
(x, y) position, which is the goal space, so a goal is ``observations[goal_idx]``.

Reward and mask of a (state, goal) pair, OGBench's ``gc_negative`` convention: success ⇒ reward 0 and
mask 0 (the episode would end), otherwise reward −1 and mask 1. Success is decided at the *current*
state ``idx``: OGBench counts it only when the goal index equals ``idx`` (``success_radius = 0``, the
default here); with ``success_radius > 0`` a state within that distance of the goal counts too (the
env's own success test, e.g. the point maze's 0.25 cells). Index equality makes the value a
(discounted) count of dataset steps to that exact state; the radius makes it the steps to the goal's
neighbourhood, as the env scores success.

Trajectories: a dataset is in stream order (``jaxrl.data``); a trajectory ends at every transition
flagged ``terminations`` or ``truncations`` (the last transition of a dataset is always flagged).
``prepare(dataset)`` stores the index of each transition's trajectory end in
``extras["final_index"]`` (int32), which the jitted samplers read. ``scripts/make_dataset.py``'s
point-maze kinds store it too, with the collecting policy's goal of every step in ``extras["goals"]``.

Evaluation: ``evaluate_on_tasks`` runs episode i on evaluation task (i mod 5) + 1 (the env's
``EnvParams.task_id``, as OGBench's five tasks per maze), so the success rate is averaged over the
fixed task set; ``task_success`` gives it per task.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import data as data_lib
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate

NUM_EVAL_TASKS = 5


@dataclasses.dataclass(frozen=True)
class GoalMixture:
    """Probabilities of the three goal sources (must sum to 1) and how future goals are drawn."""

    p_cur: float
    """Probability of the current state as the goal."""
    p_traj: float
    """Probability of a future state of the same trajectory."""
    p_random: float
    """Probability of a uniformly random dataset state."""
    geom_sample: bool
    """Future offsets ~ Geometric(1 − γ) (True) or uniform up to the trajectory's end (False)."""


def check_mixture(name: str, mixture: GoalMixture) -> None:
    """ConfigError unless the probabilities are in [0, 1] and sum to 1 (skipped for traced values)."""
    values = (mixture.p_cur, mixture.p_traj, mixture.p_random)
    if any(isinstance(v, jax.core.Tracer) for v in values):
        return
    if any(not 0.0 <= float(v) <= 1.0 for v in values) or not np.isclose(sum(float(v) for v in values), 1.0):
        raise ConfigError(f"{name} goal probabilities (current, trajectory, random) must each be in [0, 1] and sum "
                          f"to 1, got {tuple(float(v) for v in values)}")


def final_indices(terminations, truncations) -> np.ndarray:
    """Index of the last transition of each transition's trajectory, shape (N,), int32 (host side).

    A trajectory ends at a transition flagged terminated or truncated; the dataset's last transition
    always ends one (it is flagged by ``jaxrl.data.collect``; an unflagged one is treated as an end)."""
    ends = (np.asarray(terminations) > 0) | (np.asarray(truncations) > 0)
    ends = ends.copy()
    if ends.size == 0:
        raise data_lib.DatasetError("the dataset is empty")
    ends[-1] = True
    end_idx = np.flatnonzero(ends)
    return end_idx[np.searchsorted(end_idx, np.arange(ends.size))].astype(np.int32)


def prepare(dataset: data_lib.Dataset) -> data_lib.Dataset:
    """``dataset`` with ``extras["final_index"]`` (recomputed from the flags, see ``final_indices``)."""
    final = final_indices(dataset.terminations, dataset.truncations)
    return dataset.replace(extras={**dataset.extras, "final_index": jnp.asarray(final)})


def future_indices(key, idx, final_index, gamma, geom_sample: bool):
    """A future index of the same trajectory for each ``idx`` (see the module docstring), capped at
    ``final_index``. At a trajectory's last index the goal is that index itself."""
    if geom_sample:
        # k ~ Geometric(1 − γ) on {1, 2, ...}: P(k) = γ^(k−1) (1 − γ), drawn by inversion
        u = jax.random.uniform(key, idx.shape, minval=jnp.finfo(jnp.float32).tiny, maxval=1.0)
        k = jnp.floor(jnp.log(u) / jnp.log(jnp.maximum(gamma, 1e-12))) + 1.0
        k = jnp.clip(k, 1.0, 2.0 ** 30).astype(jnp.int32)
        return jnp.minimum(idx + k, final_index)
    d = jax.random.uniform(key, idx.shape)
    lo = jnp.minimum(idx + 1, final_index)
    return jnp.round(lo * d + final_index * (1.0 - d)).astype(jnp.int32)


def sample_goal_indices(key, idx, final_index, size: int, mixture: GoalMixture, gamma):
    """Goal indices for the dataset indices ``idx`` (OGBench's ``sample_goals``); ``final_index`` are
    the trajectory ends of ``idx`` and ``size`` the dataset size."""
    k_future, k_random, k_pick, k_cur = jax.random.split(key, 4)
    future = future_indices(k_future, idx, final_index, gamma, mixture.geom_sample)
    random = jax.random.randint(k_random, idx.shape, 0, size)
    p_future = mixture.p_traj / (1.0 - mixture.p_cur + 1e-6)
    goal = jnp.where(jax.random.uniform(k_pick, idx.shape) < p_future, future, random)
    return jnp.where(jax.random.uniform(k_cur, idx.shape) < mixture.p_cur, idx, goal)


def goal_reward(observations, idx, goal_idx, success_radius=0.0):
    """(reward, mask) of state ``idx`` for the goal ``observations[goal_idx]``: success (equal index, or
    within ``success_radius`` when it is > 0) gives reward 0 and mask 0, otherwise −1 and 1."""
    close = jnp.linalg.norm(observations[idx] - observations[goal_idx], axis=-1) <= success_radius
    success = (idx == goal_idx) | ((success_radius > 0) & close)
    success = success.astype(jnp.float32)
    return success - 1.0, 1.0 - success


def sample_batch(key, data: data_lib.Dataset, batch_size: int, value: GoalMixture, actor: GoalMixture, gamma,
                 success_radius=0.0) -> dict:
    """A uniform batch of transitions with value goals and actor goals (jit-able; ``data`` must carry
    ``extras["final_index"]``, see ``prepare``). Keys: observations, actions, next_observations,
    value_goals, actor_goals, rewards, masks (for the value goals), idx, value_goal_idx, actor_goal_idx."""
    k_idx, k_value, k_actor = jax.random.split(key, 3)
    size = data.observations.shape[0]
    idx = jax.random.randint(k_idx, (batch_size,), 0, size)
    final = data.extras["final_index"][idx]
    value_idx = sample_goal_indices(k_value, idx, final, size, value, gamma)
    actor_idx = sample_goal_indices(k_actor, idx, final, size, actor, gamma)
    reward, mask = goal_reward(data.observations, idx, value_idx, success_radius)
    return {
        "observations": data.observations[idx], "actions": data.actions[idx],
        "next_observations": data.next_observations[idx],
        "value_goals": data.observations[value_idx], "actor_goals": data.observations[actor_idx],
        "rewards": reward, "masks": mask, "idx": idx, "value_goal_idx": value_idx, "actor_goal_idx": actor_idx,
    }


# ----------------------------------------------------------------------------------------------
# Checks and evaluation
# ----------------------------------------------------------------------------------------------
def check_dataset(dataset: data_lib.Dataset, env_id: str, env, env_params, algorithm: str) -> None:
    """DatasetError unless ``dataset`` comes from ``env_id`` and fits its goal-conditioned spaces
    (observations = the ``observation`` part of the dict observation, Box actions)."""
    if dataset.info.env_id and dataset.info.env_id != env_id:
        raise data_lib.DatasetError(
            f"the dataset was collected on {dataset.info.env_id!r} but {algorithm} is configured for {env_id!r}; "
            f"pass --env {dataset.info.env_id} or a dataset built for {env_id} "
            f"(python scripts/make_dataset.py {env_id} --kind navigate)")
    space = env.observation_space(env_params)
    parts = getattr(space, "spaces", None)
    if not parts or "observation" not in parts or "desired_goal" not in parts:
        raise ConfigError(f"{algorithm} needs a goal-conditioned env (dict observations with observation and "
                          f"desired_goal), but {env_id} has {type(space).__name__}")
    obs_shape = tuple(parts["observation"].shape)
    if tuple(dataset.observations.shape[1:]) != obs_shape:
        raise data_lib.DatasetError(f"dataset observations have shape {tuple(dataset.observations.shape[1:])}, but "
                                    f"{env_id}'s 'observation' has shape {obs_shape}")
    if tuple(parts["desired_goal"].shape) != obs_shape:
        raise ConfigError(f"{algorithm} uses dataset states as goals, so {env_id}'s desired_goal must have the "
                          f"observation's shape {obs_shape}, got {tuple(parts['desired_goal'].shape)}")
    action_shape = tuple(env.action_space(env_params).shape)
    if tuple(dataset.actions.shape[1:]) != action_shape or not jnp.issubdtype(dataset.actions.dtype, jnp.floating):
        raise data_lib.DatasetError(f"dataset actions are {dataset.actions.dtype} of shape "
                                    f"{tuple(dataset.actions.shape)}; {env_id} needs float actions of shape "
                                    f"(N, {', '.join(map(str, action_shape))})")
    n = dataset.size
    for name, array in dataset.arrays().items():
        if array.shape[0] != n:
            raise data_lib.DatasetError(f"dataset field {name!r} has {array.shape[0]} rows, rewards has {n}")


def has_eval_tasks(env_params) -> bool:
    """Whether the env has a fixed evaluation task set selected by ``EnvParams.task_id`` (1..5)."""
    return "task_id" in {f.name for f in dataclasses.fields(env_params)}


def evaluate_on_tasks(env, env_params, policy, key, num_episodes: int) -> dict:
    """``num_episodes`` episodes of ``policy(obs_batch, key) -> actions``, episode i on evaluation task
    (i mod 5) + 1, so the success rate averages over the fixed task set. Returns
    ``jaxrl.evaluation.evaluate``'s per-episode statistics, shape (num_episodes,)."""
    task_ids = jnp.arange(num_episodes) % NUM_EVAL_TASKS + 1
    steps = int(env_params.max_steps_in_episode)

    def one(task_id, episode_key):
        result = evaluate(env, env_params.replace(task_id=task_id), policy, episode_key, 1, max_steps=steps)
        return jax.tree.map(lambda x: x[0], result)

    return jax.vmap(one)(task_ids, jax.random.split(key, num_episodes))


def task_success(env, env_params, policy, key, episodes_per_task: int) -> jax.Array:
    """Success rate of ``policy`` on each of the five evaluation tasks, shape (5,)."""
    result = evaluate_on_tasks(env, env_params, policy, key, episodes_per_task * NUM_EVAL_TASKS)
    return result["success"].astype(jnp.float32).reshape(episodes_per_task, NUM_EVAL_TASKS).mean(axis=0)
