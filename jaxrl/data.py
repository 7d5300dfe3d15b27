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

Files: ``save``/``load`` (one ``.npz`` with JSON metadata and a SHA-256 checksum, written atomically,
never pickled), ``to_minari``/``from_minari`` (Minari's format, optional extra) and
``load_d4rl_hdf5`` (D4RL-style HDF5). Scores: ``normalized_score`` with ``REFERENCE_RETURNS`` (D4RL's
hopper/halfcheetah/walker2d references and our envs' measured ones). docs/datasets.md has the details;
``scripts/make_dataset.py`` builds datasets with this project's online agents.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from pathlib import Path
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


def env_for(env_id: str, dataset: Dataset):
    """``jaxrl.envs.make(env_id)`` with the env-parameter overrides that ``dataset`` recorded, when it
    was collected in ``env_id``, so that a probe or a modified env is rebuilt as it was collected.

    A dataset from a simulator outside the registry (D4RL, Minari MuJoCo) has no env here: pass
    ``env=jaxrl.envs.SpacesOnly.continuous(...)`` to the agent's ``make_train`` instead.
    """
    from jaxrl import envs

    overrides = json.loads(dataset.info.env_params or "{}") if dataset.info.env_id == env_id else {}
    return envs.make(env_id, **overrides)


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
D4RL_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    # D4RL's REF_MIN_SCORE / REF_MAX_SCORE (d4rl/infos.py; Fu et al. 2020): the mean return of a
    # uniform-random policy and of the expert SAC policy, the same for every dataset of an env
    # (hopper-medium-v2, hopper-expert-v2, ...). Keyed by the lower-case env name; ids such as
    # ``hopper-medium-v2``, ``Hopper-v4`` or ``mujoco/hopper/medium-v0`` resolve to these.
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}
JAXRL_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    # Measured by scripts/make_dataset.py, seed 0: random = uniform-random actions, 100 episodes;
    # expert = greedy return of the best checkpoint of the online run on 100 fresh episodes
    # (docs/datasets.md). Datasets record their own values in ``DatasetInfo``; these are for scoring
    # when a dataset does not carry them.
    "CartPole-v1": (24.70, 498.12),       # PPO, 2e5-step run, checkpoint 304
    "Acrobot-v1": (-498.92, -83.67),      # PPO (gymnax-blines config), 1.5e5-step run, checkpoint 192
    "Pendulum-v1": (-1190.07, -152.27),   # SAC, 2e4-step run, checkpoint at 19,000 steps
    "MountainCarContinuous-v0": (-33.29, 94.84),  # SAC with noise_correlation 0.95, 2e4 steps, checkpoint 17,000
}
REFERENCE_RETURNS: dict[str, tuple[float, float]] = {**D4RL_REFERENCE_RETURNS, **JAXRL_REFERENCE_RETURNS}
"""(random, expert) mean episode returns per env id, for datasets that do not carry their own."""


def _reference_key(env_id: str) -> str | None:
    """The ``REFERENCE_RETURNS`` key of ``env_id``: exact, then case-insensitive, then by env name
    (``hopper-medium-v2`` / ``Hopper-v4`` / ``mujoco/hopper/medium-v0`` -> ``hopper``)."""
    if env_id in REFERENCE_RETURNS:
        return env_id
    lower = {k.lower(): k for k in REFERENCE_RETURNS}
    if env_id.lower() in lower:
        return lower[env_id.lower()]
    for token in re.split(r"[/_\-]", env_id.lower()):
        if token in lower:
            return lower[token]
    return None


def reference_returns(env_id: str, info: DatasetInfo | None = None) -> tuple[float, float]:
    """(random_return, expert_return): the dataset's own when it has them, else ``REFERENCE_RETURNS``."""
    if info is not None and np.isfinite(info.random_return) and np.isfinite(info.expert_return):
        return float(info.random_return), float(info.expert_return)
    key = _reference_key(env_id)
    if key is not None:
        return REFERENCE_RETURNS[key]
    raise DatasetError(f"no reference returns for {env_id!r}: known ids are {', '.join(sorted(REFERENCE_RETURNS)) or 'none'}, "
                       "or use a dataset that records random_return and expert_return")


