"""Offline datasets: a pytree of device arrays plus the metadata needed to trust and score it.

A ``Dataset`` holds transitions in *stream order*: each collecting env's transitions are contiguous
and in time order, so episodes can be recovered from the ``terminations | truncations`` flags (the
last transition of every stream is marked truncated). Arrays:

=====================  ==========================  =======================================
field                  shape                       dtype
=====================  ==========================  =======================================
observations           (N, *obs_shape)             float32
actions                (N,) or (N, action_dim)     int32 (discrete) / float32 (continuous)
rewards                (N,)                        float32
next_observations      (N, *obs_shape)             float32 (the true next state, also at truncation)
terminations           (N,)                        float32 (1.0: do not bootstrap)
truncations            (N,)                        float32 (1.0: episode cut, bootstrap allowed)
extras                 dict of (N, ...) arrays     e.g. ``costs``, ``goals``, ``vector_rewards``
=====================  ==========================  =======================================

``info`` (a hashable ``DatasetInfo``) carries the env id and params, the collecting policy, the
reference returns of a random and an expert policy, and a content checksum.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.config import ConfigError

CORE_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")


class DatasetError(ConfigError):
    """A dataset that cannot be used: wrong env, wrong shapes, corrupt or truncated file."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a dataset (hashable, so a ``Dataset`` can be a static part of a jitted program)."""

    env_id: str
    """Registry id of the env the data comes from (``jaxrl.envs.make``)."""
    env_params: str = "{}"
    """JSON of the env-parameter overrides used when collecting (``{}``: defaults)."""
    kind: str = "custom"
    """random, medium, expert, medium-replay, medium-expert, or custom."""
    policy: str = ""
    """How the data was collected, e.g. ``sac (agents/online/sac.py) at 40% of expert``."""
    policy_checkpoint: str = ""
    """Path of the collecting policy's checkpoint, when there is one."""
    seed: int = 0
    """Seed of the collection."""
    size: int = 0
    """Number of transitions."""
    random_return: float = float("nan")
    """Mean episode return of a uniform-random policy (0 of the normalized score)."""
    expert_return: float = float("nan")
    """Mean episode return of the expert policy (100 of the normalized score)."""
    jaxrl_version: str = ""
    """Version of jaxrl that built the dataset."""
    checksum: str = ""
    """SHA-256 over the arrays' bytes, shapes and dtypes (``jaxrl.data`` file format)."""
    source: str = "jaxrl"
    """Where the data comes from: ``jaxrl`` (built here), ``minari:<id>`` or ``d4rl-hdf5:<file>``."""
    notes: str = ""
    """Free text: how the policies were chosen, measured ratios, caveats (see docs/datasets.md)."""


@struct.dataclass
class Dataset:
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    terminations: jax.Array
    truncations: jax.Array
    extras: dict = struct.field(default_factory=dict)
    info: DatasetInfo = struct.field(pytree_node=False, default=DatasetInfo(env_id=""))

    @property
    def size(self) -> int:
        return int(self.rewards.shape[0])

    def arrays(self) -> dict[str, Any]:
        """Every array by name (core fields, then extras)."""
        return {**{f: getattr(self, f) for f in CORE_FIELDS}, **self.extras}


def sample_batch(dataset: Dataset, key: jax.Array, batch_size: int) -> Dataset:
    """``batch_size`` transitions drawn uniformly with replacement (jit-able; ``info`` is kept)."""
    idx = jax.random.randint(key, (batch_size,), 0, dataset.rewards.shape[0])
    return jax.tree.map(lambda x: x[idx], dataset)


def check_compatible(dataset: Dataset, env_id: str, env, env_params, algorithm: str = "this agent") -> None:
    """Raise ``DatasetError`` unless ``dataset`` comes from ``env_id`` and its shapes fit the env's spaces."""
    from gymnax.environments import spaces

    if dataset.info.env_id and dataset.info.env_id != env_id:
        raise DatasetError(
            f"the dataset was collected on {dataset.info.env_id!r} but {algorithm} is configured for "
            f"{env_id!r}; pass --env {dataset.info.env_id} or a dataset built for {env_id}"
        )
    obs_shape = tuple(env.observation_space(env_params).shape)
    if tuple(dataset.observations.shape[1:]) != obs_shape:
        raise DatasetError(f"dataset observations have shape {tuple(dataset.observations.shape[1:])}, "
                           f"but {env_id} observations have shape {obs_shape}")
    space = env.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        ok = dataset.actions.ndim == 1 and jnp.issubdtype(dataset.actions.dtype, jnp.integer)
        expected = "integer actions of shape (N,)"
    else:
        ok = tuple(dataset.actions.shape[1:]) == tuple(space.shape)
        expected = f"float actions of shape (N, {', '.join(map(str, space.shape))})"
    if not ok:
        raise DatasetError(f"dataset actions are {dataset.actions.dtype} of shape {tuple(dataset.actions.shape)}; "
                           f"{env_id} needs {expected}")
    n = dataset.size
    for name, array in dataset.arrays().items():
        if array.shape[0] != n:
            raise DatasetError(f"dataset field {name!r} has {array.shape[0]} rows, rewards has {n}")


