"""SafeCartPole: gymnax's CartPole-v1 dynamics and reward, plus a per-step safety cost.

``info["cost"]`` is 1.0 on a step whose resulting state has the cart outside the central band
(|x| > ``cost_x_limit``) or moving too fast (|x_dot| > ``cost_speed_limit``), else 0.0. Reward,
termination (pole angle beyond 12°, |x| > 2.4) and dynamics are CartPole's, unchanged.

The idea, state constraints on the cart's position and velocity in cart-pole balancing, follows
safe-control-gym's constrained cartpole (Yuan et al. 2022, "safe-control-gym: a Unified Benchmark
Suite for Safe Learning-based Control and Reinforcement Learning in Robotics"); here the
constraint is an expected-cumulative-cost constraint of a CMDP (Altman 1999), as in Safety-Gym
(Ray et al. 2019), with a binary cost per step.

Defaults: band |x| ≤ 0.5 (a fifth of the 2.4 track half-length) and speed |x_dot| ≤ 1.0. Measured
on ``SafeCartPole-v0`` (200 steps, 1.5e5-step runs, 8 seeds, ``tests/test_ppo_lag.py``): random
actions end episodes after ~25 steps at an episode cost of ~2.4; PPO trained on reward alone
(``agents/safe/ppo_lag.py --lambda-init 0 --lambda-lr 0``) balances for ~190 steps but lets the cart
drift, at an episode cost of ~65, far above the OmniSafe-default limit of 25. Staying inside the
band is possible (balancing in place): PPO-Lag ends the same budget at cost ~2 and return ~150-190,
after oscillating between drifting and ending episodes early.
``SafeCartPole-v0`` has 200-step episodes, ``-v1`` 500 (CartPole-v0/-v1).
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import struct
from gymnax.environments.classic_control.cartpole import CartPole, EnvParams


@struct.dataclass
class SafeCartPoleParams(EnvParams):
    cost_x_limit: float = 0.5
    cost_speed_limit: float = 1.0


def cost_of(x, x_dot, params: SafeCartPoleParams):
    """1.0 when the cart is outside the band or faster than the speed limit, else 0.0."""
    unsafe = (jnp.abs(x) > params.cost_x_limit) | (jnp.abs(x_dot) > params.cost_speed_limit)
    return unsafe.astype(jnp.float32)


class SafeCartPole(CartPole):
    """CartPole with ``info["cost"]`` (see the module docstring)."""

    def __init__(self, max_steps_in_episode: int = 500):
        super().__init__()
        self._max_steps = int(max_steps_in_episode)

    @property
    def name(self) -> str:
        return "SafeCartPole-v0" if self._max_steps == 200 else "SafeCartPole-v1"

    @property
    def default_params(self) -> SafeCartPoleParams:
        return SafeCartPoleParams(max_steps_in_episode=self._max_steps)

    def step_env(self, key, state, action, params: SafeCartPoleParams):
        obs, new_state, reward, terminated, info = super().step_env(key, state, action, params)
        return obs, new_state, reward, terminated, {**info, "cost": cost_of(new_state.x, new_state.x_dot, params)}