def normalized_score(env_id: str, returns, info: DatasetInfo | None = None):
    """D4RL's normalized score, 100 · (return − random) / (expert − random) (Fu et al. 2020, §5)."""
    random_return, expert_return = reference_returns(env_id, info)
    if expert_return == random_return:
        raise DatasetError(f"{env_id}: expert and random reference returns are equal ({expert_return}); cannot normalize")
    return 100.0 * (np.asarray(returns, np.float64) - random_return) / (expert_return - random_return)


# ----------------------------------------------------------------------------------------------
# On-disk format: one .npz, arrays + JSON metadata, SHA-256 checksum, never pickle
# ----------------------------------------------------------------------------------------------
FORMAT_NAME = "jaxrl.dataset"
FORMAT_VERSION = 1
META_KEY = "__meta__"
EXTRA_PREFIX = "extras/"


def _array_order(arrays: dict[str, np.ndarray]) -> list[str]:
    """The fixed order the checksum walks: the core fields, then extras sorted by name."""
    extras = sorted(k for k in arrays if k not in CORE_FIELDS)
    return [f for f in CORE_FIELDS if f in arrays] + extras


def compute_checksum(dataset: Dataset) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes (core fields in ``CORE_FIELDS``
    order, then extras by name), as stored by ``save``: hex digest."""
    return _checksum({k: np.asarray(v) for k, v in dataset.arrays().items()})


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in _array_order(arrays):
        a = np.ascontiguousarray(arrays[name])
        header = json.dumps([name, a.dtype.str, list(a.shape)])
        digest.update(len(header).to_bytes(8, "little") + header.encode())
        digest.update(a.data.cast("B") if a.size else b"")
    return digest.hexdigest()


def _info_to_json(info: DatasetInfo) -> dict:
    out = {}
    for f in dataclasses.fields(DatasetInfo):
        v = getattr(info, f.name)
        out[f.name] = None if isinstance(v, float) and not np.isfinite(v) else v
    return out


def _info_from_json(values: dict, where: str) -> DatasetInfo:
    kinds = {f.name: f for f in dataclasses.fields(DatasetInfo)}
    kwargs = {}
    for name, value in values.items():
        if name not in kinds:
            continue  # written by a newer jaxrl: ignored
        default = kinds[name].default
        if isinstance(default, float):
            value = float("nan") if value is None else float(value)
        elif isinstance(default, int):
            value = int(value)
        elif not isinstance(value, str):
            raise DatasetError(f"{where}: metadata field {name!r} should be a string, got {value!r}")
        kwargs[name] = value
    if not kwargs.get("env_id"):
        raise DatasetError(f"{where}: metadata has no env_id")
    return DatasetInfo(**kwargs)


def _info_digest(info_json: dict) -> str:
    """SHA-256 of the metadata itself (everything but the checksums), so an edited expert_return is caught too."""
    body = {k: v for k, v in info_json.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` to ``path`` (a ``.npz``) atomically; returns the path.

    Format (docs/datasets.md): an uncompressed numpy ``.npz`` whose members are the core fields by
    name, extras as ``extras/<name>``, and ``__meta__``: the UTF-8 JSON metadata as a uint8 array
    (format name and version, the ``DatasetInfo`` fields, the array checksum, and a SHA-256 of the
    metadata). The file is written to a temporary file in the same folder, fsynced and renamed, so
    a reader never sees half a file. The checksum is computed here and also stored in the returned
    file's ``info.checksum``; ``load`` verifies both.
    """
    from jaxrl.io import open_atomic

    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(f"{path}: dataset files end in .npz")
    arrays = {k: np.asarray(v) for k, v in dataset.arrays().items()}
    for name, a in arrays.items():
        if a.dtype == object:
            raise DatasetError(f"dataset field {name!r} is an object array; only numeric arrays can be saved")
    n = dataset.size
    for name, a in arrays.items():
        if a.shape[:1] != (n,):
            raise DatasetError(f"dataset field {name!r} has shape {a.shape}; every field needs {n} rows")
    checksum = _checksum(arrays)
    info = dataclasses.replace(dataset.info, checksum=checksum, size=n)
    info_json = _info_to_json(info)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "info": info_json,
            "arrays": _array_order(arrays), "checksum": checksum, "info_sha256": _info_digest(info_json)}
    members = {(k if k in CORE_FIELDS else EXTRA_PREFIX + k): v for k, v in arrays.items()}
    members[META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True, allow_nan=False).encode(), np.uint8)
    with open_atomic(path, "wb") as f:
        np.savez(f, **members)
    return path