def collect(
    env_id: str,
    act: Callable[[jax.Array, jax.Array], jax.Array],
    num_transitions: int,
    key: jax.Array,
    num_envs: int = 8,
    env_overrides: dict | None = None,
    **info: Any,
) -> Dataset:
    """Roll ``act(obs_batch, key) -> action_batch`` in ``num_envs`` parallel envs (one ``lax.scan``).

    Returns ``num_transitions`` (rounded down to a multiple of ``num_envs``) transitions in stream
    order; the last transition of each env's stream is marked truncated. ``info`` fills the
    remaining ``DatasetInfo`` fields (``kind``, ``policy``, ``random_return`` ...).
    """
    from jaxrl import envs
    from jaxrl.wrappers import VectorEnv

    env, env_params = envs.make(env_id, **(env_overrides or {}))
    steps = num_transitions // num_envs
    if steps < 1:
        raise ConfigError(f"num_transitions={num_transitions} is less than num_envs={num_envs}")
    vec = VectorEnv(env, num_envs)

    def run(key):
        reset_key, key = jax.random.split(key)
        obs, state = vec.reset(reset_key, env_params)

        def step(carry, step_key):
            obs, state = carry
            act_key, env_key = jax.random.split(step_key)
            action = act(obs, act_key)
            next_obs, state, reward, terminated, truncated, step_info = vec.step(env_key, state, action, env_params)
            row = (obs, action, reward, step_info["final_observation"], terminated, truncated)
            return (next_obs, state), row

        _, rows = jax.lax.scan(step, (obs, state), jax.random.split(key, steps))
        return rows

    obs, action, reward, next_obs, terminated, truncated = jax.jit(run)(key)
    truncated = truncated.at[-1].set(True)

    def streams(x):  # (T, E, ...) -> (E * T, ...): each env's transitions contiguous
        return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])

    space = env.action_space(env_params)
    action_dtype = jnp.int32 if hasattr(space, "n") else jnp.float32
    data = Dataset(
        observations=streams(obs).astype(jnp.float32),
        actions=streams(action).astype(action_dtype),
        rewards=streams(reward).astype(jnp.float32),
        next_observations=streams(next_obs).astype(jnp.float32),
        terminations=streams(terminated).astype(jnp.float32),
        truncations=streams(truncated).astype(jnp.float32),
        info=DatasetInfo(env_id=env_id, env_params=json.dumps(env_overrides or {}, sort_keys=True),
                         size=steps * num_envs, **info),
    )
    return data


def concatenate(datasets: list[Dataset], **info: Any) -> Dataset:
    """One dataset holding ``datasets`` one after another (streams stay contiguous).

    Every part must have the same env and fields. ``info`` overrides fields of the first part's
    info (e.g. ``kind="medium-expert"``); ``size`` is recomputed and the checksum cleared.
    """
    if not datasets:
        raise DatasetError("concatenate needs at least one dataset")
    first = datasets[0]
    for other in datasets[1:]:
        if other.info.env_id != first.info.env_id:
            raise DatasetError(f"cannot concatenate datasets of {first.info.env_id!r} and {other.info.env_id!r}")
        if set(other.extras) != set(first.extras):
            raise DatasetError(f"cannot concatenate datasets with extras {sorted(first.extras)} and {sorted(other.extras)}")
    parts = [d.replace(info=first.info) for d in datasets]
    merged = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
    size = sum(d.size for d in datasets)
    return merged.replace(info=dataclasses.replace(first.info, size=size, checksum="", **info))


def episode_returns(dataset: Dataset) -> np.ndarray:
    """Return of every complete or cut episode in the dataset (host-side, for reporting)."""
    rewards = np.asarray(dataset.rewards, np.float64)
    ends = np.flatnonzero((np.asarray(dataset.terminations) + np.asarray(dataset.truncations)) > 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.array([rewards[s:e + 1].sum() for s, e in zip(starts, ends)])


# ----------------------------------------------------------------------------------------------
# Normalized scores
# ----------------------------------------------------------------------------------------------
REFERENCE_RETURNS: dict[str, tuple[float, float]] = {}
"""(random, expert) mean episode returns per env id, for datasets that do not carry their own."""


def reference_returns(env_id: str, info: DatasetInfo | None = None) -> tuple[float, float]:
    """(random_return, expert_return): the dataset's own when it has them, else ``REFERENCE_RETURNS``."""
    if info is not None and np.isfinite(info.random_return) and np.isfinite(info.expert_return):
        return float(info.random_return), float(info.expert_return)
    if env_id in REFERENCE_RETURNS:
        return REFERENCE_RETURNS[env_id]
    raise DatasetError(f"no reference returns for {env_id!r}: known ids are {', '.join(sorted(REFERENCE_RETURNS)) or 'none'}, "
                       "or use a dataset that records random_return and expert_return")


def normalized_score(env_id: str, returns, info: DatasetInfo | None = None):
    """D4RL's normalized score, 100 · (return − random) / (expert − random) (Fu et al. 2020, §5)."""
    random_return, expert_return = reference_returns(env_id, info)
    if expert_return == random_return:
        raise DatasetError(f"{env_id}: expert and random reference returns are equal ({expert_return}); cannot normalize")
    return 100.0 * (np.asarray(returns, np.float64) - random_return) / (expert_return - random_return)
