"""CartPole swing-up with a continuous force: the cart-pole task PETS reports on (Chua et al. 2018).

Dynamics are gymnax's ``CartPole-v1`` equations of motion (Barto, Sutton & Anderson 1983; the same
masses, half-length 0.5 and force 10 N), re-written here for a continuous force, with two changes
for swinging up rather than balancing:

* **Semi-implicit Euler** (velocities first, then positions with the new velocities: Gym's
  ``kinematics_integrator="semi-implicit euler"`` option). gymnax's explicit Euler pumps energy into
  a swinging pole at every step; the semi-implicit step keeps a free swing's energy bounded. The
  velocities after a step are exactly gymnax's.
* **Steps of ``tau`` = 0.05 s** (gymnax: 0.02), so a 200-step episode lasts 10 s and a planner's
  25-step horizon (PETS' cart-pole ``PLAN_HOR``) sees 1.25 s ahead. Measured with the *true*
  dynamics (CEM, population 200, 3 iterations, one episode): at 0.05 s, horizon 25 swings up and
  balances (return 177) while horizon 15 does not (1.1); at 0.02 s, horizon 30 does not (2.5) and
  horizon 60 does (145). Set ``tau=0.02`` in the params for gymnax's step.

The task:

* **Action**: a Box of shape (1,) in [-1, 1]; the force on the cart is ``force_mag · a`` (10 N at
  |a| = 1). Actions outside the bounds are clipped.
* **Start**: the pole hangs down, θ = π + U(-0.05, 0.05) (gymnax's angle convention: θ = 0 is
  upright); x, ẋ, θ̇ start at U(-0.05, 0.05) like CartPole's.
* **Observation**: ``[x, ẋ, sin θ, cos θ, θ̇]`` — the angle as (sin, cos) so that nothing wraps
  around at ±π (PETS feeds its model the same (sin, cos) preprocessing of θ).
* **Reward** (PETS' cart-pole cost, ``handful-of-trials/dmbrl/config/cartpole.py``: ``obs_cost_fn``
  and ``ac_cost_fn``, negated): with the pole tip at p = (x + ℓ sin θ, ℓ cos θ), ℓ = 2 · length the
  full pole length (1.0 m; PETS' MuJoCo pole is 0.6 m), and the target the upright tip above the
  origin, (0, ℓ),

      r = exp(−‖p − (0, ℓ)‖² / ℓ²) − 0.01 · a²

  computed on the state the action is taken in (as gymnax's Pendulum does; PETS' planner scores
  the predicted next state), so 1 is the maximum (pole upright, cart at the centre, no force) and a
  hanging pole earns exp(−4) ≈ 0.018.
* **Track**: the cart runs on a bounded track, |x| ≤ ``x_limit`` = 2.4 m (CartPole's ``x_threshold``);
  at an end stop it stops (x clipped, ẋ set to 0; the pole keeps swinging). Without the stops random
  forces drive the cart tens of metres away (measured: |x| up to 35 m over ten random episodes), so
  the data a model learns from would almost never show the reward's 1 m-wide bump.
* **Episodes**: 200 steps (PETS' ``TASK_HORIZON``), **no termination**: the pole may spin freely and
  the cart stays on its track. Every episode ends by truncation, so agents bootstrap through every
  episode end.

Registered id: ``CartPoleSwingUp-v0``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class SwingUpState(environment.EnvState):
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: int


@struct.dataclass
class SwingUpParams(environment.EnvParams):
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5          # half the pole's length (gymnax/gym convention)
    force_mag: float = 10.0
    tau: float = 0.05            # gymnax: 0.02 (module docstring)
    action_cost: float = 0.01    # PETS' 0.01 · a²
    x_limit: float = 2.4         # end stops of the track (CartPole's x_threshold)
    max_steps_in_episode: int = 200


def tip_position(x, theta, params: SwingUpParams):
    """The pole tip (horizontal, vertical) relative to the rail at height 0; θ = 0 is upright."""
    pole = 2.0 * params.length
    return x + pole * jnp.sin(theta), pole * jnp.cos(theta)


def swingup_reward(x, theta, action, params: SwingUpParams):
    """PETS' cartpole reward: exp(−‖tip − (0, ℓ)‖² / ℓ²) − action_cost · a² (module docstring)."""
    pole = 2.0 * params.length
    tip_x, tip_y = tip_position(x, theta, params)
    dist2 = tip_x ** 2 + (tip_y - pole) ** 2
    return jnp.exp(-dist2 / pole ** 2) - params.action_cost * jnp.sum(action ** 2)


def cartpole_derivatives(state: SwingUpState, force, params: SwingUpParams):
    """(ẍ, θ̈) of gymnax's CartPole equations for a given horizontal force."""
    total_mass = params.masscart + params.masspole
    polemass_length = params.masspole * params.length
    cos, sin = jnp.cos(state.theta), jnp.sin(state.theta)
    temp = (force + polemass_length * state.theta_dot ** 2 * sin) / total_mass
    theta_acc = (params.gravity * sin - cos * temp) / (
        params.length * (4.0 / 3.0 - params.masspole * cos ** 2 / total_mass))
    x_acc = temp - polemass_length * theta_acc * cos / total_mass
    return x_acc, theta_acc


class CartPoleSwingUp(environment.Environment[SwingUpState, SwingUpParams]):
    """Swing the pole up from hanging down and balance it (module docstring)."""

    @property
    def name(self) -> str:
        return "CartPoleSwingUp-v0"

    @property
    def default_params(self) -> SwingUpParams:
        return SwingUpParams()

    def action_space(self, params: SwingUpParams | None = None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params: SwingUpParams | None = None):
        return spaces.Box(-jnp.inf, jnp.inf, (5,), jnp.float32)

    def get_obs(self, state: SwingUpState, params=None, key=None):
        return jnp.array([state.x, state.x_dot, jnp.sin(state.theta), jnp.cos(state.theta), state.theta_dot],
                         jnp.float32)

    def reset_env(self, key, params: SwingUpParams):
        noise = jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)
        state = SwingUpState(x=noise[0], x_dot=noise[1], theta=jnp.pi + noise[2], theta_dot=noise[3], time=0)
        return self.get_obs(state), state

    def step_env(self, key, state: SwingUpState, action, params: SwingUpParams):
        action = jnp.clip(jnp.reshape(action, (1,)).astype(jnp.float32), -1.0, 1.0)
        reward = swingup_reward(state.x, state.theta, action, params)
        x_acc, theta_acc = cartpole_derivatives(state, params.force_mag * action[0], params)
        # semi-implicit Euler: velocities first, positions move with the new velocities
        x_dot = state.x_dot + params.tau * x_acc
        theta_dot = state.theta_dot + params.tau * theta_acc
        x = state.x + params.tau * x_dot
        at_stop = jnp.abs(x) >= params.x_limit       # the end stops: the cart halts there
        new_state = SwingUpState(x=jnp.clip(x, -params.x_limit, params.x_limit), x_dot=jnp.where(at_stop, 0.0, x_dot),
                                 theta=state.theta + params.tau * theta_dot, theta_dot=theta_dot, time=state.time + 1)
        return (jax.lax.stop_gradient(self.get_obs(new_state)), jax.lax.stop_gradient(new_state),
                reward.astype(jnp.float32), jnp.array(False), {})

    def is_terminated(self, state: SwingUpState, params: SwingUpParams):
        return jnp.array(False)
