"""Small offline datasets for tests, collected from scripted controllers (no training needed).

``pendulum_dataset(kind, n)`` and ``cartpole_dataset(kind, n)`` return a ``jaxrl.data.Dataset`` in
stream order, with the random and expert reference returns of the scripted policies recorded in its
info (so normalized scores work). Kinds, after D4RL:

* ``expert``:        the scripted controller, with a little action noise;
* ``medium``:        the controller with heavy noise (about a third to a half of expert return);
* ``random``:        uniform-random actions;
* ``medium-replay``: a mix growing from random towards medium, like the replay of a run up to medium;
* ``medium-expert``: the union of medium and expert (half each).

The real datasets for reproduce runs come from ``scripts/make_dataset.py`` (trained agents); these
are for fast, deterministic unit and learning tests.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import data as data_lib

PENDULUM_MAX_TORQUE = 2.0


def pendulum_controller(obs: jax.Array) -> jax.Array:
    """Energy-pumping swing-up with a PD controller near the top; obs = (cos θ, sin θ, θ̇), shape (..., 3)."""
    cos, sin, vel = obs[..., 0], obs[..., 1], obs[..., 2]
    theta = jnp.arctan2(sin, cos)  # 0 is upright
    energy = 0.5 * vel ** 2 + 10.0 * (cos - 1.0)  # 0 at rest upright (g = 10, m = l = 1)
    direction = jnp.where(vel >= 0, 1.0, -1.0)
    pump = jnp.where(energy < 0, PENDULUM_MAX_TORQUE * direction, -0.5 * direction)  # add energy until E = 0
    balance = jnp.clip(-(10.0 * theta + 2.0 * vel), -PENDULUM_MAX_TORQUE, PENDULUM_MAX_TORQUE)
    near_top = cos > 0.85
    return jnp.where(near_top, balance, pump)[..., None]


def cartpole_controller(obs: jax.Array) -> jax.Array:
    """Push towards the side the pole falls to (with a little cart-centering); obs (..., 4) -> {0, 1}."""
    x, x_dot, theta, theta_dot = obs[..., 0], obs[..., 1], obs[..., 2], obs[..., 3]
    return (theta + 0.5 * theta_dot + 0.01 * x + 0.05 * x_dot > 0).astype(jnp.int32)


def _noisy_policy(env_id: str, noise: float):
    """The scripted controller with probability ``1 - noise`` per step, else a uniform-random action."""
    continuous = env_id == "Pendulum-v1"

    def policy(obs, key):
        noise_key, rand_key, gauss_key = jax.random.split(key, 3)
        if continuous:
            expert = pendulum_controller(obs) + 0.1 * jax.random.normal(gauss_key, obs.shape[:-1] + (1,))
            random = jax.random.uniform(rand_key, obs.shape[:-1] + (1,), minval=-2.0, maxval=2.0)
            use_random = jax.random.uniform(noise_key, obs.shape[:-1] + (1,)) < noise
            return jnp.clip(jnp.where(use_random, random, expert), -2.0, 2.0)
        expert = cartpole_controller(obs)
        random = jax.random.randint(rand_key, obs.shape[:-1], 0, 2)
        return jnp.where(jax.random.uniform(noise_key, obs.shape[:-1]) < noise, random, expert)

    return policy


NOISE = {"expert": 0.05, "medium": None, "random": 1.0}
MEDIUM_NOISE = {"Pendulum-v1": 0.6, "CartPole-v1": 0.5}


def _collect(env_id: str, noise: float, n: int, seed: int, kind: str, num_envs: int = 8):
    return data_lib.collect(env_id, _noisy_policy(env_id, noise), n, jax.random.PRNGKey(seed),
                            num_envs=num_envs, kind=kind, policy=f"scripted controller, {noise:.0%} random actions",
                            seed=seed)


@functools.lru_cache(maxsize=None)
def reference_returns(env_id: str) -> tuple[float, float]:
    """(random, expert) mean episode returns of the scripted policies, measured on 16 episodes."""
    from jaxrl import envs
    from jaxrl.evaluation import evaluate

    env, params = envs.make(env_id)
    out = []
    for noise in (1.0, 0.0):
        policy = _noisy_policy(env_id, noise)
        result = jax.jit(lambda k: evaluate(env, params, lambda o, kk: policy(o, kk), k, 16))(jax.random.PRNGKey(123))
        out.append(float(np.mean(result["return"])))
    return out[0], out[1]


def _with_refs(dataset, env_id):
    random_return, expert_return = reference_returns(env_id)
    info = dataset.info
    import dataclasses

    return dataset.replace(info=dataclasses.replace(info, random_return=random_return, expert_return=expert_return))


def _concat(parts, kind):
    return data_lib.concatenate(parts, kind=kind, policy=" + ".join(p.info.policy for p in parts))


def make_dataset(env_id: str, kind: str, n: int = 20_000, seed: int = 0):
    """A scripted dataset of ``n`` transitions (``Pendulum-v1`` or ``CartPole-v1``)."""
    if env_id not in MEDIUM_NOISE:
        raise ValueError(f"scripted datasets exist for {sorted(MEDIUM_NOISE)}, not {env_id!r}")
    medium_noise = MEDIUM_NOISE[env_id]
    if kind in ("expert", "random", "medium"):
        noise = medium_noise if kind == "medium" else NOISE[kind]
        ds = _collect(env_id, noise, n, seed, kind)
    elif kind == "medium-expert":
        ds = _concat([_collect(env_id, medium_noise, n // 2, seed, "medium"),
                      _collect(env_id, NOISE["expert"], n // 2, seed + 1, "expert")], kind)
    elif kind == "medium-replay":
        parts = [_collect(env_id, noise, n // 4, seed + i, "replay") for i, noise in enumerate(np.linspace(1.0, medium_noise, 4))]
        ds = _concat(parts, kind)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return _with_refs(ds, env_id)


def pendulum_dataset(kind: str = "expert", n: int = 20_000, seed: int = 0):
    return make_dataset("Pendulum-v1", kind, n, seed)


def cartpole_dataset(kind: str = "expert", n: int = 20_000, seed: int = 0):
    return make_dataset("CartPole-v1", kind, n, seed)
