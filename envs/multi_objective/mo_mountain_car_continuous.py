"""Multi-objective continuous Mountain Car, step for step as MO-Gymnasium 1.3.2's ``mo-mountaincarcontinuous-v0``.

Gymnasium's ``MountainCarContinuous`` dynamics: one action ``a`` (Box ``[-1, 1]``, shape ``(1,)``),
clipped to ``[-1, 1]`` as the force; ``v += force * 0.0015 - 0.0025 * cos(3 x)``, clipped to
``[-0.07, 0.07]``, then ``x += v``, clipped to ``[-1.2, 0.6]``, and ``v = 0`` when the car hits
the left wall while moving left. The episode terminates when ``x >= 0.45`` and
``v >= goal_velocity`` (0); truncation after 999 steps (``max_steps_in_episode``, MO-Gymnasium's
``max_episode_steps``). Start: ``x ~ U[-0.6, -0.4)``, ``v = 0``. Observation ``[x, v]`` (float32).

Reward ``[time, fuel]`` (float32), as MO-Gymnasium's ``MOContinuousMountainCar``: ``time`` is -1 on
every step but the one that reaches the goal (0 there); ``fuel`` is ``-a**2`` of the action *as
given* (not clipped: an action of 2 costs 4). A speed-versus-energy trade-off: pushing hard
reaches the goal sooner and burns more fuel. There is no known exact Pareto front (continuous state
and action), so no ``pareto_front``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

MIN_POSITION, MAX_POSITION, MAX_SPEED, GOAL_POSITION = -1.2, 0.6, 0.07, 0.45
POWER, GRAVITY = 0.0015, 0.0025


@struct.dataclass
class MountainCarContinuousState(environment.EnvState):
    position: jax.Array     # float32
    velocity: jax.Array     # float32


@struct.dataclass
class MOMountainCarContinuousParams(environment.EnvParams):
    max_steps_in_episode: int = 999
    goal_velocity: float = 0.0


class MOMountainCarContinuous(environment.Environment[MountainCarContinuousState, MOMountainCarContinuousParams]):
    """Continuous Mountain Car with a vector reward ``[time, fuel]`` (see the module docstring)."""

    num_objectives = 2

    @property
    def name(self) -> str:
        return "MOMountainCarContinuous-v0"

    @property
    def default_params(self) -> MOMountainCarContinuousParams:
        return MOMountainCarContinuousParams()

    def action_space(self, params: MOMountainCarContinuousParams | None = None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params: MOMountainCarContinuousParams | None = None):
        low = jnp.array([MIN_POSITION, -MAX_SPEED], jnp.float32)
        high = jnp.array([MAX_POSITION, MAX_SPEED], jnp.float32)
        return spaces.Box(low, high, (2,), jnp.float32)

    @staticmethod
    def _obs(state: MountainCarContinuousState):
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)

    def reset_env(self, key, params):
        position = jax.random.uniform(key, (), jnp.float32, -0.6, -0.4)
        state = MountainCarContinuousState(time=0, position=position, velocity=jnp.float32(0.0))
        return self._obs(state), state

    def step_env(self, key, state: MountainCarContinuousState, action, params):
        action = jnp.reshape(jnp.asarray(action, jnp.float32), (-1,))[0]
        force = jnp.clip(action, -1.0, 1.0)
        velocity = state.velocity + force * POWER - GRAVITY * jnp.cos(3.0 * state.position)
        velocity = jnp.clip(velocity, -MAX_SPEED, MAX_SPEED)
        position = jnp.clip(state.position + velocity, MIN_POSITION, MAX_POSITION)
        velocity = jnp.where((position == jnp.float32(MIN_POSITION)) & (velocity < 0), 0.0, velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= params.goal_velocity)
        reward = jnp.stack([jnp.where(terminated, 0.0, -1.0), -(action * action)]).astype(jnp.float32)
        next_state = MountainCarContinuousState(time=state.time + 1, position=position.astype(jnp.float32),
                                                velocity=velocity.astype(jnp.float32))
        return self._obs(next_state), next_state, reward, terminated, {}

    def is_terminated(self, state: MountainCarContinuousState, params: MOMountainCarContinuousParams):
        return (state.position >= GOAL_POSITION) & (state.velocity >= params.goal_velocity)