def load(path: str | os.PathLike) -> Dataset:
    """Read a dataset written by ``save``; arrays are verified against the stored checksum.

    Raises ``DatasetError`` naming the file and the problem: missing, truncated or not a zip,
    not a jaxrl dataset, an object (pickled) array, a corrupt member, a checksum mismatch
    (edited or damaged arrays), edited metadata, or inconsistent shapes. Never unpickles anything.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset file {path} does not exist (build one with scripts/make_dataset.py)")
    if path.suffix in (".hdf5", ".h5"):
        raise DatasetError(f"{path} is an HDF5 file: load D4RL files with jaxrl.data.load_d4rl_hdf5(path, env_id) "
                           "and save them with jaxrl.data.save(dataset, 'name.npz')")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if META_KEY not in names:
                raise DatasetError(f"{path} is not a jaxrl dataset file (no {META_KEY} member; members: "
                                   f"{', '.join(names[:8]) or 'none'})")
            members = {name: npz[name] for name in names}
    except DatasetError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise DatasetError(f"{path} contains an object array (pickled Python objects); jaxrl dataset files hold "
                               "only numeric arrays and are never unpickled") from None
        raise DatasetError(f"{path} is corrupt or truncated: {err}") from None
    except Exception as err:  # zipfile.BadZipFile (truncated / bad CRC), EOFError, OSError, ...
        raise DatasetError(f"{path} is corrupt or truncated ({type(err).__name__}: {err})") from None

    try:
        meta = json.loads(members.pop(META_KEY).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: the metadata is not valid JSON ({err})") from None
    if meta.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: unknown format {meta.get('format')!r} (expected {FORMAT_NAME!r})")
    if int(meta.get("version", -1)) > FORMAT_VERSION:
        raise DatasetError(f"{path} has format version {meta.get('version')}; this jaxrl reads up to {FORMAT_VERSION}")
    info_json = meta.get("info") or {}
    if meta.get("info_sha256") != _info_digest(info_json):
        raise DatasetError(f"{path}: the metadata was edited or is damaged (its SHA-256 does not match)")
    info = _info_from_json(info_json, str(path))

    arrays: dict[str, np.ndarray] = {}
    for name, a in members.items():
        key = name[len(EXTRA_PREFIX):] if name.startswith(EXTRA_PREFIX) else name
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise DatasetError(f"{path}: member {name!r} has dtype {a.dtype}; only numeric arrays are allowed")
        arrays[key] = a
    missing = [f for f in CORE_FIELDS if f not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing fields {missing}")
    if sorted(meta.get("arrays", [])) != sorted(arrays):
        raise DatasetError(f"{path}: holds arrays {sorted(arrays)} but its metadata lists {sorted(meta.get('arrays', []))}")
    checksum = _checksum(arrays)
    if checksum != meta.get("checksum") or checksum != info.checksum:
        raise DatasetError(f"{path}: checksum mismatch (stored {str(meta.get('checksum'))[:16]}..., computed "
                           f"{checksum[:16]}...): the arrays were edited or damaged")
    n = arrays["rewards"].shape[0]
    for name, a in arrays.items():
        if a.shape[:1] != (n,):
            raise DatasetError(f"{path}: field {name!r} has shape {a.shape}, rewards has {n} rows")
    if info.size != n:
        raise DatasetError(f"{path}: metadata says {info.size} transitions, arrays hold {n}")
    core = {f: jnp.asarray(arrays.pop(f)) for f in CORE_FIELDS}
    return Dataset(**core, extras={k: jnp.asarray(v) for k, v in arrays.items()}, info=info)


# ----------------------------------------------------------------------------------------------
# Episodes (stream order) and conversion helpers
# ----------------------------------------------------------------------------------------------
def episode_bounds(dataset: Dataset) -> list[tuple[int, int]]:
    """``(start, end)`` (end exclusive) of every episode, from the ``terminations | truncations`` flags;
    a tail without a final flag counts as a cut episode."""
    done = (np.asarray(dataset.terminations) + np.asarray(dataset.truncations)) > 0
    ends = list(np.flatnonzero(done) + 1)
    if not ends or ends[-1] != dataset.size:
        ends.append(dataset.size)
    starts = [0] + ends[:-1]
    return [(int(s), int(e)) for s, e in zip(starts, ends) if e > s]


def _from_numpy(arrays: dict[str, np.ndarray], extras: dict[str, np.ndarray], info: DatasetInfo, discrete: bool) -> Dataset:
    return Dataset(
        observations=jnp.asarray(arrays["observations"], jnp.float32),
        actions=jnp.asarray(arrays["actions"], jnp.int32 if discrete else jnp.float32),
        rewards=jnp.asarray(arrays["rewards"], jnp.float32).reshape(-1),
        next_observations=jnp.asarray(arrays["next_observations"], jnp.float32),
        terminations=jnp.asarray(arrays["terminations"], jnp.float32).reshape(-1),
        truncations=jnp.asarray(arrays["truncations"], jnp.float32).reshape(-1),
        extras={k: jnp.asarray(v) for k, v in extras.items()},
        info=dataclasses.replace(info, size=int(np.shape(arrays["rewards"])[0])),
    )


def _make_env(env_id: str, env_params_json: str = "{}"):
    from jaxrl import envs

    env, env_params = envs.make(env_id, **json.loads(env_params_json or "{}"))
    return env, env_params, envs.is_discrete(env, env_params)


# ----------------------------------------------------------------------------------------------
# Minari (optional extra: pip install 'jaxrl[offline]')
# ----------------------------------------------------------------------------------------------
def _minari():
    try:
        import minari
    except ImportError:
        raise DatasetError("Minari support needs the optional extra: pip install 'jaxrl[offline]' "
                           "(minari[hdf5] and h5py)") from None
    return minari


def gymnasium_spaces(env, env_params):
    """(observation_space, action_space) of a gymnax env as Gymnasium spaces (Box / Discrete)."""
    import gymnasium
    from gymnax.environments import spaces

    def convert(space):
        if isinstance(space, spaces.Discrete):
            return gymnasium.spaces.Discrete(int(space.n))
        if isinstance(space, spaces.Box):
            shape = tuple(space.shape)
            low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
            high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
            return gymnasium.spaces.Box(low=low, high=high, shape=shape, dtype=np.float32)
        raise DatasetError(f"cannot convert gymnax space {space!r} to Gymnasium")

    return convert(env.observation_space(env_params)), convert(env.action_space(env_params))


def to_minari(dataset: Dataset, dataset_id: str, *, author: str | None = None, description: str | None = None,
              algorithm_name: str | None = None, code_permalink: str | None = None):
    """Export ``dataset`` as the local Minari dataset ``dataset_id`` (e.g. ``jaxrl/pendulum-expert-v0``).

    Episodes are cut from the stream at ``terminations | truncations``; each becomes a Minari episode
    with T+1 observations (the last is the final transition's ``next_observations``). The Gymnasium
    spaces are built from the gymnax env; the random/expert reference returns go to Minari's
    ``ref_min_score``/``ref_max_score`` and the full ``DatasetInfo`` to the metadata key
    ``jaxrl_info``. Written under ``$MINARI_DATASETS_PATH`` (Minari's default ``~/.minari``).
    Extras are not exported (Minari episodes have no per-transition side channel we rely on).
    Returns the ``MinariDataset``.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    info = dataset.info
    if not info.env_id:
        raise DatasetError("to_minari needs a dataset whose info.env_id names a jaxrl env (for its spaces)")
    env, env_params, discrete = _make_env(info.env_id, info.env_params)
    obs_space, act_space = gymnasium_spaces(env, env_params)
    obs, nxt = np.asarray(dataset.observations), np.asarray(dataset.next_observations)
    actions = np.asarray(dataset.actions)
    actions = actions.astype(np.int64) if discrete else actions.astype(np.float32)
    rewards, term, trunc = (np.asarray(x, np.float64) for x in (dataset.rewards, dataset.terminations, dataset.truncations))
    buffers = []
    for ep, (s, e) in enumerate(episode_bounds(dataset)):
        ep_trunc = trunc[s:e] > 0
        ep_term = term[s:e] > 0
        if not (ep_term[-1] or ep_trunc[-1]):
            ep_trunc = ep_trunc.copy()
            ep_trunc[-1] = True  # an unflagged tail: a cut episode
        buffers.append(EpisodeBuffer(
            id=ep, observations=np.concatenate([obs[s:e], nxt[e - 1:e]]).astype(np.float32),
            actions=actions[s:e], rewards=list(rewards[s:e]), terminations=list(ep_term),
            truncations=list(ep_trunc)))
    kwargs = dict(observation_space=obs_space, action_space=act_space,
                  algorithm_name=algorithm_name or (info.policy or "jaxrl"),
                  description=description or f"jaxrl dataset: {info.env_id} {info.kind} ({info.policy})")
    if author:
        kwargs["author"] = author
    if code_permalink:
        kwargs["code_permalink"] = code_permalink
    with warnings.catch_warnings():  # Minari nags about the env spec, author and permalink we may not have
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\..*")
        result = minari.create_dataset_from_buffers(dataset_id, buffers, **kwargs)
    checksum = info.checksum or compute_checksum(dataset)
    extra = {"jaxrl_info": json.dumps(_info_to_json(dataclasses.replace(info, checksum=checksum)), sort_keys=True)}
    if np.isfinite(info.random_return) and np.isfinite(info.expert_return):
        extra.update(ref_min_score=float(info.random_return), ref_max_score=float(info.expert_return))
    result.storage.update_metadata(extra)
    return minari.load_dataset(dataset_id)


def from_minari(dataset, env_id: str | None = None, **info: Any) -> Dataset:
    """Load a Minari dataset (an id of a local dataset, or a ``MinariDataset``) as a ``Dataset``.

    ``env_id`` is the jaxrl registry id the data belongs to (default: the one recorded by
    ``to_minari``); shapes are checked against that env (``check_compatible``) when the registry
    knows it. Any other id (e.g. ``mujoco/hopper/medium-v0``) loads unchecked, for training on a
    ``jaxrl.envs.SpacesOnly`` env (``scripts/reproduce_d4rl.py``). Each Minari
    episode of T steps gives T transitions with ``next_observations = observations[1:]``.
    Reference returns come from the dataset's ``ref_min_score``/``ref_max_score`` when present.
    ``info`` overrides ``DatasetInfo`` fields. The checksum is recomputed over the loaded arrays.
    """
    minari = _minari()
    ds = minari.load_dataset(dataset) if isinstance(dataset, str) else dataset
    meta = ds.storage.metadata
    saved = json.loads(meta["jaxrl_info"]) if "jaxrl_info" in meta else {}
    if env_id and saved.get("env_id") and saved["env_id"] != env_id:
        raise DatasetError(f"Minari dataset {ds.spec.dataset_id!r} was exported from {saved['env_id']!r}, "
                           f"not {env_id!r}; pass env_id={saved['env_id']!r} or use a dataset of {env_id}")
    env_id = env_id or saved.get("env_id")
    if not env_id:
        raise DatasetError(f"Minari dataset {ds.spec.dataset_id!r} does not record a jaxrl env id: pass env_id")
    base = _info_from_json({**saved, "env_id": env_id}, f"Minari dataset {ds.spec.dataset_id}") if saved else DatasetInfo(env_id=env_id)
    from jaxrl import envs

    env = None
    if env_id in envs.registered_ids():
        env, env_params, discrete = _make_env(env_id, base.env_params)
    else:  # a simulator gymnax lacks (Minari's MuJoCo datasets): the spaces come from the dataset
        discrete = type(ds.spec.action_space).__name__ == "Discrete"
    cols: dict[str, list] = {f: [] for f in CORE_FIELDS}
    for ep in ds.iterate_episodes():
        o = np.asarray(ep.observations)
        if not isinstance(ep.observations, np.ndarray) or o.dtype == object:
            raise DatasetError(f"Minari dataset {ds.spec.dataset_id!r} has dict/tuple observations; only arrays are supported")
        t = len(ep.rewards)
        cols["observations"].append(o[:t])
        cols["next_observations"].append(o[1:t + 1])
        cols["actions"].append(np.asarray(ep.actions)[:t])
        cols["rewards"].append(np.asarray(ep.rewards, np.float32))
        cols["terminations"].append(np.asarray(ep.terminations, np.float32))
        trunc = np.asarray(ep.truncations, np.float32).copy()
        if t and not (trunc[-1] or ep.terminations[-1]):
            trunc[-1] = 1.0  # keep episodes separable in stream order
        cols["truncations"].append(trunc)
    if not cols["rewards"]:
        raise DatasetError(f"Minari dataset {ds.spec.dataset_id!r} has no episodes")
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    refs = {}
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        refs = dict(random_return=float(meta["ref_min_score"]), expert_return=float(meta["ref_max_score"]))
    if "source" not in info:
        info["source"] = f"minari:{ds.spec.dataset_id}"
    base = dataclasses.replace(base, checksum="", **refs, **info)
    data = _from_numpy(arrays, {}, base, discrete)
    if env is not None:
        check_compatible(data, env_id, env, env_params, "from_minari")
    return data.replace(info=dataclasses.replace(data.info, checksum=compute_checksum(data)))


# ----------------------------------------------------------------------------------------------
# D4RL-style HDF5
# ----------------------------------------------------------------------------------------------
def load_d4rl_hdf5(path: str | os.PathLike, env_id: str, **info: Any) -> Dataset:
    """Load a D4RL-style HDF5 file (``observations``, ``actions``, ``rewards``, ``terminals``,
    ``timeouts``, optional ``next_observations``) as a ``Dataset`` for ``env_id``.

    ``terminals`` become ``terminations`` and ``timeouts`` ``truncations``. D4RL files store one
    flat stream of episodes. Without ``next_observations`` the next state of step t is
    ``observations[t+1]`` inside an episode; at a termination it is not needed (no bootstrap) and is
    set to the step's own observation; a timeout step (and an unflagged last step of the file) has
    an unknown next state and is dropped, like D4RL's ``qlearning_dataset``, and the step before it
    is marked truncated so episodes stay separable. With ``next_observations`` every step is kept.
    Reference returns default to ``REFERENCE_RETURNS`` (D4RL's for hopper/halfcheetah/walker2d);
    shapes are checked against ``env_id``'s env when the registry knows it.
    """
    try:
        import h5py
    except ImportError:
        raise DatasetError("loading HDF5 needs h5py: pip install 'jaxrl[offline]'") from None
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"D4RL file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            needed = ("observations", "actions", "rewards", "terminals", "timeouts")
            missing = [k for k in needed if k not in f]
            if missing:
                raise DatasetError(f"{path}: missing D4RL keys {missing} (has {sorted(f.keys())})")
            raw = {k: np.asarray(f[k][()]) for k in needed}
            next_obs = np.asarray(f["next_observations"][()]) if "next_observations" in f else None
    except DatasetError:
        raise
    except Exception as err:  # OSError from a truncated/corrupt file, ...
        raise DatasetError(f"{path} is not a readable HDF5 file ({type(err).__name__}: {err})") from None
    n = raw["rewards"].reshape(-1).shape[0]
    for k, v in {**raw, **({"next_observations": next_obs} if next_obs is not None else {})}.items():
        if v.shape[:1] != (n,):
            raise DatasetError(f"{path}: {k!r} has {v.shape[0] if v.ndim else 0} rows, rewards has {n}")
    obs = raw["observations"].astype(np.float32)
    term = raw["terminals"].reshape(-1).astype(bool)
    trunc = raw["timeouts"].reshape(-1).astype(bool)
    if next_obs is not None:
        keep = np.ones(n, bool)
        nxt = next_obs.astype(np.float32)
    else:
        nxt = np.empty_like(obs)
        nxt[:-1] = obs[1:]
        nxt[-1] = obs[-1]
        nxt[term] = obs[term]
        unknown = trunc & ~term
        unknown[-1] |= not term[-1]
        keep = ~unknown
        before = np.flatnonzero(unknown) - 1  # the step before a dropped one now ends its episode
        before = before[(before >= 0) & keep[np.clip(before, 0, None)]]
        trunc = trunc.copy()
        trunc[before] = True
    from jaxrl import envs

    discrete = raw["actions"].ndim == 1 and np.issubdtype(raw["actions"].dtype, np.integer)
    env = None
    if env_id in envs.registered_ids():
        env, env_params, discrete = _make_env(env_id)
    arrays = {"observations": obs[keep], "actions": raw["actions"][keep], "rewards": raw["rewards"].reshape(-1)[keep],
              "next_observations": nxt[keep], "terminations": term[keep], "truncations": trunc[keep]}
    if arrays["rewards"].shape[0] and not (arrays["terminations"][-1] or arrays["truncations"][-1]):
        arrays["truncations"][-1] = True
    refs = {}
    key = _reference_key(env_id) or _reference_key(path.stem)
    if key is not None:
        refs = dict(zip(("random_return", "expert_return"), REFERENCE_RETURNS[key]))
    base = DatasetInfo(env_id=env_id, kind="custom", source=f"d4rl-hdf5:{path.name}", policy=f"D4RL file {path.name}",
                       **{**refs, **info})
    data = _from_numpy(arrays, {}, base, discrete)
    if env is not None:
        check_compatible(data, env_id, env, env_params, "load_d4rl_hdf5")
    return data.replace(info=dataclasses.replace(data.info, checksum=compute_checksum(data)))
