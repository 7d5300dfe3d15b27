"""Distracting state dimensions: a wrapper that appends n dimensions with their own chaotic dynamics
to a base env's observation (Voelcker et al. 2022, "Value Gradient weighted Model-Based
Reinforcement Learning", ICLR, Sec. 5 on distracting dimensions; construction from the paper's code,
``pairlab/vagram``, ``mbrl/env/distractor_dimensions.py``, as configured for its distraction runs in
``mbrl/util/mujoco.py``: non-linear, switching, not correlated with the base state).

The distractors d ∈ ℝⁿ evolve, independently of the action, the reward and the base state, by

    d ← A d + 0.1 · sin(P d)          A_ij ~ N(0, 1),  P_ij = (10 · z_ij)², z_ij ~ N(0, 1)
    d_i ← b_i  wherever |d_i| > 20     b_i ~ N(0, 1)   (the "switching" reset, per dimension)

with A, P and b drawn once per env from ``distractor_seed`` (the code draws them once per wrapper
instance) and kept in the env params (a pytree: vmap over them works). A random Gaussian A has
spectral radius ≈ √n, so d grows quickly until a dimension crosses 20 and jumps back to its b_i: a
deterministic but chaotic, hard-to-model process with values in [-20, 20]. At reset
d ~ N(0, 0.1²) and one update is applied (the code's ``reset`` calls its ``observation``).

The observation is ``concat(base_obs, d)``; reward, termination and time limit are the base env's
(the base state, the reward and the episode are exactly those of the base env under the same keys
and actions). The distractors are chaotic in float32 too: the same key gives the same trajectory within
one compiled program, but two differently compiled programs (e.g. vmapped and not) may round A d one
ulp apart, and sin(P d) with P ~ 100 makes the trajectories part within tens of steps. Registered ids: ``Pendulum-Distract{n}-v0`` for n in ``DISTRACTOR_COUNTS`` (Pendulum-v1
never terminates, so neither do these); ``Distractors(base_id, num_distractors, distractor_seed)``
builds any other combination.
"""
from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

DISTRACTOR_COUNTS = (5, 10, 15, 20)
RESET_BOUND = 20.0       # the code's switching threshold
SINE_SCALE = 0.1         # weight of the non-linear term
FREQUENCY_SCALE = 10.0   # P = (FREQUENCY_SCALE · z)²
INIT_STD = 0.1           # d at reset ~ N(0, INIT_STD²)


@struct.dataclass
class DistractorState(environment.EnvState):
    base: environment.EnvState = None
    distractors: jax.Array = None   # (n,)
    time: int = 0


@struct.dataclass
class DistractorParams(environment.EnvParams):
    base: environment.EnvParams = None
    transition: jax.Array = None     # A, (n, n)
    frequencies: jax.Array = None    # P, (n, n)
    reset_values: jax.Array = None   # b, (n,)
    max_steps_in_episode: int = 200


def distractor_matrices(key, num_distractors: int):
    """(A, P, b) of the module docstring, drawn from ``key``."""
    a_key, p_key, b_key = jax.random.split(key, 3)
    n = num_distractors
    transition = jax.random.normal(a_key, (n, n))
    frequencies = (FREQUENCY_SCALE * jax.random.normal(p_key, (n, n))) ** 2
    return transition, frequencies, jax.random.normal(b_key, (n,))


def distractor_step(d, params: DistractorParams):
    """One update of the distractors: d ← A d + 0.1 sin(P d), then |d_i| > 20 resets d_i to b_i."""
    d = params.transition @ d + SINE_SCALE * jnp.sin(params.frequencies @ d)
    return jnp.where(jnp.abs(d) > RESET_BOUND, params.reset_values, d)


class Distractors(environment.Environment[DistractorState, DistractorParams]):
    """``base_id`` with ``num_distractors`` distracting dimensions appended to its observation."""

    def __init__(self, base_id: str = "Pendulum-v1", num_distractors: int = 10, distractor_seed: int = 0):
        super().__init__()
        if not isinstance(num_distractors, int) or num_distractors < 1:
            raise ValueError(f"num_distractors must be an integer >= 1, got {num_distractors!r}")
        if base_id not in gymnax.registered_envs:
            raise ValueError(f"Distractors wraps a gymnax env id; {base_id!r} is not one of "
                             f"{sorted(gymnax.registered_envs)}")
        self.base_id = base_id
        self.num_distractors = num_distractors
        self.distractor_seed = int(distractor_seed)
        self.base, self._base_params = gymnax.make(base_id)
        if len(self.base.observation_space(self._base_params).shape) != 1:
            raise ValueError(f"Distractors needs a flat (1-D) observation; {base_id} has shape "
                             f"{self.base.observation_space(self._base_params).shape}")

    @property
    def name(self) -> str:
        return f"{self.base_id.split('-')[0]}-Distract{self.num_distractors}-v0"

    @property
    def default_params(self) -> DistractorParams:
        transition, frequencies, reset_values = distractor_matrices(
            jax.random.PRNGKey(self.distractor_seed), self.num_distractors)
        return DistractorParams(base=self._base_params, transition=transition, frequencies=frequencies,
                                reset_values=reset_values,
                                max_steps_in_episode=self._base_params.max_steps_in_episode)

    def base_params(self, params: DistractorParams):
        """The base env's params, with this env's (possibly overridden) time limit."""
        return params.base.replace(max_steps_in_episode=params.max_steps_in_episode)

    def action_space(self, params: DistractorParams | None = None):
        return self.base.action_space(self._base_params if params is None else params.base)

    def observation_space(self, params: DistractorParams | None = None):
        base_dim = self.base.observation_space(self._base_params).shape[0]
        return spaces.Box(-jnp.inf, jnp.inf, (base_dim + self.num_distractors,), jnp.float32)

    def observe(self, base_obs, d):
        return jnp.concatenate([jnp.asarray(base_obs, jnp.float32).reshape(-1), d.astype(jnp.float32)])

    def reset_env(self, key, params: DistractorParams):
        base_key, d_key = jax.random.split(key)
        base_obs, base_state = self.base.reset_env(base_key, self.base_params(params))
        d = distractor_step(INIT_STD * jax.random.normal(d_key, (self.num_distractors,)), params)
        return self.observe(base_obs, d), DistractorState(base=base_state, distractors=d, time=0)

    def step_env(self, key, state: DistractorState, action, params: DistractorParams):
        base_obs, base_state, reward, terminated, info = self.base.step_env(key, state.base, action,
                                                                            self.base_params(params))
        d = distractor_step(state.distractors, params)
        new_state = DistractorState(base=base_state, distractors=d, time=state.time + 1)
        return self.observe(base_obs, d), new_state, reward, terminated, info

    def is_terminated(self, state: DistractorState, params: DistractorParams):
        return self.base.is_terminated(state.base, self.base_params(params))

    def is_truncated(self, state: DistractorState, params: DistractorParams):
        return state.time >= params.max_steps_in_episode


def pendulum_factory(num_distractors: int):
    return lambda **kw: Distractors(**{"base_id": "Pendulum-v1", "num_distractors": num_distractors, **kw})


REGISTRY = {f"Pendulum-Distract{n}-v0": pendulum_factory(n) for n in DISTRACTOR_COUNTS}
