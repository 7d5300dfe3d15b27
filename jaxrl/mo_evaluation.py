"""What every multi-objective agent needs to score its policies: preferences, vector-return rollouts,
hypervolume reference points and the front metrics an agent writes to ``summary.json``.

* ``parse_preference("0.3,0.7", m)``: a ``Config`` string -> a weight vector on the simplex.
* ``num_objectives_of(env_id, env, algorithm)``: ``env.num_objectives``, or a clear error for a
  scalar-reward env.
* ``rollout_returns(env, env_params, act, key, episodes, gamma)``: mean discounted and undiscounted
  vector returns of a policy (pure, jittable, episodes in parallel).
* ``metric_weights(m)``: the equally spaced weights that expected utility and maximum utility loss
  average over.
* ``reference_point(env, returns)``: the hypervolume reference point (the literature's where
  there is one).
* ``front_metrics(returns, env, gamma)``: the found front, hypervolume, expected utility and
  cardinality. When the env knows its exact ``pareto_front(gamma)``, it also gives IGD, maximum
  utility loss and the hypervolume ratio to the true front.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import mo_metrics
from jaxrl.config import ConfigError

__all__ = ["parse_preference", "num_objectives_of", "rollout_returns", "metric_weights", "REFERENCE_POINTS",
           "reference_point", "hypervolume_or_none", "front_metrics"]


SIMPLEX_TOLERANCE = 1e-3
"""How far from 1 a typed weight vector's sum may be (``0.333,0.333,0.333`` passes); it is then rescaled exactly."""


def parse_preference(preference: str, num_objectives: int) -> np.ndarray:
    """``"0.3,0.7"`` -> [0.3, 0.7]: a point on the weight simplex (non-negative, summing to 1 within
    ``SIMPLEX_TOLERANCE``); ``""`` -> equal weights. ConfigError otherwise, naming the fix."""
    if not preference.strip():
        return np.full(num_objectives, 1.0 / num_objectives, np.float32)
    try:
        w = np.array([float(s) for s in preference.replace(" ", "").split(",") if s], np.float64)
    except ValueError:
        raise ConfigError(f"preference must be comma-separated numbers like '0.5,0.5', got {preference!r}") from None
    if w.shape != (num_objectives,):
        raise ConfigError(f"preference must have {num_objectives} values (one per objective), got {preference!r}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"preference must be non-negative finite numbers with a positive sum, got {preference!r}")
    if abs(w.sum() - 1.0) > SIMPLEX_TOLERANCE + 1e-12:
        normalized = ",".join(f"{v:.4g}" for v in w / w.sum())
        raise ConfigError(f"preference must sum to 1 (a point on the weight simplex), got {preference!r} (sum "
                          f"{w.sum():.4g}); did you mean '{normalized}'?")
    return (w / w.sum()).astype(np.float32)


def num_objectives_of(env_id: str, env, algorithm: str) -> int:
    m = getattr(env, "num_objectives", None)
    if m is None:
        raise ConfigError(f"{algorithm} needs a multi-objective env (vector reward, num_objectives); "
                          f"{env_id} has a scalar reward. Try DeepSeaTreasure-v0 or FruitTree-v0.")
    return int(m)


def rollout_returns(env, env_params, act: Callable, key, num_episodes: int, gamma):
    """Mean discounted and undiscounted vector returns of ``num_episodes`` episodes of ``act(obs, key)``.

    Episodes run in parallel from reset to their first termination or truncation (the env's time
    limit); later steps are ignored. Returns ``(discounted (m,), undiscounted (m,))``.
    """
    reset_key, run_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes), env_params)
    zeros = jnp.zeros((num_episodes, env.num_objectives), jnp.float32)

    def cond(carry):
        t, _, _, alive, *_ = carry
        return alive.any() & (t < env_params.max_steps_in_episode)

    def body(carry):
        t, obs, state, alive, discount, ret_d, ret_u, key = carry
        key, act_key, env_key = jax.random.split(key, 3)
        action = act(obs, act_key)
        obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(env_key, num_episodes), state, action, env_params)
        r = jnp.where(alive[:, None], reward.astype(jnp.float32), 0.0)
        ret_d, ret_u = ret_d + discount[:, None] * r, ret_u + r
        alive = alive & ~(terminated | truncated)
        return t + 1, obs, state, alive, discount * gamma, ret_d, ret_u, key

    init = (jnp.int32(0), obs, state, jnp.ones(num_episodes, bool), jnp.ones(num_episodes, jnp.float32),
            zeros, zeros, run_key)
    *_, ret_d, ret_u, _ = jax.lax.while_loop(cond, body, init)
    return ret_d.mean(axis=0), ret_u.mean(axis=0)


