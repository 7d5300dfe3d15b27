"""SafePendulum: gymnax's Pendulum-v1 (dynamics, reward, start states, 200 steps) plus a safety cost
for the pole being in a forbidden wedge near the top.

The constraint is the "Safe Pendulum" of Sauté RL (Sootla et al. 2022, "Sauté RL: Almost Surely Safe
Reinforcement Learning Using State Augmentation", ICML; ``huawei-noah/HEBO`` repository,
``SAUTE/envs/pendula/single_pendulum.py``, ``SafePendulumEnv``): with θ the pole angle from upright
(gymnax's convention, normalized to [−π, π); positive torque increases θ), an unsafe wedge
[``unsafe_min``, ``unsafe_max``] = [20°, 30°] is widened by ``hazard_size`` = 45° on both sides, so
costs are paid for θ ∈ [−25°, 75°]. Inside, the cost decreases linearly from 1 at the wedge's
middle (25°) to 0 at its edges:

    c(θ) = max(0, 1 − |θ − 25°| / 50°)   for θ ∈ [−25°, 75°],   else 0.

``indicator_cost=True`` (an ``EnvParams`` field) replaces it with 1 everywhere in the region, the
binary "cost 1 per step in the region" form of Safety Gym's costs. As in Sauté (and as gymnax scores
the reward), the cost is that of the state the action is taken in, i.e. of the step's start.

Why the constraint binds: the region holds the upright position itself (c(0) = 0.5) and the
positive-θ side of the top, so the reward-optimal policy (swing up, balance at θ = 0) pays 0.5 per
balanced step. Holding the pole still at angle θ needs a torque of (m g l / 2) sin θ = 5 sin θ, at
most ``max_torque`` = 2, i.e. |θ| ≤ 23.6°: a safe policy swings up from the negative side and
balances tilted there (θ < 0), trading reward (−θ² per step) for cost. Measured with a hand-written
controller (energy-pumping swing-up, then PD with gravity compensation; 256 gymnax random starts,
200 steps): balancing upright returns −142 (about Pendulum's optimum) at an episode cost of 90;
balancing at −15°, −214 at cost 41; at −20°, −238 at cost 26, much of it paid by starts inside the
region. Uniform random torques return −1204 at cost 13 (the frictionless pole keeps the energy of
its random start, so high starts swing through the region again and again). Sauté trains with a
per-episode budget of 30 (``SAUTE/exps/single_pendulum``), which the tilted balance meets; the repo's
default limit of 25 is at the edge of what that controller reaches.

Observation ``[cos θ, sin θ, θ̇]``, action a torque in [−2, 2] of shape (1,), reward
−(θ² + 0.1 θ̇² + 0.001 u²), no termination, truncation after 200 steps: all gymnax's Pendulum-v1,
unchanged (``info`` keeps Pendulum's ``discount`` and adds ``cost``).

Registered id: ``SafePendulum-v0``.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import struct
from gymnax.environments.classic_control.pendulum import EnvParams, Pendulum, angle_normalize


@struct.dataclass
class SafePendulumParams(EnvParams):
    unsafe_min: float = jnp.pi * 20.0 / 180.0     # the unsafe wedge, before widening (Sauté)
    unsafe_max: float = jnp.pi * 30.0 / 180.0
    hazard_size: float = jnp.pi * 45.0 / 180.0    # widening on both sides: costs for θ in [−25°, 75°]
    indicator_cost: bool = False                  # True: cost 1 everywhere in the region


def cost_of(theta, params: SafePendulumParams):
    """Sauté's linear cost of the pole angle (module docstring); 1 in the whole region if indicator_cost."""
    theta = angle_normalize(theta)
    low, high = params.unsafe_min - params.hazard_size, params.unsafe_max + params.hazard_size
    middle = 0.5 * (params.unsafe_min + params.unsafe_max)
    inside = (theta >= low) & (theta <= high)
    graded = 1.0 - jnp.abs(theta - middle) / (high - middle)
    return jnp.where(inside, jnp.where(params.indicator_cost, 1.0, graded), 0.0).astype(jnp.float32)


class SafePendulum(Pendulum):
    """gymnax's Pendulum-v1 with ``info["cost"]`` (see the module docstring)."""

    @property
    def name(self) -> str:
        return "SafePendulum-v0"

    @property
    def default_params(self) -> SafePendulumParams:
        return SafePendulumParams()

    def step_env(self, key, state, action, params: SafePendulumParams):
        cost = cost_of(state.theta, params)
        obs, new_state, reward, terminated, info = super().step_env(key, state, action, params)
        return obs, new_state, reward, terminated, {**info, "cost": cost}
