"""One registry for every environment: gymnax's ids and this project's own (``envs/``).

>>> env, params = make("CartPole-v1")
>>> env, params = make("CartPole-v1", max_steps_in_episode=200)   # an EnvParams field
>>> env, params = make("Probe-Action", continuous=True)             # a constructor argument
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import gymnax
from gymnax.environments import spaces

import envs as project_envs
from jaxrl.config import ConfigError


class UnknownEnvError(ConfigError):
    """An env id that neither gymnax nor ``envs/`` registers."""


def registered_ids() -> list[str]:
    """Every id ``make`` accepts: gymnax's first, then the project's."""
    return list(gymnax.registered_envs) + [i for i in project_envs.REGISTRY if i not in gymnax.registered_envs]


def _constructor(env_id: str):
    if env_id in project_envs.REGISTRY:
        return project_envs.REGISTRY[env_id]
    if env_id in gymnax.registered_envs:
        return lambda **kw: gymnax.make(env_id, **kw)[0]
    close = difflib.get_close_matches(env_id, registered_ids(), n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownEnvError(
        f"unknown env id {env_id!r}.{hint} Valid ids: {', '.join(registered_ids())}"
    )


def make(env_id: str, **overrides: Any):
    """Build ``(env, env_params)`` for ``env_id``.

    Keyword overrides naming a field of the env's ``EnvParams`` (e.g. ``max_steps_in_episode``)
    replace that parameter; any other keyword goes to the env's constructor. An unknown id raises
    ``UnknownEnvError`` listing the closest valid ids. ``weights=`` (multi-objective envs) wraps the
    env in ``jaxrl.mo_wrappers.LinearScalarization``; the weights are then ``env_params.weights``.
    """
    weights = overrides.pop("weights", None)
    constructor = _constructor(env_id)
    probe_env = constructor()
    param_fields = {f.name for f in dataclasses.fields(probe_env.default_params)}
    param_overrides = {k: v for k, v in overrides.items() if k in param_fields}
    ctor_overrides = {k: v for k, v in overrides.items() if k not in param_fields}
    try:
        env = constructor(**ctor_overrides) if ctor_overrides else probe_env
    except TypeError as err:
        raise ConfigError(
            f"{env_id}: unknown override(s) {sorted(ctor_overrides)}; EnvParams fields are "
            f"{sorted(param_fields)} ({err})"
        ) from None
    env_params = env.default_params.replace(**param_overrides)
    if weights is not None:
        from jaxrl.mo_wrappers import LinearScalarization

        env = LinearScalarization(env, weights, env_params=env_params)
        env_params = env.default_params
    return env, env_params


def is_discrete(env, env_params) -> bool:
    return isinstance(env.action_space(env_params), spaces.Discrete)


def describe_action_space(env, env_params) -> str:
    space = env.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})"
    return f"Box(shape={tuple(space.shape)})"


def require_action_space(env_id: str, env, env_params, kind: str, algorithm: str) -> None:
    """Raise a clear error when ``algorithm`` (which supports only ``kind`` actions) gets the wrong env."""
    discrete = is_discrete(env, env_params)
    if (kind == "discrete") != discrete:
        examples = "CartPole-v1, Acrobot-v1, Breakout-MinAtar" if kind == "discrete" else "Pendulum-v1, MountainCarContinuous-v0"
        raise ConfigError(
            f"{algorithm} supports only {kind} action spaces, but {env_id} has "
            f"{describe_action_space(env, env_params)}. Try a {kind} env such as {examples}."
        )


def action_bounds(env, env_params):
    """(low, high) arrays of a Box action space."""
    import jax.numpy as jnp

    space = env.action_space(env_params)
    shape = tuple(space.shape)
    return jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape), jnp.broadcast_to(
        jnp.asarray(space.high, jnp.float32), shape
    )


class SpacesOnly(gymnax.environments.environment.Environment):
    """An env that only describes its spaces: for offline agents trained on data from a simulator
    gymnax does not have (a D4RL or Minari MuJoCo file).

    ``make_train(config, dataset, env=SpacesOnly(...))`` reads the observation and action spaces
    from it. The trained policy is then evaluated in the real simulator, outside the compiled
    program (``scripts/reproduce_d4rl.py`` does this with Gymnasium). ``reset`` and ``step`` raise.
    """

    def __init__(self, name: str, observation_shape: tuple[int, ...], action_space, max_steps_in_episode: int = 1000):
        super().__init__()
        self._name = name
        self._max_steps = int(max_steps_in_episode)
        self._observation_shape = tuple(int(d) for d in observation_shape)
        self._action_space = action_space

    @classmethod
    def continuous(cls, name: str, observation_shape, action_dim: int, low: float = -1.0, high: float = 1.0,
                   max_steps_in_episode: int = 1000):
        """Box observations of ``observation_shape`` and Box actions in ``[low, high]^action_dim``
        (D4RL's MuJoCo tasks: actions in [-1, 1], episodes of 1000 steps)."""
        if not low < high:
            raise ConfigError(f"action bounds must satisfy low < high, got [{low}, {high}]")
        return cls(name, observation_shape, spaces.Box(low, high, (int(action_dim),)), max_steps_in_episode)

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self):
        return gymnax.environments.environment.EnvParams(max_steps_in_episode=self._max_steps)

    def observation_space(self, params=None):
        return spaces.Box(-float("inf"), float("inf"), self._observation_shape)

    def action_space(self, params=None):
        return self._action_space

    def _cannot_simulate(self, *args, **kwargs):
        raise NotImplementedError(f"{self._name} is a SpacesOnly env: it describes spaces but cannot be "
                                  "simulated; evaluate the policy in the real simulator (see scripts/reproduce_d4rl.py)")

    reset_env = step_env = get_obs = _cannot_simulate


def require_cost(env_id: str, env, env_params, algorithm: str) -> None:
    """Raise a clear error unless ``env`` reports a per-step safety cost in ``info["cost"]``.

    The step is only traced (``jax.eval_shape``), not run, so this is free and happens before any
    compilation.
    """
    import jax

    def one_step(key):
        obs, state = env.reset(key, env_params)
        action = env.action_space(env_params).sample(key)
        return env.step(key, state, action, env_params)[-1]

    info = jax.eval_shape(one_step, jax.random.PRNGKey(0))
    if "cost" not in info:
        from envs import safe

        safe_ids = sorted(safe.REGISTRY)
        raise ConfigError(f"{algorithm} needs an env that reports a per-step cost in info['cost'], but {env_id} "
                          f"does not. Safe envs: {', '.join(safe_ids)}")