def metric_weights(num_objectives: int, divisions: int = 100, max_weights: int = 200) -> np.ndarray:
    """Equally spaced weights for expected utility / MUL: the simplex lattice with the largest
    ``n <= divisions`` that has at most ``max_weights`` points (101 weights for two objectives)."""
    n = divisions
    while n > 1 and math.comb(n + num_objectives - 1, num_objectives - 1) > max_weights:
        n -= 1
    return mo_metrics.equally_spaced_weights(num_objectives, n)


REFERENCE_POINTS = {"DeepSeaTreasure-v0": (0.0, -25.0), "DeepSeaTreasureConcave-v0": (0.0, -25.0)}
"""Hypervolume reference points used in the literature (morl-baselines' examples)."""


def reference_point(env, returns) -> np.ndarray:
    """The hypervolume reference point for ``env``: (0, -25) for Deep Sea Treasure (morl-baselines),
    the origin for Fruit Tree (non-negative rewards), otherwise 1 below the worst return in each
    objective (documented fallback; compare hypervolumes only at the same reference point)."""
    name = getattr(env, "name", "")
    if name in REFERENCE_POINTS:
        return np.asarray(REFERENCE_POINTS[name], np.float64)
    if name.startswith("FruitTree"):
        return np.zeros(np.asarray(returns).shape[-1])
    return np.asarray(returns, np.float64).min(axis=0) - 1.0


def hypervolume_or_none(points, ref, strict: bool = False):
    """``mo_metrics.hypervolume``, or None for more than 3 objectives when moocore is not installed."""
    try:
        return mo_metrics.hypervolume(points, ref, strict=strict)
    except ImportError:
        return None


def front_metrics(returns, env, gamma: float, ref_point=None) -> dict:
    """Host-side scores of the evaluated returns ``(P, m)`` (discounted with ``gamma``).

    ``front`` (the non-dominated returns), ``hypervolume`` at ``reference_point``, ``expected_utility``
    over ``metric_weights``, ``cardinality``; with the env's exact ``pareto_front(gamma)``, also
    ``igd``, ``maximum_utility_loss``, the true front, its hypervolume and ``hypervolume_ratio``.
    """
    points = np.asarray(returns, np.float64)
    ref = np.asarray(ref_point, np.float64) if ref_point is not None else reference_point(env, points)
    weights = metric_weights(points.shape[-1])
    front = mo_metrics.pareto_filter(points)
    out = {
        "front": front.tolist(),
        "reference_point": ref.tolist(),
        "hypervolume": hypervolume_or_none(front, ref),
        "expected_utility": mo_metrics.expected_utility(points, weights),
        "cardinality": mo_metrics.cardinality(points),
    }
    if hasattr(env, "pareto_front"):
        true = np.asarray(env.pareto_front(gamma), np.float64)
        true_hv = hypervolume_or_none(true, ref, strict=True)  # a wrong reference point is an error here
        out.update({
            "true_front": true.tolist(),
            "true_hypervolume": true_hv,
            "hypervolume_ratio": (out["hypervolume"] / true_hv) if out["hypervolume"] is not None and true_hv else None,
            "igd": mo_metrics.igd(points, true),
            "maximum_utility_loss": mo_metrics.maximum_utility_loss(points, true, weights),
        })
    return out
