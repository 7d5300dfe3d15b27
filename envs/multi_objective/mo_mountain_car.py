"""Multi-objective Mountain Car, step for step as MO-Gymnasium 1.3.2's ``mo-mountaincar-v0`` and variants.

Gymnasium's Mountain Car (Moore 1990; Sutton & Barto 2018, Example 10.1): a car in a valley,
position in ``[-1.2, 0.6]``, velocity in ``[-0.07, 0.07]``, actions 0 push left, 1 no push,
2 push right; ``v += (action - 1) * 0.001 - 0.0025 * cos(3 x)``, clipped, then ``x += v``,
clipped, and ``v = 0`` when the car hits the left wall while moving left. The episode terminates
when ``x >= 0.5`` and ``v >= goal_velocity`` (0); truncation after 200 steps
(``max_steps_in_episode``, MO-Gymnasium's ``max_episode_steps``). Start: ``x ~ U[-0.6, -0.4)``,
``v = 0``. Observation ``[x, v]`` (float32).

The reward vector, as MO-Gymnasium's ``MOMountainCar`` (float32), by ``variant``:

==================  ====================================  =============================================
variant (our id)     MO-Gymnasium id                       reward
==================  ====================================  =============================================
``"default"``        ``mo-mountaincar-v0``                 ``[time, reverse, forward]``
``"3d"``             ``mo-mountaincar-3d-v0``              ``[time, move, speed]``
``"timemove"``       ``mo-mountaincar-timemove-v0``        ``[time, move]``
``"timespeed"``      ``mo-mountaincar-timespeed-v0``       ``[time, speed]``
==================  ====================================  =============================================

``time`` is -1 on every step but the one that reaches the goal (0 there); ``reverse`` is -1 when
the action is 0, ``forward`` -1 when it is 2, ``move`` -1 when the action is not 1; ``speed`` is
``15 * |v|`` (after the update). MO-Gymnasium computes in float64 and casts the observation to
float32; this env computes in float32 (see ``tests/test_mo_envs_more.py`` for the tolerance).
There is no known exact Pareto front (continuous state), so no ``pareto_front``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

MIN_POSITION, MAX_POSITION, MAX_SPEED, GOAL_POSITION = -1.2, 0.6, 0.07, 0.5
FORCE, GRAVITY = 0.001, 0.0025

# variant -> (objective names, MO-Gymnasium's constructor kwargs)
VARIANTS = {
    "default": (("time", "reverse", "forward"), {}),
    "3d": (("time", "move", "speed"), {"add_speed_objective": True, "merge_move_penalty": True}),
    "timemove": (("time", "move"), {"merge_move_penalty": True}),
    "timespeed": (("time", "speed"), {"remove_move_penalty": True, "add_speed_objective": True}),
}


@struct.dataclass
class MountainCarState(environment.EnvState):
    position: jax.Array     # float32
    velocity: jax.Array     # float32


@struct.dataclass
class MOMountainCarParams(environment.EnvParams):
    max_steps_in_episode: int = 200
    goal_velocity: float = 0.0


class MOMountainCar(environment.Environment[MountainCarState, MOMountainCarParams]):
    """Mountain Car with a vector reward chosen by ``variant`` (see the module docstring)."""

    def __init__(self, variant: str = "default"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown MO Mountain Car variant {variant!r}; allowed: {sorted(VARIANTS)}")
        self.variant = variant
        self.objectives = VARIANTS[variant][0]
        self.num_objectives = len(self.objectives)

    @property
    def name(self) -> str:
        return "MOMountainCar-v0" if self.variant == "default" else f"MOMountainCar-{self.variant}-v0"

    @property
    def default_params(self) -> MOMountainCarParams:
        return MOMountainCarParams()

    @property
    def num_actions(self) -> int:
        return 3

    def action_space(self, params: MOMountainCarParams | None = None):
        return spaces.Discrete(3)

    def observation_space(self, params: MOMountainCarParams | None = None):
        low = jnp.array([MIN_POSITION, -MAX_SPEED], jnp.float32)
        high = jnp.array([MAX_POSITION, MAX_SPEED], jnp.float32)
        return spaces.Box(low, high, (2,), jnp.float32)

    @staticmethod
    def _obs(state: MountainCarState):
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)

    def reset_env(self, key, params):
        position = jax.random.uniform(key, (), jnp.float32, -0.6, -0.4)
        state = MountainCarState(time=0, position=position, velocity=jnp.float32(0.0))
        return self._obs(state), state

    def step_env(self, key, state: MountainCarState, action, params):
        action = jnp.reshape(action, ()).astype(jnp.int32)
        velocity = state.velocity + (action - 1).astype(jnp.float32) * FORCE - GRAVITY * jnp.cos(3.0 * state.position)
        velocity = jnp.clip(velocity, -MAX_SPEED, MAX_SPEED)
        position = jnp.clip(state.position + velocity, MIN_POSITION, MAX_POSITION)
        velocity = jnp.where((position == jnp.float32(MIN_POSITION)) & (velocity < 0), 0.0, velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= params.goal_velocity)
        reward = self._reward(action, velocity, terminated)
        next_state = MountainCarState(time=state.time + 1, position=position.astype(jnp.float32),
                                      velocity=velocity.astype(jnp.float32))
        return self._obs(next_state), next_state, reward, terminated, {}

    def _reward(self, action, velocity, terminated):
        terms = {
            "time": jnp.where(terminated, 0.0, -1.0),
            "reverse": jnp.where(action == 0, -1.0, 0.0),
            "forward": jnp.where(action == 2, -1.0, 0.0),
            "move": jnp.where(action == 1, 0.0, -1.0),
            "speed": 15.0 * jnp.abs(velocity),
        }
        return jnp.stack([terms[name] for name in self.objectives]).astype(jnp.float32)

    def is_terminated(self, state: MountainCarState, params: MOMountainCarParams):
        return (state.position >= GOAL_POSITION) & (state.velocity >= params.goal_velocity)
